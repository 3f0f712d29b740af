"""Find the passages that answer a question: the hybrid retriever and its hits.

Every retriever has `search(question, k)` and `search_many(questions, k)` returning `Hit`s best
first. The hybrid retriever reads each question once (qa/search/question.py: its vectors and keyword
concepts, carried by its hits), computes the evidence of passages and sections at once (numpy and
scipy products, no loop over passages) and ranks by its fusion (qa/search/fusion.py):

    dense     cosine similarity of question and passage embeddings
    keyword   BM25 of the passage, divided by the question's best passage BM25 (English words count
              through their Chinese translations, see qa/search/keyword.py and qa/search/bilingual.py)
    section   the same two kinds of evidence for the passage's whole section (qa/search/sections.py)

A small corpus scores every passage for every question; a large one only candidates
(qa/search/candidates.py). Where the index remembers labelled questions (`qa remember`,
qa/search/memory.py), the passages that answered the nearest of them are lifted (and are candidates).
The best passages are grown into citations (qa/search/citations.py).

A search limited to a scope (`within`: collections and documents, qa/search/scope.py; `library`
resolves names into one) ranks only the scope's passages, by the scores the whole corpus gives them:
scoring every passage, the ranking is the unlimited one with the other passages left out (they are
never candidates to cite), so k hits of the scope come back at the cost of an unlimited search; scoring
candidates, they are chosen within the scope. A citation never leaves its section, nor a section its
document, so no citation crosses the scope's edge. English questions' second opinion re-reads the best
passages of the scope.
"""

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from qa.config import Config
from qa.embeddings.model import Embedder
from qa.embeddings.second_encoder import SecondOpinion, read_second_vectors
from qa.passages import Passage
from qa.search.candidates import Candidates
from qa.search.citations import Citations
from qa.search.fusion import Evidence, add_second_opinion, fuse, relative
from qa.search.keyword import KeywordIndex, load_keywords
from qa.search.memory import QuestionMemory
from qa.search.question import Question, read_questions
from qa.search.scope import Library
from qa.search.sections import Sections
from qa.store.base import PassageIndex, Scope


@dataclass(frozen=True)
class Hit:
    passage: Passage
    similarity: float  # cosine similarity of question and passage embeddings, -1..1
    score: float = 0.0  # the fused ranking score (meaning depends on the fusion)
    keyword: float = 0.0  # BM25 relative to the question's best passage, 0..1
    coverage: float = 0.0  # share of the question's keyword weight found in the passage's section, 0..1
    asked_before: str = ""  # the remembered question that this passage answered and that lifted it (qa/search/memory.py)
    # The question as retrieval read it (its vectors and keyword concepts), for what comes after to reuse.
    question: Question | None = field(default=None, compare=False, repr=False)


class HybridRetriever:
    """Dense and keyword evidence over the same passages, fused by `config.fusion` (see qa/search/fusion.py)."""

    def __init__(
        self, passages: list[Passage], vectors: np.ndarray, keywords: KeywordIndex, embedder: Embedder, config: Config,
        index: PassageIndex | None = None, score_all: bool | None = None, second=None,
    ):
        """`index`, if given, is the index that `vectors` come from: kept alive with them (they may be a
        view of its memory), and when it is approximate its search proposes the dense candidates.

        `score_all`: whether every passage is scored for every question (True) or only candidates
        (False, see qa/search/candidates.py); by default all over an exact index (small corpora, see
        `Config.approximate_from`), candidates over an approximate one.

        `second`: the second encoder over these passages (a qa.embeddings.second_encoder.SecondOpinion) that gives
        English questions a second opinion (see qa/search/fusion.py); None: no second opinion."""
        self.passages = passages
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.keywords = keywords
        self.embedder = embedder
        self.config = config
        self.index = index
        self.second = second
        self.sections = Sections(passages)
        self.groups = self.sections.groups
        self.section_keywords = keywords.grouped(self.groups) if passages else keywords
        self.citations = Citations(passages, self.sections, config)
        self.score_all = score_all if score_all is not None else index is None or not index.approximate
        self.memory: QuestionMemory | None = None  # the index's remembered questions (qa/search/memory.py)
        self.memory_stamp = None  # its file as it was when read (qa.search.memory.memory_stamp)
        self.chooser = None  # chooses the candidates of a question when not scoring every passage
        if not self.score_all:
            if index is None:
                raise ValueError("candidate scoring needs the vector index that proposes the nearest passages")
            self.chooser = Candidates(self.vectors, self.sections, keywords, self.section_keywords, index, config)

    @classmethod
    def from_index(cls, index: PassageIndex, embedder: Embedder, config: Config, second=None) -> "HybridRetriever":
        """`second`: the second encoder (a SecondEncoder), over the passage vectors the build stored."""
        opinion = second and SecondOpinion(second, index.passages, read_second_vectors(index.folder, len(index.passages)))
        return cls(index.passages, index.vector_matrix(), load_keywords(index), embedder, config, index=index, second=opinion)

    @cached_property
    def library(self) -> Library:
        """The collections and documents of these passages, which resolve the names a search is limited to
        (`library.scope(names)`); read from the passages at first use."""
        return Library(self.passages)

    def search(self, question: str, k: int, within: Scope | None = None) -> list[Hit]:
        return self.search_many([question], k, within=within)[0]

    def search_many(self, questions: list[str], k: int, written: list[str] | None = None,
                    within: Scope | None = None) -> list[list[Hit]]:
        """The k best hits of each question (of the scope `within`, if given: `library.scope(names)`).
        `written`: the questions as the user wrote them, when `questions` are their conversions to the
        corpus's script (see qa/search/question.py)."""
        if not self.passages or not questions:
            return [[] for _ in questions]
        return self.search_read(self.read(questions, written), k, within)

    def read(self, questions: list[str], written: list[str] | None = None) -> list[Question]:
        """The questions embedded and analysed once (qa.search.question.read_questions), for `search_read`."""
        return read_questions(questions, written or questions, self.embedder, self.keywords)

    def search_read(self, asked: list[Question], k: int, within: Scope | None = None) -> list[list[Hit]]:
        """The k best hits of each question already read (`read`), of the scope `within` if given; each
        hit carries its question."""
        if not self.passages or not asked:
            return [[] for _ in asked]
        if not self.score_all:
            return [self._candidate_hits(question, k, within) for question in asked]
        evidence = self.evidence(asked, within)
        scores = fuse(evidence, self.groups, self.config)
        if self.memory is not None:
            scores = scores.copy()  # fused by "dense", the scores are the evidence's own array
        results = []
        for row, question in enumerate(asked):
            voters = None
            if self.memory is not None:
                voters = self.memory.voters(question.vector)
                lifted, by = self.memory.lift(voters)
                scores[row, lifted] += by
            if within is None:
                ranking = _best_first(scores[row], head=16 * k)
            else:  # the scope's passages in the corpus's ranking: the others are never cited
                ranking = (within.rows[i] for i in _best_first(scores[row, within.rows], head=16 * k))
            windows = self.citations.windows(ranking, scores[row], k)
            results.append([
                Hit(
                    self.citations.span(first, last, anchor=anchor),
                    similarity=float(evidence.dense[row, anchor]),
                    score=float(scores[row, anchor]),
                    keyword=float(evidence.keyword[row, anchor]),
                    coverage=float(evidence.section_coverage[row, self.groups[anchor]]),
                    asked_before=self.memory.asked_before(voters, first, last) if voters is not None else "",
                    question=question,
                )
                for first, last, anchor in windows
            ])
        return results

    def evidence(self, asked: list[Question], within: Scope | None = None) -> Evidence:
        """Every kind of evidence for every passage and section, for questions already read (`read`),
        with the second opinion for English ones (qa/search/fusion.py), which re-reads passages of the
        scope `within` if given."""
        concepts = [self.keywords.concept_ids(question.concepts) for question in asked]  # one vocabulary for both indexes
        dense = np.stack([question.vector for question in asked]) @ self.vectors.T
        evidence = Evidence(
            dense=dense,
            keyword=relative(self.keywords.concept_scores(concepts)),
            # A section's passages are consecutive: its best similarity is the max over its slice.
            section_dense=np.maximum.reduceat(dense, self.sections.first, axis=1),
            section_keyword=relative(self.section_keywords.concept_scores(concepts)),
            section_coverage=self.section_keywords.concept_coverage(concepts),
        )
        add_second_opinion(evidence, self.groups, [question.written for question in asked],
                           np.arange(len(self.passages)), self.sections.first, self.second, self.config,
                           within=None if within is None else within.mask)
        return evidence

    def candidates(self, question: Question, within: Scope | None = None, extra: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, Evidence]:
        """The passages worth scoring for one question already read (of the scope `within`, if given; with the
        sections of the passages `extra`), and their evidence (members, sections, Evidence of 1 × members and
        1 × sections; qa/search/candidates.py), with the second opinion for an English one. Only for a retriever
        that scores candidates (`score_all` False)."""
        members, sections, evidence = self.chooser.choose(question, within, extra)
        local = np.repeat(np.arange(len(sections)), self.sections.sizes(sections))
        starts = np.flatnonzero(np.r_[True, local[1:] != local[:-1]])
        add_second_opinion(evidence, local, [question.written], members, starts, self.second, self.config)
        return members, sections, evidence

    def _candidate_hits(self, question: Question, k: int, within: Scope | None = None) -> list[Hit]:
        """The k best hits of one question, scoring only its candidates (see `candidates`)."""
        voters = self.memory.voters(question.vector) if self.memory is not None else None
        lifted, by = self.memory.lift(voters) if voters is not None else (None, None)
        members, sections, evidence = self.candidates(question, within, lifted)
        local = np.repeat(np.arange(len(sections)), self.sections.sizes(sections))
        scores = fuse(evidence, local, self.config)[0]
        if lifted is not None and len(lifted):  # a lifted passage outside the scope is not a member: left out
            scores = scores.copy()
            at = np.searchsorted(members, lifted).clip(0, len(members) - 1)
            member = members[at] == lifted
            scores[at[member]] += by[member]
        # Members are in passage order, so a stable sort breaks ties by passage as the full ranking does.
        order = np.argsort(-scores, kind="stable")
        position = _Positions(members)
        windows = self.citations.windows(members[order], _Lookup(scores, position), k)
        return [
            Hit(
                self.citations.span(first, last, anchor=anchor),
                similarity=float(evidence.dense[0, position[anchor]]),
                score=float(scores[position[anchor]]),
                keyword=float(evidence.keyword[0, position[anchor]]),
                coverage=float(evidence.section_coverage[0, local[position[anchor]]]),
                asked_before=self.memory.asked_before(voters, first, last) if voters is not None else "",
                question=question,
            )
            for first, last, anchor in windows
        ]


def _best_first(scores: np.ndarray, head: int):
    """Indices of `scores`, best first, ties in index order (a stable argsort of -scores), lazily:
    about the best `head` are sorted first, the others only if the caller reads on."""
    if head * 4 >= len(scores):
        yield from np.argsort(-scores, kind="stable")
        return
    # Any threshold that at least `head` scores reach gives the same order. The head-th best of an
    # evenly spaced sample of 256·head scores is one, and leaves a few thousand to sort of a million.
    sample = scores[:: max(1, len(scores) // (256 * head))]
    threshold = np.partition(sample, len(sample) - head)[len(sample) - head]
    best = np.flatnonzero(scores >= threshold)
    yield from best[np.argsort(-scores[best], kind="stable")]
    rest = np.flatnonzero(scores < threshold)
    yield from rest[np.argsort(-scores[rest], kind="stable")]


class _Positions:
    """position[i]: where passage i is in `members` (sorted), found when asked (a dict of thousands costs more)."""

    def __init__(self, members: np.ndarray):
        self.members = members

    def __getitem__(self, i) -> int:
        return int(np.searchsorted(self.members, i))


class _Lookup:
    """scores[i] by passage number, for candidate scores held by position (`position[i]`)."""

    def __init__(self, scores: np.ndarray, position: _Positions):
        self.scores, self.position = scores, position

    def __getitem__(self, i) -> float:
        return self.scores[self.position[int(i)]]
