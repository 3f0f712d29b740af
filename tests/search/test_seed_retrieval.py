"""Retrieval on the seed with the real model: the right case first for the development questions."""

import pytest

from ..conftest import case_number, read_dev_questions

IN_SCOPE = [q for q in read_dev_questions() if q["case"] > 0]


@pytest.mark.parametrize(
    "question, case",
    [
        ("省政府工作报告里每年写进几方面民生实事？", 1),
        ("如何推动小微企业集中入园发展？", 3),
        ("怎样吸引年轻人回乡创业？", 7),
        ("哪些级别的医院之间检查结果互认？", 9),
        ("How are workers trained for the labor service brands?", 5),
    ],
)
def test_top_passage_is_from_the_right_case(seed_assistant, question, case):
    answer = seed_assistant.ask(question)
    assert answer.outcome != "not_found"
    assert case_number(answer.passages[0].section) == case


def test_case_at_1_on_the_dev_set(seed_assistant):
    answers = seed_assistant.ask_many([q["question"] for q in IN_SCOPE])
    hits = [case_number(a.passages[0].section) == q["case"] for q, a in zip(IN_SCOPE, answers)]
    assert sum(hits) / len(hits) >= 0.9, [q["id"] for q, hit in zip(IN_SCOPE, hits) if not hit]
