"""The gallery service: what the API does, without HTTP.

It keeps the in-memory index equal to the database by applying the change log in order
(:meth:`GalleryService.sync`): after its own writes, before every request that reads the
index, and periodically in the background. So a deletion acknowledged by any process is
absent from every process's answers from then on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from faceobfuscator.errors import (
    EnvelopeError,
    ModelMismatchError,
    NoTemplatesError,
    PayloadError,
    PayloadTooLargeError,
    StorageFullError,
)
from faceobfuscator.protocol.obfuscation import check_sent_feature
from faceobfuscator.protocol.outcomes import Candidate, Enrolment, Identification, Verification
from faceobfuscator.protocol.payload import decode_payload, payload_size
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.embedder import Embedder
from faceobfuscator.server.index import EmbeddingIndex
from faceobfuscator.server.rebuild import CacheRebuild
from faceobfuscator.server.runtime import MicroBatcher
from faceobfuscator.server.security.envelope import TemplateVault, is_envelope
from faceobfuscator.server.storage import ADD, SQLStorage, SubjectRecord, TemplateRef

__all__ = ["GalleryService", "Verification", "Identification", "Enrolment"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class GalleryService:
    """Gallery operations over one storage and one embedder.

    Args:
        storage: the gallery database.
        embedder: the recognition model.
        sealer: seals embeddings for the persistent cache; None keeps them in memory only.
        max_payload_bytes: largest payload accepted; default the protocol's payload size.
        embed_batch: payloads per model call when loading the gallery.
        max_top_k: the largest ``top_k`` the API accepts.
        vault: encrypts templates at rest; None stores payloads as sent (plain).
        index_factory: makes the index at start-up from the gallery's number of templates
            (exact or approximate, see ``server.ann.choose_index``); default exact.
        batch_window_s: requests arriving within this window share one network call
            (``server.runtime.MicroBatcher``, at most ``embed_batch`` payloads); 0: each
            request runs the network alone.
        network_lanes: network calls that may run at once (requests' batches, or single
            requests without batching); 1 runs them one after another.
        background_from: when start-up finds at least this many templates without a
            cached embedding of the model (a changed model), it serves at once and embeds
            them in the background (:attr:`rebuild`); None: always before serving.
    """

    def __init__(
        self,
        storage: SQLStorage,
        embedder: Embedder,
        *,
        sealer: EmbeddingSealer | None = None,
        max_payload_bytes: int | None = None,
        embed_batch: int = 32,
        max_top_k: int = 100,
        vault: TemplateVault | None = None,
        index_factory: Callable[[int], EmbeddingIndex] | None = None,
        batch_window_s: float = 0.0,
        network_lanes: int = 1,
        background_from: int | None = None,
    ) -> None:
        self.storage = storage
        self.embedder = embedder
        self.protocol = embedder.protocol
        self.sealer = sealer
        self.max_payload_bytes = max_payload_bytes or payload_size(self.protocol)
        self.embed_batch = embed_batch
        self.max_top_k = max_top_k
        self.vault = vault
        self.index = EmbeddingIndex(embedder.dim)
        self._index_factory = index_factory
        self._background_from = background_from
        #: the background embedding of templates missing from the cache, if one ran
        self.rebuild: CacheRebuild | None = None
        self._seq = 0
        self._sync_lock = threading.Lock()
        self._synced_from = 0  # monotonic_ns at which the last completed sync began
        self.follower_id = uuid.uuid4().hex  # this process in the followers table
        if network_lanes < 1:
            raise ValueError(f"network_lanes must be >= 1, got {network_lanes}")
        self._embed_lanes = threading.BoundedSemaphore(network_lanes)
        self._batcher = (
            MicroBatcher(
                self._embed_alone,
                window_s=batch_window_s,
                max_rows=embed_batch,
                lanes=network_lanes,
            )
            if batch_window_s > 0
            else None
        )
        self._pending: dict[int, np.ndarray] = {}
        #: why the last write failed for want of disk space; None once a write succeeds
        self.storage_problem: str | None = None

    # start-up and synchronisation

    def start(self) -> None:
        """Check the gallery against the model and build the index from the database."""
        foreign = [h for h in self.storage.protocol_hashes() if h != self.protocol.hash]
        if foreign:
            raise ModelMismatchError(
                f"the gallery holds payloads of {len(foreign)} other protocol(s) "
                f"({', '.join(h[:12] for h in foreign)}); the model speaks "
                f"{self.protocol.hash[:12]}. Serve it with a model of the gallery's protocol."
            )
        with self._sync_lock:
            self._load()
        self.sync()  # whatever changed while loading
        log.info("gallery index ready: %d templates (%s)", len(self.index), self.index.kind)

    def _load(self) -> None:
        """(Re)build the index from the database; the caller holds the sync lock."""
        n = self.storage.count()[1]
        index = self._index_factory(n) if self._index_factory else EmbeddingIndex(self.index.dim)
        self.index = index
        seq = self.storage.last_seq()
        # the log is kept from here until this process reports again (housekeeping)
        self.storage.report_applied(self.follower_id, seq)
        missing: list[TemplateRef] = []  # templates the model must embed
        if self.sealer is None:
            for refs in self.storage.iter_refs(batch=max(self.embed_batch, 1000)):
                missing.extend(refs)
        else:  # refs and cached embeddings in one query a page, opened in one call
            for page in self.storage.iter_refs_sealed(self.sealer.model_hash, batch=10_000):
                ok, embs = self.sealer.open_many(page.template_ids, page.sealed)
                self.index.add(
                    [page.template_ids[i] for i in ok],
                    [page.subject_ids[i] for i in ok],
                    [page.names[i] for i in ok],
                    embs,
                )
                missing.extend(page.refs(sorted(set(range(len(page.template_ids))) - set(ok))))
        self._seq = seq
        if self.rebuild is not None:
            self.rebuild.stop()
        if self._background_from is not None and len(missing) >= self._background_from:
            log.warning(
                "%d templates have no cached embedding of this model; embedding them in the "
                "background (progress in /v1/health)",
                len(missing),
            )
            self.rebuild = CacheRebuild(self, missing)
            self.rebuild.start()
        else:
            self._add_refs(missing)

    def housekeeping(self, *, keep_s: float) -> int:
        """Report how far this process has applied the log, and prune what every recent
        process has applied; returns the number of changes pruned."""
        self.storage.report_applied(self.follower_id, self._seq)
        return self.storage.prune_changes(keep_s=keep_s)

    def sync(self) -> int:
        """Apply the change log since the last call; returns the number of changes.

        Concurrent callers share one pass: a caller that waited for a pass which began
        after it arrived has nothing left to read (whatever was committed before it arrived
        was applied), so requests do not queue one database query each.
        """
        applied = 0
        arrived = time.monotonic_ns()
        with self._sync_lock:
            if self._synced_from > arrived:
                return 0
            began = time.monotonic_ns()
            if self.storage.pruned_through() > self._seq:
                # this process fell behind a pruned log (it was not seen for a while)
                log.warning("change log pruned past this process's position; reloading")
                self._load()
            while True:
                changes = self.storage.changes_since(self._seq)
                if not changes:
                    self._synced_from = began
                    return applied
                start = 0
                for i in range(1, len(changes) + 1):  # runs of one operation, in order
                    if i == len(changes) or changes[i].op != changes[start].op:
                        ids = [c.template_id for c in changes[start:i]]
                        if changes[start].op == ADD:
                            self._add_refs(self.storage.refs(ids))
                        else:
                            self.index.remove(ids)
                        start = i
                self._seq = changes[-1].seq
                applied += len(changes)

    def _add_refs(self, refs: Sequence[TemplateRef]) -> None:
        """Add templates to the index: embeddings from this process, then the cache, then
        the model (sealing what the model computed)."""
        refs = [r for r in refs if r.template_id not in self.index]
        if not refs:
            return
        found: dict[int, np.ndarray] = {}
        for r in refs:
            if r.template_id in self._pending:
                found[r.template_id] = self._pending.pop(r.template_id)
        todo = [r.template_id for r in refs if r.template_id not in found]
        if self.sealer is not None and todo:
            cached = self.storage.sealed_embeddings(todo, self.sealer.model_hash)
            ids = list(cached)
            opened, embs = self.sealer.open_many(ids, [cached[t] for t in ids])
            found.update(zip([ids[i] for i in opened], embs, strict=True))
            todo = [t for t in todo if t not in found]
        left = set(todo)
        found.update(self.embed_refs([r for r in refs if r.template_id in left]))
        kept = [r for r in refs if r.template_id in found]
        if kept:
            self.index.add(
                [r.template_id for r in kept],
                [r.subject_id for r in kept],
                [r.name for r in kept],
                np.stack([found[r.template_id] for r in kept]),
            )

    def embed_refs(self, refs: Sequence[TemplateRef]) -> dict[int, np.ndarray]:
        """Run the model on the stored payloads of ``refs`` (in batches of
        ``embed_batch``) and seal the embeddings into the cache; returns them by template
        id, leaving out templates deleted meanwhile or without a finite embedding."""
        names = {r.template_id: r.name for r in refs}
        todo = list(names)
        found: dict[int, np.ndarray] = {}
        for i in range(0, len(todo), self.embed_batch):
            chunk = todo[i : i + self.embed_batch]
            payloads = self.storage.payloads(chunk)
            ids = [t for t in chunk if t in payloads]
            if not ids:
                continue
            stored = [self._stored(t, names[t], payloads[t]) for t in ids]
            feats = np.stack([decode_payload(b, self.protocol).feature for b in stored])
            embs = self._embed(feats)
            usable = np.isfinite(embs).all(axis=1)
            if not usable.all():  # stored before payloads were checked; never compared
                log.warning("%d stored templates have no finite embedding", (~usable).sum())
                ids, embs = [t for t, ok in zip(ids, usable, strict=True) if ok], embs[usable]
            found.update(zip(ids, embs, strict=True))
            if self.sealer is not None:
                sealer = self.sealer
                self.storage.put_sealed(
                    [(t, sealer.seal(t, e)) for t, e in zip(ids, embs, strict=True)],
                    sealer.model_hash,
                )
        return found

    def add_if_present(self, refs: Sequence[TemplateRef], found: dict[int, np.ndarray]) -> int:
        """Add the embedded templates of ``refs`` that still exist, as one step against
        the change log (a deletion committed later is applied by a later sync); returns
        how many were added. The background rebuild's way into the index."""
        with self._sync_lock:
            alive = self.storage.refs([r.template_id for r in refs if r.template_id in found])
            if not alive:
                return 0
            return self.index.add(
                [r.template_id for r in alive],
                [r.subject_id for r in alive],
                [r.name for r in alive],
                np.stack([found[r.template_id] for r in alive]),
            )

    # payloads

    def _stored(self, template_id: int, name: str, blob: bytes) -> bytes:
        """The payload of a stored row: decrypted when templates are stored encrypted."""
        if self.vault is not None:
            return self.vault.decrypt(blob, subject=name, template_id=template_id)
        if is_envelope(blob):
            raise EnvelopeError(
                f"template {template_id} is stored encrypted and this server has no master "
                "key; set FACEOBF_MASTER_KEY to the gallery's key"
            )
        return blob

    def _decode(self, data: bytes) -> np.ndarray:
        if len(data) > self.max_payload_bytes:
            raise PayloadTooLargeError(self.max_payload_bytes)
        feature = decode_payload(data, self.protocol).feature
        check_sent_feature(feature, self.protocol)  # what recovery makes of it is usable
        return feature

    def _embed(self, features: np.ndarray) -> np.ndarray:
        if self._batcher is not None:
            return self._batcher(features)
        return self._embed_alone(features)

    def _embed_alone(self, features: np.ndarray) -> np.ndarray:
        with self._embed_lanes:
            return np.asarray(self.embedder.embed(features), dtype=np.float32)

    def embed_payload(self, data: bytes) -> np.ndarray:
        """Validate one payload and return its embedding ``(dim,)``; a payload whose
        embedding is not finite is refused (:class:`PayloadError`), so NaN is never stored,
        compared or returned."""
        emb = self._embed(self._decode(data)[None])[0]
        if not np.isfinite(emb).all():
            raise PayloadError(
                "the model gives this payload no usable embedding; protect the photo again"
            )
        return emb

    # subjects

    def _writing(self, write: Callable[[], _T]) -> _T:
        """Run a gallery write, remembering a full disk for ``/v1/health`` until a write
        succeeds again (no restart needed once space is freed)."""
        try:
            result = write()
        except StorageFullError as exc:
            self.storage_problem = str(exc)
            raise
        self.storage_problem = None
        return result

    def create_subject(self, name: str) -> SubjectRecord:
        return self._writing(lambda: self.storage.create_subject(name))

    def get_subject(self, name: str) -> SubjectRecord:
        return self.storage.get_subject(name)

    def list_subjects(self, *, limit: int, offset: int = 0) -> list[SubjectRecord]:
        return self.storage.list_subjects(limit=limit, offset=offset)

    def delete_subject(self, name: str) -> int:
        """Erase a subject everywhere; returns the number of templates removed."""
        removed = self.storage.delete_subject(name)
        self.sync()
        return len(removed)

    def delete_template(self, name: str, template_id: int) -> None:
        self.storage.delete_template(name, template_id)
        self.sync()

    def template_ids(self, name: str) -> list[int]:
        self.storage.get_subject(name)  # 404 for an unknown subject
        return self.storage.template_ids(name)

    # recognition

    def enrol(self, name: str, data: bytes) -> Enrolment:
        """Validate, embed and store one payload for an existing subject. Nothing is
        stored unless the payload is valid."""
        emb = self.embed_payload(data)
        sealer = self.sealer
        vault = self.vault
        ref = self._writing(
            lambda: self.storage.add_template(
                name,
                data,
                protocol_hash=self.protocol.hash,
                seal=None if sealer is None else (lambda tid: sealer.seal(tid, emb)),
                model_hash="" if sealer is None else sealer.model_hash,
                protect=None
                if vault is None
                else (lambda n, tid, p: vault.encrypt(p, subject=n, template_id=tid)),
            )
        )
        with self._sync_lock:
            self._pending[ref.template_id] = emb
        self.sync()
        with self._sync_lock:
            self._pending.pop(ref.template_id, None)
        return Enrolment(name, ref.template_id)

    def verify(self, name: str, data: bytes) -> Verification:
        """1:1: the best similarity of the payload with the subject's templates."""
        emb = self.embed_payload(data)
        self.sync()
        score = self.index.verify(name, emb)
        if score is None:
            self.storage.get_subject(name)  # raises UnknownSubjectError
            raise NoTemplatesError(name)
        threshold = self.embedder.threshold
        return Verification(name, score, score >= threshold, threshold)

    def identify(self, data: bytes, *, top_k: int = 5) -> Identification:
        """1:N: the ``top_k`` most similar subjects, best first."""
        emb = self.embed_payload(data)
        self.sync()
        threshold = self.embedder.threshold
        return Identification(
            [
                Candidate(m.name, m.score, m.score >= threshold)
                for m in self.index.search(emb, top_k)
            ],
            threshold,
        )

    @property
    def index_complete(self) -> bool:
        """Whether every template of the database (as of the last sync) is indexed: false
        while a background rebuild runs, and after one that failed (until a restart)."""
        r = self.rebuild
        return r is None or (r.finished and r.error is None)

    def close(self) -> None:
        if self.rebuild is not None:
            self.rebuild.stop()
        self.storage.close()
