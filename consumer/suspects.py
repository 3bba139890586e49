"""Which of a round's new files made its challenger lose. Pure: training is injected.

When a challenger is worse than the champion with confidence, or sinks under the floor, the
round's new files are tested. A file is to blame when both hold, each with confidence:
1. the model trained *without* it beats the model trained with everything, on the same
   holdout rows (paired);
2. the file disagrees with the rest: that model (which never saw the file) scores the file's
   own rows worse than it scores the holdout (two independent bootstraps).
The second test uses rows no decision has used. Without it, when the champion is the previous
version, test 1 would repeat the comparison that fired the search, and an unlucky clean file
would be blamed whenever a lucky champion beat its successor (4 of 240 clean tips rounds did).

With up to `leave_one_out_max` new files each is left out in turn; with more, halves are left
out and only a half whose removal helps is searched further (bisection: about 2·log2(n)
trainings per culprit instead of n).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consumer.judge import METRIC_NAMES, Holdout, Interval, Scores, paired_interval


class CannotTrain(Exception):
    """Leaving these files out leaves nothing (or a single class) to train on."""


@dataclass(frozen=True)
class Blame:
    file: str  # the file's id (sha256)
    gain: Interval  # how much better the model is without it (a: without, b: with)
    disagreement: Interval  # that model on the holdout (a) vs on the file's own rows (b)

    def evidence(self, name: str) -> str:
        """e.g. 'with x.csv ROC AUC 0.21; without it 0.61: leaving it out gains +0.40 […]'."""
        metric = METRIC_NAMES.get(self.gain.metric, self.gain.metric)
        own = METRIC_NAMES.get(self.disagreement.metric, self.disagreement.metric)
        return (
            f"with {name} the challenger's {metric} is {self.gain.b:.3f}, without it "
            f"{self.gain.a:.3f}: leaving it out gains {_bracket(self.gain, metric)}; "
            f"a model that never saw it scores its own rows {own} {self.disagreement.b:.3f} "
            f"against {self.disagreement.a:.3f} on the holdout "
            f"({_bracket(self.disagreement, own)} in the holdout's favour)"
        )


def _bracket(interval: Interval, metric: str) -> str:
    return interval.text().removeprefix(metric + " ")


def find_culprits(
    candidates: Sequence[str],
    scores_without: Callable[[frozenset[str]], Scores],
    scores_with: Scores,
    holdout: Holdout,
    disagreement: Callable[[str], Interval | None],
    *,
    metric: str,
    confidence: float,
    resamples: int,
    seed: int,
    leave_one_out_max: int,
) -> list[Blame]:
    """The candidates to blame, best gain first. `scores_without(files)` trains without
    `files`; `disagreement(file)` compares the model trained without `file` on the holdout
    and on the file's own rows (None: the file's rows cannot say)."""

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
                if d is not None and d.low > 0:
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
