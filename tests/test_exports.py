"""The public door: `xcomm.__all__` is sorted, complete, and every name is documented."""

from __future__ import annotations

import inspect

import xcomm


def test_all_is_sorted_and_unique() -> None:
    names = [n for n in xcomm.__all__ if not n.startswith("__")]
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert len(set(xcomm.__all__)) == len(xcomm.__all__)


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(xcomm).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == set(xcomm.__all__) - {"__version__"}


def test_every_public_name_has_a_docstring() -> None:
    for name in xcomm.__all__:
        obj = getattr(xcomm, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"xcomm.{name} has no docstring"
