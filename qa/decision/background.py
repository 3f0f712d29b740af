"""How generic off-topic questions score on one corpus: the background the decision measures similarity against.

Raw cosines cannot take one threshold: e5 puts a valid English question about a Chinese case below an
off-topic Chinese one, and a corpus of Wikipedia articles sits higher than a corpus of policy cases.
The background places each question against questions that are certainly not answered, in its own
script and on the corpus at hand: 300 generic questions shipped in qa/decision/data/background_questions.tsv
(100 each in simplified and traditional Chinese and English), scored against the corpus at build time
and stored with the index (background.json).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.decision.calibration import DATA
from qa.errors import IndexCorruptError
from qa.text import SCRIPTS, in_script

BACKGROUND_FILE = "background.json"  # in each build folder, beside the vectors
BACKGROUND_FORMAT = 1
# A corpus of one passage gives every background question the same similarity; a spread below
# these would turn noise into many standard deviations.
MIN_SPREAD = {"dense": 0.01, "second": 0.03}


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
        """`value` ("dense" or "second" similarity) in spreads above the background of `question_script`."""
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


def second_similarities(second, questions: list[str], rows: list[int]) -> np.ndarray:
    """The second encoder's cosine of each question and passage `rows[i]` (a SecondOpinion's vectors)."""
    if not questions:
        return np.zeros(0)
    return np.sum(second.questions(questions) * second.of_passages(rows), axis=1)
