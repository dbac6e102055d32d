"""Loopback servers and load generators the benchmarks run against.

Postfix's `smtp-sink` (a fast SMTP server that throws messages away) and `smtp-source` (a C
load generator, the physical limit of the machine) come from the Debian package, extracted
into `.cache/postfix` by `benchmarks/install_postfix_tools.sh`; no MTA is installed or started.
Everything listens on 127.0.0.1 on a free port chosen at start.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "POSTFIX_DIR",
    "MissingToolError",
    "SmtpSink",
    "free_port",
    "postfix_tool",
    "run_smtp_source",
    "wait_for_banner",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTFIX_DIR = Path(os.environ.get("XCOMM_POSTFIX_DIR", REPO_ROOT / ".cache" / "postfix"))
INSTALL_HINT = "run `bash benchmarks/install_postfix_tools.sh` (or `make services`) first"

_COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


class MissingToolError(RuntimeError):
    """A Postfix test tool is not installed under `.cache/postfix`."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def postfix_tool(name: str) -> Path:
    """The path of `smtp-sink` / `smtp-source`; raises `MissingToolError` with the fix."""
    path = POSTFIX_DIR / "usr" / "sbin" / name
    if not os.access(path, os.X_OK):
        raise MissingToolError(f"{path} is missing: {INSTALL_HINT}")
    return path


def _postfix_env() -> dict[str, str]:
    env = dict(os.environ)
    libdir = str(POSTFIX_DIR / "usr" / "lib" / "postfix")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH")) if p)
    return env


def _privilege_args() -> list[str]:
    # smtp-sink refuses to run as root without dropping privileges.
    return ["-u", "nobody"] if os.geteuid() == 0 else []


def wait_for_banner(host: str, port: int, *, timeout: float = 5.0) -> None:
    """Block until a TCP connect to `host:port` reads an SMTP `220` greeting."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError as exc:
            last_error = exc
        time.sleep(0.01)
    raise TimeoutError(f"no SMTP greeting from {host}:{port} within {timeout:g}s ({last_error})")


class SmtpSink:
    """Postfix `smtp-sink` on 127.0.0.1, counting the messages it receives.

    Example:
        ```python
        with SmtpSink() as sink:
            send_to("127.0.0.1", sink.port)
            print(sink.messages())
        ```

    Args:
        backlog: the listen backlog (large, so bursts of new connections are not refused).
        max_concurrency: the most sessions it serves at once (`-m`).
        extra_args: further `smtp-sink` options (fault injection: `-r RCPT`, `-w 2`, ...).
    """

    def __init__(
        self,
        *,
        backlog: int = 1024,
        max_concurrency: int = 512,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self._backlog = backlog
        self._max_concurrency = max_concurrency
        self._extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> Self:
        """Start the sink on a free port and wait for its greeting."""
        binary = postfix_tool("smtp-sink")
        self.port = free_port(self.host)
        # Counters go to a file, not a pipe: a pipe nobody drains fast enough would stall
        # the sink and slow down the very thing being measured.
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 - lives until stop()
        argv = [
            str(binary),
            *_privilege_args(),
            "-a",  # no AUTH (its fake AUTH answers 250, which clients reject)
            "-c",  # running counters on stdout
            "-m",
            str(self._max_concurrency),
            *self._extra_args,
            f"{self.host}:{self.port}",
            str(self._backlog),
        ]
        self._proc = subprocess.Popen(
            argv, stdout=self._out, stderr=subprocess.PIPE, env=_postfix_env()
        )
        try:
            wait_for_banner(self.host, self.port)
        except BaseException:
            self.stop()
            raise
        return self

    def messages(self) -> int:
        """Messages received so far (the sink's `mesg=` counter)."""
        if self._out is None:
            return 0
        self._out.seek(0, os.SEEK_END)
        size = self._out.tell()
        self._out.seek(max(0, size - 4096))
        matches = _COUNTERS.findall(self._out.read())
        return int(matches[-1][2]) if matches else 0

    def wait_for_messages(self, expected: int, *, timeout: float = 5.0) -> int:
        """Wait until the counter reaches `expected` (or the timeout); return the count."""
        deadline = time.monotonic() + timeout
        count = self.messages()
        while count < expected and time.monotonic() < deadline:
            time.sleep(0.01)
            count = self.messages()
        return count

    def stop(self) -> None:
        """Stop the sink. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        out, self._out = self._out, None
        if out is not None:
            out.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_smtp_source(
    host: str,
    port: int,
    *,
    messages: int,
    sessions: int,
    length: int = 1024,
    reuse_connections: bool = True,
) -> float:
    """Send `messages` with Postfix `smtp-source` over `sessions` parallel sessions.

    Returns the wall time in seconds (process start to exit). With `reuse_connections`
    (`-d`) each session sends its messages over one connection, like a connection pool.
    """
    binary = postfix_tool("smtp-source")
    argv = [
        str(binary),
        *(["-d"] if reuse_connections else []),
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(length),
        "-f",
        "bench@example.com",
        "-t",
        "sink@example.com",
        f"{host}:{port}",
    ]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=_postfix_env(), capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"smtp-source exited with {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    return elapsed


def ensure_postfix_tools() -> None:
    """Install smtp-sink/smtp-source into POSTFIX_DIR when they are missing."""
    try:
        postfix_tool("smtp-sink")
        postfix_tool("smtp-source")
    except MissingToolError:
        print(f"Postfix tools missing in {POSTFIX_DIR}; installing ...", file=sys.stderr)
        script = REPO_ROOT / "benchmarks" / "install_postfix_tools.sh"
        subprocess.run(["bash", str(script)], check=True)
        postfix_tool("smtp-sink")
