"""Find the passages that answer a question: dense, keyword, and their fusion.

Every retriever has `search(question, k)` and `search_many(questions, k)` returning `Hit`s best
first. The hybrid retriever computes, for a batch of questions, every passage's evidence at once
(numpy and scipy products, no loop over passages):

    dense     cosine similarity of question and passage embeddings
    keyword   BM25 of the passage, divided by the question's best passage BM25 (0..1; 0 when no
              question word occurs in the corpus; English words count through their Chinese
              translations, see qa/search/keyword.py and qa/search/bilingual.py)
    section   the same two kinds of evidence for the passage's whole section: the best dense
              similarity of its passages, and BM25 over the section's text

and combines them by `Config.fusion`:

    "dense", "keyword"  one kind of evidence alone
    "rrf"               reciprocal-rank fusion of the dense and keyword passage rankings
    "sum"               weighted sum of min-max normalised dense and keyword passage scores
    "sections"          (default) the "sum" score of the passage's section, weighted by
                        `section_weight`, plus the passage's own "sum" score: the section finds the
                        right case or document, the passage's own evidence picks its sentences

Keyword evidence adds to dense evidence and never replaces it: where no keyword matches, the
normalised keyword score is 0 for every passage and the ranking is the dense one.

English questions over Chinese text get a second opinion: e5 links the two languages weakly, so the
second encoder (qa/embeddings/second_encoder.py, USE-multilingual, trained to align translations) re-reads the
SECOND_READS best passages and takes `english_second_weight` of the dense evidence, passage and section,
while the keyword evidence (through dictionary translations) weighs `english_keyword_weight`.

A hit cites more than the passage that matched when its section is long: the best neighbouring
passages join it up to `max_citation_share` of the section (see `HybridRetriever._window`). The
measured effect of each method and setting is in scripts/compare_retrieval.py's output.
"""

from dataclasses import dataclass

import faiss
import numpy as np

from qa.config import FUSIONS, Config
from qa.embeddings.model import Embedder
from qa.embeddings.question_encoder import blas_controller
from qa.embeddings.second_encoder import SecondOpinion, read_second_vectors
from qa.passages import Passage
from qa.search.keyword import KeywordIndex, load_keywords
from qa.store.folder import Index
from qa.text import script

# Candidate scoring (`HybridRetriever.candidates`): the vector index's nearest passages, the best
# passages and sections by BM25, each this many, with all the passages of their sections. At 1M
# synthetic passages (scripts/benchmark.py --only scale; each text there ~650 times): recall@10 against
# scoring every passage 0.998 over 100 questions with 250 or 200; 0.42 with 150, where TIES x NEAREST
# no longer holds the copies tied on keywords and they are cut blindly.
NEAREST = 200
# A keyword found in more passages (sections) than this does not choose candidates (see qa.search.keyword.Matches):
# at a million passages, a word in over 2% of them; every keyword of a smaller corpus chooses.
COMMON = 20_000
# Passages (sections) tied on keywords with the NEAREST-th best are kept up to this many times NEAREST,
# and the NEAREST with the best similarity among them chosen (`_closest`). Sections cut blindly at twice
# NEAREST were 53 of the 54 hits missed at 1M (recall@10 0.946 over 100 questions; 0.998 chosen so).
TIES = 4
# Passages whose similarity is computed for every question, to find the lowest similarity that min-max
# normalisation starts from: all of them in a corpus this small (whole sections), so that candidate scores
# there equal the full scores exactly; in a larger one, those least like the corpus's mean (see __init__).
# At 1M synthetic passages 2,048 searched in 6.3-6.4 ms against 7.2-7.3 ms with 4,096 (a smaller matrix
# to read per question), recall@10 against scoring every passage 0.994 against 0.996.
PROBE = 2048
# An English question's best passages by e5 and keywords that the second encoder re-reads (all of a
# corpus this small, where the second opinion is then exactly the whole corpus's).
SECOND_READS = 64


@dataclass(frozen=True)
class Hit:
    passage: Passage
    similarity: float  # cosine similarity of question and passage embeddings, -1..1
    score: float = 0.0  # the fused ranking score (meaning depends on the fusion)
    keyword: float = 0.0  # BM25 relative to the question's best passage, 0..1
    coverage: float = 0.0  # share of the question's keyword weight found in the passage's section, 0..1


def section_groups(passages: list[Passage]) -> np.ndarray:
    """Group number of each passage: consecutive passages of one source and section share one."""
    groups = np.zeros(len(passages), dtype=np.int64)
    for i in range(1, len(passages)):
        same = passages[i].source == passages[i - 1].source and passages[i].section == passages[i - 1].section
        groups[i] = groups[i - 1] + (0 if same else 1)
    return groups


class HybridRetriever:
    """Dense and keyword evidence over the same passages, fused by `config.fusion` (see module docstring)."""

    def __init__(
        self, passages: list[Passage], vectors: np.ndarray, keywords: KeywordIndex, embedder: Embedder, config: Config,
        index: Index | None = None, score_all: bool | None = None, second=None,
    ):
        """`index`, if given, is the index that `vectors` come from: kept alive with them (they may be a
        view of its memory), and when it is approximate its search proposes the dense candidates.

        `score_all`: whether every passage is scored for every question (True) or only candidates
        (False, see `candidates`); by default all over an exact index (small corpora, see
        `Config.approximate_from`), candidates over an approximate one.

        `second`: the second encoder over these passages (a qa.embeddings.second_encoder.SecondOpinion) that gives
        English questions a second opinion (see the module docstring); None: no second opinion."""
        if config.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {config.fusion!r}; choose one of {', '.join(FUSIONS)}")
        self.passages = passages
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.keywords = keywords
        self.embedder = embedder
        self.config = config
        self.index = index
        self.second = second
        self.groups = section_groups(passages)
        self.section_keywords = keywords.grouped(self.groups) if passages else keywords
        # First and last passage of each section (passages of a section are consecutive).
        self.section_first = np.searchsorted(self.groups, np.arange(len(self.groups) and self.groups[-1] + 1), side="left")
        self.section_last = np.searchsorted(self.groups, np.arange(len(self.groups) and self.groups[-1] + 1), side="right") - 1
        self.score_all = score_all if score_all is not None else index is None or not index.approximate
        if not self.score_all:
            if index is None:
                raise ValueError("candidate scoring needs the vector index that proposes the nearest passages")
            self._probe, outer = self._members(np.arange(len(self.section_first))), np.zeros(0, dtype=np.int64)
            if len(self.passages) > PROBE:
                # Embeddings lie in a narrow cone: the passages least like the corpus's mean are those
                # least like any question, so they hold the lowest similarity (on 200,000 synthetic
                # passages drawn like the model's, exactly for 60 of 60 questions; the evenly spread
                # probe was 0.017 too high, the index's nearest to the question's opposite 0.007,
                # and that second search cost 1.4 ms a question). Likewise the sections whose best passage
                # is least like it hold the lowest section similarity: at 1M, for 100 of 100 questions,
                # while evenly spread sections (PROBE // 2 passages, once part of the probe) never held
                # either lowest (0.06 and 0.12 too high) and cost a third of the probe's time.
                with blas_controller().limit(limits=1, user_api="blas"):
                    toward = self.vectors @ self.vectors.mean(axis=0)
                outer = np.sort(np.argpartition(toward, PROBE // 2)[: PROBE // 2])
                least = np.argsort(np.maximum.reduceat(toward, self.section_first), kind="stable")
                sizes = self.section_last[least] - self.section_first[least] + 1
                least = least[: int(np.searchsorted(np.cumsum(sizes), PROBE // 2)) + 1]
                self._probe = self._members(np.sort(least))
            self._probe_vectors = np.ascontiguousarray(self.vectors[np.r_[self._probe[0], outer]])

    @classmethod
    def from_index(cls, index: Index, embedder: Embedder, config: Config, second=None) -> "HybridRetriever":
        """`second`: the second encoder (a SecondEncoder), over the passage vectors the build stored."""
        opinion = second and SecondOpinion(second, index.passages, read_second_vectors(index.folder, len(index.passages)))
        return cls(index.passages, index.vector_matrix(), load_keywords(index), embedder, config, index=index, second=opinion)

    def search(self, question: str, k: int) -> list[Hit]:
        return self.search_many([question], k)[0]

    def search_many(self, questions: list[str], k: int, written: list[str] | None = None) -> list[list[Hit]]:
        """The k best hits of each question. `written`: the questions as the user wrote them, when
        `questions` are their conversions to the corpus's script (see `question_vectors`)."""
        if not self.passages or not questions:
            return [[] for _ in questions]
        if not self.score_all:
            vectors = self.question_vectors(questions, written)
            return [
                self._candidate_hits(question, vector, k, asked)
                for question, vector, asked in zip(questions, vectors, written or questions)
            ]
        evidence = self.evidence(questions, written)
        scores = fuse(evidence, self.groups, self.config)
        if self._second_opinion(evidence, scores, written or questions, np.arange(len(self.passages)), self.section_first):
            scores = fuse(evidence, self.groups, self.config)
        results = []
        for row in range(len(questions)):
            windows = self._windows(_best_first(scores[row], head=16 * k), scores[row], k)
            results.append([
                Hit(
                    self._span(first, last, anchor=anchor),
                    similarity=float(evidence.dense[row, anchor]),
                    score=float(scores[row, anchor]),
                    keyword=float(evidence.keyword[row, anchor]),
                    coverage=float(evidence.section_coverage[row, self.groups[anchor]]),
                )
                for first, last, anchor in windows
            ])
        return results

    def _candidate_hits(self, question: str, vector: np.ndarray, k: int, asked: str | None = None) -> list[Hit]:
        """The k best hits of one question, scoring only its candidates (see `candidates`); `asked`:
        the question as written, when `question` is its conversion to the corpus's script."""
        members, sections, evidence = self.candidates(question, vector)
        local = np.repeat(np.arange(len(sections)), self.section_last[sections] - self.section_first[sections] + 1)
        scores = fuse(evidence, local, self.config)[0]
        starts = np.flatnonzero(np.r_[True, local[1:] != local[:-1]])
        if self._second_opinion(evidence, scores[None, :], [asked or question], members, starts):
            scores = fuse(evidence, local, self.config)[0]
        # Members are in passage order, so a stable sort breaks ties by passage as the full ranking does.
        order = np.argsort(-scores, kind="stable")
        position = _Positions(members)
        windows = self._windows(members[order], _Lookup(scores, position), k)
        return [
            Hit(
                self._span(first, last, anchor=anchor),
                similarity=float(evidence.dense[0, position[anchor]]),
                score=float(scores[position[anchor]]),
                keyword=float(evidence.keyword[0, position[anchor]]),
                coverage=float(evidence.section_coverage[0, local[position[anchor]]]),
            )
            for first, last, anchor in windows
        ]

    def _second_opinion(self, evidence: "Evidence", scores: np.ndarray, asked: list[str], members: np.ndarray,
                        starts: np.ndarray) -> bool:
        """Give the English questions among `asked` the second encoder's similarities (see the module
        docstring), in `evidence.second` and `evidence.section_second`; whether any question got them.

        `scores` (questions × columns) is the first fusion; column j of the evidence is passage
        `members[j]`, and its sections start at columns `starts`. The SECOND_READS best columns are
        re-read; the others get the lowest of theirs, so that they rank below once normalised."""
        english = np.array([script(question) == "en" for question in asked])
        if self.second is None or not english.any():
            return False
        second = np.zeros_like(evidence.dense)
        for row in np.flatnonzero(english):
            best = np.arange(scores.shape[1])
            if len(best) > SECOND_READS:
                best = np.argpartition(-scores[row], SECOND_READS)[:SECOND_READS]
            similarity = self.second.of_passages(members[best]) @ self.second.questions([asked[row]])[0]
            second[row] = similarity.min()
            second[row, best] = similarity
        evidence.second = second
        evidence.section_second = np.maximum.reduceat(second, starts, axis=1)
        evidence.english = english
        return True

    def _closest(self, rows: np.ndarray, keyword: np.ndarray, vector: np.ndarray, low: float, high: float,
                 sections: bool = False) -> np.ndarray:
        """The NEAREST of `rows` (passages chosen by keywords, or with `sections` sections; `keyword` their
        relative BM25) with the best passage (section) score, keyword and similarity weighted as `fuse`
        weighs them (the similarity scaled from `low` to `high`, estimates of the corpus's; a section's is
        its best passage's): many passages and sections tie on keywords when they are copies of one
        text, and only their similarity tells them apart."""
        if len(rows) <= NEAREST:
            return rows
        if sections:
            members, starts = self._members(rows)
            similarity = np.maximum.reduceat(_similarities_of(self.vectors, members, vector), starts)
        else:
            similarity = _similarities_of(self.vectors, rows, vector)
        weight = self.config.keyword_weight
        score = (1 - weight) * (similarity - low) / max(high - low, 1e-6) + weight * keyword
        return rows[np.argpartition(-score, NEAREST)[:NEAREST]]

    def _windows(self, best_first, scores, k: int) -> list[list[int]]:
        """[first, last, anchor] of each of the k best citations, best first: passages in the order
        `best_first` gives, each grown into a window (`_window`) unless a better one covers it already."""
        windows: list[list[int]] = []
        covered = np.zeros(len(self.passages), dtype=bool)
        for i in best_first:
            if len(windows) == k:
                break
            if covered[i]:
                continue  # already cited inside a better passage's window
            first, last = self._window(int(i), scores, covered)
            covered[first : last + 1] = True
            touching = next((w for w in windows if self._touching(w, first, last)), None)
            joined = touching and (min(touching[0], first), max(touching[1], last))
            if joined and self.passages[joined[1]].end - self.passages[joined[0]].start <= self._budget(self.groups[first]):
                # A neighbour of a better hit is one citation with it, not a second touching card,
                # while the joined citation stays within the section's citation budget.
                touching[0], touching[1] = joined
                continue
            windows.append([first, last, int(i)])
        return windows

    def _members(self, sections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The passages of `sections` (sorted section numbers), in passage order, and where each section's run starts."""
        sizes = self.section_last[sections] - self.section_first[sections] + 1
        starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
        members = np.repeat(self.section_first[sections] - starts, sizes) + np.arange(int(sizes.sum()))
        return members, starts

    def candidates(self, question: str, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray, "Evidence"]:
        """The passages worth scoring for one question and their evidence: (members, sections, Evidence
        of 1 × members and 1 × sections).

        The candidates are the vector index's NEAREST passages, the NEAREST best passages and sections
        by BM25 (read from the postings of the question's terms, its COMMON words left out of the
        choice: see qa.search.keyword.Matches), and all the passages of their sections. Their evidence is what
        `evidence` gives them, normalised as over the whole corpus: keyword scores by the corpus's best
        (exact when no word is common), similarities from the corpus's lowest to the best. The lowest
        is estimated as the lowest among the candidates and the probe (the whole sections whose best passage
        is least like the corpus's mean, and the passages least like it: about PROBE passages; the whole
        of a small corpus, where it is exact).
        """
        concepts = self.keywords.concepts(question)  # the section index has the passage index's terms
        # The question's text too: a store that searches by keywords itself (Milvus's BM25) proposes its best.
        nearest = self.index.search(vector[None, :], NEAREST, [question])[0]
        probe, probe_starts = self._probe
        with blas_controller().limit(limits=1, user_api="blas"):
            probe_similarity = self._probe_vectors @ vector
        matches, section_matches = self.keywords.matches(concepts, COMMON), self.section_keywords.matches(concepts, COMMON)
        high = float(self.vectors[nearest[0][0]] @ vector) if nearest else 1.0
        by_keyword, keyword, keyword_best = matches.top(NEAREST, ties=TIES)
        by_keyword = self._closest(by_keyword, keyword / (keyword_best or 1), vector, low=probe_similarity.min(), high=high)
        by_section, section_keyword, section_keyword_best = section_matches.top(NEAREST, ties=TIES)
        section_low = np.maximum.reduceat(probe_similarity[: len(probe)], probe_starts).min()
        by_section = self._closest(by_section, section_keyword / (section_keyword_best or 1), vector,
                                   low=section_low, high=high, sections=True)
        nearest = np.array([i for i, _ in nearest], dtype=np.int64)
        sections = np.unique(np.r_[self.groups[nearest], self.groups[by_keyword], by_section])
        members, starts = self._members(sections)
        keyword = matches.scores_of(members)
        section_keyword = section_matches.scores_of(sections)
        keyword_best, section_keyword_best = max(keyword_best, keyword.max()), max(section_keyword_best, section_keyword.max())
        similarity = _similarities_of(self.vectors, members, vector)
        section_dense = np.maximum.reduceat(similarity, starts)
        dense_low = min(similarity.min(), probe_similarity.min())
        section_low = min(section_dense.min(), section_low)
        evidence = Evidence(
            dense=similarity[None, :],
            keyword=(keyword / (keyword_best if keyword_best > 0 else 1))[None, :],
            section_dense=section_dense[None, :],
            section_keyword=(section_keyword / (section_keyword_best if section_keyword_best > 0 else 1))[None, :],
            section_coverage=section_matches.coverage_of(sections)[None, :],
            dense_low=np.array([dense_low], dtype=np.float32),
            section_dense_low=np.array([section_low], dtype=np.float32),
        )
        return members, sections, evidence

    def _touching(self, window: list[int], first: int, last: int) -> bool:
        """Whether passages [first, last] adjoin `window` in the same section."""
        return self.groups[window[2]] == self.groups[first] and (window[1] + 1 == first or last + 1 == window[0])

    def _window(self, anchor: int, scores: np.ndarray, covered: np.ndarray) -> tuple[int, int]:
        """The passages [first, last] to cite around `anchor`: its neighbours in the section, best first.

        A neighbour joins while the window stays within the budget: `max_citation_share` of the
        section, but at least `max_passage_chars` and at most `max_citation_chars`. A short case
        is then cited by the sentences that answer, a long article paragraph by a wider window
        that more often holds the answer next to the sentence that matched the question.
        """
        group = self.groups[anchor]
        budget = self._budget(group)
        first = last = anchor
        while True:
            candidates = [
                i
                for i in (first - 1, last + 1)
                if 0 <= i < len(self.passages) and self.groups[i] == group and not covered[i]
                and self.passages[max(last, i)].end - self.passages[min(first, i)].start <= budget
            ]
            if not candidates:
                return first, last
            chosen = max(candidates, key=lambda i: scores[i])
            first, last = min(first, chosen), max(last, chosen)

    def _budget(self, group: int) -> float:
        """The most characters one citation from section `group` may span (see `_window`)."""
        section_chars = self.passages[self.section_last[group]].end - self.passages[self.section_first[group]].start
        return min(self.config.max_citation_chars, max(self.config.max_passage_chars, self.config.max_citation_share * section_chars))

    def _span(self, first: int, last: int, anchor: int) -> Passage:
        """One passage spanning passages first..last (its id is the anchor's, the passage that matched)."""
        if first == last:
            return self.passages[first]
        parts = [self.passages[first].text]
        for before, after in zip(self.passages[first:last], self.passages[first + 1 : last + 1]):
            # Passages are stored trimmed; only the length of the whitespace between them is known.
            gap = after.start - before.end
            parts.append(" " * gap if before.text[-1:].isascii() and after.text[:1].isascii() else "\n" * gap)
            parts.append(after.text)
        head = self.passages[first]
        return Passage(id=self.passages[anchor].id, source=head.source, section=head.section,
                       start=head.start, end=self.passages[last].end, text="".join(parts), page=head.page)

    def question_vectors(self, questions: list[str], written: list[str] | None = None) -> np.ndarray:
        """The questions' embeddings. A question converted to the corpus's script is embedded both
        ways and the two vectors averaged: on the seed's traditional-script questions that found
        the right case first more often than either alone (scripts/fit_relevance.py's data)."""
        vectors = self.embedder.embed_questions(questions)
        changed = [i for i, (a, b) in enumerate(zip(questions, written or questions)) if a != b]
        if changed:
            both = vectors[changed] + self.embedder.embed_questions([written[i] for i in changed])
            vectors[changed] = both / np.linalg.norm(both, axis=1, keepdims=True)
        return vectors

    def evidence(self, questions: list[str], written: list[str] | None = None) -> "Evidence":
        """Every kind of evidence for every passage and section, for a batch of questions."""
        keyword = self.keywords.scores(questions)
        dense, section_dense = self._similarities(self.question_vectors(questions, written))
        return Evidence(
            dense=dense,
            keyword=_relative(keyword),
            section_dense=section_dense,
            section_keyword=_relative(self.section_keywords.scores(questions)),
            section_coverage=self.section_keywords.coverage(questions),
        )

    def _similarities(self, question_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity of each question and every passage (questions × passages), and each section's
        best. Only for scoring every passage; a large corpus scores its candidates (`candidates`)."""
        dense = question_vectors @ self.vectors.T
        # A section's passages are consecutive: its best similarity is the max over its slice.
        return dense, np.maximum.reduceat(dense, self.section_first, axis=1)


def _similarities_of(vectors: np.ndarray, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`vectors[rows] @ vector`, reading the rows where they lie: copying a few thousand rows out of a
    million first took longer than the products (3,600 rows: 1.4 ms, in place 0.6 ms). One thread: with
    two BLAS threads waiting for each other on a busy 2-core machine products took 10-30x longer.
    `vectors`: float32 and C-contiguous, as HybridRetriever keeps them."""
    similarity = np.empty(len(rows), dtype=np.float32)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    vector = np.ascontiguousarray(vector, dtype=np.float32)
    faiss.fvec_inner_products_by_idx(faiss.swig_ptr(similarity), faiss.swig_ptr(vector), faiss.swig_ptr(vectors),
                                     faiss.swig_ptr(rows), vectors.shape[1], 1, len(rows))
    return similarity


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
    """position[i]: where passage i is in `members` (sorted), found when asked (a dict of thousands cost ms)."""

    def __init__(self, members: np.ndarray):
        self.members = members

    def __getitem__(self, i) -> int:
        return int(np.searchsorted(self.members, i))


class _Lookup:
    """scores[i] by passage number, for candidate scores held by position (`position[i]`)."""

    def __init__(self, scores: np.ndarray, position: dict[int, int]):
        self.scores, self.position = scores, position

    def __getitem__(self, i) -> float:
        return self.scores[self.position[int(i)]]


@dataclass
class Evidence:
    """Arrays of questions × passages (dense, keyword) and questions × sections (section_*).

    Candidate evidence (`HybridRetriever.candidates`) holds only some passages and sections; its
    `dense_low` and `section_dense_low` (one per question) are the corpus's lowest similarities,
    where min-max normalisation starts (None: the lowest in the arrays, which then hold every passage)."""

    dense: np.ndarray
    keyword: np.ndarray
    section_dense: np.ndarray
    section_keyword: np.ndarray
    section_coverage: np.ndarray
    dense_low: np.ndarray | None = None
    section_dense_low: np.ndarray | None = None
    # The second encoder's similarities for English questions (`HybridRetriever._second_opinion`):
    # which questions have them, and arrays shaped as `dense` and `section_dense`. None: no second opinion.
    english: np.ndarray | None = None
    second: np.ndarray | None = None
    section_second: np.ndarray | None = None


def fuse(evidence: Evidence, groups: np.ndarray, config: Config) -> np.ndarray:
    """The ranking score of every passage (questions × passages) by `config.fusion`; higher is better."""
    method = config.fusion
    if method == "dense":
        return evidence.dense
    if method == "keyword":
        # Ties among passages without any keyword fall back to the dense order.
        return evidence.keyword + 1e-3 * _min_max(evidence.dense, evidence.dense_low)
    if method == "rrf":
        return _rrf(evidence.dense, config.rrf_k) + np.where(evidence.keyword > 0, _rrf(evidence.keyword, config.rrf_k), 0)
    dense = _min_max(evidence.dense, evidence.dense_low)
    section_dense = _min_max(evidence.section_dense, evidence.section_dense_low)
    keyword_weight: float | np.ndarray = config.keyword_weight
    if evidence.english is not None:  # English questions: the second encoder's share, less keyword weight
        share = np.where(evidence.english, config.english_second_weight, 0.0)[:, None]
        dense = (1 - share) * dense + share * _min_max(evidence.second)
        section_dense = (1 - share) * section_dense + share * _min_max(evidence.section_second)
        keyword_weight = np.where(evidence.english, config.english_keyword_weight, config.keyword_weight)[:, None]
    passage = (1 - keyword_weight) * dense + keyword_weight * evidence.keyword
    if method == "sum":
        return passage
    section = (1 - keyword_weight) * section_dense + keyword_weight * evidence.section_keyword
    return config.section_weight * section[:, groups] + (1 - config.section_weight) * passage


def _min_max(scores: np.ndarray, low: np.ndarray | None = None) -> np.ndarray:
    """Each row rescaled to 0..1 (its worst to its best), so dense and keyword scores can be added;
    `low`, one per row, is the worst when the row holds only some of the scores (candidates)."""
    low = scores.min(axis=1, keepdims=True) if low is None else np.asarray(low, dtype=scores.dtype).reshape(-1, 1)
    span = scores.max(axis=1, keepdims=True) - low
    return (scores - low) / np.where(span > 0, span, 1)


def _relative(scores: np.ndarray) -> np.ndarray:
    """Each row divided by its best (BM25 is 0 for no match, so 0 stays 0); all-zero rows stay 0."""
    best = scores.max(axis=1, keepdims=True)
    return scores / np.where(best > 0, best, 1)


def _rrf(scores: np.ndarray, k: int) -> np.ndarray:
    ranks = np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1, kind="stable") + 1
    return 1.0 / (k + ranks)
