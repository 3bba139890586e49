"""The benchmark's helpers: percentiles, tables, synthetic rows, task names, stage timing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.homes import write_bench_config
from bench.scenarios.retrain import (
    FIT_STAGE,
    READ_STAGE,
    StageTotals,
    build_accepted_home,
    retrain_child,
)
from bench.scenarios.window import render_window
from bench.stacks import RETRAIN_TASKS, run_breakdown, task_label
from bench.stats import percentile, summarize
from bench.synthetic import float_columns_of, synthetic_rows, typed_frame
from bench.tables import render_table
from consumer import flows
from shared.dataset import training_pool
from shared.settings import Settings

# -- percentiles ----------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0, 5, 25, 50, 73.5, 95, 99, 100])
@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_percentile_matches_numpy_linear(q: float, n: int) -> None:
    values = list(np.random.default_rng(n).exponential(3.0, size=n))
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_interpolates_between_ranks_and_ignores_input_order() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([10.0, 0.0], 95) == pytest.approx(9.5)
    assert percentile([7.0], 95) == 7.0


def test_percentile_of_nothing_is_none_and_q_is_checked() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_summarize_skips_unmeasured_values() -> None:
    summary = summarize([3.0, None, 1.0, 2.0, None])
    assert summary == {"n": 3, "p50": 2.0, "p95": pytest.approx(2.9), "max": 3.0}
    assert summarize([None]) == {"n": 0, "p50": None, "p95": None, "max": None}


# -- table rendering ---------------------------------------------------------------------------


def test_render_table_is_aligned_markdown() -> None:
    table = render_table(["stage", "p50"], [["detected", "0.05"], ["Running", 12.5]])
    assert table.splitlines() == [
        "| stage    |  p50 |",
        "|----------|-----:|",
        "| detected | 0.05 |",
        "| Running  | 12.5 |",
    ]


def test_render_table_lines_have_equal_width_with_wide_cells() -> None:
    lines = render_table(["a", "b", "c"], [["x" * 30, "—", 1], ["y", "z", 123456]]).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].count("|") == 4 and lines[1].endswith(":|")


def test_render_window_counts_pairs_taken_by_the_listening_run_and_announced_again() -> None:
    pairs = [
        {"champion_decided": 1.0, "same_run": True, "announcements": 1},
        {"champion_decided": 12.0, "same_run": False, "announcements": 2},
    ]
    part = {
        "pairs": pairs,
        "summary": summarize([p["champion_decided"] for p in pairs]),
        "taken_by_the_listening_run": 1,
        "announced_again": 1,
    }
    row = render_window(part).splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells == [
        "second file, placed when the first run has judged",
        "2",
        "6.50",
        "11.45",
        "12.00",
        "1/2",
        "1/2",
    ]


def test_render_table_refuses_ragged_rows() -> None:
    with pytest.raises(ValueError, match="one cell per header"):
        render_table(["a", "b"], [["only one"]])


# -- synthetic rows ----------------------------------------------------------------------------


@pytest.fixture
def pool(settings: Settings) -> pd.DataFrame:
    return training_pool(settings.dataset, settings.holdout)


def test_synthetic_rows_resample_the_pool_with_small_float_jitter(
    settings: Settings, pool: pd.DataFrame
) -> None:
    floats = float_columns_of(settings.dataset.columns)
    assert floats == ["total_bill", "tip"]
    rows = synthetic_rows(pool, 500, np.random.default_rng(1), floats)
    assert len(rows) == 500 and list(rows.columns) == list(pool.columns)
    for column in pool.columns:
        if column in floats:
            assert (rows[column] > 0).all(), "jitter never changes the sign"
            assert rows[column].min() >= pool[column].min() * 0.5
            assert rows[column].max() <= pool[column].max() * 1.5
            assert (rows[column].round(2) == rows[column]).all()
        else:
            assert set(rows[column]) <= set(pool[column]), f"{column} copied from the pool"
    assert not rows[floats].isin(pool[floats].to_dict("list")).all(axis=None), "floats jittered"


def test_synthetic_rows_depend_only_on_the_seed(settings: Settings, pool: pd.DataFrame) -> None:
    floats = float_columns_of(settings.dataset.columns)
    first = synthetic_rows(pool, 20, np.random.default_rng(7), floats)
    again = synthetic_rows(pool, 20, np.random.default_rng(7), floats)
    other = synthetic_rows(pool, 20, np.random.default_rng(8), floats)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)
    assert first.to_csv(index=False) != other.to_csv(index=False), "distinct file content"


def test_synthetic_rows_are_valid_data_with_the_validators_types(
    settings: Settings, pool: pd.DataFrame, tmp_path
) -> None:
    from consumer.validate import validate_csv

    columns = settings.dataset.columns
    rows = synthetic_rows(pool, 50, np.random.default_rng(3), float_columns_of(columns))
    path = tmp_path / "synthetic.csv"
    rows.to_csv(path, index=False)
    result = validate_csv(path, settings.dataset)
    assert result.dropped == 0, result.bad_rows  # every synthetic row is valid
    validated = result.frame
    typed = typed_frame(rows, columns)
    assert list(typed.columns) == list(columns)
    assert dict(typed.dtypes) == dict(validated.dtypes)
    pd.testing.assert_frame_equal(typed, validated)


# -- task names ---------------------------------------------------------------------------------


def test_the_retrain_tasks_are_the_flows_own() -> None:
    names = {task.name for task in RETRAIN_TASKS}
    assert names >= {flows.claim_files.name, flows.train_model.name, flows.register_and_judge.name}
    assert flows.ingest_files.name in names


@pytest.mark.parametrize(
    ("run_name", "task"),
    [
        ("claim_files-0a1", flows.claim_files),
        ("train_model-1a2", flows.train_model),
        ("register_and_judge-ff0", flows.register_and_judge),
        # The ingest task names its runs itself (after the files), never `<task>-<suffix>`.
        ("ingest tips-batch-003.csv", flows.ingest_files),
        ("ingest 12 files", flows.ingest_files),
    ],
)
def test_task_label_maps_a_run_name_to_its_task(run_name: str, task) -> None:
    assert task_label(run_name) == task.name


def test_task_label_keeps_an_unknown_name_without_its_suffix() -> None:
    assert task_label("something_else-abc", tasks=[flows.claim_files]) == "something_else"


def test_run_breakdown_parts_add_up_to_the_run() -> None:
    spans = [("train_model", 12.0, 15.0), ("claim_files", 10.5, 11.0), ("train_model", 16.0, 17.0)]
    parts = run_breakdown(10.0, 18.0, spans)
    assert parts["engine start (Running -> 1st task)"] == 0.5
    assert parts["train_model"] == 4.0 and parts["claim_files"] == 0.5
    assert parts["after the last task (-> Completed)"] == 1.0
    assert parts["between tasks"] == pytest.approx(2.0)
    assert sum(parts.values()) == pytest.approx(8.0)
    assert run_breakdown(10.0, 12.0, []) == {"no tasks": 2.0}


# -- stage timing of the retrain ------------------------------------------------------------------


def test_stage_totals_add_up_every_pass_even_one_that_raises() -> None:
    timer = StageTotals()
    for _ in range(3):
        with timer.stage("read"):
            pass
    with pytest.raises(KeyError), timer.stage("fit"):
        raise KeyError("boom")
    assert set(timer.seconds) == {"read", "fit"}
    assert all(seconds > 0 for seconds in timer.seconds.values())


def test_retrain_child_times_read_and_fit_through_the_injected_timer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retrain calls the context's timer: without it both stage times stay 0."""
    config = write_bench_config(tmp_path / "params.yaml", {})
    home = build_accepted_home(tmp_path, config, 2_000, np.random.default_rng(5))
    monkeypatch.setenv("ARRIVALS_HOME", str(home))
    monkeypatch.setenv("ARRIVALS_CONFIG", str(config))
    spec = {"policy": "all", "max_rows": 200_000, "new_rows": 100, "seed": 6}
    result = retrain_child(spec)
    assert result["files_read"] == 2  # the accepted file and the new one
    assert result["train_rows"] == 2_100
    assert result["read_seconds"] > 0, f"the {READ_STAGE!r} stage was not timed"
    assert result["fit_and_evaluate_seconds"] > 0, f"the {FIT_STAGE!r} stage was not timed"
    assert result["read_seconds"] + result["fit_and_evaluate_seconds"] <= result["seconds"]
