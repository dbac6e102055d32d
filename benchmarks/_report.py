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
