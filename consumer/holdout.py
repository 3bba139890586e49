"""The evaluation rows every decision is made on, and which file each row came from.

Three modes, chosen by params.yaml (`holdout_mode`):
- `file`: `holdout.file` names a CSV of the user's own, validated like an arriving file;
- `source`: `dataset.source` is set (and no file): the fixed holdout cut once from it;
- `arrivals`: neither: a keyed hash of each row's content routes `holdout.fraction` of every
  accepted file's rows into `<data>/holdout/<sha256>.parquet` (`split_arrival`, at ingest).
  Those rows never reach the accepted copy a retrain reads, so they are never trained on,
  and the holdout grows with the data. A row's route depends on its content alone, so a row
  that comes again in another file takes the same route: it cannot be in both places.

The row groups (`groups`) name each row's file, so the judge can resample whole files when
holdout rows arrived in files (a clustered bootstrap).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from consumer.validate import Rejected, validate_csv
from shared.fs import atomic_write_bytes
from shared.ledger import FileState

if TYPE_CHECKING:
    from shared.ledger import Ledger
    from shared.settings import ColumnSpec, Settings

FILE, SOURCE, ARRIVALS = "file", "source", "arrivals"
_MISSING = "\x00"  # a missing value's canonical form: no real value is a lone NUL
_SEPARATOR = "\x1f"  # between columns (the ASCII unit separator)
_SCALE = float(1 << 64)


@dataclass(frozen=True)
class Holdout:
    frame: pd.DataFrame  # the declared columns, typed
    groups: np.ndarray | None  # one group id (a file's sha256) per row; None: rows independent
    description: str  # what a decision says it was made on, e.g. "61 fixed source rows"

    @property
    def rows(self) -> int:
        return len(self.frame)


class HoldoutError(ValueError):
    """The holdout cannot be loaded (a pinned file that fails validation); says why."""


def holdout_mode(settings: Settings) -> str:
    """`file`, `source` or `arrivals`: where the evaluation rows come from."""
    if settings.holdout.file is not None:
        return FILE
    return SOURCE if settings.dataset.source is not None else ARRIVALS


def _canonical_column(values: pd.Series, spec: ColumnSpec | None) -> pd.Series:
    """Each value as text that is the same whatever dtype the column was read with.

    Numbers go through float (an int column that gained a missing value is read as float:
    3 and 3.0 must hash alike); text is stripped; a missing value is one sentinel.
    """
    missing = values.isna().to_numpy()
    if spec is not None and spec.type in ("float", "int"):
        numbers = pd.to_numeric(values, errors="coerce").astype("float64")
        text = numbers.map(lambda number: repr(float(number)))  # shortest round-trip form
    else:
        text = values.astype(object).map(lambda value: str(value).strip())
    return text.where(~missing, _MISSING).astype(object)


def holdout_share(
    frame: pd.DataFrame,
    columns: list[str],
    fraction: float,
    seed: int,
    specs: dict[str, ColumnSpec] | None = None,
) -> np.ndarray:
    """Which rows belong to the holdout: a keyed BLAKE2b hash of each row's content.

    A row goes to the holdout when its hash, read as a number in [0, 1), is below
    `fraction`. The hash covers `columns` in their canonical text form (see
    `_canonical_column`; `specs` gives their declared types) keyed by `seed`, so the
    answer is the same in every run and process, and for the same row in any file.
    """
    if frame.empty:
        return np.zeros(0, dtype=bool)
    specs = specs or {}
    parts = [_canonical_column(frame[column], specs.get(column)) for column in columns]
    joined = parts[0].str.cat(parts[1:], sep=_SEPARATOR) if len(parts) > 1 else parts[0]
    key = f"arrivals.holdout.{seed}".encode()[:64]

    def position(text: str) -> float:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=key).digest()
        return int.from_bytes(digest, "big") / _SCALE

    return np.fromiter((position(t) < fraction for t in joined), dtype=bool, count=len(frame))


def _share(settings: Settings, frame: pd.DataFrame) -> np.ndarray:
    dataset = settings.dataset
    return holdout_share(
        frame,
        list(dataset.columns),
        settings.holdout.fraction,
        settings.holdout.seed,
        dataset.columns,
    )


def rows_path(settings: Settings, sha256: str) -> Path:
    return settings.dirs.holdout_rows / f"{sha256}.parquet"


def split_arrival(settings: Settings, sha256: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of an accepted file to train on; in `arrivals` mode the rest are stored.

    The holdout rows are written (atomically) to `<data>/holdout/<sha256>.parquet` before
    the training rows are returned, so a crash in between leaves nothing trained on them.
    Other modes: `frame` as it is.
    """
    if holdout_mode(settings) != ARRIVALS:
        return frame
    share = _share(settings, frame)
    atomic_write_bytes(
        rows_path(settings, sha256), frame[share].reset_index(drop=True).to_parquet(index=False)
    )
    return frame[~share].reset_index(drop=True)


def training_rows(settings: Settings, sha256: str, frame: pd.DataFrame) -> pd.DataFrame:
    """An accepted file's rows re-read from its CSV, less those routed to the holdout.

    Only files whose holdout rows were stored lose them (the route is deterministic, so
    it is the same split again); a file ingested in another mode was trained whole.
    """
    if not rows_path(settings, sha256).exists():
        return frame
    return frame[~_share(settings, frame)].reset_index(drop=True)


def _validated(settings: Settings, path: Path) -> tuple[pd.DataFrame, int]:
    """A pinned holdout file's usable rows and its row count, validated like an arrival."""
    try:
        result = validate_csv(path, settings.dataset)
    except Rejected as rejection:
        raise HoldoutError(f"holdout.file {path}: {rejection}") from None
    frame = getattr(result, "frame", result)  # a frame, or a result with the usable rows
    return frame, int(getattr(result, "total_rows", len(frame)))


def prepare_holdout(settings: Settings) -> None:
    """At `up`: cut the source holdout once, or check the pinned file validates."""
    mode = holdout_mode(settings)
    if mode == SOURCE:
        from shared.dataset import ensure_holdout

        ensure_holdout(settings.dataset, settings.holdout, settings.dirs.holdout)
    elif mode == FILE:
        _validated(settings, settings.holdout.file)


def load_holdout(
    settings: Settings, ledger: Ledger | None = None, accepted_now: Iterable[str] = ()
) -> Holdout:
    """The current holdout, from wherever params.yaml says it comes (see the module doc).

    `accepted_now`: sha256s of files this run accepted and has not marked trained yet;
    in `arrivals` mode their holdout rows count already (the first round has no other).
    """
    mode = holdout_mode(settings)
    if mode == FILE:
        path = settings.holdout.file
        frame, total = _validated(settings, path)
        left_out = f" ({total - len(frame)} bad rows left out)" if total > len(frame) else ""
        return Holdout(
            frame, None, f"{len(frame)} rows of the pinned holdout file {path.name}{left_out}"
        )
    if mode == SOURCE:
        from shared.dataset import ensure_holdout

        path = ensure_holdout(settings.dataset, settings.holdout, settings.dirs.holdout)
        # Through the validator like every other file: the same types, missing values and
        # spellings as the training rows, so a label reads the same on both sides.
        frame, total = _validated(settings, path)
        left_out = f" ({total - len(frame)} bad rows left out)" if total > len(frame) else ""
        return Holdout(
            frame, None, f"{len(frame)} fixed holdout rows cut from the source{left_out}"
        )
    if ledger is None:
        raise ValueError("the holdout from arrivals needs the ledger (which files are trained)")
    return _from_arrivals(settings, ledger, accepted_now)


def _from_arrivals(settings: Settings, ledger: Ledger, accepted_now: Iterable[str]) -> Holdout:
    # Trained files only: a rejected, retracted or suspect file's rows judge nothing.
    shas = [record.sha256 for record in ledger.files(FileState.TRAINED)]
    trained = set(shas)
    shas += [sha for sha in dict.fromkeys(accepted_now) if sha not in trained]
    frames, groups = [], []
    for sha256 in shas:
        path = rows_path(settings, sha256)
        if path.exists():  # a file trained in another mode has no holdout rows
            frame = pd.read_parquet(path)
            if len(frame):
                frames.append(frame)
                groups.append(np.full(len(frame), sha256, dtype=object))
    columns = list(settings.dataset.columns)
    if not frames:
        return Holdout(
            pd.DataFrame(columns=columns), np.zeros(0, dtype=object), "0 rows: nothing arrived"
        )
    frame = pd.concat(frames, ignore_index=True)[columns]
    return Holdout(
        frame,
        np.concatenate(groups),
        f"{len(frame)} rows routed from {len(frames)} arriving file"
        + ("s" if len(frames) != 1 else ""),
    )
