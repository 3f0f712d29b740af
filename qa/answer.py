"""Turn retrieval hits into an answer: ranked, cited passages with a 0..1 relevance, or "not found".

Relevance is one calibrated number per cited passage, a logistic function of two kinds of evidence:

    z = relevance_bias + relevance_cosine · cosine + relevance_coverage · coverage
    relevance = 1 / (1 + exp(-z))

where `cosine` is the dense similarity of the question and the passage, and `coverage` the share of
the question's keyword weight found in the passage's section (qa/keyword.py). The dense similarity
alone separates poorly: E5 similarities crowd into a narrow band, and an English question scores
as low on the right Chinese passage as an unrelated question does. Coverage, with English words
translated, tells them apart. `answered` is whether the best passage reaches `min_relevance`.

The coefficients and the threshold come from data (scripts/calibrate_relevance.py): in-scope
questions (the seed dev set on the seed corpus, CMRC 2018 trial questions on their paragraphs)
against out-of-scope ones (the dev set's two, CMRC questions asked of the seed corpus, seed
questions asked of the CMRC paragraphs). The fit weighs each of those five groups equally; the
threshold is where the share of in-scope questions declined equals the share of out-of-scope ones
answered (0.5% each).
"""

import math
from dataclasses import asdict, dataclass, field

from .config import Config
from .retrieval import Hit


@dataclass(frozen=True)
class CitedPassage:
    rank: int
    score: float
    source: str
    section: str
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Answer:
    question: str
    answered: bool
    passages: list[CitedPassage]
    notes: list[str] = field(default_factory=list)  # e.g. that a long question was shortened

    def to_json(self) -> dict:
        """The structure printed by `qa ask --json` and returned by the chat page's API."""
        result = {
            "question": self.question,
            "answered": self.answered,
            "passages": [asdict(passage) for passage in self.passages],
        }
        if self.notes:
            result["notes"] = list(self.notes)
        return result


def relevance_features(hit: Hit) -> tuple[float, float]:
    """The evidence that relevance is computed from: dense cosine similarity and keyword coverage."""
    return hit.similarity, hit.coverage


def relevance(hit: Hit, config: Config) -> float:
    """The calibrated relevance (0..1) of one hit (see the module docstring)."""
    cosine, coverage = relevance_features(hit)
    z = config.relevance_bias + config.relevance_cosine * cosine + config.relevance_coverage * coverage
    return round(1 / (1 + math.exp(-z)), 4)


def make_answer(question: str, hits: list[Hit], config: Config, notes: list[str] | None = None) -> Answer:
    passages = [
        CitedPassage(
            rank=rank,
            score=relevance(hit, config),
            source=hit.passage.source,
            section=hit.passage.section,
            text=hit.passage.text,
            start=hit.passage.start,
            end=hit.passage.end,
        )
        for rank, hit in enumerate(hits, start=1)
    ]
    answered = bool(passages) and passages[0].score >= config.min_relevance
    return Answer(question=question, answered=answered, passages=passages, notes=notes or [])
