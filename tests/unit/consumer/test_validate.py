"""validate_csv: good files pass in any column order, unusable files are rejected with a reason.

Row-level problems (a bad value among good rows) are in test_validate_rows.py.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from consumer import csvfile
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
    validated = validate_csv(settings.dataset.source, settings.dataset)
    frame = validated.frame
    source = pd.read_csv(settings.dataset.source)
    assert list(frame.columns) == list(settings.dataset.columns)
    assert len(frame) == len(source)
    assert frame["total_bill"].dtype == np.float64
    assert frame["size"].dtype == np.int64
    assert frame["total_bill"].tolist() == source["total_bill"].tolist()
    assert frame["day"].tolist() == source["day"].tolist()
    assert validated.dropped == 0 and validated.bad_rows.empty
    assert validated.total_rows == len(source)


def test_any_column_order_and_extra_columns(settings: Settings, tmp_path: Path) -> None:
    source = pd.read_csv(settings.dataset.source)
    columns = list(source.columns)
    shuffled = [columns[i] for i in np.random.default_rng(3).permutation(len(columns))]
    assert shuffled != columns
    messy = source[shuffled].assign(note="free text, quoted", waiter=7)
    messy = messy[["note", *shuffled[:3], "waiter", *shuffled[3:]]]
    path = _write(tmp_path, messy.to_csv(index=False).encode())
    frame = validate_csv(path, settings.dataset).frame
    assert list(frame.columns) == list(settings.dataset.columns)
    pd.testing.assert_frame_equal(
        frame, validate_csv(settings.dataset.source, settings.dataset).frame, check_dtype=True
    )


def test_bom_and_surrounding_spaces_are_tolerated(settings: Settings, tmp_path: Path) -> None:
    text = _csv(
        " 16.99 , 1.01 ,Female, No ,Sun,Dinner, 2 ",
        header=" total_bill ,tip,sex,smoker,day,time,size",
    )
    frame = validate_csv(_write(tmp_path, b"\xef\xbb\xbf" + text), settings.dataset).frame
    assert frame.iloc[0].tolist() == [16.99, 1.01, "Female", "No", "Sun", "Dinner", 2]


def test_whole_numbers_written_as_floats_are_ints(settings: Settings, tmp_path: Path) -> None:
    frame = validate_csv(_write(tmp_path, _with(0, "size", "2.0")), settings.dataset).frame
    assert frame["size"].tolist()[0] == 2
    assert frame["size"].dtype == np.int64


MALFORMED = [
    pytest.param(b"", ["empty"], id="empty-file"),
    pytest.param(b"\n\n\n", ["no header"], id="only-newlines"),
    pytest.param(_csv(), ["header", "no data rows"], id="header-only"),
    pytest.param(_csv(",,,,,,", "  "), ["header", "no data rows"], id="only-blank-rows"),
    pytest.param(
        _csv(
            *(",".join(r.split(",")[:3] + r.split(",")[4:]) for r in ROWS),
            header="total_bill,tip,sex,day,time,size",
        ),
        ["missing column", "smoker"],
        id="missing-column",
    ),
    pytest.param(
        _csv(*(r + ",No" for r in ROWS), header=HEADER + ",smoker"),
        ["smoker", "more than once"],
        id="duplicate-column",
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
        _with(0, "sex", "Femal\xe9").replace(b"\xc3\xa9", b"\xe9"),
        ["UTF-8"],
        id="latin-1-bytes",
    ),
    pytest.param(
        _csv('16.99,"1.01,Female,No,Sun,Dinner,2', *ROWS[1:]),
        ["well-formed", "quot"],
        id="unclosed-quote",
    ),
    pytest.param(
        _csv('16.99,"1.01"x,Female,No,Sun,Dinner,2', *ROWS[1:]),
        ["well-formed", "line 2", "quot"],
        id="text-after-closing-quote",
    ),
    pytest.param(
        _csv(ROWS[0], "16.99,1.01,Female,No,Sun,Dinner"),
        ["line 3", "6 field(s)", "header has 7"],
        id="short-row",
    ),
    pytest.param(
        _csv(ROWS[0], ROWS[1] + ",extra,fields"),
        ["line 3", "9 fields", "header has 7", "extra commas"],
        id="long-row",
    ),
    # One bad row in four is over the default dataset.max_bad_row_fraction (20%).
    pytest.param(
        _with(1, "total_bill", "abc"),
        ["1 of 4 rows are bad", "25% > dataset.max_bad_row_fraction 20%", "line 3", "'abc'"],
        id="bad-fraction",
    ),
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


def test_many_bad_rows_are_summarised(settings: Settings, tmp_path: Path) -> None:
    rows = [f"{i}.5,1.0,Male,No,Sun,Dinner,x{i}" for i in range(10)]
    with pytest.raises(Rejected) as info:
        validate_csv(_write(tmp_path, _csv(*rows)), settings.dataset)
    reason = str(info.value)
    assert reason.startswith("no usable rows: all 10 rows are bad: line 2: column size: 'x0'")
    assert reason.endswith("and 7 more")
    assert "'x2'" in reason and "'x3'" not in reason, "only the first few rows are quoted"


def test_oversized_file_is_rejected_before_reading(settings: Settings, tmp_path: Path) -> None:
    data = _csv(*ROWS)
    small = settings.dataset.model_copy(update={"max_file_bytes": len(data) - 1})
    with pytest.raises(Rejected) as info:
        validate_csv(_write(tmp_path, data), small)
    assert "max_file_bytes" in str(info.value)
    exact = settings.dataset.model_copy(update={"max_file_bytes": len(data)})
    assert len(validate_csv(_write(tmp_path, data), exact).frame) == len(ROWS)


def test_an_extra_field_on_the_first_row_is_rejected_not_a_crash(
    settings: Settings, tmp_path: Path
) -> None:
    """`12,50` (a decimal comma, unquoted) makes the first data row one field longer."""
    path = _write(tmp_path, _with(0, "total_bill", "12,50"))
    with pytest.raises(Rejected) as info:
        validate_csv(path, settings.dataset)
    assert "line 2 has 8 fields" in str(info.value)


def test_trailing_commas_are_read_correctly(settings: Settings, tmp_path: Path) -> None:
    """Spreadsheet exports often end every row (and the header) with a comma: the file is
    read, not rejected, and every row is kept exactly as the same file without the commas."""
    clean = validate_csv(_write(tmp_path, _csv(*ROWS), "clean.csv"), settings.dataset).frame
    assert len(clean) == len(ROWS)
    endings = [(HEADER, ","), (HEADER + ",", ","), (HEADER + ",", "")]  # header, row end
    for header, end in endings:
        path = _write(tmp_path, _csv(*(row + end for row in ROWS), header=header))
        validated = validate_csv(path, settings.dataset)  # raises Rejected if it is refused
        pd.testing.assert_frame_equal(validated.frame, clean)
        assert validated.dropped == 0 and validated.total_rows == len(ROWS)


# -- .csv.gz ------------------------------------------------------------------------------


def _gzip(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0))
    return path


def test_a_csv_gz_reads_like_the_csv(settings: Settings, tmp_path: Path) -> None:
    data = _with(2, "day", "Mon") + b"".join(f"{r}\n".encode() for r in ROWS * 3)
    expected = validate_csv(_write(tmp_path, data), settings.dataset)
    assert expected.dropped == 1
    for name in ("drop.csv.gz", "DROP.CSV.GZ", "drop.csv-1.gz"):  # the last: by its content
        validated = validate_csv(_gzip(tmp_path / name, data), settings.dataset)
        pd.testing.assert_frame_equal(validated.frame, expected.frame)
        pd.testing.assert_frame_equal(validated.bad_rows, expected.bad_rows)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(_csv(*ROWS), id="not-gzip-at-all"),
        pytest.param(gzip.compress(_csv(*ROWS) * 20)[:40], id="truncated"),
        pytest.param(gzip.compress(_csv(*ROWS) * 5)[:20] + b"\x00" * 30, id="corrupt-data"),
    ],
)
def test_a_corrupt_gzip_is_rejected(settings: Settings, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "drop.csv.gz"
    path.write_bytes(content)
    with pytest.raises(Rejected, match=r"^not a valid gzip file: "):
        validate_csv(path, settings.dataset)


def test_a_gzip_bomb_is_refused_reading_no_more_than_the_limit(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _csv(*ROWS)
    bomb = data + b"\n" * 1_000_000  # blank lines: a valid CSV, 1 MB once decompressed
    path = _gzip(tmp_path / "bomb.csv.gz", bomb)
    limit = 100_000
    assert path.stat().st_size < limit
    asked: list[int] = []
    real_open = gzip.open

    def spy(*args: Any, **kwargs: Any) -> Any:
        handle = real_open(*args, **kwargs)
        real_read = handle.read

        def read(size: int = -1) -> bytes:
            asked.append(size)
            return real_read(size)

        handle.read = read
        return handle

    monkeypatch.setattr(csvfile.gzip, "open", spy)
    small = settings.dataset.model_copy(update={"max_file_bytes": limit})
    with pytest.raises(Rejected) as info:
        validate_csv(path, small)
    assert str(info.value).startswith("file decompresses to more than 100,000 bytes")
    assert "dataset.max_file_bytes" in str(info.value)
    assert asked == [limit + 1]
    exact = settings.dataset.model_copy(update={"max_file_bytes": len(data)})
    assert len(validate_csv(_gzip(tmp_path / "exact.csv.gz", data), exact).frame) == len(ROWS)
