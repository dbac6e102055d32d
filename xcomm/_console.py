"""Terminal output shared by the `xcomm` commands: exit statuses, errors, aligned tables fitted
to the terminal, a progress bar, a report.

`xcomm demo`, `xcomm campaign ...`, `send` and `search` draw with the same pieces, so they look
alike. Everything here is pure except `ProgressBar` and `error`, which write to the stream
they are given.

Exit statuses (docs/cli.md): 0 done; 1 something failed (recipients, a provider call);
2 bad input, nothing sent; 3 no such campaign; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from xcomm.bulk import CampaignResult, Progress

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNKNOWN_CAMPAIGN",
    "ProgressBar",
    "campaign_report",
    "caret",
    "clip",
    "error",
    "fitted_table",
    "ms",
    "progress_line",
    "shown",
    "streams",
    "table",
    "terminal_text",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNKNOWN_CAMPAIGN = 3
EXIT_INTERRUPTED = 130

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SETTLED = 0.5  # seconds before the progress bar shows a rate and an ETA
_FAILURES_SHOWN = 3


def error(err: TextIO, text: str) -> None:
    """Print `xcomm: error: text` to `err`."""
    print(f"xcomm: error: {text}", file=err)


def streams(out: TextIO | None, err: TextIO | None) -> tuple[TextIO, TextIO]:
    """`out` and `err`, standard output and standard error when not given."""
    return out or sys.stdout, err or sys.stderr


def _width(text: str) -> int:
    """Columns `text` takes in a terminal (wide CJK characters and emoji take two)."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _pad(text: str, width: int, *, right: bool = False) -> str:
    fill = " " * (width - _width(text))
    return fill + text if right else text + fill


def table(rows: Sequence[Sequence[str]], *, right: Iterable[int] = ()) -> list[str]:
    """Aligned columns, left-aligned except the column indexes in `right`; a rule under row 0."""
    right = set(right)
    widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            _pad(cell, width, right=i in right)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def clip(text: str, width: int) -> str:
    """`text` cut to `width` terminal columns, ending in `…` when cut."""
    if _width(text) <= width:
        return text
    out, used = [], 0
    for char in text:
        size = _width(char)
        if used + size > width - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"


def fitted_table(
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    right: Iterable[int] = (),
    shrink: Iterable[int] = (),
) -> list[str]:
    """`table(rows)` no wider than `width` columns: the columns in `shrink` share what the
    others leave (the narrow ones keep their width, the rest get equal parts), and their cells
    are clipped with `…`. Columns never get narrower than their header."""
    flexible = sorted(set(shrink), key=lambda i: max(_width(row[i]) for row in rows))
    count = len(rows[0])
    natural = [max(_width(row[i]) for row in rows) for i in range(count)]
    room = width - 2 - 2 * (count - 1) - sum(natural[i] for i in range(count) if i not in flexible)
    widths = {}
    for n, i in enumerate(flexible):
        share = room // (len(flexible) - n)
        widths[i] = max(min(natural[i], share), _width(rows[0][i]))
        room -= widths[i]
    clipped = [[clip(cell, widths[i]) if i in widths else cell for i, cell in enumerate(row)]
               for row in rows]  # fmt: skip
    return table(clipped, right=right)


def caret(text: str, column: int) -> str:
    """A line with `^` under the 1-based `column` of `text` (wide characters counted)."""
    return " " * _width(text[: column - 1]) + "^"


def terminal_text(text: str) -> str:
    """`text` safe to print in one table cell: control characters (escape sequences, line
    breaks, tabs) and bidirectional overrides become spaces, runs of spaces one space."""
    cleaned = "".join(" " if unicodedata.category(c) == "Cc" or c in _BIDI else c for c in text)
    return " ".join(cleaned.split())


def shown(path: Path) -> str:
    """`path` relative to the working directory when it is under it (for messages)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def ms(seconds: float) -> str:
    """Seconds as milliseconds with one decimal: `0.0123` -> `"12.3"`."""
    return f"{seconds * 1000:.1f}"


def campaign_report(result: CampaignResult) -> list[str]:
    """The summary table of a campaign run, then its first few failures."""
    rows = [
        ["sent", "failed", "suppressed", "skipped", "in doubt", "duration", "throughput",
         "p50 ms", "p99 ms"],
        [f"{result.sent:,}", f"{result.failed:,}", f"{result.suppressed:,}",
         f"{result.skipped:,}", f"{result.in_doubt:,}", f"{result.duration:.2f} s",
         f"{result.throughput:,.0f} msg/s", ms(result.p50_latency), ms(result.p99_latency)],
    ]  # fmt: skip
    lines = table(rows, right=range(9))
    for failure in result.failures[:_FAILURES_SHOWN]:
        lines.append(f"  {failure.status.value}: {failure.recipient}: {failure.error}")
    return lines


# -- progress ------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole}s" if whole < 60 else f"{whole // 60}m{whole % 60:02d}s"


def progress_line(done: int, total: int, *, elapsed: float, rate: float, width: int = 30) -> str:
    """`[█████░░░░░]  2,500/5,000  50%  1,234 msg/s  ETA 2s`: a pure function of the counts.

    `rate` is messages sent per second; the ETA comes from how fast recipients get done
    (sent, failed or skipped), so a resumed run that skips everything still finishes its bar.
    Before `_SETTLED` seconds both show `--`: the first few sends say little about the rest.
    """
    fraction = min(1.0, done / total) if total else 1.0
    filled = round(fraction * width)
    bar = "█" * filled + "░" * (width - filled)
    settled = elapsed >= _SETTLED
    speed = f"{rate:,.0f}" if settled or done >= total else "--"
    if done >= total:
        eta = "done"
    elif done and settled:
        eta = "ETA " + _duration((total - done) * elapsed / done)
    else:
        eta = "ETA --"
    digits = len(f"{total:,}")
    return f"  [{bar}] {done:>{digits},}/{total:,} {fraction:>4.0%}  {speed:>6} msg/s  {eta}"


class ProgressBar:
    """An `on_progress` callback that draws done/total, the send rate and the ETA.

    On a terminal it redraws one line in place with `\\r`; anywhere else (a pipe, a log file,
    a test) it prints a line at each quarter of the way, and `finish()` prints the last one.
    """

    def __init__(self, total: int, out: TextIO, *, live: bool | None = None) -> None:
        self._total = total
        self._out = out
        self._live = out.isatty() if live is None else live
        self._next_quarter = 1
        self._drawn = 0

    def __call__(self, event: Progress) -> None:
        line = progress_line(event.done, self._total, elapsed=event.elapsed, rate=event.rate)
        if self._live:
            self._draw(line)
            return
        quarter = event.done * 4 // self._total if self._total else 4
        if self._next_quarter <= quarter < 4:
            print(line, file=self._out)
            self._next_quarter = quarter + 1

    def finish(self, result: CampaignResult) -> None:
        """Draw the final state from the run's result and end the line."""
        done = result.sent + result.failed + result.suppressed + result.skipped + result.in_doubt
        line = progress_line(done, self._total, elapsed=result.duration, rate=result.throughput)
        if self._live:
            self._draw(line)
            self._out.write("\n")
            self._out.flush()
        else:
            print(line, file=self._out)

    def _draw(self, line: str) -> None:
        self._out.write("\r" + line + " " * max(0, self._drawn - len(line)))
        self._out.flush()
        self._drawn = len(line)
