"""``faceobf serve`` runs the recognition server; ``faceobf apikey`` makes keys."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the recognition server",
        description="Settings come from FACEOBF_* environment variables, an optional dotenv "
        "file (--env-file) and these flags, flags winning.",
    )
    p.add_argument("--model", type=Path, help="model directory (FACEOBF_MODEL_DIR)")
    p.add_argument("--db", help="sqlite:///path or postgresql://... (FACEOBF_DB_URL)")
    p.add_argument("--env-file", type=Path, help="dotenv file of FACEOBF_* settings")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="API processes (share the database)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_serve)

    k = sub.add_parser(
        "apikey",
        help="make an API key (shown once) and the digest the server stores",
    )
    k.add_argument("--role", choices=["admin", "client"], default="client")
    k.add_argument("--cache-key", action="store_true", help="make an embedding-cache key instead")
    k.set_defaults(func=_apikey)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from faceobfuscator.server.settings import SETTINGS_FILE_ENV, ServerSettings

    # worker processes read their settings from the environment, so flags go there too
    if args.env_file is not None:
        os.environ[SETTINGS_FILE_ENV] = str(args.env_file.resolve())
    if args.model is not None:
        os.environ["FACEOBF_MODEL_DIR"] = str(args.model.resolve())
    if args.db is not None:
        os.environ["FACEOBF_DB_URL"] = args.db
    settings = ServerSettings.load()  # fail here, once, on bad settings
    if not settings.admin_key_hashes and not settings.client_key_hashes:
        print("faceobf serve: warning: no API keys configured; every request will get 401")
    uvicorn.run(
        "faceobfuscator.server.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
    )
    return 0


def _apikey(args: argparse.Namespace) -> int:
    from faceobfuscator.server.keys import key_digest, new_api_key, new_cache_key

    if args.cache_key:
        print(f"FACEOBF_CACHE_KEY={new_cache_key()}")
        return 0
    key = new_api_key()
    var = "FACEOBF_ADMIN_KEY_HASHES" if args.role == "admin" else "FACEOBF_CLIENT_KEY_HASHES"
    print(f"key (give it to the {args.role}; it is not stored): {key}")
    print(f"server setting: {var}='[\"{key_digest(key)}\"]'")
    return 0
