"""Decide whether the corpus answers a question: answered, uncertain or not found, with a confidence.

Retrieval always returns its best passages; this stage says how far to trust them. The evidence
about the passage retrieval put first, each a number that means the same in any language or corpus:

    dense     the e5 cosine of question and passage, in standard deviations above the cosines that
              generic off-topic questions in the same script reach on this corpus (the background)
    second    the same for a second, independent encoder (USE-multilingual, qa/embeddings/second_encoder.py)
    coverage  the share of the question's keyword weight found in the passage's section
    absent    how many places, organisations and specific numbers the question names that occur
              nowhere in the corpus (another province, another year: the near misses), at most 2
    no_figure 1 when the question asks for a figure (how many, how much, which year, what share) and
              the cited passage holds none: the corpus covers the topic but not the detail asked

Raw cosines cannot take one threshold: e5 puts a valid English question about a Chinese case
below an off-topic Chinese one, and a corpus of Wikipedia articles sits higher than a corpus of
policy cases. The background places each question against questions that are certainly not
answered, in its own script and on the corpus at hand: 300 generic questions shipped in
qa/decision/data/background_questions.tsv (100 each in simplified and traditional Chinese and English),
scored against the corpus at build time and stored with the index (background.json).

The evidence is combined by a logistic function whose weights and thresholds are fitted by
scripts/fit_relevance.py and written to qa/decision/data/relevance.json (fitted on part of the questions,
reported on parts it never saw; the file records both). English questions get weights of their
own for dense, second and coverage (e5 matches them to Chinese text weakly) and thresholds of
their own. The confidence is that function's value, except that `no_figure` (evidence about the
detail asked, not the topic) takes it no lower than the "uncertain" bar. The outcome is "answered"
at or above `answered_from`, "not_found" below `uncertain_from`, and "uncertain" between: the best
passages are shown with a warning, since a wrong "uncertain" costs a glance and a wrong "not found"
costs the answer.
"""

import importlib.metadata
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from qa.config import cache_dir
from qa.errors import IndexCorruptError, QAError
from qa.search.bilingual import place_names, write_json_atomically
from qa.search.keyword import jieba_words
from qa.text import SCRIPTS, has_chinese, in_script, language, script, to_simplified

OUTCOMES = ("answered", "uncertain", "not_found")
ENGLISH_FEATURES = ("dense", "second", "coverage")
FEATURES = ("dense", "second", "coverage", "absent", "no_figure", "english", *(f"english_{name}" for name in ENGLISH_FEATURES))
# Evidence about the detail asked rather than the topic: it tells an answer from a passage on the
# right topic without the figure asked for, so it moves a question between "answered" and "uncertain" only.
DETAIL_FEATURES = ("no_figure",)
LANGUAGES = ("zh", "en")
BACKGROUND_FILE = "background.json"  # in each build folder, beside the vectors
BACKGROUND_FORMAT = 1
MAX_ABSENT = 2
# A corpus of one passage gives every background question the same similarity; a spread below
# these would turn noise into many standard deviations.
MIN_SPREAD = {"dense": 0.01, "second": 0.03}

_NUMBER = re.compile(r"(?<![A-Za-z0-9.])\d+(?:\.\d+)?(?![A-Za-z0-9])|第[一二三四五六七八九十]+[批届次期]")  # not digits inside a Latin token ("[31m", "5G")
# A question that asks for a figure: an amount, a count, a year, a duration, a share. 几 but not 几乎
# (almost), 茶几, 几何 nor 哪几 (which ones: 哪几种模式 asks for kinds, not a count); 多大 but not 多大程度 (how far).
_ASKS_FIGURE = re.compile(
    r"多少|(?<![哪茶])几(?![乎何])|哪一?年|何年|多久|多长时间|多大(?!程度)|多高|多远|多重|比例|百分之|占比"
    r"|\bhow (?:many|much|long|old|big|large|high)\b|\b(?:what|which) (?:year|percentage|proportion|share)\b",
    re.IGNORECASE,
)
# A figure in a text: digits, a Chinese numeral before a unit or measure word (十大, 四条, 三级, 141颗),
# or an English number word (an uploaded English document: "ten thousand yuan", "half of", "percent").
_FIGURE = re.compile(
    r"[0-9０-９]|分之|[一二三四五六七八九十两百千万亿]+[个条项套颗类批次年元人家所座种大届期级倍成岁天月日周里米亩户名位件部台份]"
    r"|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|thousand"
    r"|million|billion|dozen|half|percent)\b",
    re.IGNORECASE,
)
# A capitalised English word inside a sentence (not its first word): a candidate name.
_ENGLISH_NAME = re.compile(r"(?<=[A-Za-z,] )[A-Z][a-z]+\b")


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
        uncertain_from, answered_from = self.bar(question)
        if confidence >= answered_from:
            return "answered"
        return "uncertain" if confidence >= uncertain_from else "not_found"

    def to_json(self) -> dict:
        return {"format": 2, "features": list(self.weights), "weights": list(self.weights.values()), "bias": self.bias,
                "thresholds": {name: list(pair) for name, pair in self.thresholds.items()}, "fitted": self.fitted}


CALIBRATION_FILE = "relevance.json"  # in qa/decision/data, written by scripts/fit_relevance.py


DATA = Path(__file__).resolve().parent / "data"  # shipped as package data (pyproject.toml)


def calibration_path() -> Path:
    return DATA / CALIBRATION_FILE


@lru_cache(maxsize=4)
def load_calibration(path: Path | None = None) -> Calibration:
    """The calibration in `path` (default: the one shipped in qa/decision/data); QAError if it is unusable."""
    path = Path(path) if path is not None else calibration_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        weights = dict(zip(data["features"], (float(w) for w in data["weights"]), strict=True))
        thresholds = {name: (float(low), float(high)) for name, (low, high) in data["thresholds"].items()}
        calibration = Calibration(weights, float(data["bias"]), thresholds, data.get("fitted", {}))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise QAError(f"the relevance calibration {path} cannot be read ({error}); run scripts/fit_relevance.py") from None
    unknown = set(weights) - set(FEATURES)
    if unknown or set(thresholds) != set(LANGUAGES) or not all(0 <= low <= high <= 1 for low, high in thresholds.values()):
        raise QAError(f"the relevance calibration {path} is not one this version can use; run scripts/fit_relevance.py")
    return calibration


@dataclass(frozen=True)
class Background:
    """How generic off-topic questions score on one corpus: per script, the mean and spread of the
    dense and second-encoder similarity of their best passage."""

    stats: dict[str, dict[str, tuple[float, float]]]  # script -> "dense"/"second" -> (mean, spread)
    corpus_script: str = "zh-Hans"  # the script most of the corpus is written in; questions are searched in it
    # What it was measured on (passages, model, retrieval settings, background questions): a build
    # whose fingerprint is the same reuses it instead of searching the 300 questions again.
    fingerprint: str = ""

    def standardise(self, kind: str, value: float, question_script: str) -> float:
        mean, spread = self.stats[question_script][kind]
        return (value - mean) / max(spread, MIN_SPREAD[kind])

    def to_json(self) -> dict:
        return {"format": BACKGROUND_FORMAT, "corpus_script": self.corpus_script, "fingerprint": self.fingerprint, "stats": self.stats}

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1), encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> "Background":
        """The background saved in build `folder`; IndexCorruptError if it is missing or damaged."""
        path = Path(folder) / BACKGROUND_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            stats = {s: {k: (float(m), float(d)) for k, (m, d) in data["stats"][s].items()} for s in SCRIPTS}
            if data.get("format") != BACKGROUND_FORMAT or any(set(stats[s]) != set(MIN_SPREAD) for s in SCRIPTS):
                raise ValueError("another format")
            if data["corpus_script"] not in SCRIPTS:
                raise ValueError(f"unknown script {data['corpus_script']!r}")
        except FileNotFoundError:
            raise IndexCorruptError(f"{path} is missing; rebuild the index") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise IndexCorruptError(f"{path} cannot be read ({error}); rebuild the index") from None
        return cls(stats, data["corpus_script"], str(data.get("fingerprint", "")))


def background_questions_file() -> Path:
    return DATA / "background_questions.tsv"


def background_questions() -> dict[str, list[str]]:
    """The shipped generic off-topic questions, by script."""
    found: dict[str, list[str]] = {name: [] for name in SCRIPTS}
    text = background_questions_file().read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            lang, question = line.split("\t")
            found[lang].append(question.strip())
    return found


def measure_background(search_top, second, corpus_script: str) -> Background:
    """Score the background questions as questions are searched, in the corpus's script:
    `search_top(questions, written)` gives each one's best (passage id, dense similarity), given the
    questions in the corpus's script and as written; `second` is the SecondOpinion over the passages."""
    stats = {}
    for name, questions in background_questions().items():
        best = search_top([in_script(question, corpus_script) for question in questions], questions)
        dense = np.array([similarity for _, similarity in best], dtype=np.float64)
        second_scores = second_similarities(second, questions, [row for row, _ in best]).astype(np.float64)
        stats[name] = {"dense": (float(dense.mean()), float(dense.std())), "second": (float(second_scores.mean()), float(second_scores.std()))}
    return Background(stats, corpus_script)


@lru_cache(maxsize=1)
def place_words() -> frozenset[str]:
    """The words jieba's dictionary tags as places (ns) or organisations (nt), about 22,000.

    Read once from the dictionary and cached as JSON (jieba.posseg would tag them too, but loads
    for most of a second on every start)."""
    import jieba

    path = cache_dir() / f"jieba-places-{importlib.metadata.version('jieba')}.json"
    try:
        return frozenset(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    source = Path(jieba.__file__).parent / "dict.txt"
    words = sorted(
        parts[0]
        for parts in (line.split() for line in source.read_text(encoding="utf-8").splitlines())
        if len(parts) == 3 and parts[2] in ("ns", "nt")
    )
    write_json_atomically(path, words)
    return frozenset(words)


def named_things(question: str) -> list[tuple[str, ...]]:
    """The places, organisations and specific numbers a question names, each as alternative
    (simplified) spellings: "江苏省的…" -> [("江苏省",)], "… in Guangdong?" -> [("广东",)]."""
    simplified = to_simplified(question)
    found: list[tuple[str, ...]] = []
    if has_chinese(simplified):
        places = place_words()
        found += [(word,) for word in dict.fromkeys(jieba_words(simplified)) if len(word) >= 2 and word in places]
        found += [(match.group(),) for match in _NUMBER.finditer(simplified)]
    for match in _ENGLISH_NAME.finditer(question):
        names = place_names().get(match.group().lower(), [])
        if names:
            found.append(tuple(names))
    return found


def absent_names(question: str, contains) -> int:
    """How many of the question's named things `contains(phrase, whole_word)` finds nowhere (at most
    MAX_ABSENT). An ordinal must occur as a whole word: 第一批 is not found in "第二批…一批…第一"."""
    absent = sum(
        1
        for alternatives in named_things(question)
        if not any(contains(name, whole_word=name.startswith("第")) for name in alternatives)
    )
    return min(absent, MAX_ABSENT)


def asks_figure(question: str) -> bool:
    """Whether the question asks for a figure: how many, how much, which year, how long, what share."""
    return bool(_ASKS_FIGURE.search(to_simplified(question)))


def holds_figure(text: str) -> bool:
    """Whether `text` holds a figure: digits, or a Chinese numeral before a unit or measure word."""
    return bool(_FIGURE.search(to_simplified(text)))


def second_similarities(second, questions: list[str], rows: list[int]) -> np.ndarray:
    """The second encoder's cosine of each question and passage `rows[i]` (a SecondOpinion's vectors)."""
    if not questions:
        return np.zeros(0)
    return np.sum(second.questions(questions) * second.of_passages(rows), axis=1)


@dataclass(frozen=True)
class Judgement:
    """What the decision made of one question: its outcome, confidence (0..1) and the evidence behind them."""

    outcome: str
    confidence: float
    evidence: dict[str, float]


NOT_FOUND = Judgement("not_found", 0.0, {})


def judge(questions: list[str], best: list, keywords, background: Background, second, calibration: Calibration) -> list[Judgement]:
    """The judgement of each question given its best hit (a retrieval `Hit`, or None when nothing was found).

    `keywords` is the corpus's KeywordIndex (for `contains`), `second` the SecondOpinion over the
    corpus's passages: it reads the passage that matched (`hit.passage.id`) with its section title,
    not the whole citation, so that its vector is the one the build stored.
    """
    asked = [(question, hit) for question, hit in zip(questions, best) if hit is not None]
    similarities = second_similarities(second, [q for q, _ in asked], [hit.passage.id for _, hit in asked])
    judged = {}
    for (question, hit), similarity in zip(asked, similarities):
        written_in = script(question)
        evidence = expand_evidence({
            "dense": round(background.standardise("dense", hit.similarity, written_in), 4),
            "second": round(background.standardise("second", float(similarity), written_in), 4),
            "coverage": round(hit.coverage, 4),
            "absent": float(absent_names(question, keywords.contains)),
            "no_figure": float(asks_figure(question) and not holds_figure(hit.passage.text)),
        }, written_in)
        confidence = calibration.confidence(evidence, question)
        judged[id(hit)] = Judgement(calibration.outcome(confidence, question), confidence, evidence)
    return [judged[id(hit)] if hit is not None else NOT_FOUND for hit in best]
