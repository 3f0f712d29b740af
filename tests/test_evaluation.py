"""`qa eval` arithmetic on hand-made answers, the two file formats, and one real run on a tiny corpus."""

import json

import pytest

from qa.answer import Answer, CitedPassage
from qa.errors import EvaluationError
from qa.evaluation import (
    METRICS,
    EvalQuestion,
    append_csv,
    evaluate,
    evaluate_file,
    evaluate_questions,
    read_squad,
    read_tsv_questions,
)

from .helpers import run_qa, write_corpus


def cited(rank, section, text, source="seed.md"):
    return CitedPassage(rank=rank, score=0.5, source=source, section=section, text=text, start=0, end=len(text))


def answer(outcome, *passages):
    return Answer(question="?", outcome=outcome, confidence=0.5, passages=list(passages))


QUESTIONS = [
    EvalQuestion("q1", "一", case=1, evidence=("十方面",)),
    EvalQuestion("q2", "二", case=2, evidence=("标志性 项目",)),  # evidence matched with whitespace removed
    EvalQuestion("q3", "三", case=3, evidence=("担保贷款",)),
    EvalQuestion("q4", "四", case=4, evidence=("规模发展",)),
    EvalQuestion("o1", "五", case=0),
    EvalQuestion("o2", "六", case=0),
]
ANSWERS = [
    # q1: right case first, evidence in the top passage.
    answer("answered", cited(1, "1 民生实事", "每年将十方面民生实事纳入"), cited(2, "2 平台", "x")),
    # q2: wrong case first; right case second, with evidence (split by a line break in the text).
    answer("uncertain", cited(1, "3 小微", "a"), cited(2, "2 平台", "招引标志性\n项目落户"), cited(3, "2 平台", "y")),
    # q3: right case third, without evidence; declined although in scope.
    answer("not_found", cited(1, "1 民生实事", "b"), cited(2, "2 平台", "c"), cited(3, "3 小微", "无关内容")),
    # q4: the right case nowhere in the list.
    answer("answered", cited(1, "10 有礼", "d"), cited(2, "9 医学", "e"), cited(3, "8 诗路", "f"), cited(4, "7 古村", "g")),
    answer("not_found", cited(1, "1 民生实事", "h")),  # o1 declined
    answer("answered", cited(1, "1 民生实事", "i")),  # o2 answered: wrong
]


def test_metrics_are_exact_on_a_hand_made_set():
    report = evaluate(QUESTIONS, ANSWERS)
    assert (report.questions, report.in_scope, report.out_of_scope) == (6, 4, 2)
    # r, the rank of the first passage from the right case: q1 1, q2 2, q3 3, q4 none.
    assert report.metrics == {
        "doc@1": 0.25,  # q1 only: 1/4
        "doc@3": 0.75, "doc@5": 0.75, "doc@10": 0.75,  # q1, q2, q3: 3/4
        "passage@1": 0.25,  # q1
        "passage@3": 0.5, "passage@5": 0.5, "passage@10": 0.5,  # q1, q2 (q3's right passage lacks the evidence)
        "mrr@10": 0.4583,  # (1/1 + 1/2 + 1/3 + 0) / 4 = 1.8333 / 4
        "ndcg@10": 0.5327,  # (1/log2(2) + 1/log2(3) + 1/log2(4) + 0) / 4 = (1 + 0.6309 + 0.5) / 4 = 2.1309 / 4
    }
    assert list(report.metrics) == list(METRICS) and report.primary == "passage@1"
    # Top passages of the in-scope questions: 12 + 1 + 1 + 1 characters.
    assert report.top_chars == 3.8
    assert report.declined == 0.5  # o1 of o1, o2
    assert report.wrongly_declined == 0.25  # q3
    assert report.misses == ["q2", "q3", "q4"]
    # Questions "一".."六" are all simplified Chinese: each script group repeats its scope's shares.
    # In scope: q1 and q4 answered, q2 uncertain, q3 not found; out of scope: o1 not found, o2 answered.
    in_scope = {"n": 4, "answered": 0.5, "uncertain": 0.25, "not_found": 0.25}
    out_of_scope = {"n": 2, "answered": 0.5, "uncertain": 0.0, "not_found": 0.5}
    assert report.outcomes == {
        "in-scope": in_scope, "in-scope zh-Hans": in_scope, "out-of-scope": out_of_scope, "out-of-scope zh-Hans": out_of_scope,
    }
    assert report.to_json() == {
        "questions": 6, "in_scope": 4, "out_of_scope": 2, "primary": "passage@1", **report.metrics, "top_chars": 3.8,
        "declined": 0.5, "wrongly_declined": 0.25, "misses": ["q2", "q3", "q4"], "skipped": [], "outcomes": report.outcomes,
    }
    assert list(report.to_json()) == [  # flat, in this order
        "questions", "in_scope", "out_of_scope", "primary", "doc@1", "doc@3", "doc@5", "doc@10", "passage@1", "passage@3",
        "passage@5", "passage@10", "mrr@10", "ndcg@10", "top_chars", "declined", "wrongly_declined", "misses", "skipped", "outcomes",
    ]


def test_ranks_past_three_and_the_cut_at_ten():
    questions = [EvalQuestion("d1", "一", case=5, evidence=("证据",)), EvalQuestion("d2", "二", case=5, evidence=("证据",))]
    wrong = [cited(rank, "1 民生实事", "x") for rank in range(1, 11)]
    answers = [
        answer("uncertain", *wrong[:5], cited(6, "5 平台", "有证据")),  # d1: r = 6, with the evidence
        answer("uncertain", *wrong, cited(11, "5 平台", "有证据")),  # d2: r = 11, past every cut
    ]
    report = evaluate(questions, answers)
    assert report.metrics == {
        "doc@1": 0.0, "doc@3": 0.0, "doc@5": 0.0, "doc@10": 0.5,  # d1 at 10: 1/2
        "passage@1": 0.0, "passage@3": 0.0, "passage@5": 0.0, "passage@10": 0.5,
        "mrr@10": 0.0833,  # (1/6 + 0) / 2
        "ndcg@10": 0.1781,  # (1/log2(7) + 0) / 2 = 0.3562 / 2
    }


def test_questions_are_asked_in_batches_and_blank_ones_skipped():
    by_text = {q.question: a for q, a in zip(QUESTIONS, ANSWERS)}
    asked = []

    def ask_many(texts):
        asked.append(list(texts))
        return [by_text[text] for text in texts]

    blank = EvalQuestion("b1", "", case=1, evidence=("十方面",))
    report = evaluate_questions([*QUESTIONS[:3], blank, *QUESTIONS[3:]], ask_many, batch=4)
    assert asked == [["一", "二", "三", "四"], ["五", "六"]]
    assert report.skipped == ["b1"]
    assert report.to_json() == dict(evaluate(QUESTIONS, ANSWERS).to_json(), skipped=["b1"])


def test_case_numbers_are_read_from_the_start_of_the_section():
    question = EvalQuestion("q", "?", case=1)
    assert question.is_right_document(cited(1, "1 为民办实事", ""))
    assert not question.is_right_document(cited(1, "10 有礼", ""))
    assert not question.is_right_document(cited(1, "概述", ""))


def test_no_out_of_scope_question_reports_none_declined():
    report = evaluate(QUESTIONS[:1], ANSWERS[:1])
    assert report.declined is None and report.metrics["doc@1"] == 1.0


HEADER = (
    "files,fusion,questions,in_scope,out_of_scope,doc@1,doc@3,doc@5,doc@10,passage@1,passage@3,passage@5,passage@10,"
    "mrr@10,ndcg@10,top_chars,declined,wrongly_declined\n"
)


def test_csv_rows_are_appended_under_one_header(tmp_path):
    path, files = tmp_path / "runs.csv", [tmp_path / "in.tsv", tmp_path / "out.tsv"]
    append_csv(path, evaluate(QUESTIONS, ANSWERS), files, "sections")
    append_csv(path, evaluate(QUESTIONS[:1], ANSWERS[:1]), files[:1], "rrf")
    assert path.read_text(encoding="utf-8") == (
        HEADER
        # the hand-made set's figures (test_metrics_are_exact_on_a_hand_made_set)
        + f"{files[0]};{files[1]},sections,6,4,2,0.25,0.75,0.75,0.75,0.25,0.5,0.5,0.5,0.4583,0.5327,3.8,0.5,0.25\n"
        # q1 alone: right case first with the evidence, so every metric is 1 (1/1, 1/log2(2)); its top passage
        # has 12 characters; no out-of-scope question, so the declined cell is empty.
        + f"{files[0]},rrf,1,1,0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,12.0,,0.0\n"
    )


def test_a_csv_file_with_other_columns_or_in_a_missing_folder_is_refused(tmp_path):
    report = evaluate(QUESTIONS, ANSWERS)
    other = tmp_path / "other.csv"
    other.write_text("epoch,steps,ndcg@10\n1,100,0.5\n", encoding="utf-8")
    with pytest.raises(EvaluationError) as raised:
        append_csv(other, report, [tmp_path / "q.tsv"], "sections")
    assert str(raised.value) == f"{other} has other columns than `qa eval --csv` writes; give a new file"
    assert other.read_text(encoding="utf-8") == "epoch,steps,ndcg@10\n1,100,0.5\n"
    missing = tmp_path / "no" / "runs.csv"
    with pytest.raises(EvaluationError) as raised:
        append_csv(missing, report, [tmp_path / "q.tsv"], "sections")
    assert str(raised.value) == f"cannot write the results to {missing}: No such file or directory"


def test_qa_eval_prints_every_metric_and_adds_a_csv_row(tmp_path, monkeypatch):
    monkeypatch.setattr("qa.evaluation.evaluate_file", lambda paths, config, **_: evaluate(QUESTIONS, ANSWERS))
    questions, results = tmp_path / "q.tsv", tmp_path / "runs.csv"
    result = run_qa("eval", str(questions), "--csv", str(results))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:6] == [  # the figures of test_metrics_are_exact_on_a_hand_made_set
        "6 questions, 4 in scope, 2 out of scope",
        "doc@1 0.250   doc@3 0.750   doc@5 0.750   doc@10 0.750   mrr@10 0.458   ndcg@10 0.533",
        "passage@1 0.250   passage@3 0.500   passage@5 0.500   passage@10 0.500   top passage 4 characters on average",
        "primary: passage@1 0.250",
        "out of scope declined 0.500   in scope wrongly declined 0.250",
        "",
    ]
    squad = run_qa("eval", str(tmp_path / "s.json"), "--fusion", "rrf", "--csv", str(results))
    assert squad.stdout.splitlines()[2:4] == [  # a SQuAD file's passage@k reads answer@k
        "answer@1 0.250   answer@3 0.500   answer@5 0.500   answer@10 0.500   top passage 4 characters on average",
        "primary: answer@1 0.250",
    ]
    row = "6,4,2,0.25,0.75,0.75,0.75,0.25,0.5,0.5,0.5,0.4583,0.5327,3.8,0.5,0.25\n"
    assert results.read_text(encoding="utf-8") == f"{HEADER}{questions},sections,{row}{tmp_path / 's.json'},rrf,{row}"


def test_answers_must_match_questions():
    with pytest.raises(EvaluationError, match="6 questions but 1 answers"):
        evaluate(QUESTIONS, ANSWERS[:1])


def test_tsv_questions(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("# comment\nd01\tzh\tpara\t1\t十方面\t几方面民生实事？\nd23\ten\toos\t0\t\tBread?\n", encoding="utf-8")
    assert read_tsv_questions(path) == [
        EvalQuestion("d01", "几方面民生实事？", case=1, evidence=("十方面",), kind="para", lang="zh"),
        EvalQuestion("d23", "Bread?", case=0, evidence=(), kind="oos", lang="en"),
    ]
    path.write_text("d01\tzh\tpara\tone\t十方面\t问题\n", encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"q.tsv line 1: expected 6 tab-separated columns"):
        read_tsv_questions(path)
    with pytest.raises(EvaluationError, match="does not exist"):
        read_tsv_questions(tmp_path / "missing.tsv")


def test_squad_documents_and_questions(tmp_path):
    path = tmp_path / "s.json"
    data = {"data": [{"title": "泡泡战士", "paragraphs": [{"id": "T_1", "context": "生命数耗完即算为踢爆。", "qas": [
        {"question": "生命数耗完即算为什么？", "id": "T_1_Q0", "answers": [{"text": "踢爆", "answer_start": 8}]}]}]}]}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    documents, questions = read_squad(path)
    assert documents == {"T_1.md": "# 泡泡战士\n\n生命数耗完即算为踢爆。\n"}
    assert questions == [EvalQuestion("T_1_Q0", "生命数耗完即算为什么？", source="T_1.md", evidence=("踢爆",))]
    path.write_text('{"data": [{"paragraphs": [{"qas": []}]}]}', encoding="utf-8")
    with pytest.raises(EvaluationError, match="not a SQuAD-format file"):
        read_squad(path)


def test_a_real_squad_evaluation_with_the_model(tmp_path, embedder):
    """Three real paragraphs, three questions: each answer sentence is found first."""
    paragraphs = [
        ("P1", "医院", "二级甲等及以上医疗机构之间检查检验报告予以互认。强化互认项目质量控制。"),
        ("P2", "茶叶", "推进茶旅融合发展，实现一亩茶万元钱。发展林下经济。"),
        ("P3", "斑马线", "开展礼让斑马线文明行动。建设有礼地标。"),
    ]
    qas = [("哪些医院之间检查结果互认？", "二级甲等及以上医疗机构"), ("茶产业和旅游怎么结合？", "茶旅融合"), ("开车礼让行人属于什么行动？", "礼让斑马线")]
    data = {"data": [{"title": title, "paragraphs": [{"id": pid, "context": text, "qas": [
        {"question": q, "id": f"{pid}_Q", "answers": [{"text": a, "answer_start": text.index(a)}]}]}]}
        for (pid, title, text), (q, a) in zip(paragraphs, qas)]}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    from qa.config import Config

    report = evaluate_file(path, Config(index_dir=tmp_path / "unused"), embedder)
    assert report.in_scope == 3
    assert {key: report.metrics[key] for key in ("doc@1", "passage@1", "mrr@10", "ndcg@10")} == dict.fromkeys(
        ("doc@1", "passage@1", "mrr@10", "ndcg@10"), 1.0
    )


def test_qa_eval_command_on_a_tiny_corpus(tmp_path):
    corpus = write_corpus(tmp_path, {"cases.md": (
        "# 案例\n\n## 1 医学检查检验结果互认\n\n二级甲等及以上医疗机构间，检查检验报告予以互认。推出“浙医互认”应用。\n\n"
        "## 2 有礼浙江\n\n深化礼让斑马线等十大文明行动。建设有礼地标。\n"
    )})
    questions = tmp_path / "q.tsv"
    questions.write_text(
        "q1\tzh\tpara\t1\t浙医互认\t浙医互认是什么应用？\n"
        "q2\tzh\tpara\t2\t礼让斑马线\t开车礼让行人属于哪项文明行动？\n"
        "q3\ten\toos\t0\t\tHow do I bake sourdough bread?\n",
        encoding="utf-8",
    )
    result = run_qa("eval", str(questions), "--corpus", str(corpus), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    keys = ("questions", "in_scope", "primary", "doc@1", "mrr@10", "ndcg@10", "passage@1", "declined", "wrongly_declined")
    assert {key: report[key] for key in keys} == {
        "questions": 3, "in_scope": 2, "primary": "passage@1", "doc@1": 1.0, "mrr@10": 1.0, "ndcg@10": 1.0, "passage@1": 1.0,
        "declined": 1.0, "wrongly_declined": 0.0,
    }
    # Groups by scope and script ("oos" is no kind of its own); the bread question is not found.
    assert sorted(report["outcomes"]) == ["in-scope", "in-scope zh-Hans", "out-of-scope", "out-of-scope en"]
    assert report["outcomes"]["out-of-scope en"] == {"n": 1, "answered": 0.0, "uncertain": 0.0, "not_found": 1.0}
    assert report["outcomes"]["in-scope"]["n"] == 2 and report["outcomes"]["in-scope"]["not_found"] == 0.0
    missing = run_qa("eval", str(tmp_path / "none.tsv"), "--corpus", str(corpus))
    assert missing.exit_code == 1 and f"Error: question file {tmp_path / 'none.tsv'} does not exist" in missing.output
