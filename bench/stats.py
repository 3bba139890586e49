"""Percentiles, summaries and target checks of measured values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linearly interpolated like numpy's default; None if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """Count, p50, p95 and max of the values that were measured (None = not measured)."""
    present = [v for v in values if v is not None]
    return {
        "n": len(present),
        "p50": percentile(present, 50),
        "p95": percentile(present, 95),
        "max": max(present, default=None),
    }


def meets(measured: dict[str, Any], target: dict[str, float]) -> bool | None:
    """Whether every targeted value is measured and at most its limit; None without a target."""
    if not target:
        return None
    return all(
        measured.get(key) is not None and measured[key] <= limit for key, limit in target.items()
    )
