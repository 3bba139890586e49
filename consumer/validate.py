"""Validation of an arriving CSV against the columns params.yaml declares. Pure pandas.

`validate_csv` returns a typed frame or raises `Rejected` with a sentence a person can act on.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

import pandas as pd

from shared.settings import ColumnSpec, DatasetSettings

_SHOWN = 3  # how many offending values a reason quotes


class Rejected(ValueError):
    """The file cannot be used; `str(error)` is the reason shown to people."""


def _examples(values: pd.Series) -> str:
    shown = ", ".join(repr(v) for v in values.head(_SHOWN).tolist())
    extra = len(values) - _SHOWN
    return shown + (f" and {extra} more" if extra > 0 else "")


def _rows(index: pd.Index) -> str:
    # +2: the header is line 1 and the index starts at 0, so people find the line in an editor.
    lines = [str(i + 2) for i in index[:_SHOWN]]
    return ", ".join(lines) + (" …" if len(index) > _SHOWN else "")


def _read_text(path: Path, max_bytes: int) -> str:
    size = path.stat().st_size
    if size > max_bytes:
        raise Rejected(
            f"file is {size:,} bytes, over the {max_bytes:,}-byte limit "
            "(dataset.max_file_bytes): split it into smaller files"
        )
    if size == 0:
        raise Rejected("file is empty: expected a header row and at least one data row")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Rejected(
            f"file is not UTF-8 text (bad byte at offset {error.start}): "
            "save it as UTF-8 CSV and drop it again"
        ) from None


def _parse(text: str, expected: list[str]) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # A row with more fields than the header would lose data silently: refuse it.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.StringIO(text), dtype=str, keep_default_na=False, index_col=False
            )
    except pd.errors.ParserWarning:
        raise Rejected(
            "some rows have more fields than the header (a trailing comma, or a decimal "
            "comma such as 12,50?): remove the extra commas or quote those values"
        ) from None
    except pd.errors.EmptyDataError:
        raise Rejected("file has no header row: expected columns " + ", ".join(expected)) from None
    except (pd.errors.ParserError, csv.Error) as error:
        detail = str(error).strip().splitlines()[0]
        raise Rejected(f"file is not well-formed CSV ({detail}): check quoting") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        header = ",".join(frame.columns)
        for delimiter, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
            if len(frame.columns) == 1 and delimiter in header:
                raise Rejected(
                    f"file uses {label} between columns, expected commas "
                    f"(header was {header[:80]!r})"
                )
        raise Rejected(
            f"missing column(s) {', '.join(missing)}; found {', '.join(frame.columns) or 'none'}"
        )
    if frame.empty:
        raise Rejected("file has a header but no data rows")
    return frame[expected]


def _coerce(name: str, spec: ColumnSpec, values: pd.Series) -> pd.Series:
    stripped = values.str.strip()
    blank = stripped == ""
    if blank.any():
        raise Rejected(
            f"column {name}: {int(blank.sum())} empty value(s) on line(s) "
            f"{_rows(stripped.index[blank])}"
        )
    if spec.type in ("float", "int"):
        numbers = pd.to_numeric(stripped, errors="coerce")
        bad = numbers.isna() | numbers.isin([float("inf"), float("-inf")])
        if bad.any():
            raise Rejected(
                f"column {name}: {int(bad.sum())} value(s) are not numbers "
                f"({_examples(stripped[bad])} on line(s) {_rows(stripped.index[bad])})"
            )
        if spec.type == "int":
            fractional = numbers != numbers.round()
            if fractional.any():
                raise Rejected(
                    f"column {name}: expected whole numbers, got "
                    f"{_examples(stripped[fractional])} on line(s) "
                    f"{_rows(stripped.index[fractional])}"
                )
            numbers = numbers.astype("int64")
        else:
            numbers = numbers.astype("float64")
        for bound, limit, outside in (
            ("min", spec.min, numbers < spec.min if spec.min is not None else None),
            ("max", spec.max, numbers > spec.max if spec.max is not None else None),
        ):
            if outside is not None and outside.any():
                raise Rejected(
                    f"column {name}: {int(outside.sum())} value(s) outside {bound}={limit} "
                    f"({_examples(stripped[outside])} on line(s) {_rows(stripped.index[outside])})"
                )
        return numbers
    if spec.type == "category" and spec.values is not None:
        unknown = ~stripped.isin(spec.values)
        if unknown.any():
            raise Rejected(
                f"column {name}: unknown value(s) {_examples(stripped[unknown].drop_duplicates())}"
                f" on line(s) {_rows(stripped.index[unknown])}; allowed: {', '.join(spec.values)}"
            )
    return stripped.astype(object)


def validate_csv(path: Path, dataset: DatasetSettings) -> pd.DataFrame:
    """Read `path` and return the declared columns, typed; raise `Rejected` with the reason."""
    expected = list(dataset.columns)
    frame = _parse(_read_text(path, dataset.max_file_bytes), expected)
    return pd.DataFrame(
        {name: _coerce(name, spec, frame[name]) for name, spec in dataset.columns.items()}
    )
