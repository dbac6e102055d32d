"""A public kit for testing code that uses xcomm.

- `FakeClock`: virtual time for limiters, retry backoff and Retry-After waits; pass it to
  `TokenBucket(..., clock=clock)` or `CommManager(clock=clock)` and run inside
  `async with clock.autojump():` to make waits instant and exact.
- `check_outbox_store(factory)`: the conformance suite every `OutboxStore` must pass
  (idempotent add, claim and lease semantics, owner-only finish, suppression, concurrent
  claimers); `OUTBOX_CHECKS` lists its checks so each can run as its own test.
"""

from xcomm.testing._clock import FakeClock
from xcomm.testing._outbox import OUTBOX_CHECKS, check_outbox_store

__all__ = ["OUTBOX_CHECKS", "FakeClock", "check_outbox_store"]
