"""Terminal tables: fitted to a width, clipped with an ellipsis, safe to print."""

from __future__ import annotations

import pytest

from xcomm._console import _width, caret, clip, fitted_table, terminal_text

ROWS = [
    ["DATE", "FROM", "SUBJECT", "SIZE"],
    ["2024-01-01 10:00", "Ada Lovelace <ada@example.com>", "A subject that goes on " * 3, "12K"],
    ["2024-01-02 11:00", "b@x", "short", "1.2M"],
]


def test_clip_counts_terminal_columns() -> None:
    assert clip("hello", 5) == "hello"
    assert clip("hello world", 6) == "hello…"
    assert clip("日本語テキスト", 6) == "日本…"  # wide characters take two columns
    assert _width(clip("日本語テキスト", 6)) <= 6


@pytest.mark.parametrize("width", [120, 80, 60, 44])
def test_fitted_table_is_never_wider_than_asked(width: int) -> None:
    lines = fitted_table(ROWS, width=width, right=[3], shrink=[1, 2])
    assert all(_width(line) <= width for line in lines)
    assert lines[2].split()[:2] == ["2024-01-01", "10:00"]  # fixed columns are kept whole
    assert lines[2].rstrip().endswith("12K") and lines[3].rstrip().endswith("1.2M")


def test_fitted_table_keeps_what_fits_and_clips_the_rest() -> None:
    wide = fitted_table(ROWS, width=200, right=[3], shrink=[1, 2])
    assert "Ada Lovelace <ada@example.com>" in wide[2] and "…" not in "".join(wide)
    narrow = fitted_table(ROWS, width=70, right=[3], shrink=[1, 2])
    assert "…" in narrow[2] and "b@x" in narrow[3] and "short" in narrow[3]


def test_terminal_text_removes_escapes_line_breaks_and_bidi_overrides() -> None:
    assert terminal_text("a\x1b[31mred\r\nnext\tcol") == "a [31mred next col"
    assert terminal_text("invoice\u202etxt.exe") == "invoice txt.exe"
    assert terminal_text("  Café  ") == "Café"


def test_caret_points_at_the_column_under_wide_characters() -> None:
    assert caret("frm:x", 1) == "^"
    assert caret("a frm:x", 3) == "  ^"
    assert caret("日本 frm:x", 4) == "     ^"
