"""Turn retrieval hits into an answer: ranked, cited passages with a 0..1 relevance, or "not found".

Relevance is the cosine similarity rescaled linearly so that `score_floor` maps to 0 and
`score_ceiling` to 1 (clipped). E5 similarities crowd into a narrow band (about 0.7 to 0.95), so
the raw cosine reads poorly to a person; the rescaled value is what users see as the score, and
`answered` is whether the best passage reaches `min_relevance`.
"""

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


def relevance(similarity: float, config: Config) -> float:
    """Map a cosine similarity to 0..1 (see the module docstring)."""
    span = config.score_ceiling - config.score_floor
    return round(min(1.0, max(0.0, (similarity - config.score_floor) / span)), 4)


def make_answer(question: str, hits: list[Hit], config: Config, notes: list[str] | None = None) -> Answer:
    passages = [
        CitedPassage(
            rank=rank,
            score=relevance(hit.similarity, config),
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
