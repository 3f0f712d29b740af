"""Find the sentences that answer a question inside the passages cited for it.

The page marks, in each cited passage, the sentences that match the question, and quotes the best
sentence of the first passage as the answer line (so the quote always belongs to card [1]). A
sentence is scored by two kinds of evidence:

    similarity  cosine of its embedding and the question's (the assistant's own model, sentence
                vectors cached, so no second model is loaded)
    coverage    the share of the question's keyword weight it holds, by the same keyword analysis
                retrieval used (qa/search/keyword.py: the same tokens, concepts and English translations)

A sentence's score is its similarity plus `highlight_keyword_weight` times its coverage. The best
sentence of a passage is marked when it holds any of the question's keywords or is the answer line;
another sentence only when it holds at least half as much of the question's keyword weight as the best
one and its score is within `highlight_margin` of it (qa.config.Config). A passage is never marked
whole unless it is a single sentence: marking everything says nothing.

The question's vector and keyword concepts are those retrieval computed (qa/search/question.py), when
the answer carries them: the question is embedded and analysed once per answer.
"""

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from qa.answer import CitedPassage
from qa.config import Config
from qa.passages import split_sentences
from qa.search.question import Question


@dataclass(frozen=True)
class Sentence:
    """A sentence of cited passage `rank`, at [start, end) of that passage's text."""

    rank: int
    start: int
    end: int
    text: str
    score: float
    coverage: float = 0.0


@dataclass(frozen=True)
class Highlights:
    """The answer line (the best sentence of passage 1; None when nothing was scored) and the sentences to mark per passage rank."""

    best: Sentence | None = None
    marked: dict[int, list[Sentence]] = field(default_factory=dict)

    def spans(self, rank: int) -> list[tuple[int, int]]:
        """Offsets within passage `rank`'s text of its highlighted sentences, in text order."""
        return [(sentence.start, sentence.end) for sentence in self.marked.get(rank, [])]


class Highlighter:
    """Scores the sentences of cited passages against a question (see the module docstring).

    `embedder` embeds sentences (the assistant's); `keywords` is the served KeywordIndex, or a
    callable returning it (the index can be replaced by a rebuild); `config` gives the weights.
    """

    def __init__(self, embedder, keywords, config: Config | None = None, cache_size: int = 4096):
        config = config or Config()
        self.embedder = embedder
        self._keywords = keywords
        self.margin = config.highlight_margin
        self.keyword_weight = config.highlight_keyword_weight
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the page answers several sessions at once

    @property
    def keywords(self):
        return self._keywords() if callable(self._keywords) else self._keywords

    def highlight(self, question: str | Question, passages: list[CitedPassage]) -> Highlights:
        """The answer line and the sentences to mark in `passages` for `question`: its text, or the
        question as retrieval read it (`Answer.asked`), whose vector and keyword concepts are reused."""
        sentences = [(passage.rank, s, e, passage.text[s:e]) for passage in passages for s, e in split_sentences(passage.text)]
        if not sentences:
            return Highlights()
        texts = [text for *_, text in sentences]
        keywords = self.keywords
        if isinstance(question, Question):
            written, question_vector, concepts = question.written, question.written_vector, question.written_concepts(keywords.tokenizer)
        else:
            written, question_vector, concepts = question, self.embedder.embed_questions([question])[0], None
        similarities = self._vectors(texts) @ question_vector
        coverages = keywords.text_coverage(written, texts, concepts)
        scored = [
            Sentence(rank, s, e, text, round(float(similarity) + self.keyword_weight * float(coverage), 6), round(float(coverage), 4))
            for (rank, s, e, text), similarity, coverage in zip(sentences, similarities, coverages)
        ]
        first = [sentence for sentence in scored if sentence.rank == passages[0].rank]
        best = max(first, key=lambda sentence: sentence.score) if first else None
        marked = {}
        for passage in passages:
            own = [sentence for sentence in scored if sentence.rank == passage.rank]
            if own:
                marked[passage.rank] = self._marked(own, best)
        return Highlights(best=best, marked=marked)

    def _marked(self, own: list[Sentence], best: Sentence | None) -> list[Sentence]:
        top = max(own, key=lambda sentence: sentence.score)
        if top.coverage <= 0 and top is not best:
            return []  # nothing of the question in this passage's sentences
        chosen = [
            sentence
            for sentence in own
            if sentence is top
            or (top.coverage > 0 and sentence.coverage >= top.coverage / 2 and sentence.score >= top.score - self.margin)
        ]
        if len(chosen) == len(own) > 1:
            chosen = [top]
        return chosen

    def _vectors(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
            if missing:
                self._cache.update(zip(missing, self.embedder.embed_passages(missing)))
            for text in texts:
                self._cache.move_to_end(text)
            vectors = np.stack([self._cache[text] for text in texts])
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return vectors
