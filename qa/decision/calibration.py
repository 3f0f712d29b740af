"""The fitted decision: a logistic function of the evidence, and per language the thresholds of the outcomes.

The weights and thresholds are fitted by scripts/fit_relevance.py and written to
qa/decision/data/relevance.json (fitted on part of the questions, reported on parts it never saw; the
file records both): the shipped calibration. English questions get weights of their own for dense, second
and coverage (e5 matches them to Chinese text weakly) and thresholds of their own.

An index may have a calibration of its own, fitted by `qa calibrate` on its library's labelled questions
(qa/decision/verdict.py); it holds thresholds only for the languages it had questions in, and questions in
the others are judged by the shipped one (`fallback`). It may read one more piece of evidence, DOCUMENT_PRIOR:
how many of those questions the first passage's document answered (`answers`, of `labelled`).
"""

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from qa.decision.outcomes import ANSWERED, NOT_FOUND, UNCERTAIN
from qa.errors import QAError
from qa.text import language

ENGLISH_FEATURES = ("dense", "second", "coverage")
FEATURES = ("dense", "second", "coverage", "absent", "no_figure", "english", *(f"english_{name}" for name in ENGLISH_FEATURES))
# Evidence only an index's own calibration reads: the log of the smoothed share of its labelled questions that the
# first passage's document answers (Calibration.document_prior). On the statute library, whose questions are
# answered from a few codes, it doubled what the bundled model's verdict answered (README).
DOCUMENT_PRIOR = "document_prior"
INDEX_FEATURES = (*FEATURES, DOCUMENT_PRIOR)
# Evidence about the detail asked rather than the topic: it tells an answer from a passage on the
# right topic without the figure asked for, so it moves a question between "answered" and "uncertain" only.
DETAIL_FEATURES = ("no_figure",)
LANGUAGES = ("zh", "en")
SHIPPED, INDEX = "shipped", "index"  # the calibration in qa/decision/data; an index's own (qa/decision/verdict.py)
CALIBRATION_FILE = "relevance.json"  # in qa/decision/data, written by scripts/fit_relevance.py
DATA = Path(__file__).resolve().parent / "data"  # shipped as package data (pyproject.toml)


def expand_evidence(evidence: dict[str, float], question_script: str) -> dict[str, float]:
    """The evidence with the English-only copies of dense, second and coverage (0 for Chinese):
    e5 matches English questions to Chinese text weakly, so English leans on other evidence."""
    english = 1.0 if question_script == "en" else 0.0
    return {**evidence, "english": english, **{f"english_{name}": english * evidence[name] for name in ENGLISH_FEATURES}}


@dataclass(frozen=True)
class Calibration:
    """The fitted decision: logistic weights over FEATURES and, per language, the two outcome
    thresholds (uncertain from, answered from)."""

    weights: dict[str, float]
    bias: float
    thresholds: dict[str, tuple[float, float]]  # "zh"/"en" -> (uncertain_from, answered_from)
    fitted: dict = field(default_factory=dict)  # what it was fitted on and how it did, as the script wrote it
    name: str = SHIPPED  # which calibration this is, as an answer names it: SHIPPED or INDEX
    fallback: "Calibration | None" = field(default=None, repr=False)  # for languages without thresholds here
    # An index's own: how many labelled questions each document (source) answers, of `labelled` in all (0: it reads
    # no DOCUMENT_PRIOR).
    answers: dict[str, int] = field(default_factory=dict)
    labelled: int = 0

    def document_prior(self, source: str, asked_by: tuple[str, ...] | None = None) -> float:
        """DOCUMENT_PRIOR for a first passage from `source`: log((answered + 0.5) / (labelled + 1)), so a document that
        answered no labelled question still has a share. `asked_by`: when the question asked is itself one of the
        labelled, the documents that answer it, so that it counts as a new question would (its own answer left out)."""
        answered, labelled = self.answers.get(source, 0), self.labelled
        if asked_by is not None:
            answered, labelled = answered - (source in asked_by), labelled - 1
        return round(math.log((answered + 0.5) / (labelled + 1)), 4)

    def for_question(self, question: str) -> "Calibration":
        """The calibration that judges `question`: this one, or its fallback for a language it has no thresholds for."""
        if language(question) in self.thresholds or self.fallback is None:
            return self
        return self.fallback

    def score(self, evidence: dict[str, float]) -> float:
        """The logistic function of the weighted evidence, 0..1."""
        z = self.bias + sum(weight * evidence.get(name, 0.0) for name, weight in self.weights.items())
        return 1 / (1 + math.exp(-max(-60.0, min(60.0, z))))

    def confidence(self, evidence: dict[str, float], question: str) -> float:
        """The score, except that DETAIL_FEATURES take it no lower than the question's "uncertain" bar:
        a passage on the question's topic that lacks the detail asked is worth a glance, not "not found"."""
        score = self.score(evidence)
        if not any(evidence.get(name) for name in DETAIL_FEATURES):
            return score
        on_topic = self.score({**evidence, **dict.fromkeys(DETAIL_FEATURES, 0.0)})
        return max(score, min(on_topic, self.bar(question)[0]))

    def bar(self, question: str) -> tuple[float, float]:
        """(uncertain_from, answered_from) for a question in its language."""
        return self.thresholds[language(question)]

    def outcome(self, confidence: float, question: str) -> str:
        """ANSWERED at or above the question's answered_from, NOT_FOUND below its uncertain_from, else UNCERTAIN."""
        uncertain_from, answered_from = self.bar(question)
        if confidence >= answered_from:
            return ANSWERED
        return UNCERTAIN if confidence >= uncertain_from else NOT_FOUND

    def to_json(self) -> dict:
        found = {"format": 2, "features": list(self.weights), "weights": list(self.weights.values()), "bias": self.bias,
                 "thresholds": {name: list(pair) for name, pair in self.thresholds.items()}, "fitted": self.fitted}
        if self.labelled:
            found["documents"] = {"labelled": self.labelled, "answers": self.answers}
        return found


def calibration_path() -> Path:
    return DATA / CALIBRATION_FILE


@lru_cache(maxsize=4)
def load_calibration(path: Path | None = None) -> Calibration:
    """The calibration in `path` (default: the one shipped in qa/decision/data); QAError if it is unusable."""
    path = Path(path) if path is not None else calibration_path()
    try:
        return calibration_from_json(json.loads(path.read_text(encoding="utf-8")), LANGUAGES)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise QAError(f"the relevance calibration {path} cannot be read ({error}); run scripts/fit_relevance.py") from None


def calibration_from_json(data: dict, languages=LANGUAGES) -> Calibration:
    """The Calibration that `Calibration.to_json` wrote, with thresholds for exactly `languages`; ValueError,
    KeyError or TypeError saying what is wrong with it."""
    weights = dict(zip(data["features"], (float(w) for w in data["weights"]), strict=True))
    thresholds = {name: (float(low), float(high)) for name, (low, high) in data["thresholds"].items()}
    documents = data.get("documents", {"labelled": 0, "answers": {}})
    labelled, answers = int(documents["labelled"]), {str(k): int(v) for k, v in documents["answers"].items()}
    unknown = set(weights) - set(INDEX_FEATURES if labelled else FEATURES)
    if unknown:
        raise ValueError(f"unknown evidence {sorted(unknown)}")
    if set(thresholds) != set(languages) or not all(0 <= low <= high <= 1 for low, high in thresholds.values()):
        raise ValueError(f"thresholds must be 0 <= uncertain_from <= answered_from <= 1 for {', '.join(languages)}")
    return Calibration(weights, float(data["bias"]), thresholds, data.get("fitted", {}), answers=answers, labelled=labelled)
