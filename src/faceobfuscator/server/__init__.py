"""The recognition server: gallery storage, in-memory index, service layer and REST API.

The server receives only obfuscated payloads; it stores them as sent, computes embeddings
with its model and keeps them in memory (or, optionally, sealed in an encrypted cache).
"""

from .app import build_service, create_app, create_app_from_env
from .embedder import Embedder, ModelEmbedder
from .keys import KeyRing, Role, key_digest, new_api_key
from .service import GalleryService
from .settings import ServerSettings
from .storage import open_storage

__all__ = [
    "Embedder",
    "GalleryService",
    "KeyRing",
    "ModelEmbedder",
    "Role",
    "ServerSettings",
    "build_service",
    "create_app",
    "create_app_from_env",
    "key_digest",
    "new_api_key",
    "open_storage",
]
