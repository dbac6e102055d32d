"""The tests' Dovecot (`tests/integration/dovecot.py`) for benchmarks: same config, imported
by path (tests/ is not a package), so the configuration is written in one place."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

from benchmarks._report import REPO_ROOT

__all__ = ["DOVECOT_BINARY", "load"]

DOVECOT_BINARY = Path(shutil.which("dovecot") or "/usr/sbin/dovecot")


def load() -> ModuleType:
    """tests/integration/dovecot.py as a module (`start_dovecot`, `Dovecot`)."""
    name = "xcomm_bench_dovecot"
    if name in sys.modules:
        return sys.modules[name]
    path = REPO_ROOT / "tests" / "integration" / "dovecot.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
