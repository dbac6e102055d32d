"""Daily caps, planned: how many messages of a campaign may go in which window.

A provider that caps sending per day (`PRESETS["gmail"].daily_cap` is 2,000) cannot be
respected by a token bucket: a bucket that holds a day's worth lets the whole day through at
once. A campaign larger than what is left today is instead split up front into chunks, each
with the time it may start (`not_before` in the outbox):

    plan_windows(5_000, cap=2_000, remaining_now=300, now=t)
    → [(300, None), (2_000, next midnight), (2_000, the one after), (700, the one after that)]

Windows are aligned to multiples of `window` since the epoch, so per-day windows start at UTC
midnight. Providers that count a rolling 24 hours (Gmail, Exchange Online, SES) can see up to
twice the cap in one 24-hour span (what went out just before midnight, then a full window just
after); keep `remaining_now` honest, or plan with a lower cap, where that matters.

Pure: no clock and no I/O; the caller passes `now`.
"""

from __future__ import annotations

import math

from xcomm._errors import ConfigurationError

__all__ = ["DAY", "plan_windows"]

DAY = 86_400.0


def plan_windows(
    count: int,
    /,
    *,
    cap: int,
    remaining_now: int,
    now: float,
    window: float = DAY,
) -> list[tuple[int, float | None]]:
    """Split `count` messages into `(how many, not_before)` chunks that respect `cap`.

    The first `remaining_now` go now (`not_before` None); then `cap` per window, each chunk
    starting at a window boundary (epoch seconds: `(floor(now / window) + k) * window`, UTC
    midnight for the default one-day window). Empty chunks are left out, so `count == 0`
    gives `[]` and `remaining_now == 0` starts with the next window. The chunk sizes add up to
    `count`.

    Example:
        ```python
        plan_windows(5, cap=2, remaining_now=1, now=90_000.0)
        # [(1, None), (2, 172800.0), (2, 259200.0)]
        ```

    Args:
        count: messages to send (zero or more).
        cap: the most messages per window (at least one).
        remaining_now: what is left of the cap in the current window (0 to `cap`).
        now: the current time in epoch seconds.
        window: the length of a window in seconds (one day by default).

    Raises:
        ConfigurationError: an argument is out of range or not a number of the right kind.
    """
    _check_int("count", count, low=0)
    _check_int("cap", cap, low=1)
    _check_int("remaining_now", remaining_now, low=0)
    if remaining_now > cap:
        raise ConfigurationError(
            f"remaining_now ({remaining_now}) cannot exceed the cap ({cap}): it is what is "
            "left of the cap in the current window"
        )
    _check_float("now", now)
    _check_float("window", window)
    if window <= 0:
        raise ConfigurationError(f"window must be a positive number of seconds, got {window!r}")

    plan: list[tuple[int, float | None]] = []
    first = min(remaining_now, count)
    if first:
        plan.append((first, None))
    left = count - first
    current = math.floor(now / window)
    # Each boundary from its index, not by adding `window` up: no drift over many windows.
    for index in range(1, -(-left // cap) + 1):
        size = min(cap, left - (index - 1) * cap)
        plan.append((size, (current + index) * window))
    return plan


def _check_int(name: str, value: object, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ConfigurationError(f"{name} must be {low} or more, got {value}")


def _check_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
