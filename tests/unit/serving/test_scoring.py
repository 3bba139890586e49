"""Requests in MLflow's scoring formats, read and checked as a training file would be."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from consumer.validate import validate_csv
from serving import scoring
from tests.support.data import SOURCE_CSV, TIPS
from tests.support.fake_serving import FEATURE_ROW as ROW

FEATURES = TIPS.features.all


def as_split(rows: list[dict]) -> bytes:
    columns = list(rows[0])
    data = [[row[c] for c in columns] for row in rows]
    return json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()


def as_records(rows: list[dict]) -> bytes:
    return json.dumps({"dataframe_records": rows}).encode()


def as_csv(rows: list[dict]) -> bytes:
    return pd.DataFrame(rows).to_csv(index=False).encode()


def test_the_three_formats_read_the_same_rows() -> None:
    rows = [ROW, {**ROW, "total_bill": 7.25, "size": 4, "day": "Sat"}]
    split = scoring.parse_body(as_split(rows), "application/json")
    records = scoring.parse_body(as_records(rows), "application/json; charset=utf-8")
    csv = scoring.parse_body(as_csv(rows), "text/csv")
    for frame in (split, records, csv):
        typed = scoring.features_of(frame, TIPS, max_rows=10)
        assert typed["total_bill"].tolist() == [16.99, 7.25]
        assert typed["size"].tolist() == [2, 4] and typed["size"].dtype == "int64"
        assert typed["day"].tolist() == ["Sun", "Sat"]


def test_rows_are_typed_exactly_as_training_types_them() -> None:
    """The served model sees what it was trained on: the source file, read both ways."""
    trained = validate_csv(SOURCE_CSV, TIPS).frame[FEATURES]
    cells = scoring.parse_body(SOURCE_CSV.read_bytes(), "text/csv")
    served = scoring.features_of(cells, TIPS, max_rows=10_000)
    pd.testing.assert_frame_equal(served, trained)


def test_json_numbers_read_as_a_csv_cell_would() -> None:
    cells = scoring.parse_body(as_records([{**ROW, "size": 3.0, "total_bill": 10}]), "")
    typed = scoring.features_of(cells, TIPS, max_rows=10)
    assert typed["size"].tolist() == [3] and typed["total_bill"].tolist() == [10.0]


def test_extra_columns_are_ignored_and_missing_ones_named() -> None:
    cells = scoring.parse_body(as_records([{**ROW, "tip": 3.5, "id": "a1"}]), "application/json")
    assert list(scoring.features_of(cells, TIPS, max_rows=10).columns) == FEATURES
    partial = {k: v for k, v in ROW.items() if k not in ("day", "size")}
    with pytest.raises(scoring.BadRequest, match=r"missing feature columns: size, day \(expected"):
        scoring.features_of(scoring.parse_body(as_records([partial]), ""), TIPS, max_rows=10)


def test_bad_rows_are_named_by_row_and_column_with_the_training_reason() -> None:
    rows = [ROW, {**ROW, "size": 0}, {**ROW, "day": "Mon"}, ROW, {**ROW, "total_bill": None}]
    cells = scoring.parse_body(as_records(rows), "application/json")
    with pytest.raises(scoring.BadRequest) as raised:
        scoring.features_of(cells, TIPS, max_rows=10)
    message = str(raised.value)
    assert message.startswith("3 of 5 rows are bad: row 2: column size: '0' is below min 1")
    assert "row 3: column day: unknown value 'Mon'; allowed: Thur, Fri, Sat, Sun" in message
    assert "row 5: column total_bill: empty, but the column is not nullable" in message
    assert raised.value.status == 400


def test_more_rows_than_max_rows_is_a_413() -> None:
    cells = scoring.parse_body(as_records([ROW] * 4), "application/json")
    with pytest.raises(scoring.TooLarge, match=r"4 rows in one request; serve\.max_rows is 3") as e:
        scoring.features_of(cells, TIPS, max_rows=3)
    assert e.value.status == 413
    assert len(scoring.features_of(cells, TIPS, max_rows=4)) == 4


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "expected a JSON object"),
        (b'{"instances": [[1]]}', "application/json", "exactly one of dataframe_split"),
        (
            b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}, "dataframe_records": []}',
            "application/json",
            "exactly one of",
        ),
        (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}', "", "row 1 has 1 values"),
        (b'{"dataframe_split": {"data": [[1]]}}', "", 'with "columns" and "data"'),
        (b'{"dataframe_records": [1, 2]}', "", "a list of objects"),
        (b"", "text/csv", "the CSV body is empty"),
        (b"a,b\n1\n", "text/csv", "CSV line 2 has 1 cells for 2 columns"),
        (b"a,a\n1,2\n", "text/csv", "columns named more than once: a"),
        (b"\xff\xfe", "text/csv", "not UTF-8"),
        (b"a=1", "application/x-www-form-urlencoded", "is not supported"),
    ],
)
def test_a_malformed_request_says_what_is_wrong(body: bytes, content_type: str, says: str) -> None:
    with pytest.raises(scoring.BadRequest, match=says):
        scoring.parse_body(body, content_type)


def test_no_rows_is_a_bad_request() -> None:
    cells = scoring.parse_body(b"total_bill,size,sex,smoker,day,time\n", "text/csv")
    with pytest.raises(scoring.BadRequest, match="no rows to score"):
        scoring.features_of(cells, TIPS, max_rows=10)
