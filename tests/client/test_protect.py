import json

import numpy as np
import pytest

from faceobfuscator import ImageError, NoFaceError, ProtocolConfig, decode_payload, recover
from faceobfuscator.cli import main
from faceobfuscator.client.protect import channel_statistics, payload_names, protect_photo
from faceobfuscator.errors import InputError


def test_photo_to_payload_round_trip(datasets_root):
    config = ProtocolConfig()
    photo = datasets_root / "lfw/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
    a = decode_payload(protect_photo(photo, config), config).feature
    b = decode_payload(protect_photo(photo.read_bytes(), config), config).feature
    assert a.shape == (2, 112, 112)
    assert not np.array_equal(a, b)  # a fresh draw every time
    np.testing.assert_array_equal(np.abs(recover(a, config)), np.abs(recover(b, config)))


def test_corrupt_image_and_no_face_are_clear_errors(tmp_path):
    config = ProtocolConfig()
    with pytest.raises(ImageError):
        protect_photo(b"\xff\xd8\xff\xe0 not really a jpeg", config)
    grey = tmp_path / "grey.png"
    from PIL import Image

    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(grey)
    with pytest.raises(NoFaceError):
        protect_photo(grey, config)


def test_cli_protect_and_inspect(datasets_root, tmp_path, capsys):
    photo = datasets_root / "lfw/Serena_Williams/Serena_Williams_0001.jpg"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    code = main(["protect", str(photo), str(bad), "--out", str(tmp_path / "out")])
    assert code == 1  # one of two failed, and says so
    err = capsys.readouterr().err
    assert "bad.jpg" in err
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["Serena_Williams_0001.fobf"]  # nothing partial
    assert main(["inspect", str(files[0]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == [2, 112, 112] and report["bytes"] == 100404
    assert [c["channel"] for c in report["channels"]] == [1, 8]
    assert 0.4 < report["channels"][0]["positive_share"] < 0.6


def test_inspect_rejects_a_wrong_payload(tmp_path, capsys):
    f = tmp_path / "x.fobf"
    f.write_bytes(b"FOBF" + bytes(100))
    assert main(["inspect", str(f)]) == 2
    assert "error" in capsys.readouterr().err


def test_channel_statistics_values():
    feature = np.stack([np.array([[1.0, -3.0], [2.0, 0.0]]), np.zeros((2, 2))])
    s = channel_statistics(feature)
    assert s[0]["max_abs"] == 3.0 and s[0]["mean"] == 0.0
    assert s[0]["positive_share"] == 0.5
    assert s[0]["std"] == pytest.approx(np.std([1, -3, 2, 0], ddof=1))
    assert s[1]["log2_max_abs"] == float("-inf")


def test_payload_names_mirror_relative_paths_and_refuse_collisions(tmp_path):
    photos = [tmp_path / d / "01.jpg" for d in ("a", "b", "c/d")]
    assert [n.as_posix() for n in payload_names(photos)] == [
        "a/01.fobf",
        "b/01.fobf",
        "c/d/01.fobf",
    ]
    assert [n.as_posix() for n in payload_names([tmp_path / "x.jpg"])] == ["x.fobf"]
    with pytest.raises(InputError, match=r"01.png would both be written as 01.fobf"):
        payload_names([tmp_path / "01.jpg", tmp_path / "01.png"])


def test_cli_protect_never_overwrites_its_own_outputs(datasets_root, tmp_path, capsys):
    source = (datasets_root / "lfw" / "Tony_Blair" / "Tony_Blair_0001.jpg").read_bytes()
    photos = []
    for folder in ("x", "y", "z"):
        (tmp_path / "in" / folder).mkdir(parents=True)
        photos.append(tmp_path / "in" / folder / "01.jpg")
        photos[-1].write_bytes(source)
    out = tmp_path / "out"
    assert main(["protect", *map(str, photos), "--out", str(out)]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.fobf"))
    assert written == ["x/01.fobf", "y/01.fobf", "z/01.fobf"]
    (tmp_path / "in" / "x" / "01.png").write_bytes(b"")
    code = main(["protect", str(photos[0]), str(tmp_path / "in/x/01.png"), "--out", str(out)])
    assert code != 0 and "would both be written" in capsys.readouterr().err
