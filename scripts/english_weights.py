"""Measure the English second opinion's weights (Config.english_second_weight, english_keyword_weight) held out.

English questions about the seed (eval/seed_in_scope.tsv) are ranked over a grid of the two
weights. In sample: each pair's doc@1 and passage@1 (qa/evaluation.py) over all English questions. Held out: for each
case, the pair best on the other nine cases' English questions ranks that case's questions (so a
whole case is unseen), and the pooled results are printed next to the configured pair's.

    .venv/bin/python scripts/english_weights.py [--work /tmp/qa-english]
"""

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from qa.assistant import Assistant  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.evaluation import RANKED, read_tsv_questions  # noqa: E402
from qa.search.retrieval import HybridRetriever  # noqa: E402
from qa.text import script  # noqa: E402

SECOND_WEIGHTS = (0.0, 0.3, 0.4, 0.5, 0.65, 0.8)
KEYWORD_WEIGHTS = (0.15, 0.2, 0.25, 0.3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/qa-english"), help="the seed index, kept between runs")
    args = parser.parse_args()
    config = Config(corpus_dir=PROJECT / "corpus", index_dir=args.work / "seed-index")
    assistant = Assistant(config)
    assistant.rebuild()
    questions = [q for q in read_tsv_questions(PROJECT / "eval" / "seed_in_scope.tsv") if script(q.question) == "en"]
    cases = np.array([q.case for q in questions])
    results = {}
    for second in SECOND_WEIGHTS:
        for keyword in KEYWORD_WEIGHTS:
            weighted = replace(config, english_second_weight=second, english_keyword_weight=keyword)
            retriever = HybridRetriever.from_index(assistant.index, assistant.embedder, weighted, assistant.second)
            found = retriever.search_many([q.question for q in questions], RANKED)
            case = np.array([bool(hits) and q.is_right_document(hits[0].passage) for q, hits in zip(questions, found)], float)
            passage = np.array([bool(hits) and q.holds_evidence(hits[0].passage) for q, hits in zip(questions, found)], float)
            results[second, keyword] = case, passage
            print(f"second {second:<4} keyword {keyword:<4}  doc@1 {case.mean():.3f}  passage@1 {passage.mean():.3f}", flush=True)
    held_case, held_passage = [], []
    for held in sorted(set(cases)):
        train, test = cases != held, cases == held
        best = max(results, key=lambda pair: (results[pair][0][train].mean(), results[pair][1][train].mean()))
        held_case.extend(results[best][0][test])
        held_passage.extend(results[best][1][test])
    configured = results.get((config.english_second_weight, config.english_keyword_weight))
    print(f"\n{len(questions)} English questions")
    print(f"held out (best pair of the other nine cases): doc@1 {np.mean(held_case):.3f}  passage@1 {np.mean(held_passage):.3f}")
    print(f"without the second opinion (0, {config.keyword_weight}):    doc@1 {results[0.0, config.keyword_weight][0].mean():.3f}"
          f"  passage@1 {results[0.0, config.keyword_weight][1].mean():.3f}")
    if configured:
        print(f"configured ({config.english_second_weight}, {config.english_keyword_weight}), in sample: "
              f"doc@1 {configured[0].mean():.3f}  passage@1 {configured[1].mean():.3f}")


if __name__ == "__main__":
    main()
