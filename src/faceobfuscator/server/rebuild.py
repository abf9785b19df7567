"""Embedding, in the background, the templates that have no cached embedding of the
served model (a changed model makes every cached embedding unusable: a million templates
take hours of CPU), while the service answers from what is indexed.

Each batch is embedded and sealed into the cache outside any lock, then added to the
index only if its templates still exist (``GalleryService.add_if_present``, under the
sync lock), so an erasure during the rebuild is never undone. Progress and completion are
in ``/v1/health`` (``index_complete``, ``rebuild_done`` of ``rebuild_total``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faceobfuscator.server.service import GalleryService
    from faceobfuscator.server.storage import TemplateRef

__all__ = ["CacheRebuild"]

log = logging.getLogger(__name__)


class CacheRebuild(threading.Thread):
    """Embeds ``refs`` batch by batch into ``service``'s cache and index.

    Attributes:
        total: templates to embed.
        done: templates embedded so far (including any deleted meanwhile).
        finished: the last batch is in (or the rebuild failed: see ``error``).
        error: why it stopped early, or None.
    """

    def __init__(self, service: GalleryService, refs: Sequence[TemplateRef]) -> None:
        super().__init__(name="cache-rebuild", daemon=True)
        self.service = service
        self.refs = list(refs)
        self.total = len(self.refs)
        self.done = 0
        self.finished = False
        self.error: str | None = None
        self.started_at = time.monotonic()
        self._halt = threading.Event()

    def run(self) -> None:
        step = max(self.service.embed_batch, 1)
        try:
            for i in range(0, self.total, step):
                if self._halt.is_set():
                    return
                chunk = self.refs[i : i + step]
                self.service.add_if_present(chunk, self.service.embed_refs(chunk))
                self.done = min(self.total, i + step)
            log.info(
                "background rebuild finished: %d templates in %.0f s",
                self.total,
                time.monotonic() - self.started_at,
            )
        except Exception as exc:  # reported in /v1/health; a restart resumes from the cache
            self.error = type(exc).__name__
            log.error("background rebuild stopped: %s", type(exc).__name__)
        finally:
            self.finished = not self._halt.is_set()

    def stop(self) -> None:
        """Stop after the current batch and wait for it."""
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
