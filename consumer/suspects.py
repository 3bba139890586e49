"""Which of a round's new files made its challenger lose. Pure: training is injected.

When a challenger is worse than the champion with confidence, or sinks under the floor, the
round's new files are tested. A file is to blame when both hold, each with confidence:
1. the model trained *without* it beats the model trained with everything, on the same
   holdout rows (paired);
2. the file disagrees with the rest (`consumer.verdict` runs two checks and keeps the
   stronger): a model trained on the file alone scores the holdout below the prior baseline,
   or the model trained without it scores the file's own rows worse than the holdout.
Without test 2, when the champion is the previous version, test 1 repeats the comparison that
fired the search, and an unlucky clean file is blamed whenever a lucky champion beat its
successor (4 of 240 clean tips rounds were). Test 2 asks something of the file itself.

With up to `leave_one_out_max` new files each is left out in turn; with more, halves are left
out and only a half whose removal helps is searched further (bisection: about 2·log2(n)
trainings per culprit instead of n).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consumer.judge import METRIC_NAMES, Interval, LabelledRows, Scores, paired_interval


class CannotTrain(Exception):
    """Leaving these files out leaves nothing (or a single class) to train on."""


@dataclass(frozen=True)
class Disagreement:
    """How much a file disagrees with the rest (positive: it does), and the finding in words."""

    interval: Interval
    finding: str


@dataclass(frozen=True)
class Blame:
    file: str  # the file's id (sha256)
    gain: Interval  # how much better the model is without it (a: without, b: with)
    disagreement: Disagreement

    def evidence(self, name: str) -> str:
        """e.g. 'with x.csv ROC AUC 0.21, without it 0.61: leaving it out gains +0.40 […]; …'."""
        metric = METRIC_NAMES.get(self.gain.metric, self.gain.metric)
        return (
            f"with {name} the challenger's {metric} is {self.gain.b:.3f}, without it "
            f"{self.gain.a:.3f}: leaving it out gains {bracket(self.gain)}; "
            f"{self.disagreement.finding}"
        )


def bracket(interval: Interval) -> str:
    """'+0.40 [95% CI +0.25, +0.55]'."""
    metric = METRIC_NAMES.get(interval.metric, interval.metric)
    return interval.text().removeprefix(metric + " ")


def find_culprits(
    candidates: Sequence[str],
    scores_without: Callable[[frozenset[str]], Scores],
    scores_with: Scores,
    holdout: LabelledRows,
    disagreement: Callable[[str], Disagreement | None],
    *,
    metric: str,
    confidence: float,
    resamples: int,
    seed: int,
    leave_one_out_max: int,
) -> list[Blame]:
    """The candidates to blame, best gain first. `scores_without(files)` trains without
    `files`; `disagreement(file)` says how much `file` disagrees with the rest (None: it
    cannot be told)."""

    def gain(left_out: Sequence[str]) -> Interval | None:
        try:
            without = scores_without(frozenset(left_out))
        except CannotTrain:
            return None
        return paired_interval(
            metric,
            holdout,
            without,
            scores_with,
            confidence=confidence,
            resamples=resamples,
            seed=seed,
        )

    def search(group: Sequence[str]) -> list[Blame]:
        if len(group) <= leave_one_out_max:
            blamed = []
            for name in group:
                g = gain([name])
                if g is None or not g.low > 0:
                    continue
                d = disagreement(name)
                if d is not None and d.interval.low > 0:
                    blamed.append(Blame(name, g, d))
            return blamed
        middle = len(group) // 2
        blamed: list[Blame] = []
        for half in (group[:middle], group[middle:]):
            g = gain(half)
            if g is not None and g.low > 0:
                blamed += search(half)
        return blamed

    return sorted(search(list(candidates)), key=lambda b: -b.gain.delta)
