"""Questions asked before: the passages that answered labelled questions lift a new question like them.

An office's questions repeat in other words: people ask about 贞操权 where the law says 人格权, and an
article that answered one person answers the next. `qa remember` (qa/tuning/remember.py) keeps the
library's labelled questions beside the index (the files `qa tune` reads, and the feedback log's
thumbs-up): each question's vector, as the index's model encodes it, and the passages that answer it.

A new question's NEIGHBOURS nearest remembered questions vote for their passages, each vote weighing
softmax(similarity / TEMPERATURE) among them, split evenly among a question's passages; a passage's
share of the vote (0..1) times the fitted `weight` is added to its fused score (qa/search/fusion.py,
where scores run 0..1). A question unlike any remembered one still gets votes, spread thin: a share
needs neighbours that agree to count. The weight is fitted by `qa remember` on the remembered questions
themselves, each asked without its own fold in the memory, and 0 is among the weights tried. A cited passage
that a remembered question with SHOWN_VOTE of the vote or more was answered by names that question (the
cards' "asked before"), so that a lift can be checked too.

    index/memory.json    the questions, their passages (source and span), the weight and its figures
    index/memory.npy     the questions' vectors, one row each, in the order of memory.json

An assistant already serving takes a new memory at its next question (Assistant._serving). It is used
while the index's model is the one it was written with (its name, precision and files' fingerprint:
qa/decision/verdict.py ModelIdentity); a remembered passage that a rebuild no longer has is left out, and
the assistant says how many once. TEMPERATURE and NEIGHBOURS were chosen on the statute library's training
questions, each left out of the memory in turn (README); in `qa remember`'s own folds, 0.05 or 20
neighbours did no better.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qa.errors import CalibrationError
from qa.passages import Passage
from qa.store.folder import file_stamp

MEMORY_FILE = "memory.json"
MEMORY_VECTORS = "memory.npy"
MEMORY_FORMAT = 1
NEIGHBOURS = 10
TEMPERATURE = 0.02
# A card names the remembered question that lifted it when that question had at least this share of the vote.
SHOWN_VOTE = 0.2
REMEMBER_HINT = "run `qa remember` with the library's labelled questions again, or delete the file"


@dataclass(frozen=True)
class QuestionMemory:
    """Remembered questions' vectors (normalised, one row each) and the passage rows that answer each."""

    vectors: np.ndarray
    rows: tuple[np.ndarray, ...]
    weight: float
    questions: tuple[str, ...] = ()  # their texts, where known (what `qa eval` checks its questions against)
    neighbours: int = NEIGHBOURS
    temperature: float = TEMPERATURE

    def __len__(self) -> int:
        return len(self.rows)

    def voters(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The remembered questions nearest to the question `vector` (normalised) and their votes, summing to 1."""
        similarity = self.vectors @ vector
        count = min(self.neighbours, len(similarity))
        if not count:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        nearest = np.argpartition(-similarity, count - 1)[:count]
        weights = np.exp((similarity[nearest] - similarity[nearest].max()) / self.temperature)
        return nearest, weights / weights.sum()

    def votes(self, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The passages the question `vector` (normalised) is answered by as its neighbours were, and each one's
        share of their vote, summing to 1 (empty when nothing is remembered)."""
        return self._shares(self.voters(vector))

    def lift(self, voters: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The passage rows to lift for a question whose `voters` these are (`voters(vector)`) and by how much
        (`weight` × their share of the vote)."""
        rows, shares = self._shares(voters)
        return rows, self.weight * shares

    def _shares(self, voters: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        nearest, weights = voters
        if not len(nearest):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        rows = np.concatenate([self.rows[i] for i in nearest])
        shares = np.concatenate([np.full(len(self.rows[i]), w / len(self.rows[i])) for i, w in zip(nearest, weights)])
        unique, where = np.unique(rows, return_inverse=True)
        return unique, np.bincount(where, weights=shares)

    def asked_before(self, voters: tuple[np.ndarray, np.ndarray], first: int, last: int) -> str:
        """The remembered question with the largest vote among `voters` (`voters(vector)`) that was answered by a
        passage of rows first … last, if its vote is SHOWN_VOTE or more: what the card says was asked before; ""."""
        best, best_vote = "", SHOWN_VOTE
        for i, vote in zip(*voters):
            if vote >= best_vote and i < len(self.questions) and ((self.rows[i] >= first) & (self.rows[i] <= last)).any():
                best, best_vote = self.questions[i], vote
        return best

    def only(self, keep: np.ndarray) -> "QuestionMemory":
        """This memory with only the questions flagged in `keep` (a fit asks a question without its own)."""
        keep = np.asarray(keep, dtype=bool)
        return replace(self, vectors=self.vectors[keep], rows=tuple(r for r, k in zip(self.rows, keep) if k),
                       questions=tuple(q for q, k in zip(self.questions, keep) if k) if self.questions else ())


def memory_paths(index_dir: Path) -> tuple[Path, Path]:
    return Path(index_dir) / MEMORY_FILE, Path(index_dir) / MEMORY_VECTORS


def memory_stamp(index_dir: Path) -> tuple[int, int, int] | None:
    """What tells that the memory was written again since (`write_memory` replaces memory.json last, whole)."""
    return file_stamp(memory_paths(index_dir)[0])


def write_memory(index_dir: Path, facts: dict, vectors: np.ndarray) -> Path:
    """Write the memory (`facts`: memory.json's contents, `vectors`: its questions' rows) into the index folder,
    the vectors first and the file that names them last, each in one step. CalibrationError when it cannot."""
    path, vectors_path = memory_paths(index_dir)
    try:
        for target, write in ((vectors_path, lambda f: np.save(f, np.asarray(vectors, dtype=np.float32))),
                              (path, lambda f: f.write(json.dumps({"format": MEMORY_FORMAT, **facts}, ensure_ascii=False, indent=1).encode() + b"\n"))):
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            with open(partial, "wb") as file:
                write(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, target)
    except OSError as error:
        for target in (path, vectors_path):
            target.with_name(f".{target.name}.{os.getpid()}.partial").unlink(missing_ok=True)
        raise CalibrationError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def read_memory(index_dir: Path) -> tuple[dict, np.ndarray] | None:
    """memory.json's contents and the vectors, or None when the index has no memory; CalibrationError naming the
    file when it is damaged or the two files disagree."""
    path, vectors_path = memory_paths(index_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise CalibrationError(f"the index's memory {path} cannot be read ({getattr(error, 'strerror', None) or error}); {REMEMBER_HINT}") from None
    try:
        facts = json.loads(text)
        if not isinstance(facts, dict) or facts.get("format") != MEMORY_FORMAT:
            raise ValueError(f"not a memory of format {MEMORY_FORMAT}")
        vectors = np.load(vectors_path, allow_pickle=False)
        if vectors.ndim != 2 or len(vectors) != len(facts["questions"]):
            raise ValueError(f"{vectors_path.name} holds {len(vectors)} vectors for {len(facts['questions'])} questions")
        float(facts["weight"]), {key: str(facts["model"][key]) for key in ("name", "precision", "fingerprint")}
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = "not valid JSON, truncated or damaged" if isinstance(error, json.JSONDecodeError) else (
            f"no {error}" if isinstance(error, KeyError) else str(error) or type(error).__name__)
        raise CalibrationError(f"the index's memory {path} cannot be used ({reason}); {REMEMBER_HINT}") from None
    return facts, vectors


def index_memory(index_dir: Path, passages: list[Passage], identity: Callable) -> tuple[QuestionMemory | None, str | None]:
    """The memory of the index in `index_dir` over its `passages`, for questions asked with the model `identity()`
    gives, and a note to say once: None with a note when it was written with another model; a note when some of
    its passages are no longer in the index. CalibrationError for a damaged memory. `identity` gives a
    qa.decision.verdict.ModelIdentity (called only when there is a memory)."""
    found = read_memory(index_dir)
    if found is None or not float(found[0]["weight"]):  # weight 0: remembering did not help, lift nothing
        return None, None
    facts, vectors = found
    path = memory_paths(index_dir)[0]
    written, model = facts["model"], identity().to_json()
    if written != model:
        return None, (f"note: {path} was written with another model ({written['name']}, {written['precision']}; now "
                      f"{model['name']}, {model['precision']}): questions are not compared with remembered ones until "
                      "`qa remember` is run again")
    spans = {(p.source, p.start, p.end): row for row, p in enumerate(passages)}
    rows, missing = [], 0
    for question in facts["questions"]:
        found_rows = [spans.get((source, start, end)) for source, start, end in question["passages"]]
        missing += sum(row is None for row in found_rows)
        rows.append(np.array(sorted({row for row in found_rows if row is not None}), dtype=np.int64))
    keep = np.array([len(r) > 0 for r in rows], dtype=bool)
    texts = tuple(str(question.get("question", "")) for question in facts["questions"])
    memory = QuestionMemory(np.ascontiguousarray(vectors, dtype=np.float32), tuple(rows), float(facts["weight"]), texts).only(keep)
    note = None
    if missing:
        note = (f"note: {missing} of the passages remembered in {path} are no longer in the index (rebuilt since): "
                f"{len(memory)} of {len(rows)} questions are remembered; run `qa remember` again")
    return (memory if len(memory) else None), note
