"""The recognition server: gallery storage, in-memory index, service layer and REST API.

The server receives only obfuscated payloads. It stores them as sent (SQLite in WAL mode,
or PostgreSQL shared by several API processes), computes embeddings with its model at
start-up and on enrolment, keeps them in memory, and optionally keeps them sealed with
AES-GCM in the database (``FACEOBF_CACHE_KEY``) so that a restart need not run the model
again; a cache made by another model or key is rebuilt.

REST API (OpenAPI at ``/docs``). Payloads are the raw request body with
``Content-Type: application/octet-stream`` (exactly ``payload_bytes`` of ``/v1/protocol``;
larger bodies get 413 before they are read). Keys travel as ``Authorization: Bearer <key>``.

======  ======================================  ======  ==================================
method  path                                    role    answer
======  ======================================  ======  ==================================
GET     /v1/protocol                            none    protocol config, hash, payload size
GET     /v1/health                              none    model, index size and digest
POST    /v1/subjects  ``{"subject": name}``     admin   201; 409 if it exists
GET     /v1/subjects?limit&offset               admin   names, template counts
GET     /v1/subjects/{subject}                  admin   404 if unknown
DELETE  /v1/subjects/{subject}                  admin   204: erased everywhere
POST    /v1/subjects/{subject}/templates        admin   201 ``{"template_id"}``; payload body
GET     /v1/subjects/{subject}/templates        admin   template ids
DELETE  /v1/subjects/{subject}/templates/{id}   admin   204
POST    /v1/verify?subject=name                 client  score, match, threshold; payload body
POST    /v1/identify?top_k=5                    client  top-k subjects by best score
======  ======================================  ======  ==================================

Administrator keys may do everything; client keys only verify and identify (403 otherwise;
401 for a missing or unknown key). Errors are ``{"detail": message}``: 404 unknown subject
or template, 409 existing subject or a subject without templates, 413 too large, 415 not
``application/octet-stream``, 422 a payload that does not decode (format version, protocol
hash, shape, NaN or infinity, size) or invalid parameters, 503 database unavailable. Nothing
is stored unless the whole request is valid, and no message carries a payload, an embedding
or a key.

Deletion (the right to erasure) removes a subject's templates and cached embeddings in one
transaction; every API process applies the database's change log before each request that
reads its index, so an acknowledged deletion is absent from every process's answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faceobfuscator._lazy import lazy_getattr

#: public name -> the module of this package that defines it (loaded on first use, so
#: that importing one server module does not pull in the app and the model)
_EXPORTS = {
    "Embedder": "embedder",
    "GalleryService": "service",
    "KeyRing": "keys",
    "ModelEmbedder": "embedder",
    "Role": "keys",
    "ServerSettings": "settings",
    "build_service": "app",
    "create_app": "app",
    "create_app_from_env": "app",
    "key_digest": "keys",
    "new_api_key": "keys",
    "open_storage": "storage",
}

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

if TYPE_CHECKING:
    from faceobfuscator.server.app import build_service, create_app, create_app_from_env
    from faceobfuscator.server.embedder import Embedder, ModelEmbedder
    from faceobfuscator.server.keys import KeyRing, Role, key_digest, new_api_key
    from faceobfuscator.server.service import GalleryService
    from faceobfuscator.server.settings import ServerSettings
    from faceobfuscator.server.storage import open_storage


__getattr__ = lazy_getattr(__name__, _EXPORTS)
