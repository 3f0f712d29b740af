"""English questions get a second opinion in ranking (qa/search/fusion.py): the second encoder re-reads their
best passages. Chinese questions are ranked as before; both scoring paths agree; English questions
written as people write them (eval/seed_in_scope.tsv) find their case more often than without it."""

import numpy as np

from qa.embeddings.second_encoder import SecondOpinion, read_second_vectors
from qa.evaluation import read_tsv_questions
from qa.search.retrieval import HybridRetriever
from qa.text import script

from ..helpers import PROJECT
from .test_candidates import assert_same_hits


def retrievers(assistant) -> tuple[HybridRetriever, HybridRetriever]:
    """Over the seed index: one retriever with the assistant's second encoder, one without."""
    index, config = assistant.index, assistant.config
    passages, vectors, keywords = index.passages, index.vector_matrix(), assistant.keywords
    second = SecondOpinion(assistant.second, passages, read_second_vectors(index.folder, len(passages)))
    with_second = HybridRetriever(passages, vectors, keywords, assistant.embedder, config, index=index, second=second)
    without = HybridRetriever(passages, vectors, keywords, assistant.embedder, config, index=index)
    return with_second, without


def test_chinese_questions_are_ranked_as_without_the_second_opinion(seed_assistant):
    with_second, without = retrievers(seed_assistant)
    assert_same_hits(with_second, without, ["怎样吸引年轻人回乡创业？", "醫學檢查結果互認覆蓋哪些醫院？", "茶产业和旅游怎么结合？"])


def test_an_english_question_gets_the_second_opinion_on_both_scoring_paths(seed_assistant):
    with_second, without = retrievers(seed_assistant)
    question = "Does Zhejiang encourage people to use serving chopsticks when eating together?"
    evidence = with_second.evidence(with_second.read([question]))
    assert evidence.english.tolist() == [True] and evidence.second.shape == evidence.dense.shape
    assert without.evidence(without.read([question])).english is None
    chinese = with_second.evidence(with_second.read(["怎样吸引年轻人回乡创业？"]))
    assert chinese.english is None and chinese.second is None
    assert with_second.search(question, 5)[0].score != without.search(question, 5)[0].score
    index = seed_assistant.index
    candidates = HybridRetriever(index.passages, index.vector_matrix(), seed_assistant.keywords, seed_assistant.embedder,
                                 seed_assistant.config, index=index, score_all=False, second=with_second.second)
    assert_same_hits(candidates, with_second, [question, "What are the courtesy landmarks?", "rice-mushroom rotation"])


def test_english_questions_find_their_case_more_often_with_the_second_opinion(seed_assistant):
    questions = [q for q in read_tsv_questions(PROJECT / "eval" / "seed_in_scope.tsv") if script(q.question) == "en"]
    with_second, without = retrievers(seed_assistant)

    def case_at_1(retriever) -> float:
        found = retriever.search_many([q.question for q in questions], 1)
        return float(np.mean([bool(hits) and q.is_right_document(hits[0].passage) for q, hits in zip(questions, found)]))

    # Measured 0.878 without and 0.959 with (scripts/english_weights.py); the margin allows for small changes.
    assert case_at_1(with_second) >= case_at_1(without) + 0.04
    assert case_at_1(with_second) >= 0.93
