"""The `i;unicode-casemap` collation (RFC 5051), which IMAP SEARCH uses for non-ASCII text.

RFC 3501 says SEARCH strings match "case-insensitively" without defining it beyond ASCII;
RFC 5255 makes `i;unicode-casemap` the default comparator of internationalized IMAP, and it
is what Dovecot (and Cyrus) implement. Each string is turned into its *titlecased canonical*
form: every character is replaced by its simple titlecase mapping (UnicodeData.txt field 14),
then by its decomposition (canonical or compatibility), repeatedly until nothing changes.
Two strings match as substrings when their forms do.

So `"café"` contains `"CAFE"` (é decomposes to e + U+0301), `"ǆ"` equals `"Ǆ"`, but `"ß"`
does not equal `"ss"`: unlike `str.casefold`, the collation has no multi-character case
mappings.

Python exposes full titlecase (`str.title`, which maps `ß` to `Ss`); the simple mapping is
the same except where the full one has several characters, and there it is the character
itself. The table fills lazily (`str.translate` reads it from C), so the cost is paid once per
distinct character.
"""

from __future__ import annotations

import unicodedata

__all__ = ["casemap"]


def _fold_char(char: str) -> str:
    title = char.title()
    if len(title) != 1:
        title = char
    decomposition = unicodedata.decomposition(title)
    if decomposition:
        codes = [c for c in decomposition.split() if not c.startswith("<")]
        return "".join(_fold_char(chr(int(c, 16))) for c in codes)
    if "\uac00" <= title <= "\ud7a3":  # Hangul syllables decompose algorithmically
        return unicodedata.normalize("NFD", title)
    return title


class _Table(dict[int, str]):
    """Code point -> titlecased canonical form, computed on first use."""

    def __missing__(self, code: int) -> str:
        value = self[code] = _fold_char(chr(code))
        return value


_TABLE = _Table()


def casemap(text: str) -> str:
    """`text` in i;unicode-casemap form: compare (or `in`-test) two such forms."""
    if text.isascii():
        return text.upper()
    return text.translate(_TABLE)
