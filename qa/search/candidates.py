"""The passages worth scoring for one question in a large corpus, and their evidence as over the whole corpus.

Scoring every passage for every question costs the corpus; over an approximate vector index (a large
corpus, see `Config.approximate_from`) retrieval scores only candidates: the vector index's nearest
passages, the best passages and sections by BM25, and all the passages of their sections
(`Config.candidate_*` says how many). Their evidence is normalised as over the whole corpus, so that on
a corpus small enough to hold them all the candidates' scores equal scoring every passage exactly.

A question limited to a scope (some collections and documents, qa/search/scope.py) has candidates of
that scope only: the vector index searches within it (qa/store/base.py) and BM25 chooses among its
passages and sections, as many as without a scope. Their evidence is still normalised as over the whole
corpus (its lowest and highest similarity, its best BM25), so that their scores are those of the corpus's
ranking, limited to the scope, as scoring every passage gives them (qa/search/retrieval.py).
"""

import functools

import faiss
import numpy as np

from qa.config import Config
from qa.search.fusion import Evidence
from qa.search.keyword import KeywordIndex
from qa.search.question import Question
from qa.search.sections import Sections
from qa.store.base import Scope


@functools.cache
def blas_controller():
    """threadpoolctl's view of the BLAS libraries loaded, found once: each `threadpool_limits` call looks
    them up again in the process's memory maps, which costs milliseconds a question."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class Candidates:
    """Chooses the candidates of a question (`choose`) over one index's passages.

    `vectors`: the passages' embeddings (float32, C-contiguous); `index`: the vector index they come from,
    whose `candidates(vectors, k, questions)` proposes the nearest passages (qa/store/base.py);
    `keywords` and `section_keywords`: the passages' and sections' keyword indexes (one vocabulary).
    """

    def __init__(self, vectors: np.ndarray, sections: Sections, keywords: KeywordIndex, section_keywords: KeywordIndex,
                 index, config: Config):
        self.vectors, self.sections, self.index, self.config = vectors, sections, index, config
        self.keywords, self.section_keywords = keywords, section_keywords
        # The probe: passages whose similarity is computed for every question, to find the lowest similarity
        # that min-max normalisation starts from. All of a corpus of at most `candidate_probe` passages (whole
        # sections), where candidate scores then equal the full scores exactly.
        size = config.candidate_probe
        self.probe, outer = sections.members(np.arange(len(sections))), np.zeros(0, dtype=np.int64)
        if len(vectors) > size:
            # Embeddings lie in a narrow cone: the passages least like the corpus's mean are those least
            # like any question, so they hold the lowest similarity, and the sections whose best passage is
            # least like it hold the lowest section similarity (measured at 200,000 and 1M synthetic passages
            # drawn like the model's: scripts/benchmark.py --only scale).
            with blas_controller().limit(limits=1, user_api="blas"):
                toward = vectors @ vectors.mean(axis=0)
            outer = np.sort(np.argpartition(toward, size // 2)[: size // 2])
            least = np.argsort(np.maximum.reduceat(toward, sections.first), kind="stable")
            least = least[: int(np.searchsorted(np.cumsum(sections.sizes(least)), size // 2)) + 1]
            self.probe = sections.members(np.sort(least))
        self._probe_vectors = np.ascontiguousarray(vectors[np.r_[self.probe[0], outer]])

    def choose(self, question: Question, within: Scope | None = None, extra: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, Evidence]:
        """The passages worth scoring for `question` and their evidence: (members, sections, Evidence of
        1 × members and 1 × sections), members and sections sorted; with `within`, passages of that scope.

        The candidates are the vector index's `candidate_nearest` passages, as many best passages and
        sections by BM25 (read from the postings of the question's terms, its words in more than
        `candidate_common` passages left out of the choice: see qa.search.keyword.Matches), and all the
        passages of their sections and of the sections of `extra` (passages of the scope: those the question
        memory lifts, qa/search/memory.py). Keyword scores are normalised by the corpus's best (exact when no word
        is common), similarities from the corpus's lowest to the best; the lowest is estimated as the
        lowest among the candidates and the probe.
        """
        config, vector, nearest_count = self.config, question.vector, self.config.candidate_nearest
        concepts = self.keywords.concept_ids(question.concepts)  # the section index has the passage index's terms
        # The question's text too: a store that searches by keywords itself (Milvus's BM25) proposes its best.
        nearest = self.index.candidates(vector[None, :], nearest_count, [question.text], within)[0]
        if within is not None:
            nearest = [row for row in nearest if within.mask[row]]
        probe, probe_starts = self.probe
        with blas_controller().limit(limits=1, user_api="blas"):
            probe_similarity = self._probe_vectors @ vector
        matches = self.keywords.matches(concepts, config.candidate_common)
        section_matches = self.section_keywords.matches(concepts, config.candidate_common)
        high = float(self.vectors[nearest[0]] @ vector) if nearest else 1.0
        corpus_high = None  # the corpus's highest similarity, when the candidates may not hold its nearest passage
        if within is not None:
            nearest_anywhere = self.index.search(vector[None, :], 1)[0]
            corpus_high = high = max([high, *(float(self.vectors[row] @ vector) for row, _ in nearest_anywhere)])
        passages_within = None if within is None else within.mask
        sections_within = None if within is None else within.mask[self.sections.first]
        by_keyword, keyword, keyword_best = matches.top(nearest_count, ties=config.candidate_ties, within=passages_within)
        by_keyword = self._closest(by_keyword, keyword / (keyword_best or 1), vector, low=probe_similarity.min(), high=high)
        by_section, section_keyword, section_keyword_best = section_matches.top(
            nearest_count, ties=config.candidate_ties, within=sections_within)
        section_low = np.maximum.reduceat(probe_similarity[: len(probe)], probe_starts).min()
        by_section = self._closest(by_section, section_keyword / (section_keyword_best or 1), vector,
                                   low=section_low, high=high, sections=True)
        nearest = np.array(nearest, dtype=np.int64)
        groups = self.sections.groups
        extra = np.zeros(0, dtype=np.int64) if extra is None else np.asarray(extra, dtype=np.int64)
        if within is not None:
            extra = extra[within.mask[extra]]
        sections = np.unique(np.r_[groups[nearest], groups[by_keyword], by_section, groups[extra]])
        if not len(sections) and within is not None:  # nothing found near it: the scope's first passages
            sections = np.unique(groups[within.rows[:nearest_count]])
        members, starts = self.sections.members(sections)
        keyword = matches.scores_of(members)
        section_keyword = section_matches.scores_of(sections)
        keyword_best, section_keyword_best = max(keyword_best, keyword.max()), max(section_keyword_best, section_keyword.max())
        similarity = similarities_of(self.vectors, members, vector)
        section_dense = np.maximum.reduceat(similarity, starts)
        dense_low = min(similarity.min(), probe_similarity.min())
        section_low = min(section_dense.min(), section_low)
        high = None if corpus_high is None else np.array([max(corpus_high, similarity.max())], dtype=np.float32)
        evidence = Evidence(
            dense=similarity[None, :],
            keyword=(keyword / (keyword_best if keyword_best > 0 else 1))[None, :],
            section_dense=section_dense[None, :],
            section_keyword=(section_keyword / (section_keyword_best if section_keyword_best > 0 else 1))[None, :],
            section_coverage=section_matches.coverage_of(sections)[None, :],
            dense_low=np.array([dense_low], dtype=np.float32),
            section_dense_low=np.array([section_low], dtype=np.float32),
            # A section's best similarity is its best passage's: the highest of both is the same.
            dense_high=high,
            section_dense_high=high,
        )
        return members, sections, evidence

    def _closest(self, rows: np.ndarray, keyword: np.ndarray, vector: np.ndarray, low: float, high: float,
                 sections: bool = False) -> np.ndarray:
        """The `candidate_nearest` of `rows` (passages chosen by keywords, or with `sections` sections;
        `keyword` their relative BM25) with the best passage (section) score, keyword and similarity
        weighted as fusion weighs them (the similarity scaled from `low` to `high`, estimates of the
        corpus's; a section's is its best passage's): many passages and sections tie on keywords when
        they are copies of one text, and only their similarity tells them apart."""
        count = self.config.candidate_nearest
        if len(rows) <= count:
            return rows
        if sections:
            members, starts = self.sections.members(rows)
            similarity = np.maximum.reduceat(similarities_of(self.vectors, members, vector), starts)
        else:
            similarity = similarities_of(self.vectors, rows, vector)
        weight = self.config.keyword_weight
        score = (1 - weight) * (similarity - low) / max(high - low, 1e-6) + weight * keyword
        return rows[np.argpartition(-score, count)[:count]]


def similarities_of(vectors: np.ndarray, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """`vectors[rows] @ vector`, reading the rows where they lie: copying a few thousand rows out of a
    million first takes longer than the products. One thread: two BLAS threads waiting for each other on
    a busy 2-core machine made the products many times slower. `vectors`: float32 and C-contiguous."""
    similarity = np.empty(len(rows), dtype=np.float32)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    vector = np.ascontiguousarray(vector, dtype=np.float32)
    faiss.fvec_inner_products_by_idx(faiss.swig_ptr(similarity), faiss.swig_ptr(vector), faiss.swig_ptr(vectors),
                                     faiss.swig_ptr(rows), vectors.shape[1], 1, len(rows))
    return similarity
