"""The end-to-end demo behind ``make demo``: a recognition server on loopback, people from
the LFW test identities enrolled through the SDK from their ordinary photos, then
identification and verification of other photos of them and of people never enrolled, an
erasure, and an HTML report.

The photos stay on the client: the SDK detects, aligns, transforms and obfuscates them
locally and sends only payloads. The report shows, beside each example face, the payload
the server stored, read back from the gallery database.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.bench.timing import latency_summary
from faceobfuscator.research.data.paths import HOME_ENV, TEST_FOLDS, project_home

__all__ = ["run_demo", "pick_people", "stored_view"]

#: Where the committed trained model lives, relative to the repository root.
MODEL_DIR = Path("models") / "sface-faceobfuscator"


@dataclass
class Person:
    name: str
    enrol: list[Path]
    probes: list[Path]


@dataclass
class Timings:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, what: str, seconds: float) -> None:
        self.values.setdefault(what, []).append(1000 * seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: latency_summary(v, digits=1) for k, v in self.values.items()}


class _LfwAligner:
    """Detects and aligns faces; LFW photos are pre-centred crops, so where detection fails
    the dataset's fixed centre points are used instead. Counts both outcomes."""

    def __init__(self, config: ProtocolConfig) -> None:
        from faceobfuscator.client.alignment import FaceAligner

        self._aligner = FaceAligner(config)
        self.outcomes: dict[str, int] = {"detected": 0, "centre": 0}

    def faces(self, rgb: np.ndarray) -> list[Any]:
        return self._aligner.faces(rgb)

    def choose(self, faces: list[Any], shape: tuple[int, ...], *, select: str) -> Any:
        """The detected face nearest the centre (LFW photos are pre-centred, and may show
        a second person: ``select`` is not used), or a face at the fixed centre points
        when none is usable (counted)."""
        from faceobfuscator.client.alignment import centre_landmarks
        from faceobfuscator.client.detection import Face
        from faceobfuscator.errors import NoFaceError

        try:
            face = self._aligner.choose(faces, shape, select="central")
            self.outcomes["detected"] += 1
            return face
        except NoFaceError:
            self.outcomes["centre"] += 1
            box = (0.0, 0.0, float(shape[1]), float(shape[0]))
            return Face(box=box, landmarks=centre_landmarks(shape), score=0.0)

    def warp(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        return self._aligner.warp(rgb, points)

    def face(self, rgb: np.ndarray) -> np.ndarray:
        """The aligned face, uncounted (for the report)."""
        return self._aligner.align_or_centre(rgb, fallback="centre")[0]


def pick_people(
    root: str | Path,
    *,
    n_enrolled: int,
    n_strangers: int,
    enrol_photos: int,
    probes: int,
    seed: int = 0,
) -> tuple[list[Person], list[Person]]:
    """People of the LFW test folds (6-10): ``n_enrolled`` with at least
    ``enrol_photos + probes`` photos, and ``n_strangers`` others, one probe photo each."""
    from faceobfuscator.research.data.datasets import image_root, lfw_pairs

    pairs = lfw_pairs(Path(root) / "lfw_meta")
    names = sorted(
        {p.split("/")[0] for q in pairs if q.fold in TEST_FOLDS for p in (q.path_a, q.path_b)}
    )
    folder = image_root("lfw", root)
    photos = {n: sorted((folder / n).glob("*.jpg")) for n in names}
    rng = np.random.default_rng(seed)
    rich = [n for n in names if len(photos[n]) >= enrol_photos + probes]
    if len(rich) < n_enrolled or len(names) - n_enrolled < n_strangers:
        raise InputError(
            f"the LFW test folds hold {len(rich)} people with {enrol_photos + probes}+ photos; "
            f"asked for {n_enrolled} enrolled and {n_strangers} strangers"
        )
    chosen = [str(n) for n in rng.choice(rich, n_enrolled, replace=False)]
    enrolled = [
        Person(n, photos[n][:enrol_photos], photos[n][enrol_photos : enrol_photos + probes])
        for n in chosen
    ]
    others = [n for n in names if n not in set(chosen)]
    strangers = [
        Person(str(n), [], [photos[str(n)][0]])
        for n in rng.choice(others, n_strangers, replace=False)
    ]
    return enrolled, strangers


def stored_view(payload: bytes, config: ProtocolConfig, *, kind: str = "values") -> np.ndarray:
    """What the server stored, for display: the obfuscated channels side by side as an RGB
    uint8 image.

    Args:
        kind: ``"values"``: the signed values as stored, each channel divided by its 99th
            percentile of ``|e|`` (blue negative, red positive); ``"log_magnitude"``:
            ``log10 |e|`` stretched between its 1st and 99th percentiles. The magnitudes
            keep the edge structure of the face; the obfuscation randomises every sign
            and each channel's scale.
    """
    from matplotlib import colormaps

    from faceobfuscator.protocol.payload import decode_payload

    if kind not in ("values", "log_magnitude"):
        raise InputError(f"kind={kind!r}; expected 'values' or 'log_magnitude'")
    feature = decode_payload(payload, config).feature.astype(np.float64)
    tiles = []
    for ch in feature:
        mag = np.abs(ch)
        if kind == "values":
            tile = np.clip(ch / max(np.percentile(mag, 99), 1e-300), -1, 1) / 2 + 0.5
        else:
            logm = np.log10(mag + np.finfo(np.float32).tiny)
            lo, hi = np.percentile(logm, [1, 99])
            tile = np.clip((logm - lo) / max(hi - lo, 1e-12), 0, 1)
        tiles += [tile, np.full((ch.shape[0], 4), 0.5 if kind == "values" else 1.0)]
    cmap = colormaps["coolwarm" if kind == "values" else "magma"]
    return (cmap(np.hstack(tiles[:-1]))[..., :3] * 255).round().astype(np.uint8)


def _png_uri(rgb: np.ndarray, scale: int = 1) -> str:
    from PIL import Image

    img = Image.fromarray(rgb)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _find_model(model: str | Path | None, work: Path) -> tuple[Path, bool]:
    """The model to serve and whether it is an untrained stand-in: ``model`` if given, else
    the committed model under :func:`~faceobfuscator.research.data.paths.project_home`,
    else a random model (labelled as such in the report, with a warning here)."""
    if model is not None:
        return Path(model), False
    home = project_home(str(MODEL_DIR / "config.json"))
    if home is not None:
        return home / MODEL_DIR, False
    print(
        f"faceobf demo: warning: no {MODEL_DIR} in {Path.cwd()} or above; serving a random "
        f"(untrained) model. Run from the checkout or set {HOME_ENV} to it.",
        file=sys.stderr,
    )
    from faceobfuscator.recognition.modeldir import make_random_model

    return make_random_model(work / "random-model"), True


def run_demo(
    *,
    root: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    n_enrolled: int = 50,
    n_strangers: int = 30,
    enrol_photos: int = 2,
    probes: int = 2,
    seed: int = 0,
) -> Path:
    """Run the demo and write ``server_demo.html`` and ``server_demo.json`` into ``out``;
    returns the HTML report's path. ``model`` defaults to ``models/sface-faceobfuscator``, or,
    when that is missing, a clearly labelled random (untrained) model."""
    from faceobfuscator.client.sdk import APIError, Client
    from faceobfuscator.recognition.modeldir import read_model_config
    from faceobfuscator.server.keys import key_digest, new_api_key, new_cache_key
    from faceobfuscator.server.process import LocalServer
    from faceobfuscator.server.storage import open_storage

    started = time.monotonic()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    enrolled, strangers = pick_people(
        root,
        n_enrolled=n_enrolled,
        n_strangers=n_strangers,
        enrol_photos=enrol_photos,
        probes=probes,
        seed=seed,
    )
    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="faceobf-demo-") as tmp:
        work = Path(tmp)
        model_dir, untrained = _find_model(model, work)
        admin_key, client_key = new_api_key(), new_api_key()
        db_url = f"sqlite:///{work / 'gallery.db'}"
        env = {
            "FACEOBF_ADMIN_KEY_HASHES": json.dumps([key_digest(admin_key)]),
            "FACEOBF_CLIENT_KEY_HASHES": json.dumps([key_digest(client_key)]),
            "FACEOBF_CACHE_KEY": new_cache_key(),
        }
        server = LocalServer(model=model_dir, db_url=db_url, log=work / "server.log", env=env)
        aligner = _LfwAligner(ProtocolConfig.from_dict(read_model_config(model_dir)["protocol"]))
        print(f"demo: starting the server on loopback with {model_dir}", flush=True)
        t = time.monotonic()
        health = server.start()
        timings.add("server start-up", time.monotonic() - t)
        try:
            with (
                Client(server.url, admin_key, aligner=aligner) as admin,
                Client(server.url, client_key, aligner=aligner) as user,
            ):
                results = _exercise(admin, user, enrolled, strangers, timings)
                health = admin.health()
                erasure = _erase(admin, user, enrolled[0], timings)
                storage = open_storage(db_url)
                try:
                    examples = _examples(results["sent"], storage, admin.protocol, aligner)
                finally:
                    storage.close()
        except APIError:
            print(server.tail(), flush=True)
            raise
        finally:
            server.stop()
            shutil.copy(work / "server.log", out / "server_demo_server.log")
    report = {
        "model": health["model"],
        "model_dir": str(model_dir),
        "untrained_model": untrained,
        "enrolled_people": len(enrolled),
        "strangers": len(strangers),
        "alignment": aligner.outcomes,
        **results["metrics"],
        "erasure": erasure,
        "timings": timings.summary(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    (out / "server_demo.json").write_text(json.dumps(report, indent=2) + "\n")
    path = out / "server_demo.html"
    path.write_text(_html(report, examples))
    print(f"demo: done in {report['wall_s']} s", flush=True)
    return path


def _timed(timings: Timings, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    t = time.monotonic()
    value = fn(*args, **kw)
    timings.add(what, time.monotonic() - t)
    return value


def _exercise(
    admin: Any, user: Any, enrolled: list[Person], strangers: list[Person], timings: Timings
) -> dict[str, Any]:
    """Enrol, identify and verify through the SDK; the local protection of each photo is
    timed apart from the request that sends it."""

    def protect(path: Path) -> bytes:
        return _timed(timings, "protect photo (client, local)", admin.protect, path)

    sent: dict[str, tuple[Path, bytes, int]] = {}
    print(f"demo: enrolling {len(enrolled)} people", flush=True)
    for person in enrolled:
        for photo in person.enrol:
            payload = protect(photo)
            done = _timed(timings, "enrol request", admin.enroll_payload, person.name, payload)
            sent.setdefault(person.name, (photo, payload, done.template_id))
    print("demo: identifying and verifying", flush=True)
    rank1 = rank5 = accepted = genuine = impostor = trials = 0
    for i, person in enumerate(enrolled):
        other = enrolled[(i + 1) % len(enrolled)].name
        for photo in person.probes:
            payload = protect(photo)
            result = _timed(timings, "identify request", user.identify_payload, payload, top_k=5)
            names = [c.subject for c in result.candidates]
            rank1 += names[:1] == [person.name]
            rank5 += person.name in names
            accepted += result.match == person.name
            genuine += _timed(
                timings, "verify request", user.verify_payload, person.name, payload
            ).match
            impostor += _timed(timings, "verify request", user.verify_payload, other, payload).match
            trials += 1
    rejected = 0
    for person in strangers:
        result = _timed(
            timings, "identify request", user.identify_payload, protect(person.probes[0]), top_k=5
        )
        rejected += result.match is None
    n_strangers = max(len(strangers), 1)
    return {
        "sent": sent,
        "metrics": {
            "identification": {
                "probes": trials,
                "rank1_accuracy": round(rank1 / trials, 3),
                "rank5_accuracy": round(rank5 / trials, 3),
                "accepted_at_threshold": round(accepted / trials, 3),
                "strangers_rejected": round(rejected / n_strangers, 3),
            },
            "verification": {
                "genuine_accept_rate": round(genuine / trials, 3),
                "impostor_accept_rate": round(impostor / trials, 3),
                "trials_each": trials,
            },
        },
    }


def _erase(admin: Any, user: Any, person: Person, timings: Timings) -> dict[str, Any]:
    """Delete one enrolled person and check that identification no longer finds them."""
    payload = user.protect(person.probes[0])
    _timed(timings, "delete subject request", admin.delete_subject, person.name)
    result = user.identify_payload(payload, top_k=50)
    return {
        "deleted": person.name,
        "still_found": person.name in [c.subject for c in result.candidates],
    }


def _examples(
    sent: dict[str, tuple[Path, bytes, int]],
    storage: Any,
    config: ProtocolConfig,
    aligner: _LfwAligner,
) -> list[dict[str, str]]:
    """Up to six people: photo, aligned face (client only) and the payload as stored."""
    from faceobfuscator.client.images import load_image

    rows = []
    for name, (photo, payload, template_id) in list(sent.items())[1:7]:
        stored = storage.payloads([template_id]).get(template_id)
        if stored is None:
            continue
        rows.append(
            {
                "name": name.replace("_", " "),
                "photo": _png_uri(load_image(photo)),
                "aligned": _png_uri(aligner.face(load_image(photo))),
                "stored": _png_uri(stored_view(stored, config)),
                "magnitude": _png_uri(stored_view(stored, config, kind="log_magnitude")),
                "identical": "yes" if stored == payload else "NO",
                "bytes": str(len(stored)),
            }
        )
    return rows


def _html(report: dict[str, Any], examples: list[dict[str, str]]) -> str:
    e = html.escape
    warn = ""
    if report["untrained_model"]:
        warn = (
            '<p class="warn">No trained model was found at models/sface-faceobfuscator: this run '
            "served a RANDOMLY INITIALISED model, so the accuracy below is at chance level. "
            "It shows the pipeline, not the method's accuracy.</p>"
        )
    ident, ver = report["identification"], report["verification"]
    metric_rows = [
        ("rank-1 identification accuracy", ident["rank1_accuracy"]),
        ("rank-5 identification accuracy", ident["rank5_accuracy"]),
        ("probes accepted as the right person at the threshold", ident["accepted_at_threshold"]),
        ("strangers (never enrolled) rejected", ident["strangers_rejected"]),
        ("verification: genuine accept rate", ver["genuine_accept_rate"]),
        ("verification: impostor accept rate", ver["impostor_accept_rate"]),
    ]
    timing_rows = "".join(
        f"<tr><td>{e(k)}</td><td>{v['count']}</td><td>{v['p50_ms']}</td><td>{v['p95_ms']}</td></tr>"
        for k, v in report["timings"].items()
    )
    example_rows = "".join(
        f"<tr><td>{e(x['name'])}</td><td><img src='{x['photo']}'></td>"
        f"<td><img src='{x['aligned']}'></td><td><img src='{x['stored']}'></td>"
        f"<td><img src='{x['magnitude']}'></td>"
        f"<td>{x['bytes']} bytes; identical to what the client sent: {x['identical']}</td></tr>"
        for x in examples
    )
    erasure = report["erasure"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>FaceObfuscator server demo</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: middle; }}
.warn {{ background: #fdd; border: 2px solid #c00; padding: 1em; font-weight: bold; }}
img {{ height: 112px; image-rendering: pixelated; }}
</style></head><body>
<h1>FaceObfuscator: recognition server demo</h1>
{warn}
<p>Model: <b>{e(report["model"])}</b> ({e(report["model_dir"])}).
{report["enrolled_people"]} people of the LFW test folds (6-10) were enrolled through the SDK
from their photos; other photos of them and photos of {report["strangers"]} people never
enrolled were then identified (1:N, top 5) and verified (1:1). Faces were found by the
detector in {report["alignment"]["detected"]} photos; {report["alignment"]["centre"]} fell back
to LFW's fixed centre crop. Whole run: {report["wall_s"]} s.</p>
<h2>Accuracy</h2>
<table><tr><th>measure</th><th>value</th></tr>
{"".join(f"<tr><td>{e(k)}</td><td>{v:.3f}</td></tr>" for k, v in metric_rows)}
</table>
<p>Erasure: after deleting <b>{e(erasure["deleted"])}</b>, identification of their photo
{"STILL found them" if erasure["still_found"] else "no longer lists them among the top 50"}.</p>
<h2>What the server stored</h2>
<p>Left: the photo and the aligned face, which never leave the client. Right: the
payload read back from the gallery database: its two obfuscated frequency channels (AC01
and AC10 of the 8x8 DCT), first as stored (blue negative, red positive; every element's
sign and each channel's scale are random), then as log<sub>10</sub>|e|. The magnitudes
keep the edge structure of the face: the protection rests on the random signs and scales
defeating reconstruction, which the privacy evaluation measures, not on the magnitudes
being unrecognisable to a person.</p>
<table><tr><th>person</th><th>photo (client)</th><th>aligned (client)</th>
<th>stored: values</th><th>stored: log<sub>10</sub>|e|</th><th></th></tr>{example_rows}</table>
<h2>Timings</h2>
<table><tr><th>step</th><th>count</th><th>p50 ms</th><th>p95 ms</th></tr>{timing_rows}</table>
</body></html>
"""
