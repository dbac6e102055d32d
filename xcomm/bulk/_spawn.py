"""Helper processes forked from a warm process (the zygote) instead of started afresh.

A new interpreter spends ~0.15 s of CPU importing Python's asyncio, msgspec, anyio and xcomm
before a helper sends anything: at the start of a campaign, on the cores the campaign is meant
to fill. So the first campaign with helpers starts one *zygote*, a process that imports what a
helper needs once and then waits; each helper is a `fork()` of it, ready in milliseconds, with
this process's environment and working directory of the moment.

    this process ── request (and two sockets) ──> zygote ── fork() ──> helper
                 <── the helper's pid ──────────
      helper's stdin and stdout: one socket ──────────────────────────> helper
      its exit status: another socket, written by the zygote when it reaps the helper

The zygote serves every campaign of this process and exits when the control socket closes:
when this process exits, is killed, or forks (a forked process starts its own). A helper
whose feeding process died reads the end of its input and finishes as it always does. Where
`fork()` or passing descriptors over Unix sockets is missing, or the zygote cannot be reached,
helpers are started afresh (`python -c ...`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from typing import Protocol

import anyio
import anyio.abc

__all__ = ["HelperProcess", "start_helper"]

_HELPER = "import sys, xcomm.bulk._helpers as h; sys.exit(h.main())"
_ZYGOTE = "import sys, xcomm.bulk._spawn as s; s.zygote(int(sys.argv[1]))"
# What a helper imports, imported once by the zygote (those not installed are skipped).
_PRELOAD = (
    "xcomm.bulk._helpers",
    "xcomm._manager",
    "xcomm.email._smtp",
    "xcomm.outbox._sqlite",
    "anyio._backends._asyncio",
    "uvloop",
    "jinja2.sandbox",
)
_CAN_FORK = hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX")
_MAX_REQUEST = 1 << 24


class HelperProcess(Protocol):
    """What `Helpers` needs of a helper process (an `anyio.abc.Process` has it)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdin(self) -> anyio.abc.ByteSendStream | None: ...

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream | None: ...

    async def wait(self) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


async def start_helper() -> HelperProcess:
    """A new helper process: forked from this process's zygote, or started afresh."""
    if _CAN_FORK:
        try:
            return await _Forked.start()
        except OSError:
            pass  # no zygote could be started or reached: the slow way still works
    process: HelperProcess = await anyio.open_process(
        [sys.executable, "-c", _HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
    )
    return process


# -- in this process ------------------------------------------------------------------------


class _Zygote:
    """This process's zygote: a child process, and the socket requests go over."""

    _lock = threading.Lock()  # campaigns of several threads (event loops) share it
    _current: _Zygote | None = None

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _ZYGOTE, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours

    @classmethod
    def fork(cls, helper: socket.socket, status: socket.socket) -> int:
        """Fork a helper from the zygote (started at the first call, and again if it died
        since); returns its pid. Blocking: run it in a worker thread."""
        request = json.dumps({"cwd": os.getcwd(), "env": dict(os.environ)}).encode()
        with cls._lock:
            zygote = cls._current
            if zygote is None:
                zygote = cls._current = cls()
            try:
                zygote._send(request, helper, status)
            except OSError:  # it died since the last campaign: once more, with a new one
                zygote.close()
                zygote = cls._current = cls()
                zygote._send(request, helper, status)
            try:
                return zygote._reply()
            except OSError:  # no retry: a helper may have been forked on these sockets
                zygote.close()
                cls._current = None
                raise

    def _send(self, request: bytes, helper: socket.socket, status: socket.socket) -> None:
        head = len(request).to_bytes(4, "big")
        socket.send_fds(self.control, [head], [helper.fileno(), status.fileno()])
        self.control.sendall(request)

    def _reply(self) -> int:
        pid = int.from_bytes(_read_exactly(self.control, 4), "big", signed=True)
        if pid <= 0:
            raise OSError(-pid, f"the zygote could not fork a helper: {os.strerror(-pid)}")
        return pid

    def close(self) -> None:
        """Let the zygote go: it exits once its control socket closes."""
        self.control.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)

    @classmethod
    def close_current(cls) -> None:
        with cls._lock:
            zygote, cls._current = cls._current, None
        if zygote is not None:
            zygote.close()


def _forget_after_fork() -> None:
    """In a child of this process: the parent's zygote is not ours (a new one is started at
    the first need), nor is the lock another thread may have held."""
    zygote, _Zygote._current = _Zygote._current, None
    _Zygote._lock = threading.Lock()
    if zygote is not None:
        zygote.control.close()


atexit.register(_Zygote.close_current)
if _CAN_FORK:
    os.register_at_fork(after_in_child=_forget_after_fork)


class _Forked:
    """A helper forked from the zygote, as `Helpers` sees a process: `stdin` and `stdout` are
    the two directions of one socket (closing `stdin` ends the helper's input)."""

    def __init__(
        self, pid: int, stream: anyio.abc.SocketStream, status: anyio.abc.SocketStream
    ) -> None:
        self.pid = pid
        self.stdout: anyio.abc.ByteReceiveStream = stream
        self.stdin: anyio.abc.ByteSendStream = _Input(stream)
        self.returncode: int | None = None
        self._status = status
        self._waiting = anyio.Lock()

    @classmethod
    async def start(cls) -> _Forked:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        status_ours, status_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = await anyio.to_thread.run_sync(_Zygote.fork, theirs, status_theirs)
            stream = await anyio.abc.UNIXSocketStream.from_socket(ours)
            status = await anyio.abc.UNIXSocketStream.from_socket(status_ours)
        except BaseException:
            ours.close()
            status_ours.close()
            raise
        finally:
            theirs.close()
            status_theirs.close()
        return cls(pid, stream, status)

    async def wait(self) -> int:
        """The helper's exit code (-N: killed by signal N; -1: its zygote died first)."""
        async with self._waiting:
            if self.returncode is None:
                data = b""
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    while len(data) < 4:
                        data += await self._status.receive(4 - len(data))
                self.returncode = int.from_bytes(data, "big", signed=True) if len(data) == 4 else -1
                await self._status.aclose()
                await self.stdout.aclose()
        return self.returncode

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, number: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, number)


class _Input(anyio.abc.ByteSendStream):
    """The sending half of a helper's socket: closing it ends the helper's input."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self._stream = stream

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        with contextlib.suppress(OSError, anyio.ClosedResourceError):
            await self._stream.send_eof()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = sock.recv(size - len(data))
        if not more:
            raise ConnectionResetError("the zygote closed its control socket")
        data += more
    return data


# -- in the zygote ---------------------------------------------------------------------------


def zygote(fd: int) -> None:
    """The zygote's loop (see the module's docstring): fork a helper per request, report each
    helper's exit status when it ends, and exit when the control socket closes."""
    control = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the feeder's
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through wake_r
    statuses: dict[int, socket.socket] = {}
    while True:
        ready, _, _ = select.select([control.fileno(), wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(statuses)
        if control.fileno() in ready:
            try:
                received = _request(control)
            except OSError:
                received = None
            if received is None:
                return  # the feeding process is gone or done with us
            request, helper, status = received
            try:
                pid = os.fork()
            except OSError as exc:
                helper.close()
                status.close()
                control.sendall((-(exc.errno or 1)).to_bytes(4, "big", signed=True))
                continue
            if pid == 0:
                _become_helper(request, helper, (control, status, wake_r, wake_w))
            helper.close()
            statuses[pid] = status
            control.sendall(pid.to_bytes(4, "big", signed=True))


def _request(
    control: socket.socket,
) -> tuple[dict[str, object], socket.socket, socket.socket] | None:
    head, fds, _flags, _address = socket.recv_fds(control, 4, 2)
    if not head:
        return None
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        raise ConnectionResetError("a request came without its two sockets")
    helper, status = (socket.socket(fileno=fd) for fd in fds)
    size = int.from_bytes(head + _read_exactly(control, 4 - len(head)), "big")
    if size > _MAX_REQUEST:
        raise ConnectionResetError("a request is too large")
    request = json.loads(_read_exactly(control, size))
    return request, helper, status


def _become_helper(
    request: dict[str, object], helper: socket.socket, others: tuple[object, ...]
) -> None:
    """In the forked child: the helper's socket as standard input and output, the feeding
    process's directory and environment; run the helper and exit with its status."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for other in others:
            if isinstance(other, socket.socket):
                other.close()
            elif isinstance(other, int):
                os.close(other)
        os.dup2(helper.fileno(), 0)
        os.dup2(helper.fileno(), 1)
        helper.close()
        cwd, env = request["cwd"], request["env"]
        assert isinstance(cwd, str) and isinstance(env, dict)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        from xcomm.bulk import _helpers

        code = _helpers.main()
        sys.stdout.flush()
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _reap(statuses: dict[int, socket.socket]) -> None:
    """Collect every helper that ended; send its exit code on its status socket."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock = statuses.pop(pid, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(os.waitstatus_to_exitcode(status).to_bytes(4, "big", signed=True))
            sock.close()
