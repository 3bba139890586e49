"""Shadow scoring's tally: how often the newest challenger agrees with the served champion.

The challenger scores the same rows after the champion has answered; its predictions are
only counted, never returned. The tally is per (champion, challenger) pair: a swap of either
starts a new count, so an agreement always describes two definite versions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

AGREEMENT_METRIC = "shadow_agreement"  # on the challenger's MLflow run
ROWS_METRIC = "shadow_rows"


@dataclass(frozen=True)
class Agreement:
    champion: str
    challenger: str
    challenger_run_id: str
    requests: int
    rows: int
    agreeing: int

    @property
    def rate(self) -> float:
        return self.agreeing / self.rows if self.rows else 0.0

    def to_json(self) -> dict:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "requests": self.requests,
            "rows": self.rows,
            "agreement": round(self.rate, 6),
        }

    def metrics(self) -> dict[str, float]:
        return {AGREEMENT_METRIC: self.rate, ROWS_METRIC: float(self.rows)}


class ShadowTally:
    """Counts agreeing rows for the current pair; thread-safe (requests finish in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: Agreement | None = None
        self._logged_rows = 0  # rows of the current pair already logged to MLflow

    def record(
        self,
        champion: str,
        challenger: str,
        challenger_run_id: str,
        served: np.ndarray,
        shadow: np.ndarray,
    ) -> None:
        """One request's rows, as the champion answered and as the challenger would have."""
        agreeing = int(np.sum(np.asarray(served) == np.asarray(shadow)))
        with self._lock:
            now = self._current
            if now is None or (now.champion, now.challenger) != (champion, challenger):
                now = Agreement(champion, challenger, challenger_run_id, 0, 0, 0)
                self._logged_rows = 0
            self._current = Agreement(
                champion,
                challenger,
                challenger_run_id,
                now.requests + 1,
                now.rows + len(served),
                now.agreeing + agreeing,
            )

    def current(self) -> Agreement | None:
        return self._current

    def unlogged(self) -> Agreement | None:
        """The current pair's tally when it grew since the last `mark_logged`."""
        with self._lock:
            now = self._current
            return now if now is not None and now.rows > self._logged_rows else None

    def mark_logged(self, agreement: Agreement) -> None:
        with self._lock:
            now = self._current
            if now is not None and (now.champion, now.challenger) == (
                agreement.champion,
                agreement.challenger,
            ):
                self._logged_rows = max(self._logged_rows, agreement.rows)
