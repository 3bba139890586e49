"""Validation of an arriving CSV against the columns params.yaml declares. Pure pandas.

`validate_csv` checks every row and returns the typed good rows plus the bad ones, each with
its line number and a reason a person can act on. It raises `Rejected` (with such a reason)
when the file as a whole cannot be used: a broken header, encoding or size (see
`consumer.csvfile`), any bad row under `dataset.bad_rows: reject_file`, or more bad rows than
`dataset.max_bad_row_fraction`.

A row is bad when a cell is not a number (or not a whole one, for int), outside min/max, not
one of a category's values, missing in a column that is not nullable, or when a label source
column is missing (the label cannot be computed, whatever `nullable` says).

Missing values: a cell is missing when, stripped of surrounding whitespace, it equals one of
`dataset.na_values` ignoring case; a category's declared value never counts as missing. A
missing value is NaN in the typed frame, so a nullable int column is typed float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from consumer.csvfile import Cells, Rejected, read_cells
from shared.settings import ColumnSpec, DatasetSettings

__all__ = ["Rejected", "Validated", "check_features", "validate_csv"]

_SHOWN = 3  # how many bad rows a whole-file reason quotes
_SHOWN_VALUES = 10  # how many allowed values a reason lists
_SHOWN_CHARS = 40  # a quoted cell is cut to this length
_INT_LIMIT = 2.0**63  # int64 holds less than this in magnitude


@dataclass(frozen=True)
class Validated:
    """A file's usable rows, and the rows left out with their line numbers and reasons."""

    frame: pd.DataFrame  # the declared columns of the good rows, typed; missing values NaN
    bad_rows: pd.DataFrame  # line, reason, then every column of the row as in the file
    total_rows: int  # data rows in the file (blank ones not counted)

    @property
    def dropped(self) -> int:
        return len(self.bad_rows)


def _show(value: str) -> str:
    cut = value if len(value) <= _SHOWN_CHARS else value[: _SHOWN_CHARS - 1] + "…"
    return repr(cut)


def _number(value: float) -> str:
    return f"{value:g}"


def _allowed(values: list[str]) -> str:
    extra = len(values) - _SHOWN_VALUES
    return ", ".join(values[:_SHOWN_VALUES]) + (f" and {extra} more" if extra > 0 else "")


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g}%"


class _Column:
    """One declared column's cells, and the reasons of its bad rows as they are found."""

    def __init__(self, name: str, cells: pd.Series) -> None:
        self.name = name
        self.stripped = cells.str.strip()
        self.problems: list[pd.Series] = []

    def flag(self, rows: pd.Series | np.ndarray, reason: Callable[[str], str]) -> None:
        """Record `reason(cell)` for each row in the mask `rows`."""
        cells = self.stripped[rows]
        if len(cells):
            reasons = [f"column {self.name}: {reason(cell)}" for cell in cells]
            self.problems.append(pd.Series(reasons, index=cells.index, dtype=object))

    def flag_missing(self, missing: pd.Series, spec: ColumnSpec, label: bool) -> None:
        """A missing label always makes a row bad; another missing value unless nullable."""
        cells = self.stripped[missing]
        if not len(cells) or (spec.nullable and not label):
            return
        if label:
            shown = ["empty" if cell == "" else _show(cell) for cell in cells]
            reasons = [f"missing label: column {self.name} is {s}" for s in shown]
        else:
            shown = ["empty" if cell == "" else f"{_show(cell)} means missing" for cell in cells]
            reasons = [f"column {self.name}: {s}, but the column is not nullable" for s in shown]
        self.problems.append(pd.Series(reasons, index=cells.index, dtype=object))


def _numbers(column: _Column, spec: ColumnSpec, missing: np.ndarray) -> np.ndarray:
    """The cells as float64: NaN where missing or bad (those rows are flagged)."""
    numbers = pd.to_numeric(column.stripped, errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )
    ok = ~missing & np.isfinite(numbers)  # inf and 1e999 are no measurement
    column.flag(~missing & ~ok, lambda cell: f"{_show(cell)} is not a number")
    safe = np.where(ok, numbers, 0.0)  # compare only real numbers: no NaN warnings
    if spec.type == "int":
        fractional = ok & (safe != np.round(safe))
        column.flag(fractional, lambda cell: f"{_show(cell)} is not a whole number")
        huge = ok & ~fractional & (np.abs(safe) >= _INT_LIMIT)
        column.flag(huge, lambda cell: f"{_show(cell)} is too large for an int column")
        ok &= ~fractional & ~huge
    if spec.min is not None:
        low = _number(spec.min)
        column.flag(ok & (safe < spec.min), lambda cell: f"{_show(cell)} is below min {low}")
    if spec.max is not None:
        high = _number(spec.max)
        column.flag(ok & (safe > spec.max), lambda cell: f"{_show(cell)} is above max {high}")
    # A token such as -999 in na_values is a missing value, not a number.
    return np.where(ok, numbers, np.nan)


def _check(
    name: str, spec: ColumnSpec, cells: pd.Series, tokens: set[str], label: bool
) -> tuple[pd.Series, list[pd.Series]]:
    """The column typed (missing and bad cells NaN) and the reasons of its bad rows."""
    column = _Column(name, cells)
    folded = column.stripped.str.lower()
    missing = folded.isin(tokens)
    if spec.type in ("float", "int"):
        column.flag_missing(missing, spec, label)
        numbers = _numbers(column, spec, missing.to_numpy())
        return pd.Series(numbers, index=cells.index), column.problems
    values = column.stripped
    if spec.type == "category" and spec.values is not None:
        if spec.case_insensitive:
            spelled = {value.lower(): value for value in spec.values}
            values = folded.map(spelled)  # `yes` -> the declared `Yes`
            declared = folded.isin(spelled)
        else:
            declared = column.stripped.isin(spec.values)
        missing &= ~declared  # a declared value such as "None" is a value, not a gap
        allowed = _allowed(spec.values)
        column.flag(
            ~declared & ~missing, lambda cell: f"unknown value {_show(cell)}; allowed: {allowed}"
        )
    column.flag_missing(missing, spec, label)
    return values.astype(object).mask(missing, np.nan), column.problems


def _typed(values: pd.Series, spec: ColumnSpec) -> pd.Series:
    """The good rows' values in the column's dtype (a nullable int keeps NaN: float64)."""
    if spec.type == "int" and not spec.nullable:
        return values.astype("int64")
    if spec.type in ("float", "int"):
        return values.astype("float64")
    return values.astype(object)


def _reasons(problems: list[pd.Series]) -> pd.Series:
    """One reason per bad row (its reasons joined by "; ", in column order), by position."""
    if not problems:
        return pd.Series([], dtype=object)
    return pd.concat(problems).groupby(level=0, sort=True).agg("; ".join)


def _bad_rows(cells: Cells, reasons: pd.Series) -> pd.DataFrame:
    """line, reason, then the row's cells as they were in the file."""
    positions = reasons.index.to_numpy(dtype=np.int64)
    head = pd.DataFrame({"line": cells.lines[positions], "reason": reasons.to_numpy(dtype=object)})
    return pd.concat([head, cells.frame.iloc[positions].reset_index(drop=True)], axis=1)


def _describe(bad_rows: pd.DataFrame) -> str:
    shown = bad_rows.head(_SHOWN)
    text = " | ".join(
        f"line {line}: {why}" for line, why in zip(shown["line"], shown["reason"], strict=True)
    )
    extra = len(bad_rows) - _SHOWN
    return text + (f" and {extra} more" if extra > 0 else "")


def _judge(bad_rows: pd.DataFrame, total: int, dataset: DatasetSettings) -> None:
    """Raise `Rejected` when the bad rows condemn the whole file."""
    bad = len(bad_rows)
    if not bad:
        return
    if dataset.bad_rows == "reject_file":
        raise Rejected(
            f"{bad} of {total} rows are bad (dataset.bad_rows is reject_file): "
            + _describe(bad_rows)
        )
    if bad == total:
        every = "the only row is bad" if total == 1 else f"all {total} rows are bad"
        raise Rejected(f"no usable rows: {every}: {_describe(bad_rows)}")
    limit = dataset.max_bad_row_fraction
    if bad / total > limit:
        raise Rejected(
            f"{bad} of {total} rows are bad ({_percent(bad / total)} > "
            f"dataset.max_bad_row_fraction {_percent(limit)}): {_describe(bad_rows)}"
        )


def validate_csv(path: Path, dataset: DatasetSettings) -> Validated:
    """Check every row of `path` (.csv or .csv.gz); raise `Rejected` if the file is unusable."""
    cells = read_cells(path, list(dataset.columns), dataset.max_file_bytes)
    tokens = {token.strip().lower() for token in dataset.na_values}
    label_columns = set(dataset.label.source_columns())
    values: dict[str, pd.Series] = {}
    problems: list[pd.Series] = []
    for name, spec in dataset.columns.items():
        values[name], found = _check(
            name, spec, cells.frame[name], tokens, label=name in label_columns
        )
        problems.extend(found)
    reasons = _reasons(problems)
    bad_rows = _bad_rows(cells, reasons)
    total = len(cells.frame)
    _judge(bad_rows, total, dataset)
    good = np.ones(total, dtype=bool)
    good[reasons.index.to_numpy(dtype=np.int64)] = False
    frame = pd.DataFrame(
        {
            name: _typed(column[good], dataset.columns[name]).reset_index(drop=True)
            for name, column in values.items()
        }
    )
    return Validated(frame, bad_rows, total)


def check_features(cells: pd.DataFrame, dataset: DatasetSettings) -> tuple[pd.DataFrame, pd.Series]:
    """Rows to predict (string cells, every feature column present), by the training rules.

    Returns the feature columns typed as training types them, and one reason per bad row
    (indexed by row position; empty when every row is good).
    """
    tokens = {token.strip().lower() for token in dataset.na_values}
    typed: dict[str, pd.Series] = {}
    problems: list[pd.Series] = []
    for name in dataset.features.all:
        spec = dataset.columns[name]
        typed[name], found = _check(name, spec, cells[name], tokens, label=False)
        problems.extend(found)
    reasons = _reasons(problems)
    frame = pd.DataFrame(
        {
            name: _typed(column, dataset.columns[name]) if reasons.empty else column
            for name, column in typed.items()
        }
    )
    return frame, reasons
