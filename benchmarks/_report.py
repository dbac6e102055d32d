"""What every benchmark stamps on its JSON lines, so runs can be compared later."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def git_hash() -> str | None:
    """The short commit of the checkout, or None outside git."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def metadata(bench: str) -> dict[str, str | None]:
    """The fields shared by every result line of one benchmark."""
    return {"bench": bench, "python": platform.python_version(), "git": git_hash()}


def print_table(rows: list[list[str]], *, note_last: bool = False) -> None:
    """Print `rows` (the first is the header) aligned: the first column left, numbers right.

    With `note_last`, the last column is free text, left-aligned and unpadded.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = slice(1, -1) if note_last else slice(1, None)
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[numeric], widths[numeric], strict=True)]
        if note_last:
            cells.append(row[-1])
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
