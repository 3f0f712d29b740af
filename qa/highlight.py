"""Find the sentences that answer a question inside the passages cited for it.

A cited passage holds a few sentences; the page highlights in each passage the sentence that best
matches the question (and any other sentence nearly as good), and quotes the single best sentence
of all as the answer line. A sentence's score is the cosine similarity of its embedding with the
question's (the assistant's own model, so no second model is loaded) plus a small bonus for the
question's words it contains: character bigrams for Chinese, words for English. E5 similarities
of neighbouring sentences differ by a few thousandths, and the bonus breaks those near-ties in
favour of the sentence that names what was asked.
"""

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .answer import CitedPassage
from .embeddings import Embedder
from .passages import split_sentences

# Question words say what kind of answer is wanted, not what it is about: they never count as overlap.
_QUESTION_BIGRAMS = frozenset(
    "什么 怎么 怎样 如何 哪些 哪个 哪里 多少 是否 为什么 有没 没有 是不 可以 能否 主要 具体 有哪 哪方 方面 关系 有什 么关".split()
)
_ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be by can do does did for from has have how in is it its of on or that the their "
    "there these this those to was were what when where which who whom why will with about into more".split()
)
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class Sentence:
    """A sentence of cited passage `rank`, at [start, end) of that passage's text."""

    rank: int
    start: int
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class Highlights:
    """The best sentence of all (None when nothing was scored) and the sentences to mark per passage rank."""

    best: Sentence | None = None
    marked: dict[int, list[Sentence]] = field(default_factory=dict)

    def spans(self, rank: int) -> list[tuple[int, int]]:
        """Offsets within passage `rank`'s text of its highlighted sentences, in text order."""
        return [(sentence.start, sentence.end) for sentence in self.marked.get(rank, [])]


def keywords(text: str) -> set[str]:
    """The words a match should share: Chinese character bigrams and lower-cased English words."""
    found: set[str] = set()
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            found.add(run)
        found.update(run[i : i + 2] for i in range(len(run) - 1))
    found.update(word for word in _WORD.findall(text.lower()) if word not in _ENGLISH_STOPWORDS)
    return found - _QUESTION_BIGRAMS


def keyword_overlap(question: str, sentence: str) -> float:
    """The share (0..1) of the question's keywords that occur in the sentence; 0 if it has none."""
    wanted = keywords(question)
    return len(wanted & keywords(sentence)) / len(wanted) if wanted else 0.0


class Highlighter:
    """Scores the sentences of cited passages against a question with the assistant's embedder.

    `margin`: a sentence is marked when it scores within this much of its passage's best sentence.
    `keyword_weight`: weight of the keyword overlap (0..1) added to the cosine similarity.
    Sentence vectors are cached, as the same passages come back for related questions.
    """

    def __init__(self, embedder: Embedder, margin: float = 0.01, keyword_weight: float = 0.05, cache_size: int = 4096):
        self.embedder = embedder
        self.margin = margin
        self.keyword_weight = keyword_weight
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the page answers several sessions at once

    def highlight(self, question: str, passages: list[CitedPassage]) -> Highlights:
        """Score every sentence of `passages` against `question`; see the module docstring."""
        sentences = [
            (passage.rank, s, e, passage.text[s:e])
            for passage in passages
            for s, e in split_sentences(passage.text)
        ]
        if not sentences:
            return Highlights()
        question_vector = self.embedder.embed_questions([question])[0]
        similarities = self._vectors([text for _, _, _, text in sentences]) @ question_vector
        scored = [
            Sentence(rank, s, e, text, round(float(similarity) + self.keyword_weight * keyword_overlap(question, text), 6))
            for (rank, s, e, text), similarity in zip(sentences, similarities)
        ]
        marked: dict[int, list[Sentence]] = {}
        for passage in passages:
            own = [sentence for sentence in scored if sentence.rank == passage.rank]
            if own:
                top = max(sentence.score for sentence in own)
                marked[passage.rank] = [sentence for sentence in own if sentence.score >= top - self.margin]
        # Ties go to the higher-ranked passage: max() keeps the first of equal scores.
        best = max(scored, key=lambda sentence: sentence.score)
        return Highlights(best=best, marked=marked)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self._cached_vectors(texts)

    def _cached_vectors(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
        if missing:
            self._cache.update(zip(missing, self.embedder.embed_passages(missing)))
        for text in texts:
            self._cache.move_to_end(text)
        vectors = np.stack([self._cache[text] for text in texts])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vectors
