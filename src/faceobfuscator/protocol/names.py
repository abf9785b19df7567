"""Subject names as people have them, one spelling on client and server.

A name is NFC-normalised (so "é" typed as one code point or as "e" plus an accent is one
name), 1 to :data:`MAX_NAME_LENGTH` characters of any script, with spaces, apostrophes and
other punctuation; it has no control or invisible format characters, no slash (names
travel in URL paths, percent-encoded) and no space at either end.
"""

from __future__ import annotations

import unicodedata

from faceobfuscator.errors import InputError

__all__ = ["MAX_NAME_LENGTH", "subject_name"]

MAX_NAME_LENGTH = 128
#: Unicode categories refused: controls, unassigned, private use, surrogates, line and
#: paragraph separators. Format characters (Cf) are refused too, except the zero-width
#: joiners that some scripts need within words.
_REFUSED = {"Cc", "Cn", "Co", "Cs", "Zl", "Zp", "Cf"}
_JOINERS = {"\u200c", "\u200d"}


def subject_name(name: str) -> str:
    """The canonical (NFC) form of a subject name; raises :class:`InputError`, in words,
    if it cannot be one (the checks of the module docstring)."""
    if not isinstance(name, str):
        raise InputError(f"a subject name is text, got {type(name).__name__}")
    text = unicodedata.normalize("NFC", name)
    if not text.strip():
        raise InputError("a subject name cannot be empty or only spaces")
    if len(text) > MAX_NAME_LENGTH:
        raise InputError(
            f"a subject name has at most {MAX_NAME_LENGTH} characters; this one has {len(text)}"
        )
    if text != text.strip():
        raise InputError("a subject name cannot start or end with a space")
    for position, char in enumerate(text, start=1):
        category = unicodedata.category(char)
        if char in _JOINERS:
            continue
        if category in _REFUSED:
            raise InputError(
                f"character {position} of the subject name is an invisible or control "
                f"character (U+{ord(char):04X}); names hold letters, digits, spaces and "
                "punctuation"
            )
        if char in "/\\":
            raise InputError(
                f"character {position} of the subject name is a slash; names cannot hold "
                "'/' or '\\' (they travel in URL paths)"
            )
    return text
