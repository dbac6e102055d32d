"""`plan_windows`: a campaign split into chunks that respect a daily cap. Pure, no clock."""

from __future__ import annotations

import itertools
import math

import pytest

from xcomm import PRESETS, ConfigurationError
from xcomm.bulk._quota import DAY, plan_windows

MIDNIGHT = 20_000 * DAY  # 2024-10-04T00:00:00Z
NOW = MIDNIGHT + 13.5 * 3600  # 13:30 UTC that day


def test_what_fits_today_goes_now() -> None:
    assert plan_windows(150, cap=2_000, remaining_now=300, now=NOW) == [(150, None)]
    assert plan_windows(300, cap=2_000, remaining_now=300, now=NOW) == [(300, None)]


def test_the_rest_waits_for_the_next_utc_midnights() -> None:
    plan = plan_windows(5_000, cap=2_000, remaining_now=300, now=NOW)
    assert plan == [
        (300, None),
        (2_000, MIDNIGHT + DAY),
        (2_000, MIDNIGHT + 2 * DAY),
        (700, MIDNIGHT + 3 * DAY),
    ]


def test_nothing_left_today_starts_tomorrow() -> None:
    assert plan_windows(2_500, cap=2_000, remaining_now=0, now=NOW) == [
        (2_000, MIDNIGHT + DAY),
        (500, MIDNIGHT + 2 * DAY),
    ]


def test_exactly_a_cap_per_window() -> None:
    assert plan_windows(4_000, cap=2_000, remaining_now=2_000, now=NOW) == [
        (2_000, None),
        (2_000, MIDNIGHT + DAY),
    ]
    assert plan_windows(2_000, cap=2_000, remaining_now=0, now=NOW) == [(2_000, MIDNIGHT + DAY)]


def test_nothing_to_send_plans_nothing() -> None:
    assert plan_windows(0, cap=2_000, remaining_now=2_000, now=NOW) == []
    assert plan_windows(0, cap=1, remaining_now=0, now=NOW) == []


def test_now_on_a_boundary_is_in_the_window_it_starts() -> None:
    assert plan_windows(3, cap=1, remaining_now=1, now=MIDNIGHT) == [
        (1, None),
        (1, MIDNIGHT + DAY),
        (1, MIDNIGHT + 2 * DAY),
    ]


def test_many_windows_add_up_and_land_exactly_on_boundaries() -> None:
    count, cap = 1_000_003, 7
    plan = plan_windows(count, cap=cap, remaining_now=3, now=NOW, window=3600.0)
    assert sum(size for size, _ in plan) == count
    assert len(plan) == 1 + math.ceil((count - 3) / cap)
    assert plan[0] == (3, None)
    assert all(size == cap for size, _ in plan[1:-1])
    assert plan[-1][0] == ((count - 3) % cap or cap)
    starts = [start for _, start in plan[1:]]
    assert starts[0] == MIDNIGHT + 14 * 3600.0  # the next hour after 13:30
    assert all(isinstance(s, float) and s % 3600.0 == 0 for s in starts)
    assert all(b - a == 3600.0 for a, b in itertools.pairwise(starts))


def test_a_window_that_does_not_divide_a_day() -> None:
    # Aligned to multiples of the window since the epoch, whatever its length.
    plan = plan_windows(5, cap=2, remaining_now=1, now=1_000.0, window=300.0)
    assert plan == [(1, None), (2, 1_200.0), (2, 1_500.0)]


def test_preset_caps_plan_a_large_campaign() -> None:
    cap = PRESETS["gmail"].daily_cap
    assert cap is not None
    plan = plan_windows(10_000, cap=cap, remaining_now=cap, now=NOW)
    assert [size for size, _ in plan] == [2_000] * 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count must be 0 or more"),
        ({"count": 1.5}, "count must be an int"),
        ({"count": True}, "count must be an int"),
        ({"cap": 0}, "cap must be 1 or more"),
        ({"cap": None}, "cap must be an int"),
        ({"remaining_now": -1}, "remaining_now must be 0 or more"),
        ({"remaining_now": 2_001}, r"remaining_now \(2001\) cannot exceed the cap \(2000\)"),
        ({"now": math.nan}, "now must be a finite number"),
        ({"now": "today"}, "now must be a finite number"),
        ({"window": 0.0}, "window must be a positive number"),
        ({"window": -DAY}, "window must be a positive number"),
        ({"window": math.inf}, "window must be a finite number"),
    ],
)
def test_bad_inputs_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "count": 10,
        "cap": 2_000,
        "remaining_now": 100,
        "now": NOW,
        "window": DAY,
    }
    args.update(kwargs)
    count = args.pop("count")
    with pytest.raises(ConfigurationError, match=message):
        plan_windows(count, **args)  # type: ignore[arg-type]
