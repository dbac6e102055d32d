"""`check_outbox_store(factory)`: the conformance suite every `OutboxStore` must pass.

```python
from xcomm.testing import check_outbox_store

async def test_my_store(tmp_path):
    async def factory():
        return MyRedisOutbox(url, namespace=uuid.uuid4().hex)  # fresh and unopened
    await check_outbox_store(factory)
```

Each check runs on a fresh store from `factory` (opened twice and closed twice, to hold
`open()`/`aclose()` to idempotence) and raises `AssertionError` naming the check and what
differed. Times are fixed numbers passed as `now=`, so the checks take no real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import msgspec

from xcomm.outbox._base import (
    CampaignDefinition,
    CampaignStep,
    Completion,
    DeliveryPolicy,
    OutboxRecord,
    OutboxStatus,
    OutboxStore,
    record_key,
)

__all__ = ["OUTBOX_CHECKS", "check_outbox_store"]

_T = TypeVar("_T")
StoreFactory = Callable[[], Awaitable[OutboxStore]]
_Check = Callable[[OutboxStore], Awaitable[None]]

T0 = 1_700_000_000.0
LEASE = 30.0
S = OutboxStatus
AT_MOST_ONCE = DeliveryPolicy.AT_MOST_ONCE
_CHECKS: dict[str, _Check] = {}


def _check(fn: _Check) -> _Check:
    _CHECKS[fn.__name__.removeprefix("_")] = fn
    return fn


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _equal(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def _record(campaign: str, n: int, **fields: Any) -> OutboxRecord:
    recipient = f"user{n:05d}@example.com"
    values: dict[str, Any] = {"variables": {"n": n}, "updated_at": T0 - 100, **fields}
    return OutboxRecord(
        key=record_key(campaign, recipient), campaign_id=campaign, recipient=recipient, **values
    )


def _keys(records: Sequence[OutboxRecord]) -> list[str]:
    return [record.key for record in records]


async def _collect(items: AsyncIterator[_T]) -> list[_T]:
    return [item async for item in items]


async def _state(store: OutboxStore, campaign: str) -> dict[str, OutboxRecord]:
    return {record.key: record async for record in store.records(campaign)}


async def check_outbox_store(factory: StoreFactory, *, only: Collection[str] | None = None) -> None:
    """Run the outbox conformance checks against stores made by `factory`.

    Args:
        factory: an async callable returning a fresh, unopened store with no records.
        only: names of the checks to run (see `OUTBOX_CHECKS`); default: all of them.

    Raises:
        AssertionError: a check failed; the message names it and says what differed.
    """
    names = list(_CHECKS) if only is None else list(only)
    if unknown := [name for name in names if name not in _CHECKS]:
        raise ValueError(f"unknown outbox checks {unknown}; known: {OUTBOX_CHECKS}")
    for name in names:
        store = await factory()
        await store.open()
        await store.open()
        try:
            await _CHECKS[name](store)
        except AssertionError as exc:
            raise AssertionError(f"{type(store).__name__} fails check {name!r}: {exc}") from exc
        finally:
            await store.aclose()
            await store.aclose()


@_check
async def _add_inserts_new_keys_only(store: OutboxStore) -> None:
    first = [_record("c", n) for n in range(3)]
    _equal(await store.add(first), 3, "add() of 3 new records returned")
    changed = _record("c", 0, variables={"n": "changed"}, status=S.FAILED)
    _equal(await store.add([changed, _record("c", 3)]), 1, "add() of 1 known + 1 new returned")
    _equal(await store.add([]), 0, "add([]) returned")
    twice = [_record("c", 4), _record("c", 4, variables={"n": "second"})]
    _equal(await store.add(twice), 1, "add() of one new key twice in a batch returned")
    state = await _state(store, "c")
    _equal(state[first[0].key], first[0], "a record re-added with other fields")
    _equal(state[twice[0].key].variables, {"n": 4}, "variables of a key given twice in a batch")
    _equal(len(state), 5, "number of records after adds")


@_check
async def _add_round_trips_every_field(store: OutboxStore) -> None:
    full = OutboxRecord(
        key=record_key("c", "Ünïcode@Example.com", 2),
        campaign_id="c",
        recipient="Ünïcode@Example.com",
        step=2,
        variables={"name": "Zoë", "n": 7, "ratio": 0.25, "ok": True, "none": None,
                   "tags": ["a", "b"], "nested": {"x": [1, {"y": "z"}]}},
        status=S.FAILED,
        attempts=3,
        not_before=T0 + 0.5,
        lease_owner="somebody",
        lease_until=T0 + 99.25,
        message_id="<id@example.com>",
        error="550 no such user",
        updated_at=T0 - 1.5,
    )  # fmt: skip
    bare = _record("c", 1, variables={})
    await store.add([full, bare])
    state = await _state(store, "c")
    _equal(state.get(full.key), full, "a record with every field set, read back")
    _equal(state.get(bare.key), bare, "a record with empty variables, read back")


@_check
async def _claim_takes_due_pending_records(store: OutboxStore) -> None:
    now_, before, at, later = (
        _record("c", 0),
        _record("c", 1, not_before=T0 - 1),
        _record("c", 2, not_before=T0),
        _record("c", 3, not_before=T0 + 1),
    )
    await store.add([now_, before, at, later])
    keys = [*_keys([now_, before, at, later]), "no-such-key", now_.key]
    taken = await store.claim(keys, owner="w1", now=T0, lease=LEASE)
    _equal(sorted(_keys(taken)), sorted(_keys([now_, before, at])), "keys claimed at T0")
    state = await _state(store, "c")
    for original in (now_, before, at):
        claimed = msgspec.structs.replace(
            original, status=S.SENDING, lease_owner="w1", lease_until=T0 + LEASE, attempts=1,
            updated_at=T0,
        )  # fmt: skip
        _equal(taken[_keys(taken).index(original.key)], claimed, "a record claim() returned")
        _equal(state[original.key], claimed, "a claimed record, read back")
    _equal(state[later.key], later, "a record not due yet, after a claim")
    got = await store.claim([later.key], owner="w1", now=T0 + 1, lease=LEASE)
    _equal(_keys(got), [later.key], "claim once not_before is reached")
    _equal(await store.claim([], owner="w1", now=T0, lease=LEASE), [], "claim([])")


@_check
async def _claim_skips_final_and_live_records(store: OutboxStore) -> None:
    finals = [_record("c", n, status=status) for n, status in
              enumerate([S.SENT, S.FAILED, S.IN_DOUBT, S.SUPPRESSED])]  # fmt: skip
    live = _record("c", 9)
    await store.add([*finals, live])
    got = await store.claim(_keys(finals), owner="w1", now=T0, lease=LEASE)
    _equal(got, [], "claim of sent/failed/in_doubt/suppressed records")
    await store.claim([live.key], owner="w1", now=T0, lease=LEASE)
    for owner, policy in [("w2", DeliveryPolicy.AT_LEAST_ONCE), ("w1", AT_MOST_ONCE)]:
        got = await store.claim(
            [live.key], owner=owner, now=T0 + LEASE - 0.1, lease=LEASE, policy=policy
        )
        _equal(got, [], f"claim by {owner} ({policy}) of a record under a live lease")
    state = await _state(store, "c")
    for record in finals:
        _equal(state[record.key], record, "a final record after claims")
    _equal(state[live.key].status, S.SENDING, "a live leased record after claims by others")
    _equal(state[live.key].lease_owner, "w1", "owner of a live leased record")


@_check
async def _expired_lease_at_least_once(store: OutboxStore) -> None:
    a, b = _record("c", 0), _record("c", 1)
    await store.add([a, b])
    await store.claim(_keys([a, b]), owner="w1", now=T0, lease=LEASE)
    [got] = await store.claim([a.key], owner="w2", now=T0 + LEASE, lease=LEASE)
    _equal((got.status, got.lease_owner), (S.SENDING, "w2"), "an expired lease, claimed again")
    _equal((got.attempts, got.lease_until), (2, T0 + 2 * LEASE), "attempts and new lease")
    due = await store.claim_due(owner="w3", now=T0 + LEASE, lease=LEASE, limit=10)
    _equal(_keys(due), [b.key], "claim_due of an expired lease (at-least-once)")
    late = [Completion(key=a.key, status=S.SENT), Completion(key=b.key, status=S.SENT)]
    _equal(await store.finish(late, owner="w1", now=T0 + 40), 0, "finish by the expired owner")
    _equal((await _state(store, "c"))[a.key], got, "a record after its old owner's finish")
    _equal(await store.finish(late[:1], owner="w2", now=T0 + 41), 1, "finish by the new owner")


@_check
async def _expired_lease_at_most_once(store: OutboxStore) -> None:
    a, b, fresh = _record("c", 0), _record("c", 1), _record("c", 2)
    await store.add([a, b])
    await store.claim(_keys([a, b]), owner="w1", now=T0, lease=LEASE)
    await store.add([fresh])
    early = await store.claim([a.key], owner="w2", now=T0 + 29, lease=LEASE, policy=AT_MOST_ONCE)
    _equal(early, [], "at-most-once claim before the lease expires")
    _equal((await _state(store, "c"))[a.key].status, S.SENDING, "a live lease (at-most-once)")
    got = await store.claim([a.key], owner="w2", now=T0 + LEASE, lease=LEASE, policy=AT_MOST_ONCE)
    _equal(got, [], "at-most-once claim of an expired lease")
    due = await store.claim_due(
        owner="w3", now=T0 + LEASE, lease=LEASE, limit=10, policy=AT_MOST_ONCE
    )
    _equal(_keys(due), [fresh.key], "at-most-once claim_due with an expired lease")
    state = await _state(store, "c")
    for record in (a, b):
        doubt = state[record.key]
        _equal(doubt.status, S.IN_DOUBT, "status of an expired lease (at-most-once)")
        _equal((doubt.lease_owner, doubt.lease_until), (None, None), "lease of an in_doubt record")
        _equal(doubt.attempts, 1, "attempts of an in_doubt record")
    for policy in DeliveryPolicy:
        got = await store.claim(_keys([a, b]), owner="w4", now=T0 + 99, lease=LEASE, policy=policy)
        _equal(got, [], f"claim ({policy}) of in_doubt records")
    done = [Completion(key=a.key, status=S.SENT)]
    _equal(await store.finish(done, owner="w1", now=T0 + 99), 0, "finish of an in_doubt record")


@_check
async def _claim_due_order_limit_and_campaign(store: OutboxStore) -> None:
    c1 = [_record("c1", n, not_before=T0 - age) for n, age in enumerate([30, 10, 20])]
    unscheduled, future = _record("c1", 3), _record("c1", 4, not_before=T0 + 5)
    c2 = [_record("c2", n, not_before=T0 - 50) for n in range(2)]
    await store.add([*c1, future, *c2])
    claim_due = store.claim_due
    got = await claim_due(owner="w", now=T0, lease=LEASE, limit=2, campaign_id="c1")
    _equal(set(_keys(got)), {c1[0].key, c1[2].key}, "claim_due(limit=2): the 2 oldest due")
    await store.add([unscheduled])  # (where not_before=None ranks among times is the store's)
    got = await claim_due(owner="w", now=T0, lease=LEASE, limit=10, campaign_id="c1")
    _equal(set(_keys(got)), {c1[1].key, unscheduled.key}, "claim_due: the rest of those due")
    _equal(await claim_due(owner="w", now=T0, lease=LEASE, limit=10, campaign_id="c1"), [],
           "claim_due with nothing due in the campaign")  # fmt: skip
    _equal(await claim_due(owner="w", now=T0, lease=LEASE, limit=0), [], "claim_due(limit=0)")
    got = await claim_due(owner="w", now=T0, lease=LEASE, limit=10)
    _equal(set(_keys(got)), set(_keys(c2)), "claim_due of any campaign")
    got = await claim_due(owner="w", now=T0 + 5, lease=LEASE, limit=10)
    _equal(_keys(got), [future.key], "claim_due once not_before is reached")


@_check
async def _finish_writes_outcomes_of_the_owner_only(store: OutboxStore) -> None:
    records = [_record("c", n) for n in range(7)]
    await store.add(records)
    k = _keys(records)
    await store.claim(k[:6], owner="w1", now=T0, lease=LEASE)
    outcomes = [
        Completion(key=k[0], status=S.SENT, message_id="<m0@x>"),
        Completion(key=k[1], status=S.FAILED, error="550 unknown user"),
        Completion(key=k[2], status=S.IN_DOUBT, error="connection lost after DATA"),
        Completion(key=k[3], status=S.SUPPRESSED),
        Completion(key=k[4], status=S.PENDING, error="421 try later", not_before=T0 + 100),
        Completion(key=k[5], status=S.SENT, attempts=3),
        Completion(key=k[6], status=S.SENT),  # never claimed
        Completion(key="no-such-key", status=S.SENT),
    ]
    _equal(await store.finish(outcomes, owner="w2", now=T0 + 1), 0, "finish by another owner")
    try:
        await store.finish([Completion(key=k[0], status=S.SENDING)], owner="w1", now=T0 + 1)
    except ValueError:
        pass
    else:
        raise AssertionError("finish() with status=sending did not raise ValueError")
    _equal(await store.finish(outcomes, owner="w1", now=T0 + 1), 6, "finish by the owner")
    _equal(await store.finish(outcomes, owner="w1", now=T0 + 2), 0, "the same finish again")
    _equal(await store.finish([], owner="w1", now=T0 + 2), 0, "finish([])")
    state = await _state(store, "c")
    for outcome in outcomes[:6]:
        record = state[outcome.key]
        what = f"record finished as {outcome.status}"
        _equal((record.status, record.message_id, record.error),
               (outcome.status, outcome.message_id, outcome.error), what)  # fmt: skip
        _equal((record.lease_owner, record.lease_until), (None, None), f"lease of a {what}")
        _equal(record.updated_at, T0 + 1, f"updated_at of a {what}")
    _equal(state[k[0]].attempts, 1, "attempts after one claim and finish(attempts=1)")
    _equal(state[k[5]].attempts, 3, "attempts after one claim and finish(attempts=3)")
    _equal(state[k[4]].not_before, T0 + 100, "not_before of a record finished as pending")
    _equal(state[k[6]], records[6], "a record finished without being claimed")
    _equal(await store.claim([k[4]], owner="w1", now=T0 + 99, lease=LEASE), [], "early retry")
    [retry] = await store.claim([k[4]], owner="w1", now=T0 + 100, lease=LEASE)
    _equal(retry.attempts, 2, "attempts of a retried record")


@_check
async def _add_claimed_stores_new_records_claimed_and_claims_existing_ones(
    store: OutboxStore,
) -> None:
    old = [_record("c", n) for n in range(4)]
    await store.add(old)
    await store.claim([old[1].key], owner="other", now=T0, lease=LEASE)  # live lease
    await store.add([_record("c", 9, status=S.SENT)])
    batch = [_record("c", n) for n in (5, 0, 1, 6, 9, 5)]  # new, pending, leased, new, sent
    got = await store.add_claimed(batch, owner="w", now=T0 + 1, lease=LEASE)
    want = [batch[0].key, batch[1].key, batch[3].key]
    _equal(_keys(got), want, "add_claimed: new and claimable records, in the order given")
    state = await _state(store, "c")
    for record in got:
        stored = state[record.key]
        _equal((stored.status, stored.lease_owner, stored.attempts), (S.SENDING, "w", 1),
               f"stored state of {record.key!r}")  # fmt: skip
        _equal(record, stored, "a returned record is the stored one")
        _equal(stored.variables, {"n": int(record.recipient[4:9])}, "variables kept")
    _equal(state[old[1].key].lease_owner, "other", "a live lease is not taken")
    _equal(state[record_key("c", "user00009@example.com")].status, S.SENT, "a sent record")
    _equal(await store.add_claimed([], owner="w", now=T0, lease=LEASE), [], "nothing")


@_check
async def _finish_adds_follow_ups_of_written_outcomes_only(store: OutboxStore) -> None:
    records = [_record("drip", n) for n in range(3)]
    await store.add(records)
    k = _keys(records)
    await store.claim(k[:2], owner="w", now=T0, lease=LEASE)

    def next_step(record: OutboxRecord) -> OutboxRecord:
        key = record_key("drip", record.recipient, 1)
        return msgspec.structs.replace(record, key=key, step=1, not_before=T0 + 3600)

    outcomes = [
        Completion(key=k[0], status=S.SENT, follow_up=next_step(records[0])),
        Completion(key=k[2], status=S.SENT, follow_up=next_step(records[2])),  # not claimed
    ]
    _equal(await store.finish(outcomes, owner="other", now=T0), 0, "finish by another owner")
    _equal(await store.finish(outcomes, owner="w", now=T0), 1, "finish with follow-ups")
    state = await _state(store, "drip")
    _equal(sorted(state), sorted([*k, next_step(records[0]).key]), "keys after follow-ups")
    added = state[next_step(records[0]).key]
    _equal((added.step, added.status, added.not_before), (1, S.PENDING, T0 + 3600), "follow-up")
    _equal(await store.claim([added.key], owner="w", now=T0 + 1, lease=LEASE), [], "early step")


@_check
async def _next_due_sees_pending_and_leased_records(store: OutboxStore) -> None:
    _equal(await store.next_due(), None, "next_due of an empty store")
    await store.add([_record("a", 0, not_before=T0 + 50), _record("b", 1, not_before=T0 + 20)])
    _equal(await store.next_due(), T0 + 20, "next_due: the earliest not_before")
    _equal(await store.next_due(campaign_id="a"), T0 + 50, "next_due of one campaign")
    _equal(await store.next_due(campaign_id="nobody"), None, "next_due of an unknown campaign")
    [taken] = await store.claim_due(owner="w", now=T0 + 20, lease=LEASE, limit=5)
    _equal(await store.next_due(campaign_id="b"), T0 + 20 + LEASE, "next_due of a leased record")
    await store.finish([Completion(key=taken.key, status=S.SENT)], owner="w", now=T0 + 21)
    _equal(await store.next_due(campaign_id="b"), None, "next_due once all is sent")
    await store.add([_record("a", 2)])
    _equal(await store.next_due(campaign_id="a"), 0.0, "next_due of a record due now")


@_check
async def _reserve_grants_up_to_the_cap_per_key_and_window(store: OutboxStore) -> None:
    day = 86_400.0
    _equal(await store.reserve("gmail:a", window=T0, count=1500, cap=2000), 1500, "first")
    _equal(await store.reserve("gmail:a", window=T0, count=1500, cap=2000), 500, "the rest")
    _equal(await store.reserve("gmail:a", window=T0, count=10, cap=2000), 0, "cap reached")
    _equal(await store.reserve("gmail:a", window=T0 + day, count=10, cap=2000), 10, "next day")
    _equal(await store.reserve("gmail:b", window=T0, count=10, cap=2000), 10, "another key")
    _equal(await store.reserve("gmail:b", window=T0, count=0, cap=2000), 0, "nothing asked")
    try:
        await store.reserve("gmail:b", window=T0, count=-1, cap=5)
    except ValueError:
        pass
    else:
        raise AssertionError("reserve(count=-1) did not raise ValueError")
    grants = await asyncio.gather(
        *(store.reserve("race", window=T0, count=7, cap=50) for _ in range(10))
    )
    _equal(sum(grants), 50, "concurrent reservations never exceed the cap")


@_check
async def _campaign_definitions_round_trip(store: OutboxStore) -> None:
    _equal(await store.get_campaign("spring"), None, "an unknown campaign")
    steps = (
        CampaignStep(subject="Hi {{ name }}", text="Hello {{ name }}", html="<p>{{ name }}</p>"),
        CampaignStep(subject="Day 3", text="Still there?", delay=3 * 86400.0),
    )
    first = CampaignDefinition(
        campaign_id="spring", steps=steps, provider={"kind": "smtp", "host": "mx", "port": 25},
        options={"rate_limit": 600.0}, name="Spring", created_at=T0,
    )  # fmt: skip
    later = CampaignDefinition(campaign_id="autumn", steps=steps[:1], created_at=T0 + 10)
    await store.save_campaign(later)
    await store.save_campaign(first)
    _equal(await store.get_campaign("spring"), first, "a stored definition")
    _equal(await store.campaigns(), [first, later], "campaigns(), oldest first")
    replaced = msgspec.structs.replace(first, steps=steps[1:])
    await store.save_campaign(replaced)
    _equal(await store.get_campaign("spring"), replaced, "a replaced definition")
    _equal(len(await store.campaigns()), 2, "campaigns after a replacement")


@_check
async def _counts_per_campaign(store: OutboxStore) -> None:
    await store.add([_record("c1", n) for n in range(5)] + [_record("c2", n) for n in range(2)])
    await store.add([_record("c1", 10, status=S.SUPPRESSED)])
    taken = await store.claim([record_key("c1", f"user{n:05d}@example.com") for n in range(3)],
                              owner="w", now=T0, lease=LEASE)  # fmt: skip
    await store.finish([Completion(key=taken[0].key, status=S.SENT)], owner="w", now=T0)
    expected = dict.fromkeys(OutboxStatus, 0)
    _equal(await store.counts("nobody"), expected, "counts of an unknown campaign")
    expected.update({S.PENDING: 2, S.SENDING: 2, S.SENT: 1, S.SUPPRESSED: 1})
    _equal(await store.counts("c1"), expected, "counts of c1")
    _equal((await store.counts("c2"))[S.PENDING], 2, "pending count of c2")


@_check
async def _records_pages_in_key_order(store: OutboxStore) -> None:
    big = [_record("a", (n * 7919) % 1234) for n in range(1234)]  # not in key order
    await store.add(big[:600])
    await store.add([_record("b", n) for n in range(3)] + big[600:])
    listed = await _collect(store.records("a"))
    _equal(len(listed), 1234, "records() of a campaign of 1,234")
    _equal(_keys(listed), sorted(_keys(big)), "records() keys (all of them, in key order)")
    _expect(all(r.campaign_id == "a" for r in listed), "records() yielded another campaign")
    taken = await store.claim(_keys(big)[::4], owner="w", now=T0, lease=LEASE)
    sending = await _collect(store.records("a", status=S.SENDING))
    _equal(_keys(sending), sorted(_keys(taken)), "records(status=sending) keys")
    _equal(len(await _collect(store.records("a", status=S.PENDING))), 1234 - len(taken),
           "number of records(status=pending)")  # fmt: skip
    _equal(await _collect(store.records("a", status=S.SENT)), [], "records(status=sent)")
    _equal(await _collect(store.records("nobody")), [], "records() of an unknown campaign")


@_check
async def _suppressions_ignore_case(store: OutboxStore) -> None:
    await store.suppress("Bob@Example.COM", reason="unsubscribed", now=T0)
    await store.suppress("bob@example.com", reason="bounced", now=T0 + 1)
    await store.suppress("eve@example.com", reason="complaint", now=T0 + 2)
    found = await store.suppressed(["BOB@example.com", "alice@example.com", "Eve@Example.com"])
    _equal(found, {"bob@example.com", "eve@example.com"}, "suppressed()")
    _equal(await store.suppressed([]), set(), "suppressed([])")
    listed = {s.address: s for s in await _collect(store.suppressions())}
    _equal(sorted(listed), ["bob@example.com", "eve@example.com"], "suppressions() addresses")
    _equal((listed["eve@example.com"].reason, listed["eve@example.com"].created_at),
           ("complaint", T0 + 2), "reason and created_at of a suppression")  # fmt: skip
    _equal(await store.unsuppress("BOB@EXAMPLE.com"), True, "unsuppress() of a listed address")
    _equal(await store.unsuppress("bob@example.com"), False, "unsuppress() again")
    _equal(await store.suppressed(["bob@example.com"]), set(), "suppressed() after unsuppress")
    many = [f"User{n}@Example.com" for n in range(1200)]
    for address in many[::100]:
        await store.suppress(address, reason="bounced", now=T0)
    _equal(len(await store.suppressed(many)), 12, "suppressed() of 1,200 addresses")


@_check
async def _concurrent_claimers_never_share_a_record(store: OutboxStore) -> None:
    records = [_record("c", n) for n in range(300)]
    await store.add(records)
    keys = _keys(records)

    async def by_keys(owner: str) -> list[str]:
        got: list[str] = []
        for start in range(0, len(keys), 50):
            got += _keys(await store.claim(keys[start : start + 50], owner=owner, now=T0,
                                           lease=LEASE))  # fmt: skip
            await asyncio.sleep(0)
        return got

    async def due(owner: str) -> list[str]:
        got: list[str] = []
        while batch := await store.claim_due(owner=owner, now=T0, lease=LEASE, limit=17):
            got += _keys(batch)
            await asyncio.sleep(0)
        return got

    for claimer in (by_keys, due):
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(claimer(f"w{n}")) for n in range(6)]
        claimed = [key for task in tasks for key in task.result()]
        what = f"records claimed by 6 concurrent {claimer.__name__}() loops"
        _equal(len(claimed), len(set(claimed)), f"{what} (counting each once)")
        _equal(set(claimed), set(keys), what)
        fresh = [_record("d", n) for n in range(300)]  # for claim_due, in the second round
        await store.add(fresh)
        keys = _keys(fresh)


@_check
async def _large_batches(store: OutboxStore) -> None:
    records = [_record("c", n) for n in range(1500)]
    _equal(await store.add(records), 1500, "add() of 1,500 records")
    taken = await store.claim(_keys(records), owner="w", now=T0, lease=LEASE)
    _equal(len(taken), 1500, "claim() of 1,500 keys")
    done = [Completion(key=record.key, status=S.SENT) for record in taken]
    _equal(await store.finish(done, owner="w", now=T0), 1500, "finish() of 1,500 outcomes")
    _equal((await store.counts("c"))[S.SENT], 1500, "sent count after large batches")


OUTBOX_CHECKS: tuple[str, ...] = tuple(_CHECKS)
