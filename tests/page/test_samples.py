"""The page's sample questions come from the corpus it serves (qa/documents/samples.py): the questions of
the corpus's .questions.txt, else questions drawn from its own headings; never another corpus's."""

import pytest

from qa.documents.corpus import list_sources
from qa.documents.samples import QUESTIONS_FILE, heading_question, heading_topic, questions_from_headings, read_questions_file

from ..conftest import SEED_CORPUS

SEED_SAMPLES = [
    "民生实事项目是怎么确定的？",
    "小微企业园怎样帮助块状经济转型？",
    "检查检验结果互认给群众带来什么好处？",
    "Which hospitals share medical test results?",
    "What do courtesy landmarks have to do with civic culture?",
]


def test_the_seed_corpus_gives_its_samples_in_a_file_the_corpus_reader_skips():
    assert read_questions_file(SEED_CORPUS) == SEED_SAMPLES
    assert [path.name for path in list_sources(SEED_CORPUS)] == ["浙江高质量发展建设共同富裕示范区第二批典型经验.md"]


def test_the_questions_file_keeps_its_order_without_comments_blank_lines_or_repeats(tmp_path):
    (tmp_path / QUESTIONS_FILE).write_text(
        "\ufeff# 给页面的示例问题\n\n  哪些医院之间  检查结果互认？\n农村公路怎么养护？\n哪些医院之间 检查结果互认？\n" + "长" * 201 + "\n",
        encoding="utf-8",
    )
    assert read_questions_file(tmp_path) == ["哪些医院之间 检查结果互认？", "农村公路怎么养护？"]


def test_no_questions_file_is_none_and_an_empty_one_shows_none(tmp_path):
    assert read_questions_file(tmp_path) is None
    (tmp_path / QUESTIONS_FILE).write_text("# none yet\n", encoding="utf-8")
    assert read_questions_file(tmp_path) == []


@pytest.mark.parametrize(
    "heading, source, topic",
    [
        ("第五章  名誉权和荣誉权", "民法典/人格权编.md", "名誉权和荣誉权"),
        ("第四编 人格权 › 第五章 名誉权和荣誉权", "民法典/人格权编.md", "名誉权和荣誉权"),  # a heading path: its last part
        ("（三）加强监督管理", "规章/办法.md", "加强监督管理"),
        ("关于加强农村公路养护的要求", "通知.md", "加强农村公路养护的要求"),
        ("9 医学检查检验结果互认共享改革", "cases.md", "医学检查检验结果互认共享改革"),
        ("1. Scope of application", "rules.md", "Scope of application"),
        ("第一章 总则", "民法典/总则.md", None),  # generic
        ("第七章 法律责任", "经济法/建筑法(2019-04-23).md", None),
        ("第一千零二十五条", "民法典/人格权编.md", None),  # an article's label
        ("人格权编", "民法典/人格权编.md", None),  # the document's own name
        ("中华人民共和国建筑法", "经济法/建筑法(2019-04-23).md", None),  # its title
        ("Overview", "rules.md", None),
        ("", "a.md", None),
    ],
)
def test_what_a_heading_is_about(heading, source, topic):
    assert heading_topic(heading, source) == topic


LIBRARY_HEADINGS = [
    ("民法典/人格权编.md", "第一章 一般规定"),
    ("民法典/人格权编.md", "第五章 名誉权和荣誉权"),
    ("民法典/人格权编.md", "第六章 隐私权和个人信息保护"),
    ("民法典/物权编.md", "第二章 物权的设立、变更、转让和消灭"),
    ("刑法/刑法.md", "第三章 刑罚"),
    ("刑法/刑法.md", "第一千零二十五条"),
    ("经济法/建筑法(2019-04-23).md", "第三章 建筑工程发包与承包"),
    ("经济法/建筑法(2019-04-23).md", "第七章 法律责任"),
    ("经济法/公司法.md", "第二章 有限责任公司的设立和组织机构"),
    ("宪法/宪法.md", "第二章 公民的基本权利和义务"),
]


def test_questions_from_headings_take_the_collections_in_turn_and_are_always_the_same():
    questions = questions_from_headings(LIBRARY_HEADINGS, 4)
    assert len(questions) == 4 and len(set(questions)) == 4
    assert all(q.startswith("关于「") and q.endswith("」有哪些规定？") for q in questions)
    # one document of each of the four collections before any collection's second
    topics = [q.removeprefix("关于「").removesuffix("」有哪些规定？") for q in questions]
    collections = {
        "名誉权和荣誉权": "民法典", "隐私权和个人信息保护": "民法典", "物权的设立、变更、转让和消灭": "民法典", "刑罚": "刑法",
        "建筑工程发包与承包": "经济法", "有限责任公司的设立和组织机构": "经济法", "公民的基本权利和义务": "宪法",
    }
    assert sorted(collections[topic] for topic in topics) == sorted(["宪法", "刑法", "民法典", "经济法"])
    assert questions_from_headings(list(reversed(LIBRARY_HEADINGS)), 4) == questions
    assert questions_from_headings(LIBRARY_HEADINGS, 2) == questions[:2]
    assert len(questions_from_headings(LIBRARY_HEADINGS, 20)) == 6  # one a document: six have a heading with a topic
    assert questions_from_headings([("a.md", "第一章 总则"), ("b.md", "第三条")], 5) == []


def test_an_english_heading_gives_an_english_question():
    assert questions_from_headings([("rules/a.md", "2 Refunds for late delivery")], 5) == [
        'What do the documents say about "Refunds for late delivery"?'
    ]


def test_a_heading_that_is_a_question_is_asked_as_it_is():
    assert heading_question("我是“自愿”加班怎么办？") == "我是“自愿”加班怎么办？"
    assert heading_question("名誉权和荣誉权") == "关于「名誉权和荣誉权」有哪些规定？"
