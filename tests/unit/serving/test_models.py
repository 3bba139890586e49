"""The served pair: what a refresh loads, what it swaps, what a request holding it keeps."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException

from serving.models import ServedModels
from tests.support.fake_serving import ConstantModel, FakeSource

VERSIONS = {str(v): ConstantModel(str(v)) for v in range(1, 8)}


def models(champion: str | None = "1", *, shadow: bool = False) -> tuple[ServedModels, FakeSource]:
    source = FakeSource(VERSIONS, champion)
    return ServedModels(source, shadow=shadow), source


def test_nothing_is_served_before_a_champion_exists() -> None:
    served, _source = models(None)
    assert served.refresh().champion is None and served.current.champion is None


def test_the_champion_is_loaded_once_and_kept_while_it_stays() -> None:
    served, source = models("1")
    first = served.refresh()
    assert first.champion is not None and first.champion.version == "1"
    assert served.refresh() is first, "an unchanged registry swaps nothing"
    assert source.loads == ["1"]


def test_a_promotion_swaps_and_a_request_holding_the_old_pair_finishes_on_it() -> None:
    served, source = models("1")
    held = served.refresh()  # what a request in flight read
    source.champion_version = "2"
    after = served.refresh()
    assert after.champion is not None and after.champion.version == "2"
    assert served.current is after
    assert held.champion is not None and held.champion.pipeline.predict([0])[0] == "1"
    assert after.champion.loaded_at >= held.champion.loaded_at


def test_a_rollback_to_a_recent_champion_needs_no_load() -> None:
    served, source = models("1")
    for version in ("1", "2", "1", "2"):
        source.champion_version = version
        assert served.refresh().champion.version == version
    assert source.loads == ["1", "2"]


def test_only_a_few_models_stay_in_memory() -> None:
    served, source = models("1")
    for version in "1234567":
        source.champion_version = version
        served.refresh()
    source.champion_version = "1"
    served.refresh()
    assert source.loads == [*"1234567", "1"], "the oldest was let go and loaded again"


def test_a_new_decision_tag_on_the_same_version_is_shown_without_a_load() -> None:
    served, source = models("3")
    source.decisions["3"] = "kept champion"
    before = served.refresh()
    source.decisions["3"] = "replaced a retracted champion"
    after = served.refresh()
    assert after.champion.ref.decision == "replaced a retracted champion"
    assert after.champion.pipeline is before.champion.pipeline and source.loads == ["3"]


@pytest.mark.parametrize(
    ("shadow", "newest", "challenger"),
    [
        (True, "5", "5"),  # a newer version lost (or is being judged): it is shadowed
        (True, "3", None),  # the champion is the newest: nothing to compare
        (True, None, None),
        (False, "5", None),  # shadowing off
    ],
)
def test_the_shadow_challenger_is_the_newest_version_after_the_champion(
    shadow: bool, newest: str | None, challenger: str | None
) -> None:
    served, source = models("3", shadow=shadow)
    source.newest_version = newest
    pair = served.refresh()
    assert (pair.challenger.version if pair.challenger else None) == challenger
    assert pair.champion.version == "3"


def test_a_registry_that_is_down_leaves_the_served_pair_as_it_was() -> None:
    served, source = models("1")
    before = served.refresh()
    source.down = True
    with pytest.raises(MlflowException):
        served.refresh()
    assert served.current is before
    source.down, source.champion_version = False, "2"
    assert served.refresh().champion.version == "2"


def test_a_model_that_fails_to_load_leaves_the_served_pair_as_it_was() -> None:
    served, source = models("1")
    before = served.refresh()
    source.champion_version = "9"  # registered, but its model cannot be read
    with pytest.raises(KeyError):
        served.refresh()
    assert served.current is before
