"""IMAP IDLE (RFC 2177) on an `IMAPSession`, without a background task.

aioimaplib has `IMAP4.idle_start()`/`wait_server_push()`/`idle_done()`, but they live on its
`IMAP4` facade (which xcomm does not use: sessions drive the protocol directly), spawn tasks,
and check the protocol's own capability set, which xcomm's sessions keep elsewhere. The
exchange is small enough to run inline:

    C: A7 IDLE
    S: + idling
    S: * 4 EXISTS          (or nothing until the timeout)
    C: DONE
    S: A7 OK Idle completed

`idle()` sends IDLE, waits (read timeout) for the `+`, waits up to `timeout` for the first
untagged line, sends DONE and reads the tagged reply (read timeout). Lines pushed before the
`+` count too. The wire calls `_Idle.continued()` for the `+` (`_Protocol._continuation`).
"""

from __future__ import annotations

import asyncio

from aioimaplib.aioimaplib import Command

from xcomm.email._imap_wire import IMAPReplyError, IMAPSession

__all__ = ["idle"]


class _Idle(Command):  # type: ignore[misc]
    """IDLE: `started` is set by the `+` continuation, `pushed` by the first untagged line;
    both are set when the command ends (tagged reply, or the connection dropped)."""

    def __init__(self, tag: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__("IDLE", tag, loop=loop)
        self.started = asyncio.Event()
        self.pushed = asyncio.Event()

    def continued(self) -> None:
        self.started.set()

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        if result == "Pending":
            self.pushed.set()

    def close(self, line: bytes, result: str) -> None:
        super().close(line, result)
        self.started.set()
        self.pushed.set()


async def idle(session: IMAPSession, timeout: float) -> list[bytes]:
    """IDLE until the server pushes an untagged line (`b"3 EXISTS"`, ...) or `timeout`
    seconds pass, then DONE; returns the pushed lines. Needs a selected folder.

    Cancelled while idling, it sends DONE and leaves the session usable, so `aclose()` can
    still LOGOUT (its LOGOUT waits for the IDLE's tagged reply); any other failure breaks it.
    Raises `IMAPReplyError` when the server refuses IDLE.
    """
    protocol = session.protocol
    if protocol.pending_sync_command is not None:
        raise RuntimeError("IDLE while another command is pending")
    command = _Idle(protocol.new_tag(), protocol.loop)
    protocol.pending_sync_command = command
    done_sent = False
    try:
        protocol.send(str(command))
        async with asyncio.timeout(session.timeout):
            await command.started.wait()
        if not command._event.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await command.pushed.wait()
            except TimeoutError:
                pass
            protocol.send("DONE")
            done_sent = True
        async with asyncio.timeout(session.timeout):
            await command.wait()
    except asyncio.CancelledError:
        if command.started.is_set() and not done_sent and session.alive:
            protocol.send("DONE")
        else:
            session.broken = True
        raise
    except BaseException:
        session.broken = True
        raise
    response = command.response
    lines: list[bytes] = response.lines
    if response.result != "OK":
        raise IMAPReplyError("IDLE", response.result, lines[-1])
    return lines[:-1]
