"""`SQLiteOutbox`: the default durable outbox, one SQLite file that many processes may share.

Durability: WAL journal with `synchronous="NORMAL"` (the default). A committed transaction
survives the process dying at any point (SIGKILL, OOM killer, a crash); a power loss or kernel
crash may lose the last few commits (never corrupt the file). `synchronous="FULL"` survives
those too, for an fsync per transaction.

Concurrency: every SQLite call of a store runs on one dedicated thread, so the event loop never
waits on the disk or on a lock. Writes are transactions that take the write lock from their
first statement (`BEGIN IMMEDIATE`, or one statement alone: a batch that fits one statement is
written without BEGIN and COMMIT, since the thread waits for the GIL after every step, up to
the interpreter's switch interval while the loop is busy). Processes sharing the file take
turns (waiting up to `busy_timeout`), so a claim is atomic across processes and a record is
never handed to two live senders.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, ParamSpec, Self, TypeVar

import msgspec

from xcomm._errors import ConfigurationError, LifecycleError, OutboxError, ValidationError
from xcomm.outbox._base import (
    CampaignDefinition,
    Completion,
    DeliveryPolicy,
    OutboxRecord,
    OutboxStatus,
    Suppression,
)
from xcomm.outbox._memory import check_claim, check_completions, check_reserve, due_rank

__all__ = ["SQLiteOutbox"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_P = ParamSpec("_P")
SCHEMA_VERSION = 1
_CHUNK = 500  # keys per IN (...) list
_PAGE = 500  # rows per page of records() / suppressions()
_ENCODER = msgspec.msgpack.Encoder()
_VARIABLES = msgspec.msgpack.Decoder(dict[str, Any])
_DEFINITION = msgspec.msgpack.Decoder(CampaignDefinition)
_STATUSES = {status.value: status for status in OutboxStatus}

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS records (
        key TEXT PRIMARY KEY NOT NULL,
        campaign_id TEXT NOT NULL,
        recipient TEXT NOT NULL,
        step INTEGER NOT NULL DEFAULT 0,
        variables BLOB,  -- a msgpack map; NULL when empty
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL,
        lease_owner TEXT,
        lease_until REAL,
        message_id TEXT,
        error TEXT,
        updated_at REAL NOT NULL DEFAULT 0
    ) WITHOUT ROWID""",
    # counts() and records(): one campaign's records of one status, in key order (entries end
    # with the key: WITHOUT ROWID); claim_due(campaign_id=...): its records being sent
    "CREATE INDEX IF NOT EXISTS records_campaign ON records (campaign_id, status)",
    # The others hold open records only, so that a record sent leaves them, and one claimed
    # as it is recorded enters one of them only: fewer pages written per message.
    # claim_due: pending records in not_before order (of one campaign, or of all)
    "CREATE INDEX IF NOT EXISTS records_pending ON records (status, not_before) "
    "WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS records_campaign_pending ON records "
    "(campaign_id, status, not_before) WHERE status = 'pending'",
    # claim_due: records being sent whose lease expired (of all campaigns)
    "CREATE INDEX IF NOT EXISTS records_sending ON records (status, lease_until) "
    "WHERE status = 'sending'",
    # what earlier versions had instead, indexing every record
    "DROP INDEX IF EXISTS records_due",
    "DROP INDEX IF EXISTS records_campaign_due",
    """CREATE TABLE IF NOT EXISTS suppressions (
        address TEXT PRIMARY KEY NOT NULL,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS quota (
        key TEXT NOT NULL,
        window_start REAL NOT NULL,
        used INTEGER NOT NULL,
        PRIMARY KEY (key, window_start)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS campaigns (
        campaign_id TEXT PRIMARY KEY NOT NULL,
        definition BLOB NOT NULL,  -- a msgpack CampaignDefinition
        created_at REAL NOT NULL
    ) WITHOUT ROWID""",
)
_COLUMNS = (
    "key, campaign_id, recipient, step, variables, status, attempts, not_before, "
    "lease_owner, lease_until, message_id, error, updated_at"
)
# RETURNING hands back an integral REAL as an integer: cast the times back
_RETURNING = (
    _COLUMNS.replace("not_before, ", "CAST(not_before AS REAL), ")
    .replace("lease_until, ", "CAST(lease_until AS REAL), ")
    .replace("updated_at", "CAST(updated_at AS REAL)")
)
_INSERT = f"INSERT OR IGNORE INTO records ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"
# Many rows in one statement, "{}" being the rows' placeholders. The store's thread lets go of
# the GIL for every step of a statement and waits for it again after: a statement per batch,
# not per row (executemany), keeps it from queueing for the event loop's thread at each row.
# Placeholders are plain "?": SQLite compiles numbered ones ("?NNN") in time quadratic in
# their number (15 ms for 256 rows of 13, against 2 ms), and each connection compiles each
# size of batch once.
_INSERT_ROWS = f"INSERT OR IGNORE INTO records ({_COLUMNS}) VALUES {{}}"
_ROWS_PER_STATEMENT = 500
_IN_DOUBT = (
    "status = 'in_doubt', lease_owner = NULL, lease_until = NULL, error = 'lease of ' || "
    "coalesce(lease_owner, 'an unknown sender') || ' expired before an outcome was recorded'"
)
# By keys, "{}" being the list of keys: ?1 now, ?2 owner, ?3 lease_until. The "+status" keeps
# SQLite from scanning an index of open records for a long IN list: these must be primary-key
# lookups.
_TAKE_KEYS = f"""UPDATE records SET status = 'sending', lease_owner = ?2, lease_until = ?3,
        attempts = attempts + 1, updated_at = ?1
    WHERE key IN ({{}}) AND (
        +status = 'pending' AND (not_before IS NULL OR not_before <= ?1)
        OR +status = 'sending' AND (lease_until IS NULL OR lease_until <= ?1))
    RETURNING {_RETURNING}"""
_DOUBT_KEYS = f"""UPDATE records SET {_IN_DOUBT}, updated_at = ?1
    WHERE key IN ({{}}) AND +status = 'sending' AND (lease_until IS NULL OR lease_until <= ?1)"""
# claim_due: "{campaign}" is "" or a condition on :campaign; :now and :limit
_DOUBT_DUE = f"""UPDATE records SET {_IN_DOUBT}, updated_at = :now
    WHERE {{campaign}}status = 'sending' AND (lease_until IS NULL OR lease_until <= :now)"""
_PICK = "SELECT key, not_before FROM records WHERE {campaign}"
_PICK_NOW = _PICK + "status = 'pending' AND not_before IS NULL ORDER BY key LIMIT :limit"
_PICK_LATER = (
    _PICK + "status = 'pending' AND not_before <= :now ORDER BY not_before, key LIMIT :limit"
)
# Records being sent are few (what senders hold), so all expired ones are read and sorted with
# the pending ones: no index keeps them in not_before order.
_PICK_EXPIRED = _PICK + "status = 'sending' AND (lease_until IS NULL OR lease_until <= :now)"
_FINISH = (
    "UPDATE records SET status = ?1, message_id = ?2, error = ?3, "
    "attempts = max(attempts + ?4 - 1, 0), "
    "not_before = CASE WHEN ?1 = 'pending' THEN ?5 ELSE not_before END, "
    "lease_owner = NULL, lease_until = NULL, updated_at = ?6 "
    "WHERE key = ?7 AND lease_owner = ?8 AND status = 'sending'"
)
# _FINISH for many rows in one statement: the rows, "{}" being their placeholders (status,
# message_id, error, attempts, not_before, key), then now and owner (after the rows, in the
# text as in the parameters, as plain "?" need)
_FINISH_ROWS = """WITH v (status, message_id, error, attempts, not_before, key) AS (VALUES {})
    UPDATE records SET status = v.status, message_id = v.message_id, error = v.error,
        attempts = max(records.attempts + v.attempts - 1, 0),
        not_before = CASE WHEN v.status = 'pending' THEN v.not_before ELSE records.not_before END,
        lease_owner = NULL, lease_until = NULL, updated_at = ?
    FROM v
    WHERE records.key = v.key AND records.lease_owner = ? AND records.status = 'sending'"""
_FINISH_WIDTH = 6
# next_due: "{campaign}" as in claim_due
_NEXT_NOW = (
    "SELECT 1 FROM records WHERE {campaign}status = 'pending' AND not_before IS NULL LIMIT 1"
)
_NEXT_LATER = "SELECT min(not_before) FROM records WHERE {campaign}status = 'pending'"
_NEXT_LEASE = "SELECT min(coalesce(lease_until, 0)) FROM records WHERE {campaign}status = 'sending'"
_SAVE_CAMPAIGN = (
    "INSERT INTO campaigns (campaign_id, definition, created_at) VALUES (?, ?, ?) "
    "ON CONFLICT (campaign_id) DO UPDATE SET definition = excluded.definition"
)
_QUOTA_USED = "SELECT used FROM quota WHERE key = ? AND window_start = ?"
_QUOTA_SET = (
    "INSERT INTO quota (key, window_start, used) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (key, window_start) DO UPDATE SET used = ?3"
)
_GET_CAMPAIGN = "SELECT definition FROM campaigns WHERE campaign_id = ?"
_CAMPAIGNS = "SELECT definition FROM campaigns ORDER BY created_at, campaign_id"
_COUNTS = "SELECT status, count(*) FROM records WHERE campaign_id = ? GROUP BY status"
_PAGE_FROM = (
    f"SELECT {_COLUMNS} FROM records WHERE campaign_id = ? AND status = ? AND key >= ? "
    "ORDER BY key LIMIT ?"
)
_PAGE_AFTER = _PAGE_FROM.replace("key >= ?", "key > ?")
_BY_KEYS = f"SELECT {_COLUMNS} FROM records WHERE key IN ({{}})"
_KNOWN_KEYS = "SELECT key FROM records WHERE key IN ({})"
_OWN_KEYS = "SELECT key FROM records WHERE key IN ({}) AND lease_owner = ?"
_SUPPRESS = "INSERT OR IGNORE INTO suppressions (address, reason, created_at) VALUES (?, ?, ?)"
_UNSUPPRESS = "DELETE FROM suppressions WHERE address = ?"
_IS_SUPPRESSED = "SELECT address FROM suppressions WHERE address IN ({})"
_SUPPRESSIONS = (
    "SELECT address, reason, created_at FROM suppressions WHERE address > ? "
    "ORDER BY address LIMIT ?"
)
_GIVE_BACK = (
    "UPDATE records SET status = 'pending', lease_owner = NULL, lease_until = NULL, "
    "attempts = max(attempts - 1, 0) "
    "WHERE key = ? AND lease_owner = ? AND lease_until = ? AND status = 'sending'"
)


@functools.lru_cache(maxsize=64)
def _sql(template: str, count: int, width: int = 1) -> str:
    """`template` with "{}" as `count` placeholders, or as `count` rows of `width` of them."""
    if width == 1:
        return template.format(", ".join("?" * count))
    row = "(" + ", ".join("?" * width) + ")"
    return template.format(", ".join([row] * count))


def _wal(conn: sqlite3.Connection, patience: float) -> str:
    """Put the database in WAL mode (it stays so, in the file); returns the journal mode.

    Changing the mode needs the database to itself, and SQLite reports "database is locked"
    at once, without its busy handler, while another connection opens the same new file: look
    first (another process may have done it), and try again for up to `patience` seconds.
    """
    deadline = time.monotonic() + patience
    delay = 0.001
    while True:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() == "wal":
            return str(mode)
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _row(record: OutboxRecord) -> tuple[Any, ...]:
    try:
        given = record.status
        status = given.value if type(given) is OutboxStatus else OutboxStatus(given).value
        variables = _ENCODER.encode(record.variables) if record.variables else None
    except (ValueError, TypeError, msgspec.MsgspecError) as exc:
        raise ValidationError(f"outbox record {record.key!r} cannot be stored: {exc}") from exc
    return (
        record.key, record.campaign_id, record.recipient, record.step, variables, status,
        record.attempts, record.not_before, record.lease_owner, record.lease_until,
        record.message_id, record.error, record.updated_at,
    )  # fmt: skip


def _record(row: tuple[Any, ...]) -> OutboxRecord:
    key, campaign, recipient, step, variables, status, attempts, not_before, *rest = row
    owner, until, message_id, error, updated_at = rest
    return OutboxRecord(
        key=key, campaign_id=campaign, recipient=recipient, step=step,
        variables=_VARIABLES.decode(variables) if variables else {},
        status=_STATUSES.get(status) or OutboxStatus(status), attempts=attempts,
        not_before=not_before, lease_owner=owner, lease_until=until,
        message_id=message_id, error=error, updated_at=updated_at,
    )  # fmt: skip


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the file's write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


async def _result(job: concurrent.futures.Future[_T]) -> _T:
    """Await a worker-thread job. Cancelling the awaiting task never cancels the job."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[_T] = loop.create_future()

    def transfer() -> None:
        if waiter.done():  # the awaiting task was cancelled
            return
        if (exc := job.exception()) is not None:
            if isinstance(exc, sqlite3.Error):  # the one boundary where SQLite errors translate
                error = OutboxError(f"the SQLite outbox failed: {exc}")
                error.__cause__ = exc
                exc = error
            waiter.set_exception(exc)
        else:
            waiter.set_result(job.result())

    def done(_: concurrent.futures.Future[_T]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(transfer)

    job.add_done_callback(done)
    return await waiter


class _Pages(AsyncIterator[_T]):
    """Items fetched a page at a time, each page after the last key seen."""

    def __init__(
        self, fetch: Callable[[str | None], Awaitable[list[_T]]], key: Callable[[_T], str]
    ) -> None:
        self._fetch, self._key = fetch, key
        self._page: Iterator[_T] = iter(())
        self._after: str | None = None
        self._more = True

    async def __anext__(self) -> _T:
        for item in self._page:
            return item
        if not self._more:
            raise StopAsyncIteration
        page = await self._fetch(self._after)
        self._more = len(page) >= _PAGE
        if not page:
            raise StopAsyncIteration
        self._after = self._key(page[-1])
        self._page = iter(page)
        return next(self._page)


class SQLiteOutbox:
    """The durable outbox: one SQLite file (WAL), shared safely by several worker processes.

    ```python
    import time
    from xcomm.outbox import OutboxRecord, SQLiteOutbox, record_key

    async with SQLiteOutbox("~/campaigns/outbox.sqlite3") as store:
        key = record_key("spring", "ann@example.com")
        await store.add([OutboxRecord(key=key, campaign_id="spring", recipient="ann@example.com")])
        [record] = await store.claim([key], owner="worker-1", now=time.time(), lease=300)
    ```

    Every SQLite call runs on the store's own thread (started by `open()`, stopped by
    `aclose()`). A task cancelled while awaiting a call does not cancel the transaction: a
    `finish` is still written, and records a cancelled `claim` took are put back. Errors of
    SQLite itself (a full disk, a lock held longer than `busy_timeout`) are raised as
    `xcomm.OutboxError`, with the `sqlite3.Error` as its cause.

    Args:
        path: the database file; `~` is expanded; missing directories are created. A new file
            is readable by its owner only (it holds recipients and their data).
        busy_timeout: seconds a write waits for another process's transaction to end.
        synchronous: `"NORMAL"` survives process crashes; `"FULL"` also survives power loss.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 30.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigurationError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if not busy_timeout >= 0:
            raise ConfigurationError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        self._path = Path(path).expanduser()
        self._busy_timeout = float(busy_timeout)
        self._synchronous = synchronous
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only
        self._variables = 999  # parameters one statement may have (SQLite's old default)
        self._opened = self._closed = False
        # claims whose caller was cancelled: (owner, [(key, lease_until)]) to put back
        self._returns: collections.deque[tuple[str, list[tuple[str, float | None]]]]
        self._returns = collections.deque()

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "not open"
        return f"<SQLiteOutbox {str(self._path)!r} {state}>"

    # -- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Create or open the file and its schema on the store's own thread. Idempotent."""
        if self._closed:
            raise LifecycleError("this SQLiteOutbox was closed; create a new one")
        if self._opened:
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="xcomm-outbox"
            )
        executor = self._executor
        try:
            await _result(executor.submit(self._connect))
        except BaseException:
            if self._executor is executor:  # not closed meanwhile: unwind this attempt
                self._executor = None
                executor.submit(self._disconnect)
                executor.shutdown(wait=False)
            raise
        self._opened = True
        logger.debug("outbox %s open", self._path)

    async def aclose(self) -> None:
        """Finish queued work, close the connection and stop the thread. Idempotent."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        job = executor.submit(self._job, self._disconnect)
        executor.shutdown(wait=False)  # the thread exits once the queue is done
        await _result(job)
        executor.shutdown(wait=True)  # joins a thread that has nothing left to do
        logger.debug("outbox %s closed", self._path)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _submit(self, call: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        if self._executor is None or not self._opened:
            raise LifecycleError(
                "this SQLiteOutbox is closed" if self._closed else
                "this SQLiteOutbox is not open: `await store.open()` or `async with store:` first"
            )  # fmt: skip
        return self._executor.submit(self._job, call)

    async def _call(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await _result(self._submit(functools.partial(fn, *args, **kwargs)))

    async def _claiming(
        self, owner: str, claim: Callable[[], list[OutboxRecord]]
    ) -> list[OutboxRecord]:
        job = self._submit(claim)
        try:
            return await _result(job)
        except asyncio.CancelledError:  # the claim may have committed: put its records back
            job.add_done_callback(functools.partial(self._return_later, owner))
            raise

    def _return_later(self, owner: str, job: concurrent.futures.Future[list[OutboxRecord]]) -> None:
        if not job.cancelled() and job.exception() is None and (taken := job.result()):
            self._returns.append((owner, [(r.key, r.lease_until) for r in taken]))

    # -- the OutboxStore protocol --------------------------------------------------------------

    async def add(self, records: Sequence[OutboxRecord], /) -> int:
        """Insert the records whose key is new, in one transaction; returns how many."""
        return await self._call(self._add, list(records)) if records else 0

    async def claim(
        self,
        keys: Sequence[str],
        /,
        *,
        owner: str,
        now: float,
        lease: float,
        policy: DeliveryPolicy = DeliveryPolicy.AT_LEAST_ONCE,
    ) -> list[OutboxRecord]:
        """Take the given records for sending (see `OutboxStore.claim`), in the order given.

        One transaction, atomic across processes. If the calling task is cancelled, records
        the claim took anyway are put back (`pending`, attempt not counted).
        """
        check_claim(lease)
        policy, unique = DeliveryPolicy(policy), list(dict.fromkeys(keys))
        if not unique:
            return []
        claim = functools.partial(self._claim, owner, unique, float(now), float(lease), policy)
        return await self._claiming(owner, claim)

    async def add_claimed(
        self,
        records: Sequence[OutboxRecord],
        /,
        *,
        owner: str,
        now: float,
        lease: float,
        policy: DeliveryPolicy = DeliveryPolicy.AT_LEAST_ONCE,
    ) -> list[OutboxRecord]:
        """Store new records already claimed by `owner` and claim those that exist, in one
        transaction (see `OutboxStore.add_claimed`). Cancelled: taken records are put back."""
        check_claim(lease)
        now, lease, policy = float(now), float(lease), DeliveryPolicy(policy)
        unique = list({record.key: record for record in records}.values())
        if not unique:
            return []
        claimed = [
            msgspec.structs.replace(
                record,
                status=OutboxStatus.SENDING,
                lease_owner=owner,
                lease_until=now + lease,
                attempts=record.attempts + 1,
                updated_at=now,
            )
            for record in unique
        ]
        rows = [_row(record) for record in claimed]
        claim = functools.partial(self._add_claimed, owner, claimed, rows, now, lease, policy)
        return await self._claiming(owner, claim)

    async def claim_due(
        self,
        *,
        owner: str,
        now: float,
        lease: float,
        limit: int,
        campaign_id: str | None = None,
        policy: DeliveryPolicy = DeliveryPolicy.AT_LEAST_ONCE,
    ) -> list[OutboxRecord]:
        """Take up to `limit` due records, oldest `not_before` first (None before any time)."""
        check_claim(lease, limit)
        now, lease, policy = float(now), float(lease), DeliveryPolicy(policy)
        claim = functools.partial(self._claim_due, owner, now, lease, limit, campaign_id, policy)
        return await self._claiming(owner, claim)

    async def finish(self, completions: Sequence[Completion], /, *, owner: str, now: float) -> int:
        """Write outcomes of records still leased by `owner`, in one transaction."""
        statuses, now = check_completions(completions), float(now)
        if not completions:
            return 0
        if not any(c.follow_up is not None for c in completions):
            finished = [
                (status.value, c.message_id, c.error, c.attempts, c.not_before, c.key)
                for c, status in zip(completions, statuses, strict=True)
            ]
            return await self._call(self._write_rows, _FINISH_ROWS, finished, now, owner)
        rows = [
            (status.value, c.message_id, c.error, c.attempts, c.not_before, now, c.key, owner)
            for c, status in zip(completions, statuses, strict=True)
        ]
        follow_ups = [_row(c.follow_up) if c.follow_up else None for c in completions]
        return await self._call(self._finish_following, rows, follow_ups)

    async def next_due(self, *, campaign_id: str | None = None) -> float | None:
        """When the next record may become claimable (see `OutboxStore.next_due`)."""
        return await self._call(self._next_due, campaign_id)

    async def reserve(self, key: str, /, *, window: float, count: int, cap: int) -> int:
        """Take up to `count` of quota `key`'s `cap` in the window (one transaction)."""
        check_reserve(count, cap)
        return await self._call(self._reserve, key, float(window), count, cap)

    async def save_campaign(self, definition: CampaignDefinition, /) -> None:
        """Store a campaign's definition, replacing an earlier one with the same id."""
        try:
            blob = _ENCODER.encode(definition)
        except (TypeError, ValueError, msgspec.MsgspecError) as exc:
            raise ValidationError(f"campaign definition cannot be stored: {exc}") from exc
        row = (definition.campaign_id, blob, definition.created_at)
        await self._call(self._write_many, _SAVE_CAMPAIGN, [row])

    async def get_campaign(self, campaign_id: str, /) -> CampaignDefinition | None:
        """A campaign's definition, or None."""
        rows = await self._call(self._fetch, _GET_CAMPAIGN, (campaign_id,))
        return _DEFINITION.decode(rows[0][0]) if rows else None

    async def campaigns(self) -> list[CampaignDefinition]:
        """Every stored campaign definition, oldest first."""
        rows = await self._call(self._fetch, _CAMPAIGNS, ())
        return [_DEFINITION.decode(blob) for (blob,) in rows]

    async def counts(self, campaign_id: str, /) -> dict[OutboxStatus, int]:
        """How many records of the campaign are in each status."""
        rows = await self._call(self._fetch, _COUNTS, (campaign_id,))
        counts = dict.fromkeys(OutboxStatus, 0)
        counts.update((OutboxStatus(status), count) for status, count in rows)
        return counts

    def records(
        self, campaign_id: str, /, *, status: OutboxStatus | None = None
    ) -> AsyncIterator[OutboxRecord]:
        """A campaign's records (optionally of one status) in key order, 500 per query."""
        statuses = [OutboxStatus(status)] if status is not None else list(OutboxStatus)

        async def page(after: str | None) -> list[OutboxRecord]:
            return await self._call(self._records_page, campaign_id, statuses, after)

        return _Pages(page, lambda record: record.key)

    async def suppress(self, address: str, /, *, reason: str, now: float) -> None:
        """Add an address to the suppression list (the first reason is kept)."""
        await self._call(self._write_many, _SUPPRESS, [(address.lower(), reason, float(now))])

    async def unsuppress(self, address: str, /) -> bool:
        """Remove an address; True if it was there."""
        return await self._call(self._write_many, _UNSUPPRESS, [(address.lower(),)]) > 0

    async def suppressed(self, addresses: Sequence[str], /) -> set[str]:
        """Which of `addresses` are suppressed, lower-cased."""
        wanted = list(dict.fromkeys(address.lower() for address in addresses))
        return await self._call(self._suppressed, wanted) if wanted else set()

    def suppressions(self) -> AsyncIterator[Suppression]:
        """Every suppressed address, in address order, 500 per query."""

        async def page(after: str | None) -> list[Suppression]:
            rows = await self._call(self._fetch, _SUPPRESSIONS, (after or "", _PAGE))
            return [Suppression(address=a, reason=r, created_at=t) for a, r, t in rows]

        return _Pages(page, lambda suppression: suppression.address)

    # -- on the worker thread -----------------------------------------------------------------

    def _job(self, call: Callable[[], _T]) -> _T:
        while self._returns:
            owner, leases = self._returns.popleft()
            try:
                with _transaction(self._db) as conn:
                    conn.executemany(_GIVE_BACK, [(key, owner, until) for key, until in leases])
            except sqlite3.Error:
                logger.warning(
                    "could not put back %d records of a cancelled claim; they are claimable "
                    "again when their lease expires", len(leases), exc_info=True,
                )  # fmt: skip
        return call()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LifecycleError("this SQLiteOutbox has no open connection")
        return self._conn

    def _connect(self) -> None:
        if self._conn is not None:
            return
        if str(self._path) != ":memory:" and not self._path.exists():
            # Recipients and their data are personal: the file (and so its -wal and -shm) and
            # a directory made for it are the user's only.
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self._path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            mode = _wal(conn, self._busy_timeout)
            if mode.lower() != "wal":
                logger.warning("outbox %s: journal_mode is %s, not WAL", self._path, mode)
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            with _transaction(conn):
                for statement in _SCHEMA:
                    conn.execute(statement)
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                elif int(row[0]) > SCHEMA_VERSION:
                    raise ConfigurationError(
                        f"outbox {self._path} has schema version {row[0]}, written by a newer "
                        f"xcomm (this one reads up to {SCHEMA_VERSION}): upgrade xcomm"
                    )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _add(self, records: Sequence[OutboxRecord]) -> int:
        return self._write_rows(_INSERT_ROWS, [_row(record) for record in records])

    def _write_rows(self, template: str, rows: Sequence[Sequence[Any]], *fixed: Any) -> int:
        """Run `template` (`_INSERT_ROWS`, `_FINISH_ROWS` with its `fixed` parameters after the
        rows) over `rows`, as many rows to a statement as fit; returns how many rows changed.

        One statement is a transaction of its own; several share one (or the caller's). The
        store's thread lets go of the GIL at each step of a statement and then waits for it,
        up to the interpreter's switch interval (5 ms) while the event loop is busy: a batch
        written in one statement, without BEGIN and COMMIT, waits once, not at every row.
        """
        if not rows:
            return 0
        conn, width = self._db, len(rows[0])
        per = max(1, min(_ROWS_PER_STATEMENT, (self._variables - len(fixed)) // width))
        statements = [rows[first : first + per] for first in range(0, len(rows), per)]
        alone = len(statements) == 1 or conn.in_transaction
        before = conn.total_changes
        with contextlib.nullcontext(conn) if alone else _transaction(conn):
            for chunk in statements:
                values = [*itertools.chain.from_iterable(chunk), *fixed]
                conn.execute(_sql(template, len(chunk), width), values)
        return conn.total_changes - before

    def _take(
        self, conn: sqlite3.Connection, keys: Sequence[str], owner: str, now: float,
        lease: float, policy: DeliveryPolicy,
    ) -> list[OutboxRecord]:  # fmt: skip
        taken: list[OutboxRecord] = []
        for chunk in _chunks(keys):
            if policy is DeliveryPolicy.AT_MOST_ONCE:
                conn.execute(_sql(_DOUBT_KEYS, len(chunk)), (now, *chunk))
            rows = conn.execute(_sql(_TAKE_KEYS, len(chunk)), (now, owner, now + lease, *chunk))
            taken.extend(map(_record, rows.fetchall()))
        order = {key: index for index, key in enumerate(keys)}
        taken.sort(key=lambda record: order[record.key])
        return taken

    def _claim(
        self, owner: str, keys: Sequence[str], now: float, lease: float, policy: DeliveryPolicy
    ) -> list[OutboxRecord]:
        with _transaction(self._db) as conn:
            return self._take(conn, keys, owner, now, lease, policy)

    def _add_claimed(
        self, owner: str, claimed: list[OutboxRecord], rows: list[tuple[Any, ...]], now: float,
        lease: float, policy: DeliveryPolicy,
    ) -> list[OutboxRecord]:  # fmt: skip
        conn = self._db
        keys = [r.key for r in claimed]
        known = self._known(keys, _KNOWN_KEYS)  # a read, outside any transaction
        fresh = [row for row, key in zip(rows, keys, strict=True) if key not in known]
        if not known and self._write_rows(_INSERT_ROWS, fresh) == len(fresh):
            return claimed  # the usual case: every key new, inserted claimed, in one write
        with _transaction(conn):
            # Some keys exist. Rows new at the read above are ours if they carry our lease
            # (another process may have added some meanwhile); the others are taken if they
            # may be, as claim() would.
            self._write_rows(_INSERT_ROWS, fresh)  # OR IGNORE: rows written above stay
            ours = self._known([row[0] for row in fresh], _OWN_KEYS, owner)
            others = [key for key in keys if key not in ours]
            taken = {r.key: r for r in self._take(conn, others, owner, now, lease, policy)}
        return [
            r if r.key in ours else taken[r.key] for r in claimed if r.key in ours or r.key in taken
        ]

    def _known(self, keys: Sequence[str], sql: str, *more: Any) -> set[str]:
        """Which of `keys` `sql` finds (`_KNOWN_KEYS`, or `_OWN_KEYS` with the owner)."""
        found: set[str] = set()
        for chunk in _chunks(keys):
            found.update(key for (key,) in self._db.execute(_sql(sql, len(chunk)), (*chunk, *more)))
        return found

    def _claim_due(
        self, owner: str, now: float, lease: float, limit: int, campaign_id: str | None,
        policy: DeliveryPolicy,
    ) -> list[OutboxRecord]:  # fmt: skip
        campaign = "campaign_id = :campaign AND " if campaign_id is not None else ""
        params = {"now": now, "campaign": campaign_id, "limit": limit}
        with _transaction(self._db) as conn:
            picks = [_PICK_NOW, _PICK_LATER]
            if policy is DeliveryPolicy.AT_MOST_ONCE:
                conn.execute(_DOUBT_DUE.format(campaign=campaign), params)
            else:
                picks.append(_PICK_EXPIRED)
            found: list[tuple[str, float | None]] = []
            for pick in picks:
                found += conn.execute(pick.format(campaign=campaign), params).fetchall()
            found.sort(key=lambda row: due_rank(row[1], row[0]))
            keys = [key for key, _ in found[:limit]]
            return self._take(conn, keys, owner, now, lease, policy)

    def _finish_following(
        self, rows: list[tuple[Any, ...]], follow_ups: list[tuple[Any, ...] | None]
    ) -> int:
        changed = 0
        with _transaction(self._db) as conn:
            for row, follow_up in zip(rows, follow_ups, strict=True):
                if conn.execute(_FINISH, row).rowcount == 1:
                    changed += 1
                    if follow_up is not None:
                        conn.execute(_INSERT, follow_up)
        return changed

    def _reserve(self, key: str, window: float, count: int, cap: int) -> int:
        with _transaction(self._db) as conn:
            row = conn.execute(_QUOTA_USED, (key, window)).fetchone()
            used = row[0] if row else 0
            granted = max(0, min(count, cap - used))
            if granted:
                conn.execute(_QUOTA_SET, (key, window, used + granted))
            return granted

    def _next_due(self, campaign_id: str | None) -> float | None:
        campaign = "campaign_id = :campaign AND " if campaign_id is not None else ""
        params = {"campaign": campaign_id}
        conn = self._db
        conn.execute("BEGIN")
        try:
            if conn.execute(_NEXT_NOW.format(campaign=campaign), params).fetchone():
                return 0.0
            times = [
                conn.execute(sql.format(campaign=campaign), params).fetchone()[0]
                for sql in (_NEXT_LATER, _NEXT_LEASE)
            ]
        finally:
            conn.execute("COMMIT")
        found = [float(t) for t in times if t is not None]
        return min(found, default=None)

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        conn = self._db
        before = conn.total_changes
        with _transaction(conn):
            conn.executemany(sql, rows)
        return conn.total_changes - before

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, params).fetchall()

    def _records_page(
        self, campaign_id: str, statuses: list[OutboxStatus], after: str | None
    ) -> list[OutboxRecord]:
        conn = self._db
        since = _PAGE_FROM if after is None else _PAGE_AFTER
        if len(statuses) == 1:
            rows = conn.execute(since, (campaign_id, statuses[0].value, after or "", _PAGE))
            return list(map(_record, rows.fetchall()))
        # One index range per status, merged, read from one snapshot of the file.
        keys: list[str] = []
        records: list[OutboxRecord] = []
        conn.execute("BEGIN")
        try:
            for status in statuses:
                params = (campaign_id, status.value, after or "", _PAGE)
                keys += (key for (key,) in conn.execute(since.replace(_COLUMNS, "key", 1), params))
            for chunk in _chunks(sorted(keys)[:_PAGE]):
                records += map(_record, conn.execute(_sql(_BY_KEYS, len(chunk)), chunk))
        finally:
            conn.execute("COMMIT")
        records.sort(key=lambda record: record.key)
        return records

    def _suppressed(self, addresses: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(addresses):
            found.update(a for (a,) in self._db.execute(_sql(_IS_SUPPRESSED, len(chunk)), chunk))
        return found
