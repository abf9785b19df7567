"""The application factory: ``create_app(settings)``.

The lifespan opens the gallery, loads the model once and builds the in-memory index before
the first request; a background thread then follows the change log (other processes'
enrolments and deletions) until shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from faceobfuscator.errors import (
    ChallengeError,
    InputError,
    NoTemplatesError,
    PayloadError,
    PayloadTooLargeError,
    StorageError,
    StorageFullError,
    SubjectExistsError,
    UnknownSubjectError,
    UnknownTemplateError,
)
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.embedder import Embedder, ModelEmbedder
from faceobfuscator.server.index import EmbeddingIndex
from faceobfuscator.server.keys import KeyRing, Role
from faceobfuscator.server.protection import build_receiver, build_vault
from faceobfuscator.server.ratelimit import RateLimiter
from faceobfuscator.server.routers import challenges, meta, recognition, subjects
from faceobfuscator.server.service import GalleryService
from faceobfuscator.server.settings import ServerSettings
from faceobfuscator.server.storage import open_storage

__all__ = ["create_app", "create_app_from_env", "build_service"]

log = logging.getLogger(__name__)


def build_service(settings: ServerSettings, *, embedder: Embedder | None = None) -> GalleryService:
    """Open the gallery and the model named by ``settings`` and build the index."""
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    model = embedder or ModelEmbedder(
        settings.model_dir,
        device=settings.device,
        threshold=settings.threshold,
        runtime=settings.runtime,
    )
    storage = open_storage(
        settings.db_url,
        synchronous=settings.sqlite_synchronous,
        pool_size=settings.pg_pool_size,
    )
    key = settings.cache_key_bytes()
    sealer = (
        None if key is None else EmbeddingSealer(key, model_hash=model.model_hash, dim=model.dim)
    )
    service = GalleryService(
        storage,
        model,
        sealer=sealer,
        max_payload_bytes=settings.max_payload_bytes,
        embed_batch=settings.embed_batch,
        max_top_k=settings.max_top_k,
        vault=build_vault(settings),
        index_factory=lambda n: _index_for(settings, model.dim, n),
        batch_window_s=settings.batch_window_ms / 1000,
        network_lanes=settings.network_lanes,
        background_from=settings.rebuild_background_from,
    )
    try:
        service.start()
    except BaseException:
        storage.close()
        raise
    return service


def _index_for(settings: ServerSettings, dim: int, n_templates: int) -> EmbeddingIndex:
    from faceobfuscator.server.ann import AnnSpec, choose_index

    return choose_index(
        dim,
        n_templates,
        kind=settings.index,
        min_templates=settings.ann_min_templates,
        spec=AnnSpec(
            nlist=settings.ann_nlist,
            nprobe=settings.ann_nprobe,
            shortlist=settings.ann_shortlist,
            train_size=settings.ann_train_size,
        ),
    )


def _limiters(settings: ServerSettings) -> dict[Role, RateLimiter]:
    rates = {Role.CLIENT: settings.client_rate_per_s, Role.ADMIN: settings.admin_rate_per_s}
    return {
        role: RateLimiter(rate, burst=settings.rate_burst)
        for role, rate in rates.items()
        if rate is not None
    }


class _Follower(threading.Thread):
    """Applies the change log every ``interval`` seconds until stopped, and every
    ``prune_every`` seconds reports its position and prunes the log."""

    def __init__(
        self, service: GalleryService, interval: float, *, prune_every: float, keep_s: float
    ) -> None:
        super().__init__(name="gallery-sync", daemon=True)
        self.service = service
        self.interval = interval
        self.prune_every = prune_every
        self.keep_s = keep_s
        self.halt = threading.Event()

    def run(self) -> None:
        last_pruned = time.monotonic()
        while not self.halt.wait(self.interval):
            try:
                self.service.sync()
                if time.monotonic() - last_pruned >= self.prune_every:
                    last_pruned = time.monotonic()
                    self.service.housekeeping(keep_s=self.keep_s)
            except Exception as exc:  # keep following; the next request retries as well
                log.warning("gallery sync failed: %s", type(exc).__name__)


def create_app(settings: ServerSettings, *, embedder: Embedder | None = None) -> FastAPI:
    """The FastAPI application for ``settings``. ``embedder`` replaces the model of
    ``settings.model_dir`` (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await anyio.to_thread.run_sync(lambda: build_service(settings, embedder=embedder))
        try:
            app.state.receiver = await anyio.to_thread.run_sync(
                lambda: build_receiver(settings, service.storage, service.protocol)
            )
        except BaseException:
            service.close()
            raise
        follower = _Follower(
            service,
            settings.sync_interval_s,
            prune_every=settings.change_log_prune_s,
            keep_s=settings.change_log_keep_s,
        )
        follower.start()
        app.state.service = service
        try:
            yield
        finally:
            follower.halt.set()
            await anyio.to_thread.run_sync(follower.join)
            service.close()

    app = FastAPI(
        title="FaceObfuscator recognition server",
        version="1",
        summary="Face recognition on obfuscated frequency features: it never sees a face.",
        lifespan=lifespan,
    )
    app.state.keyring = KeyRing(admin=settings.admin_key_hashes, client=settings.client_key_hashes)
    app.state.receiver = None
    app.state.limiters = _limiters(settings)
    app.state.client_scores = settings.client_scores
    for router in (meta.router, subjects.router, recognition.router, challenges.router):
        app.include_router(router)
    _install_error_handlers(app)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment (and the file named
    by ``FACEOBF_SETTINGS_FILE``)."""
    return create_app(ServerSettings.load())


_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (PayloadTooLargeError, 413),
    (PayloadError, 422),
    (ChallengeError, 409),
    (UnknownSubjectError, 404),
    (UnknownTemplateError, 404),
    (SubjectExistsError, 409),
    (NoTemplatesError, 409),
    (InputError, 422),
)


def _install_error_handlers(app: FastAPI) -> None:
    async def input_error(request: Request, exc: Exception) -> JSONResponse:
        code = next(c for t, c in _STATUS if isinstance(exc, t))
        return JSONResponse({"detail": str(exc)}, status_code=code)

    async def storage_full(request: Request, exc: Exception) -> JSONResponse:
        log.error("gallery disk full: %s", exc)
        return JSONResponse({"detail": str(exc)}, status_code=507)

    async def storage_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("storage unavailable: %s", exc)
        return JSONResponse(
            {"detail": "the gallery database is unavailable; try again later"},
            status_code=503,
        )

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's default answer echoes the offending input; name the field only
        assert isinstance(exc, RequestValidationError)
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    app.add_exception_handler(InputError, input_error)
    app.add_exception_handler(StorageError, storage_error)
    app.add_exception_handler(StorageFullError, storage_full)
    app.add_exception_handler(RequestValidationError, invalid_request)
