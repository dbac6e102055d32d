"""The public door: `xcomm.__all__` is sorted, complete, and every name is documented."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import xcomm


def test_all_is_sorted_and_unique() -> None:
    names = [n for n in xcomm.__all__ if not n.startswith("__")]
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert len(set(xcomm.__all__)) == len(xcomm.__all__)


def test_all_is_complete() -> None:
    # Public names are imported at their first use (PEP 562): those not imported yet are in
    # the lazy table, and every one of them resolves.
    public = {
        name
        for name, value in vars(xcomm).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public | set(xcomm._EXPORTS) == set(xcomm.__all__) - {"__version__"}
    assert set(dir(xcomm)) >= set(xcomm.__all__)
    for name in xcomm.__all__:
        value = getattr(xcomm, name)
        assert value is not None and getattr(value, "__module__", "xcomm").startswith("xcomm")


def test_importing_xcomm_imports_no_provider() -> None:
    code = (
        "import sys, xcomm; "
        "print(sorted(m for m in sys.modules if m.startswith(('xcomm.email', 'httpx', 'jinja2'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        xcomm.Nope  # noqa: B018


def test_subpackages_are_reachable_from_the_package() -> None:
    code = "import xcomm; print(xcomm.bulk.BulkSender.__name__, xcomm.outbox.SQLiteOutbox.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["BulkSender", "SQLiteOutbox"]


def test_every_public_name_has_a_docstring() -> None:
    for name in xcomm.__all__:
        obj = getattr(xcomm, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"xcomm.{name} has no docstring"


def test_the_lazy_table_names_the_modules_type_checkers_see() -> None:
    # The names are written twice in xcomm/__init__.py: imported for type checkers, and in
    # the table __getattr__ imports from. Both must say the same module.
    tree = ast.parse(Path(xcomm.__file__).read_text())
    [block] = [n for n in tree.body if isinstance(n, ast.If)]
    seen = {
        alias.asname or alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == xcomm._EXPORTS
