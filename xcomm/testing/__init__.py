"""A public kit for testing code that uses xcomm.

- `FakeClock`: virtual time for limiters, retry backoff and Retry-After waits; pass it to
  `TokenBucket(..., clock=clock)` or `CommManager(clock=clock)` and run inside
  `async with clock.autojump():` to make waits instant and exact.
"""

from xcomm.testing._clock import FakeClock

__all__ = ["FakeClock"]
