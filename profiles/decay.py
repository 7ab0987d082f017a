"""How an inferred interest fades: exponential decay with a half-life set by the DPO.

A page view at time t counts ``2 ** (-(T - t) / half_life)`` at time T: 1 when it happens,
1/2 one half-life later, 1/4 two half-lives later. An interest's weight at T is the sum over
its views. Stored as (score, score_at) — the sum at score_at — so that adding a view or
reading the weight at any later time is O(1) and gives exactly the sum of the definition,
whatever the order the views arrive in (tests/profiles/test_decay.py checks it with
hypothesis).
"""

from __future__ import annotations

from datetime import datetime, timedelta

# Below this weight an interest is no longer shown nor used (about five half-lives after a
# single view); profiles_maintain deletes it.
FADED = 1 / 32


def factor(elapsed: timedelta, half_life: timedelta) -> float:
    """The weight of one view after `elapsed` (negative `elapsed`: a view from the future
    relative to the reference counts more than 1 — used when re-basing)."""
    return float(2 ** (-(elapsed / half_life)))


def weight_at(score: float, score_at: datetime, at: datetime, half_life: timedelta) -> float:
    """The weight at `at` of a score computed at `score_at` (never grows when `at` is later)."""
    if at <= score_at:
        return score
    return score * factor(at - score_at, half_life)


def add_view(
    score: float, score_at: datetime, view_at: datetime, half_life: timedelta
) -> tuple[float, datetime]:
    """The new (score, score_at) once a view at `view_at` is added.

    The reference time only moves forward: a view older than `score_at` (late delivery) is
    added at its decayed weight at `score_at`.
    """
    if view_at >= score_at:
        return weight_at(score, score_at, view_at, half_life) + 1.0, view_at
    return score + factor(score_at - view_at, half_life), score_at


def merge(
    first: tuple[float, datetime], second: tuple[float, datetime], half_life: timedelta
) -> tuple[float, datetime]:
    """Two scores of the same theme (a browser's and an account's) as one, at the later time."""
    (a, a_at), (b, b_at) = first, second
    at = max(a_at, b_at)
    return weight_at(a, a_at, at, half_life) + weight_at(b, b_at, at, half_life), at
