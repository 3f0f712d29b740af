"""Decide whether the corpus answers a question: answered, uncertain or not found, with a confidence.

Retrieval always returns its best passages; this stage says how far to trust them. The evidence
about the passage retrieval put first, each a number that means the same in any language or corpus:

    dense     the e5 cosine of question and passage, in standard deviations above the cosines that
              generic off-topic questions in the same script reach on this corpus (the background,
              qa/decision/background.py)
    second    the same for a second, independent encoder (USE-multilingual, qa/embeddings/second_encoder.py)
    coverage  the share of the question's keyword weight found in the passage's section (retrieval's)
    absent    how many places, organisations and specific numbers the question names that occur
              nowhere in the corpus (another province, another year: the near misses), at most 2
    no_figure 1 when the question asks for a figure (how many, how much, which year, what share) and
              the cited passage holds none: the corpus covers the topic but not the detail asked
              (absent and no_figure: qa/decision/evidence.py)
    document_prior  only where the index has a verdict of its own fitted with it (`qa calibrate`): the log of
              the share of the library's labelled questions that the passage's document answers
              (qa/decision/calibration.py Calibration.document_prior)

The evidence is combined by a logistic function whose weights and thresholds are fitted
(qa/decision/calibration.py). The confidence is that function's value, except that `no_figure`
(evidence about the detail asked, not the topic) takes it no lower than the "uncertain" bar. The
outcome (qa/decision/outcomes.py) is "answered" at or above `answered_from`, "not_found" below
`uncertain_from`, and "uncertain" between: the best passages are shown with a warning, since a wrong
"uncertain" costs a glance and a wrong "not found" costs the answer.
"""

from dataclasses import dataclass

from qa.decision.background import Background, second_similarities
from qa.decision.calibration import DOCUMENT_PRIOR, SHIPPED, Calibration, expand_evidence
from qa.decision.evidence import absent_names, asks_figure, holds_figure
from qa.decision.outcomes import NOT_FOUND
from qa.text import script


@dataclass(frozen=True)
class Judgement:
    """What the decision made of one question: its outcome, confidence (0..1) and the evidence behind them,
    and the bar it was judged against (its language's thresholds, qa.decision.calibration.Calibration.bar)."""

    outcome: str
    confidence: float
    evidence: dict[str, float]
    uncertain_from: float = 0.0
    answered_from: float = 1.0
    calibration: str = SHIPPED  # which calibration judged it: the shipped one or the index's own (qa/decision/verdict.py)


NOTHING_FOUND = Judgement(NOT_FOUND, 0.0, {})  # a question without any hit


def judge(questions: list[str], best: list, keywords, background: Background, second, calibration: Calibration) -> list[Judgement]:
    """The judgement of each question given its best hit (a retrieval `Hit`, or None when nothing was found).

    `keywords` is the corpus's KeywordIndex (for `contains`), `second` the SecondOpinion over the
    corpus's passages: it reads the passage that matched (`hit.passage.id`) with its section title,
    not the whole citation, so that its vector is the one the build stored. `calibration` judges each question
    by its `for_question` (an index's own calibration, or the shipped one for a language it was not fitted on).
    """
    asked = [(question, hit) for question, hit in zip(questions, best) if hit is not None]
    similarities = second_similarities(second, [q for q, _ in asked], [hit.passage.id for _, hit in asked])
    judged = {}
    for (question, hit), similarity in zip(asked, similarities):
        written_in = script(question)
        judging = calibration.for_question(question)
        evidence = expand_evidence({
            "dense": round(background.standardise("dense", hit.similarity, written_in), 4),
            "second": round(background.standardise("second", float(similarity), written_in), 4),
            "coverage": round(hit.coverage, 4),
            "absent": float(absent_names(question, keywords.contains)),
            "no_figure": float(asks_figure(question) and not holds_figure(hit.passage.text)),
        }, written_in)
        if judging.labelled:
            evidence[DOCUMENT_PRIOR] = judging.document_prior(hit.passage.source)
        confidence = judging.confidence(evidence, question)
        judged[id(hit)] = Judgement(judging.outcome(confidence, question), confidence, evidence, *judging.bar(question), judging.name)
    return [judged[id(hit)] if hit is not None else _nothing_found(question, calibration) for question, hit in zip(questions, best)]


def _nothing_found(question: str, calibration: Calibration) -> Judgement:
    """"Not found" for a question without any hit, against the bar its language is judged by."""
    judging = calibration.for_question(question)
    return Judgement(NOT_FOUND, 0.0, {}, *judging.bar(question), judging.name)
