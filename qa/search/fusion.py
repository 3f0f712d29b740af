"""Dense and keyword evidence combined into one ranking score per passage (`fuse`, by `Config.fusion`).

    "dense", "keyword"  one kind of evidence alone
    "rrf"               reciprocal-rank fusion of the dense and keyword passage rankings
    "sum"               weighted sum of min-max normalised dense and keyword passage scores
    "sections"          (default) the "sum" score of the passage's section, weighted by
                        `section_weight`, plus the passage's own "sum" score: the section finds the
                        right case or document, the passage's own evidence picks its sentences

Keyword evidence adds to dense evidence and never replaces it: where no keyword matches, the
normalised keyword score is 0 for every passage and the ranking is the dense one.

English questions over Chinese text get a second opinion (`add_second_opinion`): e5 links the two
languages weakly, so the second encoder (qa/embeddings/second_encoder.py, USE-multilingual, trained to
align translations) re-reads the `english_second_reads` best passages and takes `english_second_weight`
of the dense evidence, passage and section, while the keyword evidence (through dictionary
translations) weighs `english_keyword_weight`.

A model tuned on a library (`qa tune`) carries the weights fitted with it on that library's training questions
(WEIGHTS_FILE in its folder): a tuned encoder's dense evidence is stronger than the bundled model's, and the
keyword share that suits the bundled model holds it back (`with_model_weights`).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.config import Config
from qa.errors import ModelError
from qa.text import script

WEIGHTS_FILE = "retrieval.json"  # in a tuned model's folder: {"keyword_weight": …, "section_weight": …, …}
FITTED_WEIGHTS = ("keyword_weight", "section_weight")


def with_model_weights(config: Config) -> Config:
    """`config` with the FITTED_WEIGHTS its model's folder carries (WEIGHTS_FILE), if it carries any.
    ModelError for a file that cannot be read or holds a weight outside 0..1."""
    path = Path(config.model).expanduser() / WEIGHTS_FILE
    if not path.is_file():
        return config
    try:
        fitted = json.loads(path.read_text(encoding="utf-8"))
        weights = {name: float(fitted[name]) for name in FITTED_WEIGHTS if name in fitted}
    except (OSError, ValueError, TypeError) as error:
        raise ModelError(f"cannot read {path} (the retrieval weights fitted with this model): {error}") from None
    if any(not 0 <= weight <= 1 for weight in weights.values()):
        raise ModelError(f"{path}: a weight outside 0..1 ({weights}); run `qa tune` again or delete the file")
    return config.with_overrides(**weights)


@dataclass
class Evidence:
    """Arrays of questions × passages (dense, keyword) and questions × sections (section_*).

    dense     cosine similarity of question and passage embeddings
    keyword   BM25 of the passage, divided by the question's best passage BM25 (0..1; 0 when no
              question word occurs in the corpus)
    section_* the same two for the passage's whole section (its best similarity, BM25 over its text),
              and the share of the question's keyword weight the section holds (coverage)

    Candidate evidence (qa/search/candidates.py) holds only some passages and sections; its
    `dense_low` and `section_dense_low` (one per question) are the corpus's lowest similarities,
    where min-max normalisation starts (None: the lowest in the arrays, which then hold every passage),
    and for a question limited to a scope `dense_high` and `section_dense_high` the corpus's highest,
    where it ends (None: the highest in the arrays, which then hold the corpus's nearest passage)."""

    dense: np.ndarray
    keyword: np.ndarray
    section_dense: np.ndarray
    section_keyword: np.ndarray
    section_coverage: np.ndarray
    dense_low: np.ndarray | None = None
    section_dense_low: np.ndarray | None = None
    dense_high: np.ndarray | None = None
    section_dense_high: np.ndarray | None = None
    # The second encoder's similarities for English questions (`add_second_opinion`): which questions
    # have them, and arrays shaped as `dense` and `section_dense`. None: no second opinion.
    english: np.ndarray | None = None
    second: np.ndarray | None = None
    section_second: np.ndarray | None = None


def fuse(evidence: Evidence, groups: np.ndarray, config: Config) -> np.ndarray:
    """The ranking score of every passage (questions × passages) by `config.fusion`; higher is better.
    `groups[j]`: the column in the section arrays of passage column j."""
    method = config.fusion
    if method == "dense":
        return evidence.dense
    if method == "keyword":
        # Ties among passages without any keyword fall back to the dense order.
        return evidence.keyword + 1e-3 * min_max(evidence.dense, evidence.dense_low, evidence.dense_high)
    if method == "rrf":
        return _rrf(evidence.dense, config.rrf_k) + np.where(evidence.keyword > 0, _rrf(evidence.keyword, config.rrf_k), 0)
    dense = min_max(evidence.dense, evidence.dense_low, evidence.dense_high)
    section_dense = min_max(evidence.section_dense, evidence.section_dense_low, evidence.section_dense_high)
    keyword_weight: float | np.ndarray = config.keyword_weight
    if evidence.english is not None:  # English questions: the second encoder's share, less keyword weight
        share = np.where(evidence.english, config.english_second_weight, 0.0)[:, None]
        dense = (1 - share) * dense + share * min_max(evidence.second)
        section_dense = (1 - share) * section_dense + share * min_max(evidence.section_second)
        keyword_weight = np.where(evidence.english, config.english_keyword_weight, config.keyword_weight)[:, None]
    passage = (1 - keyword_weight) * dense + keyword_weight * evidence.keyword
    if method == "sum":
        return passage
    section = (1 - keyword_weight) * section_dense + keyword_weight * evidence.section_keyword
    return config.section_weight * section[:, groups] + (1 - config.section_weight) * passage


def add_second_opinion(evidence: Evidence, groups: np.ndarray, written: list[str], members: np.ndarray,
                       starts: np.ndarray, second, config: Config, within: np.ndarray | None = None) -> None:
    """Give the English questions among `written` (the questions as written) the second encoder's similarities,
    in `evidence.second` and `evidence.section_second`; nothing when none is English or `second` is None.

    Column j of the evidence is passage `members[j]`, of section column `groups[j]`, and the sections start
    at columns `starts`; `second` is the SecondOpinion over the passages. The `english_second_reads` best
    columns by the first fusion are re-read (of the columns flagged by `within`, when a question is limited
    to a scope: those that can be cited); the others get the lowest of theirs, so that they rank below
    once normalised."""
    english = np.array([script(question) == "en" for question in written])
    if second is None or not english.any():
        return
    scores = fuse(evidence, groups, config)
    reads = config.english_second_reads
    similarities = np.zeros_like(evidence.dense)
    columns = np.arange(scores.shape[1]) if within is None else np.flatnonzero(within)
    for row in np.flatnonzero(english):
        best = columns
        if len(best) > reads:
            best = columns[np.argpartition(-scores[row, columns], reads)[:reads]]
        similarity = second.of_passages(members[best]) @ second.questions([written[row]])[0]
        similarities[row] = similarity.min()
        similarities[row, best] = similarity
    evidence.second = similarities
    evidence.section_second = np.maximum.reduceat(similarities, starts, axis=1)
    evidence.english = english


def min_max(scores: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None) -> np.ndarray:
    """Each row rescaled to 0..1 (its worst to its best), so dense and keyword scores can be added;
    `low` and `high`, one per row, are the worst and the best when the row holds only some of the scores
    (candidates)."""
    low = scores.min(axis=1, keepdims=True) if low is None else np.asarray(low, dtype=scores.dtype).reshape(-1, 1)
    high = scores.max(axis=1, keepdims=True) if high is None else np.asarray(high, dtype=scores.dtype).reshape(-1, 1)
    span = high - low
    return (scores - low) / np.where(span > 0, span, 1)


def relative(scores: np.ndarray) -> np.ndarray:
    """Each row divided by its best (BM25 is 0 for no match, so 0 stays 0); all-zero rows stay 0."""
    best = scores.max(axis=1, keepdims=True)
    return scores / np.where(best > 0, best, 1)


def _rrf(scores: np.ndarray, k: int) -> np.ndarray:
    ranks = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable") + 1
    return 1.0 / (k + ranks)
