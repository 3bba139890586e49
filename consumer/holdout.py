"""The evaluation rows every decision is made on, and which file each row came from.

Today: the fixed holdout cut once from `dataset.source`. The row groups (`groups`) let the
judge resample whole files when holdout rows arrived in files (a clustered bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from shared.ledger import Ledger
    from shared.settings import Settings


@dataclass(frozen=True)
class Holdout:
    frame: pd.DataFrame  # the declared columns, typed
    groups: np.ndarray | None  # one group id (a source file) per row; None: rows are independent
    description: str  # what a decision says it was made on, e.g. "61 fixed source rows"

    @property
    def rows(self) -> int:
        return len(self.frame)


def load_holdout(settings: Settings, ledger: Ledger | None = None) -> Holdout:
    """The current holdout: written once from the source, then read back unchanged."""
    import pandas as pd

    from shared.dataset import ensure_holdout

    path = ensure_holdout(settings.dataset, settings.holdout, settings.dirs.holdout)
    frame = pd.read_csv(path)
    return Holdout(frame, None, f"{len(frame)} fixed holdout rows cut from the source")
