"""Test data: the source tips CSV, a few tips rows, the tips dataset spelled out, and
builders for CSV files of tips rows with chosen cells changed."""

from __future__ import annotations

from pathlib import Path

from shared.settings import PROJECT_ROOT, ColumnSpec, DatasetSettings, Features, LabelRule

SOURCE_CSV = PROJECT_ROOT / "data" / "source" / "tips.csv"

# One-row CSV files, as bytes, for the sensor (two different contents).
ROWS = b"total_bill,tip,sex,smoker,day,time,size\n16.99,1.01,Female,No,Sun,Dinner,2\n"
OTHER_ROWS = b"total_bill,tip,sex,smoker,day,time,size\n10.34,1.66,Male,No,Sun,Dinner,3\n"

HEADER = "total_bill,tip,sex,smoker,day,time,size"
COLUMNS = HEADER.split(",")
# 20 valid rows: one bad row is 5 %, four are exactly the default 20 % limit.
GOOD = [
    f"{10 + i}.5,{1 + i % 4}.25,{('Female', 'Male')[i % 2]},{('No', 'Yes')[i % 3 == 0]},"
    f"{('Thur', 'Fri', 'Sat', 'Sun')[i % 4]},{('Lunch', 'Dinner')[i % 2]},{1 + i % 5}"
    for i in range(20)
]
BAD_AT = 5  # the data row changed by most tests: line 7 of the file (the header is line 1)
# The tips dataset, spelled out: these tests must not change when params.yaml does.
TIPS = DatasetSettings(
    name="tips",
    columns={
        "total_bill": ColumnSpec(type="float", min=0),
        "tip": ColumnSpec(type="float", min=0),
        "sex": ColumnSpec(type="category", values=["Female", "Male"]),
        "smoker": ColumnSpec(type="category", values=["No", "Yes"]),
        "day": ColumnSpec(type="category", values=["Thur", "Fri", "Sat", "Sun"]),
        "time": ColumnSpec(type="category", values=["Lunch", "Dinner"]),
        "size": ColumnSpec(type="int", min=1),
    },
    label=LabelRule(
        name="generous_tip",
        kind="ratio_above",
        numerator="tip",
        denominator="total_bill",
        threshold=0.16,
    ),
    features=Features(numeric=["total_bill", "size"], categorical=["sex", "smoker", "day", "time"]),
)


def rows_with(changes: dict[int, dict[str, str]]) -> list[str]:
    """The GOOD rows, with `changes[row][column] = cell` applied (rows 0-based)."""
    rows = [row.split(",") for row in GOOD]
    for row, cells in changes.items():
        for column, cell in cells.items():
            rows[row][COLUMNS.index(column)] = cell
    return [",".join(row) for row in rows]


def write_rows(folder: Path, rows: list[str], name: str = "drop.csv", header: str = HEADER) -> Path:
    """A CSV file `folder/name` of `header` and `rows`."""
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path
