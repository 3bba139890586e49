"""validate_csv: good files pass in any column order, bad files are rejected with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from consumer.validate import Rejected, validate_csv
from shared.settings import Settings

HEADER = "total_bill,tip,sex,smoker,day,time,size"
ROWS = [
    "16.99,1.01,Female,No,Sun,Dinner,2",
    "10.34,1.66,Male,No,Sun,Dinner,3",
    "21.01,3.50,Male,Yes,Sat,Dinner,3",
    "8.77,2.00,Female,No,Thur,Lunch,2",
]


def _csv(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def _with(row: int, column: str, value: str) -> bytes:
    """The good rows with one cell changed (row is 0-based among data rows)."""
    index = HEADER.split(",").index(column)
    rows = [r.split(",") for r in ROWS]
    rows[row][index] = value
    return _csv(*(",".join(r) for r in rows))


def _write(tmp_path: Path, data: bytes, name: str = "drop.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_source_file_passes(settings: Settings) -> None:
    frame = validate_csv(settings.dataset.source, settings.dataset)
    source = pd.read_csv(settings.dataset.source)
    assert list(frame.columns) == list(settings.dataset.columns)
    assert len(frame) == len(source)
    assert frame["total_bill"].dtype == np.float64
    assert frame["size"].dtype == np.int64
    assert frame["total_bill"].tolist() == source["total_bill"].tolist()
    assert frame["day"].tolist() == source["day"].tolist()


def test_any_column_order_and_extra_columns(settings: Settings, tmp_path: Path) -> None:
    source = pd.read_csv(settings.dataset.source)
    columns = list(source.columns)
    shuffled = [columns[i] for i in np.random.default_rng(3).permutation(len(columns))]
    assert shuffled != columns
    messy = source[shuffled].assign(note="free text, quoted", waiter=7)
    messy = messy[["note", *shuffled[:3], "waiter", *shuffled[3:]]]
    path = _write(tmp_path, messy.to_csv(index=False).encode())
    frame = validate_csv(path, settings.dataset)
    assert list(frame.columns) == list(settings.dataset.columns)
    pd.testing.assert_frame_equal(
        frame, validate_csv(settings.dataset.source, settings.dataset), check_dtype=True
    )


def test_bom_and_surrounding_spaces_are_tolerated(settings: Settings, tmp_path: Path) -> None:
    text = _csv(
        " 16.99 , 1.01 ,Female, No ,Sun,Dinner, 2 ",
        header=" total_bill ,tip,sex,smoker,day,time,size",
    )
    frame = validate_csv(_write(tmp_path, b"\xef\xbb\xbf" + text), settings.dataset)
    assert frame.iloc[0].tolist() == [16.99, 1.01, "Female", "No", "Sun", "Dinner", 2]


def test_whole_numbers_written_as_floats_are_ints(settings: Settings, tmp_path: Path) -> None:
    frame = validate_csv(_write(tmp_path, _with(0, "size", "2.0")), settings.dataset)
    assert frame["size"].tolist()[0] == 2
    assert frame["size"].dtype == np.int64


MALFORMED = [
    pytest.param(b"", ["empty"], id="empty-file"),
    pytest.param(b"\n\n\n", ["no header"], id="only-newlines"),
    pytest.param(_csv(), ["header", "no data rows"], id="header-only"),
    pytest.param(
        _csv(
            *(",".join(r.split(",")[:3] + r.split(",")[4:]) for r in ROWS),
            header="total_bill,tip,sex,day,time,size",
        ),
        ["missing column", "smoker"],
        id="missing-column",
    ),
    pytest.param(
        _csv(*(r.replace(",", ";") for r in ROWS), header=HEADER.replace(",", ";")),
        ["semicolons", "commas"],
        id="semicolon-delimiter",
    ),
    pytest.param(
        _csv(*(r.replace(",", "\t") for r in ROWS), header=HEADER.replace(",", "\t")),
        ["tabs"],
        id="tab-delimiter",
    ),
    pytest.param(
        _with(1, "total_bill", "abc"),
        ["total_bill", "not numbers", "'abc'", "3"],
        id="not-a-number",
    ),
    pytest.param(_with(2, "day", "Mon"), ["day", "'Mon'", "Thur"], id="unknown-category"),
    pytest.param(_with(0, "sex", "female"), ["sex", "'female'", "Female"], id="category-case"),
    pytest.param(_with(1, "tip", "-1.00"), ["tip", "min", "-1.00"], id="negative-tip"),
    pytest.param(_with(0, "size", "0"), ["size", "min"], id="size-below-min"),
    pytest.param(_with(3, "size", "2.5"), ["size", "whole numbers", "2.5"], id="non-integer"),
    pytest.param(_with(0, "size", "two"), ["size", "not numbers"], id="int-not-a-number"),
    pytest.param(
        _with(0, "sex", "Femal\xe9").replace(b"\xc3\xa9", b"\xe9"),
        ["UTF-8"],
        id="latin-1-bytes",
    ),
    pytest.param(
        _csv('16.99,"1.01,Female,No,Sun,Dinner,2', *ROWS[1:]),
        ["well-formed", "quot"],
        id="unclosed-quote",
    ),
    pytest.param(_with(1, "tip", ""), ["tip", "empty", "3"], id="blank-value"),
    pytest.param(_with(2, "time", "   "), ["time", "empty"], id="whitespace-value"),
    pytest.param(_csv(ROWS[0], "16.99,1.01,Female,No,Sun,Dinner"), ["size"], id="short-row"),
    pytest.param(_csv(ROWS[0], ROWS[1] + ",extra,fields"), ["well-formed"], id="long-row"),
]


@pytest.mark.parametrize(("data", "mentions"), MALFORMED)
def test_malformed_files_are_rejected_with_a_reason(
    settings: Settings, tmp_path: Path, data: bytes, mentions: list[str]
) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(Rejected) as info:
        validate_csv(path, settings.dataset)
    reason = str(info.value)
    for part in mentions:
        assert part in reason, f"{part!r} not in {reason!r}"
    assert "\n" not in reason


def test_latin_1_fixture_really_is_not_utf8() -> None:
    data = _with(0, "sex", "Femal\xe9").replace(b"\xc3\xa9", b"\xe9")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")


def test_many_bad_values_are_summarised(settings: Settings, tmp_path: Path) -> None:
    rows = [f"{i}.5,1.0,Male,No,Sun,Dinner,x{i}" for i in range(10)]
    with pytest.raises(Rejected) as info:
        validate_csv(_write(tmp_path, _csv(*rows)), settings.dataset)
    reason = str(info.value)
    assert "10 value(s)" in reason
    assert "more" in reason
    assert "'x9'" not in reason, "only the first few offending values are quoted"


def test_oversized_file_is_rejected_before_reading(settings: Settings, tmp_path: Path) -> None:
    data = _csv(*ROWS)
    small = settings.dataset.model_copy(update={"max_file_bytes": len(data) - 1})
    with pytest.raises(Rejected) as info:
        validate_csv(_write(tmp_path, data), small)
    assert "max_file_bytes" in str(info.value)
    exact = settings.dataset.model_copy(update={"max_file_bytes": len(data)})
    assert len(validate_csv(_write(tmp_path, data), exact)) == len(ROWS)


@pytest.mark.parametrize(
    ("column", "value"),
    [("total_bill", "inf"), ("tip", "Infinity"), ("total_bill", "1e999"), ("size", "inf")],
)
def test_non_finite_numbers_are_rejected(
    settings: Settings, tmp_path: Path, column: str, value: str
) -> None:
    """An infinite value is no measurement; accepted, it would break every later retrain."""
    with pytest.raises(Rejected) as info:
        validate_csv(_write(tmp_path, _with(0, column, value)), settings.dataset)
    assert column in str(info.value)


def test_an_extra_field_on_the_first_row_is_rejected_not_a_crash(
    settings: Settings, tmp_path: Path
) -> None:
    """`12,50` (a decimal comma, unquoted) makes the first data row one field longer."""
    path = _write(tmp_path, _with(0, "total_bill", "12,50"))
    with pytest.raises(Rejected):
        validate_csv(path, settings.dataset)


def test_trailing_commas_are_read_correctly_or_rejected(settings: Settings, tmp_path: Path) -> None:
    """Spreadsheet exports often end every row with a comma; never misread or crash on it."""
    path = _write(tmp_path, _csv(*(row + "," for row in ROWS)))
    try:
        frame = validate_csv(path, settings.dataset)
    except Rejected:
        return
    expected = validate_csv(_write(tmp_path, _csv(*ROWS), "clean.csv"), settings.dataset)
    pd.testing.assert_frame_equal(frame, expected)
