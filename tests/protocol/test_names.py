"""Subject names people have (issue 10, item 8)."""

from __future__ import annotations

import re
import unicodedata

import pytest

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.names import MAX_NAME_LENGTH, subject_name

NAMES = ["José Müller", "O'Brien", "Zhang Wei 张伟", "Ελένη Παπαδοπούλου", "محمد علي", "Ana-María"]


@pytest.mark.parametrize("name", NAMES)
def test_names_of_people_are_accepted_in_nfc(name):
    assert subject_name(name) == unicodedata.normalize("NFC", name)
    assert subject_name(unicodedata.normalize("NFD", name)) == subject_name(name)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (" Ann", "start or end with a space"),
        ("Ann\n", "start or end with a space"),
        ("Ann\x00Lee", "control character (U+0000)"),
        ("Ann\u202eLee", "U+202E"),
        ("a/b", "slash"),
        ("x" * (MAX_NAME_LENGTH + 1), "at most 128 characters"),
    ],
)
def test_refusals_say_what_is_wrong_in_words(name, words):
    with pytest.raises(InputError, match=re.escape(words)) as err:
        subject_name(name)
    assert "^" not in str(err.value) and "[" not in str(err.value)  # no regular expression
