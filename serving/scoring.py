"""MLflow's scoring protocol, read and answered: request bodies in, predictions out. Pure pandas.

A request is JSON (`dataframe_split` or `dataframe_records`, as MLflow clients send) or CSV
with a header. Every cell is checked as a training file's would be (`consumer.validate`):
the declared feature columns must be there, with values of the declared type, range and
categories. Other columns (the label, an id) are ignored, so a training file can be scored
as it is. A bad request gets one message naming the rows and columns, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np
import pandas as pd

from consumer.validate import check_features
from shared.settings import DatasetSettings

JSON_FORMATS = ("dataframe_split", "dataframe_records")
_SHOWN_ROWS = 3  # how many bad rows a message quotes


class BadRequest(ValueError):
    """The request cannot be scored; the message says why, for the person who sent it."""

    status = 400


class TooLarge(BadRequest):
    """More rows than `serve.max_rows` in one request."""

    status = 413


def _cell(value: Any) -> str:
    """A JSON value as the text a CSV cell would hold (null: empty, which is missing)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)  # `True`: a category can be spelled so; never 1
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 3.0 is a whole number, as "3" in a CSV is
    return str(value)


def _frame_of_records(records: Any) -> pd.DataFrame:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadRequest("dataframe_records must be a list of objects, one per row")
    columns = list(dict.fromkeys(key for record in records for key in record))
    rows = [[_cell(record.get(column)) for column in columns] for record in records]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def _frame_of_split(split: Any) -> pd.DataFrame:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        raise BadRequest('dataframe_split must be an object with "columns" and "data"')
    columns = [str(column) for column in split["columns"]]
    data = split.get("data")
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise BadRequest('dataframe_split "data" must be a list of rows (lists)')
    for number, row in enumerate(data, start=1):
        if len(row) != len(columns):
            raise BadRequest(
                f"dataframe_split row {number} has {len(row)} values for {len(columns)} columns"
            )
    rows = [[_cell(value) for value in row] for row in data]
    return pd.DataFrame(rows, columns=columns, dtype=object)


def parse_json(body: bytes) -> pd.DataFrame:
    """A `dataframe_split` or `dataframe_records` body as string cells."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise BadRequest(f"expected a JSON object with one of: {', '.join(JSON_FORMATS)}")
    given = [key for key in JSON_FORMATS if key in document]
    if len(given) != 1:
        other = ", ".join(sorted(document)) or "nothing"
        raise BadRequest(
            f"expected exactly one of {', '.join(JSON_FORMATS)} in the JSON body (got {other})"
        )
    if given[0] == "dataframe_split":
        return _frame_of_split(document["dataframe_split"])
    return _frame_of_records(document["dataframe_records"])


def parse_csv(body: bytes) -> pd.DataFrame:
    """A CSV body (header first) as string cells."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the CSV body is not UTF-8: {error}") from None
    records = [record for record in csv.reader(io.StringIO(text)) if record]
    if not records:
        raise BadRequest("the CSV body is empty: expected a header row, then rows")
    header, rows = [name.strip() for name in records[0]], records[1:]
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise BadRequest(f"CSV line {line} has {len(row)} cells for {len(header)} columns")
    return pd.DataFrame(rows, columns=header, dtype=object)


def parse_body(body: bytes, content_type: str) -> pd.DataFrame:
    """The request's rows as string cells, by its content type (JSON unless it says CSV)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return _unique_columns(parse_csv(body))
    if kind in ("application/json", ""):
        return _unique_columns(parse_json(body))
    raise BadRequest(
        f"content type {kind!r} is not supported: send application/json "
        "(dataframe_split or dataframe_records) or text/csv"
    )


def _unique_columns(cells: pd.DataFrame) -> pd.DataFrame:
    twice = sorted({name for name in cells.columns if list(cells.columns).count(name) > 1})
    if twice:
        raise BadRequest(f"columns named more than once: {', '.join(map(str, twice))}")
    return cells


def features_of(cells: pd.DataFrame, dataset: DatasetSettings, max_rows: int) -> pd.DataFrame:
    """The rows' declared features, typed as training types them; BadRequest when any is bad."""
    if len(cells) > max_rows:
        raise TooLarge(f"{len(cells)} rows in one request; serve.max_rows is {max_rows}")
    if cells.empty:
        raise BadRequest("no rows to score")
    features = dataset.features.all
    missing = [name for name in features if name not in cells.columns]
    if missing:
        raise BadRequest(
            f"missing feature columns: {', '.join(missing)} (expected: {', '.join(features)})"
        )
    typed, reasons = check_features(cells.reset_index(drop=True), dataset)
    if not reasons.empty:
        shown = " | ".join(
            f"row {position + 1}: {reason}"
            for position, reason in reasons.head(_SHOWN_ROWS).items()
        )
        extra = len(reasons) - _SHOWN_ROWS
        raise BadRequest(
            f"{len(reasons)} of {len(cells)} rows are bad: {shown}"
            + (f" and {extra} more" if extra > 0 else "")
        )
    return typed


def predictions_json(predictions: np.ndarray) -> list[Any]:
    """Predictions as JSON values (numpy scalars are not JSON)."""
    return np.asarray(predictions).tolist()


def error_body(message: str, status: int) -> dict[str, str]:
    """MLflow's error shape, so its clients show the message."""
    code = "BAD_REQUEST" if status < 500 else "SERVICE_UNAVAILABLE"
    return {"error_code": code, "message": message}
