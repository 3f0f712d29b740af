"""Choose the relevance model and the "not found" threshold from data; prints the evidence and the fit.

In-scope questions: the seed dev set's on the seed corpus, CMRC's on the CMRC paragraphs. Out-of-scope
questions: the seed set's `oos` ones, every CMRC question asked of the seed corpus, and every seed
question asked of the CMRC paragraphs (Wikipedia articles on other topics). For each question the
top hit's evidence (dense cosine, keyword coverage of its section) is collected; a logistic model
over them is fitted with both classes weighted equally, and the accuracy of thresholds is printed.

    .venv/bin/python scripts/calibrate_relevance.py [--chars 120]
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_retrieval import data_sets, encoders  # noqa: E402

from qa.answer import relevance_features  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.keyword import build_keywords  # noqa: E402
from qa.passages import make_passages  # noqa: E402
from qa.retrieval import HybridRetriever  # noqa: E402


def top_features(retriever, questions: list[str]) -> np.ndarray:
    return np.array([relevance_features(hits[0]) for hits in retriever.search_many(questions, 1)])


def fit_logistic(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray, steps: int = 20000, rate: float = 0.5) -> np.ndarray:
    """Weights (bias first) of a logistic regression with the given sample weights, by gradient descent."""
    x1 = np.hstack([np.ones((len(x), 1)), x])
    sample_weight = sample_weight / sample_weight.sum()
    w = np.zeros(x1.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x1 @ w))
        w -= rate * x1.T @ (sample_weight * (p - y))
    return w


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=Config.max_passage_chars)
    parser.add_argument("--fusion", default=Config.fusion)
    args = parser.parse_args()
    encoder = encoders(["e5"])["e5"]
    sets = data_sets(["seed", "cmrc"])
    config = replace(Config(), max_passage_chars=args.chars, fusion=args.fusion)
    retrievers = {}
    for name, (documents, _) in sets.items():
        passages = make_passages(documents, args.chars)
        vectors = encoder.embed_passages([p.embedding_text() for p in passages])
        retrievers[name] = HybridRetriever(passages, vectors, build_keywords(passages, config.keyword_tokenizer), encoder, config)
    seed_questions = sets["seed"][1]
    groups = {
        ("in", "seed on seed"): (retrievers["seed"], [q.question for q in seed_questions if q.in_scope]),
        ("in", "cmrc on cmrc"): (retrievers["cmrc"], [q.question for q in sets["cmrc"][1]]),
        ("out", "seed oos on seed"): (retrievers["seed"], [q.question for q in seed_questions if not q.in_scope]),
        ("out", "cmrc on seed"): (retrievers["seed"], [q.question for q in sets["cmrc"][1]]),
        ("out", "seed on cmrc"): (retrievers["cmrc"], [q.question for q in seed_questions]),
    }
    features, labels, weights = [], [], []
    group_count = {label: sum(1 for key in groups if key[0] == label) for label in ("in", "out")}
    for (label, name), (retriever, questions) in groups.items():
        found = top_features(retriever, questions)
        features.append(found)
        labels.append(np.full(len(found), 1 if label == "in" else 0))
        # Each class weighs half, shared equally by its groups: the 22 seed questions (five in
        # English) count as much as CMRC's thousand, so the fit is not CMRC's alone.
        weights.append(np.full(len(found), 0.5 / group_count[label] / len(found)))
        for column, feature in enumerate(("cosine", "coverage")):
            q = np.percentile(found[:, column], [0, 5, 25, 50, 75, 95, 100])
            print(f"{label:3} {name:17} n={len(found):5} {feature:8} " + " ".join(f"{v:.3f}" for v in q))
        if name.startswith("seed"):
            for question, (cosine, coverage) in zip(questions, found):
                print(f"      {cosine:.3f} {coverage:.3f} {question}")
    x, y, sample_weight = np.vstack(features), np.concatenate(labels), np.concatenate(weights)
    w = fit_logistic(x, y, sample_weight)
    print(f"logistic: z = {w[0]:.3f} + {w[1]:.3f}·cosine + {w[2]:.3f}·coverage")
    p = 1 / (1 + np.exp(-(w[0] + x @ w[1:])))
    for threshold in np.arange(0.05, 0.96, 0.05):
        accepted = p >= threshold
        wrong = sample_weight * np.where(y == 1, ~accepted, accepted)
        print(
            f"threshold {threshold:.2f}: in-scope declined {np.mean(~accepted[y == 1]):.3f}, "
            f"out-of-scope accepted {np.mean(accepted[y == 0]):.3f}, weighted error {wrong.sum():.4f}"
        )
    # The operating point: the threshold at which the share of in-scope questions declined equals
    # the share of out-of-scope questions answered (equal error rate). The fit weighs groups equally
    # (its shape must serve English questions too); the rates count every question once, since a
    # handful of seed questions would otherwise decide the threshold alone.
    grid = np.arange(0.01, 1.0, 0.01)
    declined = np.array([np.mean(p[y == 1] < t) for t in grid])
    accepted = np.array([np.mean(p[y == 0] >= t) for t in grid])
    best = int(np.argmin(np.abs(declined - accepted) + 1e-6 * np.abs(grid - 0.5)))
    print(f"equal error rate at threshold {grid[best]:.2f}: in-scope declined {declined[best]:.4f}, out-of-scope accepted {accepted[best]:.4f}")
    seed = p[: sum(len(f) for f in features[:1])]
    print("seed in-scope relevance, lowest: " + " ".join(f"{v:.3f}" for v in sorted(seed)[:5]))


if __name__ == "__main__":
    main()
