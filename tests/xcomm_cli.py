"""The `xcomm` command run in process, for the command's tests."""

from __future__ import annotations

import contextlib
import io

from xcomm._cli import main


def cli(*args: str) -> tuple[int, str, str]:
    """`xcomm ARGS` through `xcomm._cli.main`: exit code, standard output, standard error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()
