"""Small models and datasets shared by the training tests."""

from PIL import Image

from faceobfuscator.research.data.datasets import ManifestEntry
from faceobfuscator.research.data.split import Split, write_split
from tests.helpers import smooth_face_like


def _toy_dataset(tmp_path, rng, people=6, per_person=5):
    aligned = tmp_path / "aligned" / "lfw"
    lines, names = [], {}
    for p in range(people):
        ident = f"Person_{p}"
        names[ident] = ident.lower()
        (aligned / ident).mkdir(parents=True)
        for k, face in enumerate(smooth_face_like(rng, n=per_person)):
            rel = f"{ident}/{ident}_{k:04d}"
            Image.fromarray(face).save(aligned / f"{rel}.png")
            lines.append(ManifestEntry(ident, f"{rel}.jpg", "centre", f"{rel}.png").to_json())
    (aligned / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    split = Split((6,), {"lfw": tuple(names)}, ("someone_else",), {"lfw": names})
    return tmp_path / "aligned", write_split(split, tmp_path / "split.json")
