"""Row-level validation: bad rows are dropped with a line and a reason, good rows are kept.

Also: missing values (nullable, na tokens, labels), case-insensitive categories, the bad-row
limits. What ingest makes of dropped rows: test_ingest_rows.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from consumer.validate import Rejected, Validated, validate_csv
from shared.settings import ColumnSpec, DatasetSettings, Settings, SettingsError, load_settings
from tests.support.data import BAD_AT, COLUMNS, GOOD, HEADER, TIPS, rows_with, write_rows


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shipped settings (home under tmp_path) with the tips dataset (tests.support.data)."""
    return settings.model_copy(update={"dataset": TIPS})


def _dataset(settings: Settings, **changes: Any) -> DatasetSettings:
    """The shipped dataset with `changes`; `columns` entries are merged into each spec."""
    columns = dict(settings.dataset.columns)
    for name, spec in changes.pop("columns", {}).items():
        columns[name] = ColumnSpec(**{**columns[name].model_dump(), **spec})
    return DatasetSettings(**{**settings.dataset.model_dump(), "columns": columns, **changes})


def _validate(tmp_path: Path, dataset: DatasetSettings, changes: dict) -> Validated:
    return validate_csv(write_rows(tmp_path, rows_with(changes)), dataset)


RULES = [
    pytest.param("total_bill", "abc", "column total_bill: 'abc' is not a number", id="not-number"),
    pytest.param("total_bill", "1e999", "column total_bill: '1e999' is not a number", id="inf"),
    pytest.param("size", "inf", "column size: 'inf' is not a number", id="int-inf"),
    pytest.param("size", "two", "column size: 'two' is not a number", id="int-not-number"),
    pytest.param("size", "2.5", "column size: '2.5' is not a whole number", id="not-whole"),
    pytest.param(
        "size", "1e30", "column size: '1e30' is too large for an int column", id="int-too-large"
    ),
    pytest.param("size", "0", "column size: '0' is below min 1", id="below-min"),
    pytest.param("total_bill", "-1.00", "column total_bill: '-1.00' is below min 0", id="neg"),
    pytest.param(
        "day",
        "Mon",
        "column day: unknown value 'Mon'; allowed: Thur, Fri, Sat, Sun",
        id="unknown-category",
    ),
    pytest.param(
        "sex", "female", "column sex: unknown value 'female'; allowed: Female, Male", id="case"
    ),
    pytest.param("sex", "", "column sex: empty, but the column is not nullable", id="empty"),
    pytest.param("time", "   ", "column time: empty, but the column is not nullable", id="blank"),
    pytest.param(
        "smoker",
        "NA",
        "column smoker: 'NA' means missing, but the column is not nullable",
        id="na-token",
    ),
    pytest.param("size", "null", "column size: 'null' means missing, but", id="int-missing"),
    pytest.param("tip", "", "missing label: column tip is empty", id="missing-label"),
    pytest.param(
        "total_bill", " n/a ", "missing label: column total_bill is 'n/a'", id="missing-label-2"
    ),
]


@pytest.mark.parametrize(("column", "cell", "reason"), RULES)
def test_each_rule_drops_the_row_with_its_line_and_reason(
    settings: Settings, tmp_path: Path, column: str, cell: str, reason: str
) -> None:
    validated = _validate(tmp_path, settings.dataset, {BAD_AT: {column: cell}})
    assert validated.total_rows == 20
    assert validated.dropped == 1
    bad = validated.bad_rows.iloc[0]
    assert bad["line"] == BAD_AT + 2
    assert bad["reason"].startswith(reason), bad["reason"]
    assert bad[column] == cell, "the cell as it was in the file, spaces and all"
    assert list(validated.bad_rows.columns) == ["line", "reason", *COLUMNS]
    expected = validate_csv(write_rows(tmp_path, GOOD, "clean.csv"), settings.dataset).frame
    pd.testing.assert_frame_equal(
        validated.frame, expected.drop(index=BAD_AT).reset_index(drop=True)
    )


def test_a_max_bound_is_checked(settings: Settings, tmp_path: Path) -> None:
    dataset = _dataset(settings, columns={"size": {"max": 6}})
    validated = _validate(tmp_path, dataset, {2: {"size": "7"}, 3: {"size": "6"}})
    assert validated.bad_rows[["line", "reason"]].values.tolist() == [
        [4, "column size: '7' is above max 6"]
    ]
    assert validated.frame["size"].tolist()[2] == 6


def test_all_reasons_of_a_row_are_joined_in_column_order(
    settings: Settings, tmp_path: Path
) -> None:
    validated = _validate(
        tmp_path, settings.dataset, {0: {"size": "x", "day": "Mon", "tip": "NA", "sex": ""}}
    )
    assert validated.bad_rows["reason"].tolist() == [
        "missing label: column tip is 'NA'; "
        "column sex: empty, but the column is not nullable; "
        "column day: unknown value 'Mon'; allowed: Thur, Fri, Sat, Sun; "
        "column size: 'x' is not a number"
    ]


def test_nullable_columns_keep_the_row_with_nan(settings: Settings, tmp_path: Path) -> None:
    dataset = _dataset(settings, columns={"sex": {"nullable": True}, "size": {"nullable": True}})
    validated = _validate(
        tmp_path, dataset, {1: {"sex": ""}, 2: {"sex": " NULL "}, 3: {"size": "nan"}}
    )
    assert validated.dropped == 0
    frame = validated.frame
    assert frame["sex"].isna().tolist()[:4] == [False, True, True, False]
    assert frame["size"].isna().tolist()[:5] == [False, False, False, True, False]
    # NaN cannot live in int64: a nullable int column is float64 in every file, even clean.
    assert frame["size"].dtype == np.float64
    assert (
        validate_csv(write_rows(tmp_path, GOOD, "c.csv"), dataset).frame["size"].dtype == np.float64
    )
    assert frame["sex"].dtype == object
    # Not nullable: the same cells make bad rows.
    strict = _validate(tmp_path, settings.dataset, {1: {"sex": ""}, 2: {"sex": " NULL "}})
    assert strict.bad_rows["line"].tolist() == [3, 4]


def test_a_missing_label_is_bad_even_in_a_nullable_column(
    settings: Settings, tmp_path: Path
) -> None:
    dataset = _dataset(settings, columns={"tip": {"nullable": True}})
    validated = _validate(tmp_path, dataset, {4: {"tip": "NaN"}})
    assert validated.bad_rows["reason"].tolist() == ["missing label: column tip is 'NaN'"]
    assert len(validated.frame) == 19


def test_a_missing_label_column_of_kind_column(settings: Settings, tmp_path: Path) -> None:
    label = settings.dataset.label.model_copy(
        update={"kind": "column", "column": "day", "numerator": None, "denominator": None}
    )
    features = settings.dataset.features.model_copy(update={"categorical": ["sex", "time"]})
    dataset = _dataset(
        settings, label=label, features=features, columns={"day": {"nullable": True}}
    )
    validated = _validate(tmp_path, dataset, {6: {"day": "None"}})
    assert validated.bad_rows["reason"].tolist() == ["missing label: column day is 'None'"]


@pytest.mark.parametrize("token", ["NA", "na", "N/A", "null", "NULL", "NaN", "nan", "None", ""])
def test_default_na_tokens_ignore_case_and_spaces(
    settings: Settings, tmp_path: Path, token: str
) -> None:
    dataset = _dataset(settings, columns={"size": {"nullable": True}})
    validated = _validate(tmp_path, dataset, {BAD_AT: {"size": f"  {token} "}})
    assert validated.dropped == 0
    assert np.isnan(validated.frame["size"].iloc[BAD_AT])


def test_custom_na_tokens_replace_the_defaults(settings: Settings, tmp_path: Path) -> None:
    dataset = _dataset(
        settings,
        na_values=["?", "-999"],
        columns={"size": {"nullable": True}, "sex": {"nullable": True}},
    )
    validated = _validate(
        tmp_path,
        dataset,
        {1: {"size": "?"}, 2: {"size": "-999"}, 3: {"size": "NA"}, 4: {"sex": ""}},
    )
    assert np.isnan(validated.frame["size"].iloc[1])
    assert np.isnan(validated.frame["size"].iloc[2]), "-999 is a token, never a number"
    assert validated.bad_rows[["line", "reason"]].values.tolist() == [
        [5, "column size: 'NA' is not a number"],
        [6, "column sex: unknown value ''; allowed: Female, Male"],
    ]


def test_a_declared_category_value_is_never_a_missing_value(
    settings: Settings, tmp_path: Path
) -> None:
    dataset = _dataset(settings, columns={"smoker": {"values": ["No", "Yes", "None"]}})
    validated = _validate(tmp_path, dataset, {2: {"smoker": "None"}, 3: {"smoker": "NA"}})
    assert validated.frame["smoker"].iloc[2] == "None"
    assert validated.bad_rows["line"].tolist() == [5]


def test_case_insensitive_categories_read_the_declared_spelling(
    settings: Settings, tmp_path: Path
) -> None:
    dataset = _dataset(settings, columns={"smoker": {"case_insensitive": True}})
    validated = _validate(
        tmp_path,
        dataset,
        {0: {"smoker": "yes"}, 1: {"smoker": " NO "}, 2: {"smoker": "yES"}, 3: {"smoker": "maybe"}},
    )
    assert validated.frame["smoker"].tolist()[:3] == ["Yes", "No", "Yes"]
    assert set(validated.frame["smoker"]) == {"Yes", "No"}
    assert validated.bad_rows["reason"].tolist() == [
        "column smoker: unknown value 'maybe'; allowed: No, Yes"
    ]


@pytest.mark.parametrize(
    ("spec", "mentions"),
    [
        pytest.param(
            {"type": "float", "case_insensitive": True}, ["case_insensitive"], id="not-category"
        ),
        pytest.param(
            {"type": "category", "case_insensitive": True}, ["case_insensitive"], id="no-values"
        ),
        pytest.param(
            {"type": "category", "values": ["Yes", "yes", "No"], "case_insensitive": True},
            ["case_insensitive", "Yes, yes"],
            id="values-differ-in-case",
        ),
    ],
)
def test_case_insensitive_is_refused_where_it_cannot_work(
    write_config, spec: dict, mentions: list[str]
) -> None:
    def change(params: dict) -> None:
        params["dataset"]["columns"]["smoker"] = spec

    with pytest.raises(SettingsError) as refused:
        load_settings(write_config(change))
    message = str(refused.value)
    assert "dataset.columns.smoker" in message
    for part in mentions:
        assert part in message, message


def test_new_dataset_keys_have_their_defaults_and_bounds(write_config) -> None:
    dataset = load_settings(write_config()).dataset
    assert dataset.na_values == ["", "NA", "N/A", "null", "NaN", "None"]
    assert (dataset.bad_rows, dataset.max_bad_row_fraction) == ("drop", 0.2)
    assert not dataset.columns["sex"].nullable and not dataset.columns["sex"].case_insensitive

    def bad(params: dict) -> None:
        params["dataset"]["max_bad_row_fraction"] = 1.5

    with pytest.raises(SettingsError, match=r"dataset\.max_bad_row_fraction"):
        load_settings(write_config(bad))


def _bad(n: int) -> dict[int, dict[str, str]]:
    return {i: {"day": "Mon"} for i in range(n)}


def test_the_bad_row_fraction_limit(settings: Settings, tmp_path: Path) -> None:
    at_limit = _validate(tmp_path, settings.dataset, _bad(4))  # 4 of 20 = 20 %: not over it
    assert (at_limit.dropped, len(at_limit.frame)) == (4, 16)
    with pytest.raises(Rejected) as info:
        _validate(tmp_path, settings.dataset, _bad(5))
    reason = str(info.value)
    assert reason.startswith(
        "5 of 20 rows are bad (25% > dataset.max_bad_row_fraction 20%): "
        "line 2: column day: unknown value 'Mon'; allowed: Thur, Fri, Sat, Sun | line 3: "
    )
    assert reason.endswith(" and 2 more")
    strict = _dataset(settings, max_bad_row_fraction=0.0)
    with pytest.raises(Rejected, match="1 of 20 rows are bad"):
        _validate(tmp_path, strict, _bad(1))
    lenient = _dataset(settings, max_bad_row_fraction=1.0)
    assert len(_validate(tmp_path, lenient, _bad(19)).frame) == 1
    with pytest.raises(Rejected, match=r"^no usable rows: all 20 rows are bad: line 2: "):
        _validate(tmp_path, lenient, _bad(20))


def test_reject_file_mode_rejects_for_one_bad_row(settings: Settings, tmp_path: Path) -> None:
    dataset = _dataset(settings, bad_rows="reject_file")
    with pytest.raises(Rejected) as info:
        _validate(tmp_path, dataset, {BAD_AT: {"size": "2.5"}, 9: {"sex": "X"}})
    assert str(info.value) == (
        "2 of 20 rows are bad (dataset.bad_rows is reject_file): "
        "line 7: column size: '2.5' is not a whole number | "
        "line 11: column sex: unknown value 'X'; allowed: Female, Male"
    )
    assert len(validate_csv(write_rows(tmp_path, GOOD, "clean.csv"), dataset).frame) == 20


def test_line_numbers_are_the_lines_an_editor_shows(settings: Settings, tmp_path: Path) -> None:
    """Blank lines, a quoted field spanning lines and CRLF endings do not shift them."""
    rows = [r + ',""' for r in GOOD[:10]]
    rows[2] = GOOD[2] + ',"two\r\nlines"'  # this record spans lines 4-5
    rows[4] = rows_with({4: {"day": "Mon"}})[4] + ",x"
    text = "\r\n".join(["", HEADER + ",note", *rows[:3], "", ",,,,,,,", *rows[3:]]) + "\r\n"
    path = tmp_path / "lines.csv"
    path.write_bytes(text.encode())
    validated = validate_csv(path, settings.dataset)
    assert validated.total_rows == 10, "blank lines and rows of bare commas are no rows"
    (line,) = validated.bad_rows["line"].tolist()
    assert text.split("\r\n")[line - 1].endswith("Mon,Lunch,5,x")
    assert line == 10
    assert validated.bad_rows["note"].tolist() == ["x"], "extra columns are kept as they were"
