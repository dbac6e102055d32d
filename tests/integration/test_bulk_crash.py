"""SIGKILL a sending process mid-campaign, resume it, and account for every recipient.

The campaign runs in a child process against a real SMTP server (aiosmtpd in this process,
recording every delivery) with a SQLite outbox. The child is killed without warning; a new run
with the same campaign id must deliver everyone. Only messages the child had claimed and not
yet recorded may be duplicated (at-least-once) or left in doubt (at-most-once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from xcomm import CommManager, Template
from xcomm.outbox import OutboxStatus

ROOT = Path(__file__).resolve().parents[2]
N = 2000
CONCURRENCY = 8
LEASE = 1.0
#: claimed and unrecorded at the kill: in flight, the next claimed chunk, unflushed outcomes
BOUND = 2 * CONCURRENCY + 100
TEMPLATE = Template(subject="Issue {{ n }}", text="Hello {{ n }}")

CHILD = """
import asyncio, sys
from xcomm import CommManager, Template

async def main(port: int, outbox: str, n: int, policy: str, workers: int, lease: float) -> None:
    async with CommManager(outbox=outbox) as comm:
        smtp = comm.smtp("127.0.0.1", port, sender="news@example.com", pool_size=4)
        bulk = comm.create_bulk_sender(smtp, max_concurrent=workers, lease=lease, policy=policy)
        recipients = ({"email": f"r{i}@example.org", "n": i} for i in range(n))
        template = Template(subject="Issue {{ n }}", text="Hello {{ n }}")
        await bulk.send_campaign(template=template, recipients=recipients, campaign_id="crash")

port, outbox, n, policy, workers, lease = sys.argv[1:]
asyncio.run(main(int(port), outbox, int(n), policy, int(workers), float(lease)))
"""


def delivered(server: Any) -> list[str]:
    return [rcpt for message in list(server.recorder.messages) for rcpt in message.rcpt_tos]


async def crash_midway(server: Any, outbox: Path, policy: str) -> list[str]:
    """Run the campaign in a child process and SIGKILL it once 400 messages arrived."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        *map(str, (server.port, outbox, N, policy, CONCURRENCY, LEASE)),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )
    for _ in range(3000):
        if len(server.recorder.messages) >= 400 or child.returncode is not None:
            break
        await asyncio.sleep(0.01)
    if child.returncode is None:
        child.send_signal(signal.SIGKILL)
    _, stderr = await child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    # Let the dead sender's leases expire; the server thread also finishes recording what the
    # child had fully sent before the kill (taking the snapshot earlier would miss those).
    await asyncio.sleep(LEASE + 0.2)
    before = delivered(server)
    assert 400 <= len(before) < N, "the kill must land mid-campaign"
    return before


@pytest.mark.parametrize("policy", ["at-least-once", "at-most-once"])
async def test_sigkill_mid_campaign_then_resume_loses_nobody(
    smtpd: Callable[[str], Any], tmp_path: Path, policy: str
) -> None:
    server = smtpd("plain")
    server.recorder.data_delay = 0.004  # a campaign of ~1 s, so the kill lands mid-way
    outbox = tmp_path / "outbox.sqlite3"
    everyone = {f"r{i}@example.org" for i in range(N)}

    before = await crash_midway(server, outbox, policy)
    server.recorder.data_delay = 0.0
    async with CommManager(outbox=str(outbox)) as comm:
        smtp = comm.smtp(server.host, server.port, sender="news@example.com")
        bulk = comm.create_bulk_sender(smtp, max_concurrent=CONCURRENCY, lease=LEASE, policy=policy)
        recipients = ({"email": f"r{i}@example.org", "n": i} for i in range(N))
        result = await bulk.send_campaign(
            template=TEMPLATE, recipients=recipients, campaign_id="crash"
        )
        counts = await (await comm.outbox()).counts("crash")
        in_doubt = {o.recipient async for o in bulk.results("crash", status=OutboxStatus.IN_DOUBT)}

    after = delivered(server)
    copies = Counter(after)
    duplicated = {r for r, c in copies.items() if c > 1}
    assert result.total == N
    assert result.failed == 0
    assert result.sent + result.skipped + result.in_doubt == N
    assert result.sent == len(after) - len(before)
    if policy == "at-least-once":
        # nobody lost; only what the dead run had claimed but not recorded went out twice
        assert set(after) == everyone
        assert len(duplicated) <= BOUND
        assert result.in_doubt == 0
        assert counts[OutboxStatus.SENT] == N
    else:
        # nobody gets two; whoever is not delivered is reported in doubt, never resent
        assert not duplicated
        assert set(after) | in_doubt == everyone
        assert 0 < result.in_doubt == len(in_doubt) <= BOUND
        assert counts[OutboxStatus.SENT] + counts[OutboxStatus.IN_DOUBT] == N
        assert in_doubt.isdisjoint(set(after) - set(before))  # doubted ones were not resent
