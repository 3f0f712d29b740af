"""How the decision is fitted: the logistic regression and the rules that place the outcome bars.

Shared by scripts/fit_relevance.py (the shipped calibration, over several corpora) and `qa calibrate` (one
index's own, qa/tuning/verdict.py), so that both keep the same promises:

    answered    a right passage among the first 3 (`cites`) for at least ANSWERED_PRECISION of the questions
                that reach the bar
    not found   below the confidence of all but IN_DECLINED of the in-scope questions whose first 3 cite
"""

import numpy as np

ANSWERED_PRECISION = 0.9
IN_DECLINED = 0.005  # uncertain_from: this quantile of the in-scope questions that cite their answer
NEAR_ANSWERED = 0.07  # at most this share of near misses may reach answered_from
OTHER_ANSWERED = 0.01  # and of other out-of-scope questions
MIN_GROUP = 20  # fewer questions than this set no bar: their shares are too coarse to judge one
BAR_STEP = 0.005  # answered_from is tried from 1.0 down in these steps


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, steps: int = 4000, l2: float = 1e-3) -> np.ndarray:
    """Weights (bias first) of a weighted logistic regression, by Newton's method (small L2 for stability)."""
    x1 = np.hstack([np.ones((len(x), 1)), x])
    weight = weight / weight.sum()
    w = np.zeros(x1.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(x1 @ w, -60, 60)))
        gradient = x1.T @ (weight * (p - y)) + l2 * np.r_[0, w[1:]]
        hessian = (x1 * (weight * p * (1 - p))[:, None]).T @ x1 + l2 * np.diag(np.r_[0, np.ones(len(w) - 1)])
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def precise(answers: list[tuple[float, bool]], bar: float) -> bool:
    """Whether at least ANSWERED_PRECISION of the (confidence, cites) `answers` at or above `bar` cite their answer
    (fewer than MIN_GROUP reach it: yes, there is nothing to judge by)."""
    reached = [cited for value, cited in answers if value >= bar]
    return len(reached) < MIN_GROUP or np.mean(reached) >= ANSWERED_PRECISION


def answered_bar(fine, floor: float = 0.0) -> float:
    """The lowest bar, tried from 1.0 down in BAR_STEPs and not below `floor`, that `fine(bar)` accepts with every
    bar above it (a bar that fails stops the search: a lower one would answer the questions that failed it)."""
    answered_from = 1.0
    for candidate in np.round(np.arange(1.0, 0.0, -BAR_STEP), 3):
        if candidate < floor or not fine(candidate):
            break
        answered_from = float(candidate)
    return answered_from


def uncertain_bar(cited_confidence: list[float]) -> float:
    """The IN_DECLINED quantile of the confidence of in-scope questions that cite their answer (with fewer than a
    few hundred, about the lowest); 0.0 when none does: nothing places the bar, so nothing is "not found"."""
    return float(np.quantile(cited_confidence, IN_DECLINED)) if cited_confidence else 0.0
