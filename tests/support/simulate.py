"""Synthetic model scores with a known true ROC AUC, for the judge's simulation tests.

Each row has a class y in {0, 1} and a latent signal 2·y + N(0, 1) that every model shares;
a model adds its own noise N(0, sigma²). Its population ROC AUC is then
Phi(2 / sqrt(2 · (1 + sigma²))), so two models with the same sigma are of equal quality
by construction, and a smaller sigma is better by an exact, stated amount.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from consumer.judge import LabelledRows, Scores

SIGNAL = 2.0


def sigma_for(auc: float) -> float:
    """The model noise that gives population ROC AUC `auc`."""
    ratio = SIGNAL / NormalDist().inv_cdf(auc)
    return float(np.sqrt(ratio * ratio / 2 - 1))


def true_auc(sigma: float) -> float:
    return NormalDist().cdf(SIGNAL / np.sqrt(2 * (1 + sigma * sigma)))


def _scores(latent: np.ndarray) -> Scores:
    p = 1 / (1 + np.exp(-latent))
    return Scores(np.c_[1 - p, p])


def draw(
    rng: np.random.Generator,
    rows: int,
    auc_a: float,
    auc_b: float,
    *,
    files: int | None = None,
    file_effect: float = 0.0,
) -> tuple[LabelledRows, Scores, Scores]:
    """A holdout and two models' scores on it. With `files`, rows come in that many equal
    files, and each model's scores get a per-file offset N(0, file_effect²): its errors are
    then correlated within a file, as when files differ in ways a model half-learnt."""
    y = rng.integers(0, 2, rows)
    latent = SIGNAL * y + rng.normal(size=rows)
    noise_a = sigma_for(auc_a) * rng.normal(size=rows)
    noise_b = sigma_for(auc_b) * rng.normal(size=rows)
    groups = None
    if files:
        groups = np.repeat(np.arange(files), -(-rows // files))[:rows]
        noise_a = noise_a + file_effect * rng.normal(size=files)[groups]
        noise_b = noise_b + file_effect * rng.normal(size=files)[groups]
    return LabelledRows(y, ["0", "1"], groups), _scores(latent + noise_a), _scores(latent + noise_b)
