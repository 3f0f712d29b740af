"""Hard negatives from the project's own retrieval, and the triplets `qa tune` trains on.

Every labelled question is asked of the current index as `qa eval` asks it (the Assistant's hybrid retrieval,
RANKED passages). The passages it ranks there that retrieve none of the question's relevant texts (qa eval's
window rule) are its mined negatives, best first: what the model now puts before the answer, or nearly. A
thumbs-down passage comes before them. The same answers give the "before" figures, so one pass serves both.

Each positive passage of a question makes one triplet (question, positive, negative): the i-th positive gets the
question's i-th negative, around again when there are fewer negatives than positives. A question without any
negative (everything it retrieved is relevant) gets a passage of the index drawn at random (seeded): every
triplet needs one, and the other questions' passages in its batch are its negatives as well.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

from qa.answer import Answer
from qa.evaluation import RANKED
from qa.tuning.pairs import LabelledQuestion, PassageFinder


@dataclass(frozen=True)
class Triplet:
    """One training example: the question and the embedding texts of a positive and a negative passage."""

    question_id: str
    question: str
    positive: str
    negative: str

    def to_json(self) -> dict:
        return {"id": self.question_id, "question": self.question, "positive": self.positive, "negative": self.negative}

    @classmethod
    def from_json(cls, row: dict) -> "Triplet":
        return cls(row["id"], row["question"], row["positive"], row["negative"])


def ask_all(questions: list[LabelledQuestion], ask_many: Callable[[list[str]], list[Answer]], batch: int = 64,
            progress: Callable[[int, int], None] | None = None) -> list[Answer]:
    """The answers to every question, asked in batches through `ask_many` (an Assistant's, with k=RANKED)."""
    answers: list[Answer] = []
    for start in range(0, len(questions), batch):
        answers.extend(ask_many([q.question for q in questions[start : start + batch]]))
        if progress:
            progress(len(answers), len(questions))
    return answers


def mined_negatives(question: LabelledQuestion, answer: Answer, finder: PassageFinder) -> list[int]:
    """The rows of the passages the answer cites (its first RANKED) that retrieve none of the question's relevant
    texts and are not among its positives, in the answer's order."""
    target = question.eval_question()
    rows = []
    for passage in answer.passages[:RANKED]:
        if target.articles_in(passage):
            continue
        row = finder.span(passage.source, passage.start, passage.end)
        if row is not None and row not in question.positives and row not in rows:
            rows.append(row)
    return rows


def triplets(questions: list[LabelledQuestion], negatives: dict[str, list[int]], finder: PassageFinder,
             per_positive: int = 1, seed: int = 0) -> list[Triplet]:
    """The triplets of `questions` (module docstring): `per_positive` per positive passage, each with the next of
    the question's negatives (its thumbs-down passages, then `negatives[id]`, the mined ones)."""
    draw = random.Random(seed)
    result = []
    for question in questions:
        pool = list(dict.fromkeys([*question.negatives, *negatives.get(question.id, [])]))
        if not pool:
            pool = [row for row in draw.sample(range(len(finder.passages)), min(3, len(finder.passages)))
                    if row not in question.positives][:1] or [question.positives[0]]
        turn = 0
        for row in question.positives:
            for _ in range(per_positive):
                negative = finder.passages[pool[turn % len(pool)]].embedding_text()
                turn += 1
                result.append(Triplet(question.id, question.question, finder.passages[row].embedding_text(), negative))
    return result
