"""Candidate scoring (qa/search/candidates.py) gives the hits that scoring every passage gives.

Large corpora score only candidates (the vector index's nearest, the best by BM25, their sections);
small ones score every passage. Here both paths run over the same passages and must agree exactly:
the same cited spans, scores, similarities, keyword scores and coverage, on the seed with the real
model and on a mid-size corpus (the seed's passages in 40 documents, 1,120 passages, each copy's
vectors moved a little), where the candidates are a small part of the corpus.
"""

import numpy as np
import pytest

from qa.passages import Passage
from qa.search.keyword import build_keywords
from qa.search.retrieval import HybridRetriever
from qa.store.folder import build_lock, last_build, load_index, make_manifest, write_index
from qa.store.local import LocalStore

from ..conftest import read_dev_questions

DEV = [q["question"] for q in read_dev_questions()]
MORE = [
    "哪些级别的医院之间检查结果互认？", "茶产业和旅游怎么结合？", "詩路建設以什麼為脈絡？", "What are the courtesy landmarks?",
    "如何申请 policy subsidies？", "上海的养老服务补贴怎么领？", "xyzzy", "的", "民生实事项目票决时需要多少比例的人大代表赞成？",
]


def hits_of(retriever: HybridRetriever, questions: list[str], within=None) -> tuple[list, np.ndarray]:
    """The cited spans of each question's hits, and their numbers (score, similarity, keyword, coverage)."""
    found = retriever.search_many(questions, 5, within=within)
    spans = [[(h.passage.id, h.passage.source, h.passage.start, h.passage.end) for h in hits] for hits in found]
    numbers = np.array([[h.score, h.similarity, h.keyword, h.coverage] for hits in found for h in hits])
    return spans, numbers


def assert_same_hits(candidates: HybridRetriever, every: HybridRetriever, questions: list[str], within=None) -> None:
    spans, numbers = hits_of(candidates, questions, within)
    expected_spans, expected_numbers = hits_of(every, questions, within)
    assert spans == expected_spans
    # Equal but for float32 rounding: one matrix-vector product against one matrix-matrix product, and the
    # keyword weights (float32, memory-mapped from keywords.npz) summed over candidates or over every passage.
    np.testing.assert_allclose(numbers, expected_numbers, atol=5e-5)


def both_ways(index, embedder, config) -> tuple[HybridRetriever, HybridRetriever]:
    """Over one exact index: a retriever that scores every passage and one that scores candidates."""
    passages, vectors, keywords = index.passages, index.vector_matrix(), build_keywords(index.passages)
    every = HybridRetriever(passages, vectors, keywords, embedder, config, index=index)
    candidates = HybridRetriever(passages, vectors, keywords, embedder, config, index=index, score_all=False)
    assert every.score_all and not candidates.score_all
    return every, candidates


def test_candidates_give_the_full_hits_on_the_seed(seed_assistant):
    every, candidates = both_ways(seed_assistant.index, seed_assistant.embedder, seed_assistant.config)
    assert_same_hits(candidates, every, DEV + MORE)


@pytest.fixture(scope="module")
def mid_size(seed_assistant, tmp_path_factory):
    """1,120 passages: the seed's 28 in 40 documents, each copy's vectors moved by its own small noise."""
    index = seed_assistant.index
    rng = np.random.default_rng(11)
    passages, vectors = [], []
    for copy in range(40):
        for p in index.passages:
            passages.append(Passage(id=len(passages), source=f"{copy:02d}-{p.source}", section=p.section, start=p.start, end=p.end, text=p.text))
        moved = index.vector_matrix() + 0.03 * rng.standard_normal(index.vector_matrix().shape).astype(np.float32)
        vectors.append(moved / np.linalg.norm(moved, axis=1, keepdims=True))
    folder = tmp_path_factory.mktemp("mid-size")
    manifest = make_manifest(model=index.model, dimension=index.vectors.d, chunking={}, sources={}, documents=40, passages=len(passages))
    with build_lock(folder):
        write_index(folder, manifest, passages, np.concatenate(vectors), LocalStore(), last_build(folder))
    return both_ways(load_index(folder), seed_assistant.embedder, seed_assistant.config)


def candidate_scoring(every: HybridRetriever, **settings) -> HybridRetriever:
    """A retriever over `every`'s passages that scores candidates, with these Config settings."""
    config = every.config.with_overrides(**settings)
    return HybridRetriever(every.passages, every.vectors, every.keywords, every.embedder, config, index=every.index, score_all=False)


def test_candidates_give_the_full_hits_on_a_mid_size_corpus(mid_size):
    every, _ = mid_size
    candidates = candidate_scoring(every, candidate_nearest=30)  # a few hundred of the 1,120 passages
    members, _, _ = candidates.candidates(candidates.read(["哪些级别的医院之间检查结果互认？"])[0])
    assert 0 < len(members) < len(every.passages) / 2
    assert_same_hits(candidates, every, DEV + MORE)


def test_candidates_of_a_scope_score_as_every_passage_does_on_a_mid_size_corpus(mid_size):
    """Limited to some of the 40 documents (qa/search/scope.py), candidates are chosen within them and scored
    as over the whole corpus: the same hits, spans and numbers as scoring every passage and keeping theirs."""
    every, _ = mid_size
    candidates = candidate_scoring(every, candidate_nearest=30)
    documents = every.library.documents
    for names in ([documents[3]], documents[10:20], documents[::7]):
        scope = every.library.scope(names)
        members, _, _ = candidates.candidates(candidates.read(["哪些级别的医院之间检查结果互认？"])[0], scope)
        assert 0 < len(members) <= len(scope.rows) and scope.mask[members].all()
        assert_same_hits(candidates, every, DEV + MORE, within=scope)


def test_the_lowest_similarity_is_estimated_from_a_probe_when_the_corpus_is_larger(mid_size):
    """With a probe smaller than the corpus the lowest similarity is an estimate: real embeddings lie in a
    narrow cone, and the passages least like the corpus's mean, which the probe holds, hold the lowest."""
    every, _ = mid_size
    sampled = candidate_scoring(every, candidate_probe=100)
    probe, _ = sampled.chooser.probe
    assert len(probe) < len(every.passages)
    for question in sampled.read(DEV[:5]):
        _, _, evidence = sampled.candidates(question)
        assert evidence.dense_low[0] == pytest.approx(float((every.vectors @ question.vector).min()), abs=1e-6)


def test_common_words_count_in_the_scores_of_the_texts_asked_about(mid_size):
    """A common concept (in more texts than `common`) chooses no texts but still counts: the BM25 and
    coverage that `Matches` gives any texts equal scoring every text, and the chosen texts' scores too."""
    every, _ = mid_size
    for keywords in (every.keywords, every.section_keywords):
        rows = np.arange(0, len(keywords), 3)
        for question in DEV + MORE:
            matches = keywords.matches(keywords.concepts(question), common=100)
            scores, coverage = keywords.scores([question])[0], keywords.coverage([question])[0]
            np.testing.assert_allclose(matches.scores_of(rows), scores[rows], rtol=1e-6)
            np.testing.assert_allclose(matches.coverage_of(rows), coverage[rows], rtol=1e-6)
            chosen, chosen_scores, best = matches.top(10)
            np.testing.assert_allclose(chosen_scores, scores[chosen], rtol=1e-6)
            assert list(chosen) == sorted(chosen) and best == (chosen_scores.max() if len(chosen) else 0.0)
        # Most questions here have common words: the seed's words occur in 40 copies of each passage.
        assert sum(bool(keywords.matches(keywords.concepts(q), common=100).common) for q in DEV) > len(DEV) / 2


def test_without_common_words_the_best_texts_are_exact(mid_size):
    """With no common concept the chosen texts are those of the `count` best BM25 scores and all tied with
    the last (each passage has 40 copies, all tied), unless more than `ties` x `count` tie: then `count` of them."""
    every, _ = mid_size
    keywords = every.keywords
    for count in (10, 50):
        for question in DEV + MORE:
            scores = keywords.scores([question])[0]
            chosen, _, best = keywords.matches(keywords.concepts(question), common=len(keywords)).top(count)
            positive = np.sort(scores[scores > 0])[::-1]
            tied = np.flatnonzero(scores >= positive[count - 1]) if len(positive) > count else np.flatnonzero(scores > 0)
            if len(tied) <= 2 * count:
                assert list(chosen) == list(tied)
            else:
                assert len(chosen) == count and set(chosen) <= set(tied)
            assert best == (scores.max() if len(positive) else 0.0)
