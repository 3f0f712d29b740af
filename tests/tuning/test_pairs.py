"""Reading labelled questions for `qa tune` (qa/tuning/pairs.py): exact passages, exact problems by line number."""

import json

import pytest

from qa.passages import Passage
from qa.tuning.pairs import PassageFinder, Problem, read_labels

SOURCE = "行政法规/个体工商户条例(2016-02-06).md"
OTHER = "行政法规/物业管理条例(2018-03-19).md"
# Real articles of the two regulations, cut into passages as a build cuts an article longer than one passage.
PASSAGES = [
    Passage(0, SOURCE, "个体工商户条例", 0, 52, "第二条 有经营能力的公民，依照本条例规定经工商行政管理部门登记，从事工商业经营的，为个体工商户。"),
    Passage(1, SOURCE, "个体工商户条例", 54, 100, "个体工商户可以个人经营，也可以家庭经营。\n\n个体工商户的合法权益受法律保护，任何单位和个人不得侵害。"),
    Passage(2, SOURCE, "个体工商户条例", 102, 140, "第四条 国家对个体工商户实行市场平等准入、公平待遇的原则。"),
    Passage(3, OTHER, "物业管理条例", 0, 60, "第三十四条 业主委员会应当与业主大会选聘的物业服务企业订立书面的物业服务合同。"),
    Passage(4, OTHER, "物业管理条例", 62, 130, "物业服务合同应当对物业管理事项、服务质量、服务费用、双方的权利义务、专项维修资金的管理与使用、"
                                                 "物业管理用房、合同期限、违约责任等内容进行约定。"),
]
ARTICLE_2 = ("有经营能力的公民，依照本条例规定经工商行政管理部门登记，从事工商业经营的，为个体工商户。\n\n"
             "个体工商户可以个人经营，也可以家庭经营。\n\n个体工商户的合法权益受法律保护，任何单位和个人不得侵害。\n")
ARTICLE_34_END = ("物业服务合同应当对物业管理事项、服务质量、服务费用、双方的权利义务、专项维修资金的管理与使用、"
                  "物业管理用房、合同期限、违约责任等内容进行约定。")


CRIMINAL_LAW_1 = "为了惩罚犯罪，保护人民，根据宪法，结合我国同犯罪作斗争的具体经验及实际情况，制定本法。"  # in no passage


@pytest.fixture(scope="module")
def finder():
    return PassageFinder(PASSAGES)


def stard(tmp_path, *rows, name="questions.jsonl"):
    path = tmp_path / name
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n" for row in rows), encoding="utf-8")
    return path


def vote(rating, question, *passages, searched=None):
    cited = [{"rank": rank, "score": 0.5, "source": p.source, "section": p.section, "text": p.text, "start": p.start, "end": p.end}
             for rank, p in enumerate(passages, start=1)]
    return {"time": "2026-12-06T12:00:00+00:00", "rating": rating, "question": question, "searched": searched or question,
            "answered": True, "passages": cited}


def test_a_stard_article_is_the_passage_where_it_starts(tmp_path, finder):
    # Article 2 is cut into passages 0 and 1: its first window ("有经营能力的公民，依照本条例规定经工商") is in passage 0.
    # Article 34's text given starts at its second paragraph, which passage 4 holds.
    path = stard(tmp_path,
                 {"id": 0, "question": "谁可以成为个体工商户？", "articles": [{"name": "个体工商户条例第二条", "text": ARTICLE_2}]},
                 {"id": 982, "question": "物业服务合同都包含哪些内容？",
                  "articles": [{"name": "物业管理条例第三十四条", "text": ARTICLE_34_END},
                               {"name": "个体工商户条例第二条", "text": ARTICLE_2}]})
    labels = read_labels([path], None, finder)
    assert labels.problems == []
    assert [(q.id, q.question, q.positives, q.negatives) for q in labels.questions] == [
        ("0", "谁可以成为个体工商户？", [0], []),
        ("982", "物业服务合同都包含哪些内容？", [4, 0], []),
    ]
    assert labels.pairs == 3
    assert labels.questions[1].where == f"{path} line 2"


def test_bad_lines_are_each_reported_by_number_with_the_reason(tmp_path, finder):
    good = {"id": 1, "question": "谁可以成为个体工商户？", "articles": [{"name": "第二条", "text": ARTICLE_2}]}
    path = stard(
        tmp_path,
        good,
        '{"id": 2, "question": "cut short',
        {"id": 3, "question": "个体户能家庭经营吗？"},
        {"id": 4, "question": "个体户受法律保护吗？", "articles": [{"name": "刑法第一条", "text": CRIMINAL_LAW_1}]},
        {"id": 1, "question": "又问一次", "articles": [{"name": "第二条", "text": ARTICLE_2}]},
        "[1, 2]",
        {"id": 5, "question": "空的条文", "articles": [{"name": "第九条", "text": " \n"}]},
    )
    labels = read_labels([path], None, finder)
    assert [str(p) for p in labels.problems] == [
        f"{path} line 2: not JSON (Unterminated string starting at at column 23)",
        f'{path} line 3: missing "articles"',
        f"{path} line 4: article 1 (刑法第一条): its text is found nowhere in the corpus's passages",
        f"{path} line 5: id 1 again (first on line 1)",
        f'{path} line 6: expected a JSON object {{"id", "question", "articles"}}',
        f"{path} line 7: article 1 (第九条) has no text",
    ]
    assert [q.id for q in labels.questions] == ["1"]  # the usable line is kept; the CLI stops unless told to skip


def test_an_empty_file_is_a_problem(tmp_path, finder):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    blank_log = tmp_path / "feedback.jsonl"
    blank_log.write_text("", encoding="utf-8")
    labels = read_labels([empty], blank_log, finder)
    assert labels.problems == [Problem(empty, 0, "empty file: no labelled questions"), Problem(blank_log, 0, "empty file: no votes")]
    assert str(labels.problems[0]) == f"{empty}: empty file: no labelled questions"
    assert labels.questions == []


def test_a_tsv_pairs_questions_with_passage_ids(tmp_path, finder):
    path = tmp_path / "pairs.tsv"
    path.write_text(
        "# question<TAB>SOURCE:START-END\n"
        f"物业服务合同都包含哪些内容？\t{OTHER}:62-130\n"
        f"物业服务合同都包含哪些内容？\t{OTHER}:0-60\n"
        "\n"
        f"个体户可以家庭经营吗？\t{SOURCE}:54-100\n"
        f"只有一列\n"
        f"个体户\t{SOURCE}:54\n"
        f"个体户\t{SOURCE}:54-99\n",
        encoding="utf-8",
    )
    labels = read_labels([path], None, finder)
    assert [(q.id, q.positives) for q in labels.questions] == [("物业服务合同都包含哪些内容？", [4, 3]), ("个体户可以家庭经营吗？", [1])]
    assert [str(p) for p in labels.problems] == [
        f"{path} line 6: expected two columns, question<TAB>SOURCE:START-END, not 1",
        f"{path} line 7: passage id '{SOURCE}:54' is not SOURCE:START-END",
        f"{path} line 8: passage {SOURCE}:54-99 is found nowhere in the corpus's passages "
        "(changed since? `qa ask --json` gives the current ones)",
    ]


def test_feedback_votes_become_pairs_as_documented(tmp_path, finder):
    log = tmp_path / "feedback.jsonl"
    moved = Passage(9, SOURCE, "个体工商户条例", 500, 520, "第九十九条 这一条已经不在语料里了。")
    votes = [
        vote("up", "个体户能家庭经营吗？", PASSAGES[1], PASSAGES[0], PASSAGES[2]),  # 1: up: the first cited passage
        vote("down", "物业合同写什么？", *PASSAGES[:5], moved),  # 2: down: the first five are negatives, the sixth unread
        vote("up", "谁能当个体户？", PASSAGES[2]),  # 3: taken back by line 4
        vote("cleared", "谁能当个体户？"),
        vote("up", "登记机关是谁？", PASSAGES[2]),  # 5: the last vote on a question counts: line 6's down
        vote("down", "登记机关是谁？", PASSAGES[0]),
        vote("up", "已经改了的条文？", moved),  # 7: its passage is in no passage of the index
        vote("up", "具体呢？", PASSAGES[3], searched="物业服务合同都包含哪些内容？ 具体呢？"),  # 8: by what was searched
    ]
    lines = [json.dumps(v, ensure_ascii=False) for v in votes]
    log.write_text("\n".join(lines[:4]) + "\n{not json\n" + "\n".join(lines[4:]) + "\n", encoding="utf-8")
    labels = read_labels([], log, finder)
    assert [(q.id, q.positives, q.negatives) for q in labels.questions] == [
        ("个体户能家庭经营吗？", [1], []),
        ("物业服务合同都包含哪些内容？ 具体呢？", [3], []),
    ]
    assert [str(p) for p in labels.problems] == [
        f"{log} line 5: not a JSON record (cut short?)",
        f"{log} line 8: cited passage 1 ({SOURCE}): its text is found nowhere in the corpus's passages (changed since the vote?)",
    ]
    assert labels.notes == [f"{log} line 2: only thumbs-down, no passage marked helpful: no pair of its own",
                            f"{log} line 7: only thumbs-down, no passage marked helpful: no pair of its own"]


def test_a_thumbs_down_adds_negatives_to_the_same_labelled_question(tmp_path, finder):
    path = stard(tmp_path, {"id": 0, "question": "谁可以成为个体工商户？", "articles": [{"name": "第二条", "text": ARTICLE_2}]})
    log = tmp_path / "feedback.jsonl"
    log.write_text(json.dumps(vote("down", "谁可以成为个体工商户？", PASSAGES[2], PASSAGES[3]), ensure_ascii=False) + "\n", encoding="utf-8")
    labels = read_labels([path], log, finder)
    assert [(q.id, q.positives, q.negatives) for q in labels.questions] == [("0", [0], [2, 3])]
    assert labels.problems == [] and labels.notes == []
