"""Turn retrieval hits and the relevance judgement into an answer: cited passages and one of three outcomes.

    answered    the best passage answers the question (confidence at or above the calibrated bar)
    uncertain   it may: the passages are shown first with a plain warning ("可能相关，请核对原文")
    not_found   nothing in the corpus is relevant enough; the closest passages are shown folded away

The confidence (0..1) is the calibrated estimate that the corpus answers the question, from the
evidence about the best passage (qa/decision/relevance.py). Each cited passage's `score` is that confidence
scaled by how well the passage matched compared with the first one (its retrieval score over the
first's), so the scores fall with the rank, passages of one answer do not tie at the top, and a
weak answer's passages all read weak. Scores are capped at 0.99: no estimate is a certainty.

`to_json` is what `qa ask --json` prints and the page's /ask returns; `version` says its shape
(2: `outcome` and `confidence` added; `answered` kept, true only for "answered"; each passage's
`page` added later, null where the source has no pages, so readers of version 2 are unaffected;
3: each passage's `citation` as people cite it, and the parts it is made of: the document's `title` and
version `date`, the `headings` it sits under and the unit's `label`, "" where the document gives none; not
named "path": gradio_client takes any object with a "path" for a file to download; 4: `calibration`, which
calibration judged the answer: "index", the index's own (`qa calibrate`), or "shipped"; and `composed`, the
written answer with its sentences checked against the cards (qa/compose/), present only when one was asked
for: `qa ask --compose`, the API's `compose`; 5: each passage's `asked_before`, the question the index
remembers (`qa remember`) that this passage answered and that lifted it, "" for the others).
"""

from dataclasses import asdict, dataclass, field, replace

from qa.decision.outcomes import ANSWERED
from qa.decision.relevance import NOTHING_FOUND, Judgement
from qa.search.question import Question
from qa.search.retrieval import Hit

JSON_VERSION = 5
MAX_SCORE = 0.99


@dataclass(frozen=True)
class CitedPassage:
    rank: int
    score: float
    source: str
    section: str
    text: str
    start: int
    end: int
    page: int | None = None  # the page (PDF page, slide) the passage starts on; None where the source has none
    # How people cite it (qa/passages.py Passage.citation), and its parts: 《title》 headings › label.
    citation: str = ""
    title: str = ""
    date: str = ""
    headings: str = ""  # the headings above it, outermost first, joined by " › "
    label: str = ""
    asked_before: str = ""  # the remembered question it answered, which lifted it (qa/search/memory.py)


@dataclass(frozen=True)
class Answer:
    question: str
    outcome: str  # one of qa.decision.outcomes.OUTCOMES
    confidence: float  # 0..1, that the corpus answers the question
    passages: list[CitedPassage]
    notes: list[str] = field(default_factory=list)  # e.g. that a long question was shortened
    evidence: dict[str, float] = field(default_factory=dict)  # what the confidence was computed from
    # The bar the confidence was judged against (the calibration's thresholds for the question's language):
    # the page colours the relevance bars by it, and both front ends mark passages below uncertain_from weak.
    uncertain_from: float = 0.0
    answered_from: float = 1.0
    # The question as retrieval read it (its vectors and keyword concepts), for the highlighter to reuse.
    asked: Question | None = field(default=None, compare=False, repr=False)
    # The collections and documents the question was limited to (qa/search/scope.py); empty: the whole corpus.
    within: tuple[str, ...] = ()
    calibration: str = "shipped"  # which calibration judged it: "index" (the index's own) or "shipped"
    # The written answer (a qa.compose.Composition: it comes after this stage, so it is not imported here);
    # None when none was asked for.
    composed: object = field(default=None, compare=False, repr=False)

    @property
    def answered(self) -> bool:
        return self.outcome == ANSWERED

    @property
    def lacks_figure(self) -> bool:
        """Whether the question asks for a figure that the first cited passage does not hold (qa/decision/relevance.py)."""
        return bool(self.evidence.get("no_figure"))

    def to_json(self) -> dict:
        """The structure printed by `qa ask --json` and returned by the chat page's API."""
        result = {
            "version": JSON_VERSION,
            "question": self.question,
            "outcome": self.outcome,
            "answered": self.answered,
            "confidence": self.confidence,
            "passages": [asdict(passage) for passage in self.passages],
            "within": list(self.within),
            "calibration": self.calibration,
        }
        if self.notes:
            result["notes"] = list(self.notes)
        if self.composed is not None:
            result["composed"] = self.composed.to_json()
        return result


def passage_scores(confidence: float, hits: list[Hit]) -> list[float]:
    """The score shown for each hit: the confidence scaled by its retrieval score relative to the first's."""
    if not hits:
        return []
    first = hits[0].score
    relative = [1.0] + [min(1.0, max(0.0, hit.score / first)) if first > 0 else 0.0 for hit in hits[1:]]
    return [round(min(MAX_SCORE, confidence) * share, 3) for share in relative]  # capped before scaling: no ties at the cap


def make_answer(question: str, hits: list[Hit], judgement: Judgement | None = None, notes: list[str] | None = None,
                within: tuple[str, ...] = ()) -> Answer:
    """The answer citing `hits` (best first) by the judgement of the first; not found without hits or judgement.
    `within`: the collections and documents the question was limited to."""
    if judgement is None:
        judgement = NOTHING_FOUND
    elif not hits:  # nothing to cite: not found, against the question's own bar
        judgement = replace(NOTHING_FOUND, uncertain_from=judgement.uncertain_from, answered_from=judgement.answered_from,
                            calibration=judgement.calibration)
    scores = passage_scores(judgement.confidence, hits)
    passages = [
        CitedPassage(
            rank=rank,
            score=score,
            source=hit.passage.source,
            section=hit.passage.section,
            text=hit.passage.text,
            start=hit.passage.start,
            end=hit.passage.end,
            page=hit.passage.page,
            citation=hit.passage.citation(),
            title=hit.passage.title,
            date=hit.passage.date,
            headings=hit.passage.path,
            label=hit.passage.label,
            asked_before=hit.asked_before,
        )
        for rank, (hit, score) in enumerate(zip(hits, scores), start=1)
    ]
    return Answer(
        question=question,
        outcome=judgement.outcome,
        confidence=round(judgement.confidence, 4),
        passages=passages,
        notes=notes or [],
        evidence=dict(judgement.evidence),
        uncertain_from=judgement.uncertain_from,
        answered_from=judgement.answered_from,
        asked=hits[0].question if hits else None,
        within=tuple(within),
        calibration=judgement.calibration,
    )
