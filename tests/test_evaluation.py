"""`qa eval` arithmetic on hand-made answers, the three file formats, reliability, folds, and real runs on tiny corpora."""

import json

import pytest

from qa.answer import Answer, CitedPassage
from qa.errors import EvaluationError
from qa.evaluation import (
    ARTICLE_METRICS,
    ARTICLE_RANKED,
    METRICS,
    EvalQuestion,
    append_csv,
    article_windows,
    calibration_error,
    cites_answer,
    evaluate,
    evaluate_file,
    evaluate_questions,
    fold_of,
    parse_fold,
    read_squad,
    read_stard_questions,
    read_tsv_questions,
    reliability,
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
    # Reliability: every answer has confidence 0.5, so one bin holds all six; correct (the right case among the
    # first three passages): q1, q2, q3 (ranks 1, 2, 3), not q4 nor the out-of-scope o1, o2: 3/6.
    assert [row for row in report.reliability if row["n"]] == [{"from": 0.5, "to": 0.6, "n": 6, "confidence": 0.5, "correct": 0.5}]
    assert report.calibration_error == 0.0  # |0.5 - 0.5|
    assert (report.answered_questions, report.answered_correct) == (3, 0.3333)  # q1, q4, o2 answered; q1 correct
    assert report.to_json() == {
        "questions": 6, "in_scope": 4, "out_of_scope": 2, "primary": "passage@1", **report.metrics, "top_chars": 3.8,
        "declined": 0.5, "wrongly_declined": 0.25, "answered_questions": 3, "answered_correct": 0.3333, "calibration_error": 0.0,
        "reliability": report.reliability, "fold": None, "misses": ["q2", "q3", "q4"], "skipped": [], "outcomes": report.outcomes,
        "remembered": 0,
    }
    assert list(report.to_json()) == [  # flat, in this order
        "questions", "in_scope", "out_of_scope", "primary", "doc@1", "doc@3", "doc@5", "doc@10", "passage@1", "passage@3",
        "passage@5", "passage@10", "mrr@10", "ndcg@10", "top_chars", "declined", "wrongly_declined", "answered_questions",
        "answered_correct", "calibration_error", "reliability", "fold", "misses", "skipped", "outcomes", "remembered",
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
    "mrr@10,ndcg@10,top_chars,declined,wrongly_declined,hit@1,hit@3,hit@5,hit@10,hit@100,recall@1,recall@3,recall@5,recall@10,"
    "recall@100,"
    "answered_correct,calibration_error,fold\n"
)


def test_csv_rows_are_appended_under_one_header(tmp_path):
    path, files = tmp_path / "runs.csv", [tmp_path / "in.tsv", tmp_path / "out.tsv"]
    append_csv(path, evaluate(QUESTIONS, ANSWERS), files, "sections")
    append_csv(path, evaluate(QUESTIONS[:1], ANSWERS[:1]), files[:1], "rrf")
    assert path.read_text(encoding="utf-8") == (
        HEADER
        # the hand-made set's figures (test_metrics_are_exact_on_a_hand_made_set); no hit@k or recall@k for a TSV,
        # no fold
        + f"{files[0]};{files[1]},sections,6,4,2,0.25,0.75,0.75,0.75,0.25,0.5,0.5,0.5,0.4583,0.5327,3.8,0.5,0.25,,,,,,,,,,,0.3333,0.0,\n"
        # q1 alone: right case first with the evidence, so every metric is 1 (1/1, 1/log2(2)); its top passage
        # has 12 characters; no out-of-scope question, so the declined cell is empty; answered and correct with
        # confidence 0.5: calibration error |0.5 - 1|.
        + f"{files[0]},rrf,1,1,0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,12.0,,0.0,,,,,,,,,,,1.0,0.5,\n"
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
    row = "6,4,2,0.25,0.75,0.75,0.75,0.25,0.5,0.5,0.5,0.4583,0.5327,3.8,0.5,0.25,,,,,,,,,,,0.3333,0.0,\n"
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


# --- STARD: questions with the texts of their relevant articles --------------------------------------------

# 130 different characters: an article whose windows are easy to place (一 is U+4E00).
LONG_ARTICLE = "".join(chr(0x4E00 + i) for i in range(130))


def test_an_article_is_found_by_one_of_its_first_five_windows():
    assert article_windows(LONG_ARTICLE) == tuple(LONG_ARTICLE[start : start + 20] for start in (0, 20, 40, 60, 80))
    assert article_windows("人格权不得放弃、转让或者继承。") == ("人格权不得放弃、转让或者继承。",)  # under 20: the whole article
    assert article_windows("甲" * 19 + "乙" * 26) == ("甲" * 19 + "乙", "乙" * 20)  # 45: the 5-character tail is no window
    assert article_windows(" \n") == ()
    question = EvalQuestion("1", "?", articles=(LONG_ARTICLE,))

    def found(text: str) -> bool:
        return question.articles_in(cited(1, "", text)) == {0}

    # Cut in two at character 50, the article is found by either part: [0:20] and [20:40] in the first, [60:80] and
    # [80:100] in the second ([40:60] straddles the cut).
    assert found("前文" + LONG_ARTICLE[:50]) and found(LONG_ARTICLE[50:] + "后文")
    assert not found(LONG_ARTICLE[100:])  # past the first five windows
    assert not found(LONG_ARTICLE[10:35])  # no whole window
    # Whitespace is removed from both the passage and the article.
    assert found(LONG_ARTICLE[:7] + "\n\n" + LONG_ARTICLE[7:15] + " \u3000" + LONG_ARTICLE[15:25])
    spaced = EvalQuestion("2", "?", articles=(LONG_ARTICLE[:12] + "\n" + LONG_ARTICLE[12:30],))
    assert spaced.articles_in(cited(1, "", LONG_ARTICLE[:20])) == {0}


def article(i: int) -> str:
    """The i-th of seven made-up articles, 40 characters each that no other one holds (the seventh 29)."""
    return "".join(chr(0x4E00 + 200 + 40 * i + j) for j in range(40)) if i < 6 else "与其他条文无一字相同的第七条条文内容，长度超过二十个字符。"


A, B, C, D, E, F, G = (article(i) for i in range(7))
STARD_QUESTIONS = [
    EvalQuestion("s1", "一", articles=(A, B)),
    EvalQuestion("s2", "二", articles=(C,)),
    EvalQuestion("s3", "三", articles=(D, E, F)),
    EvalQuestion("s4", "四", articles=(G,)),
    EvalQuestion("o1", "五", case=0),  # from an out-of-scope TSV beside the .jsonl
]
NOTHING = "无关"


def cites(*texts: str, confidence: float, outcome: str) -> Answer:
    return Answer("?", outcome, confidence, [cited(rank, "", text) for rank, text in enumerate(texts, start=1)])


STARD_ANSWERS = [
    # s1: A first, B fourth
    cites(A, NOTHING, NOTHING, "第二条" + B + "下一条", confidence=0.95, outcome="answered"),
    # s2: C second
    cites(NOTHING, C, confidence=0.85, outcome="answered"),
    # s3: D and E in one passage, third; F seventh
    cites(NOTHING, NOTHING, D + E, NOTHING, NOTHING, NOTHING, F, confidence=0.62, outcome="uncertain"),
    # s4: G eleventh, past every cut
    cites(*[NOTHING] * 10, G, confidence=0.05, outcome="not_found"),
    cites(A, confidence=0.91, outcome="answered"),  # o1: out of scope, answered anyway
]


def test_article_metrics_are_exact_on_a_hand_made_set():
    assert [len(article_windows(text)) for text in (A, B, G)] == [2, 2, 1]  # 40 characters: [0:20], [20:40]; G 29
    report = evaluate(STARD_QUESTIONS, STARD_ANSWERS, ranked=ARTICLE_RANKED)
    assert (report.questions, report.in_scope, report.out_of_scope, report.primary) == (5, 4, 1, "hit@5")
    # r, the rank of the first passage that retrieves a relevant article: s1 1, s2 2, s3 3, s4 11.
    assert report.metrics == {
        "hit@1": 0.25,  # s1
        "hit@3": 0.75, "hit@5": 0.75, "hit@10": 0.75,  # s1, s2, s3
        "hit@100": 1.0,  # and s4
        "recall@1": 0.125,  # (1/2 + 0 + 0 + 0) / 4
        "recall@3": 0.5417,  # (1/2 + 1 + 2/3 + 0) / 4 = 2.1667 / 4
        "recall@5": 0.6667,  # (2/2 + 1 + 2/3 + 0) / 4 = 2.6667 / 4
        "recall@10": 0.75,  # (1 + 1 + 3/3 + 0) / 4
        "recall@100": 1.0,  # (1 + 1 + 3/3 + 1) / 4
        "mrr@10": 0.4583,  # (1/1 + 1/2 + 1/3 + 0) / 4
    }
    assert list(report.metrics) == list(ARTICLE_METRICS)
    # Asked for 10 passages (the default), no figure at 100 is made up from them.
    assert list(evaluate(STARD_QUESTIONS, STARD_ANSWERS).metrics) == [key for key in ARTICLE_METRICS if not key.endswith("@100")]
    assert report.misses == ["s4"]  # no relevant article in the top 5
    assert report.declined == 0.0 and report.wrongly_declined == 0.25  # o1 answered; s4 not found
    # Correct: a relevant article among the first 3 passages: s1, s2, s3; not s4, never o1.
    # Bins: s4 0.05 in [0, 0.1); s3 0.62 in [0.6, 0.7); s2 0.85 in [0.8, 0.9); s1 0.95 and o1 0.91 in [0.9, 1.0].
    assert [row for row in report.reliability if row["n"]] == [
        {"from": 0.0, "to": 0.1, "n": 1, "confidence": 0.05, "correct": 0.0},
        {"from": 0.6, "to": 0.7, "n": 1, "confidence": 0.62, "correct": 1.0},
        {"from": 0.8, "to": 0.9, "n": 1, "confidence": 0.85, "correct": 1.0},
        {"from": 0.9, "to": 1.0, "n": 2, "confidence": 0.93, "correct": 0.5},  # (0.95 + 0.91) / 2; s1 of s1, o1
    ]
    assert len(report.reliability) == 10 and report.reliability[1] == {"from": 0.1, "to": 0.2, "n": 0, "confidence": None, "correct": None}
    # (1 * 0.05 + 1 * 0.38 + 1 * 0.15 + 2 * 0.43) / 5 = 1.44 / 5
    assert report.calibration_error == 0.288
    assert (report.answered_questions, report.answered_correct) == (3, 0.6667)  # s1, s2, o1 answered; s1, s2 correct


def test_reliability_bins_take_their_lower_edge_and_one_in_the_last():
    """A TSV question is correct with the right case among the first three passages, a SQuAD one with the right document."""
    questions = [
        EvalQuestion("t1", "一", case=2), EvalQuestion("t2", "二", case=2),
        EvalQuestion("q1", "三", source="a.md"), EvalQuestion("q2", "四", source="a.md"),
    ]
    answers = [
        Answer("?", "answered", 1.0, [cited(1, "1 甲", "x"), cited(2, "1 甲", "x"), cited(3, "2 乙", "x")]),  # case 2 third
        Answer("?", "uncertain", 0.3, [cited(rank, "1 甲", "x") for rank in (1, 2, 3)] + [cited(4, "2 乙", "x")]),  # fourth
        Answer("?", "answered", 0.9, [cited(1, "", "x", source="b.md"), cited(2, "", "x", source="a.md")]),
        Answer("?", "not_found", 0.0, []),
    ]
    assert [cites_answer(q, a) for q, a in zip(questions, answers)] == [True, False, True, False]
    assert [row for row in reliability(questions, answers) if row["n"]] == [
        {"from": 0.0, "to": 0.1, "n": 1, "confidence": 0.0, "correct": 0.0},
        {"from": 0.3, "to": 0.4, "n": 1, "confidence": 0.3, "correct": 0.0},
        {"from": 0.9, "to": 1.0, "n": 2, "confidence": 0.95, "correct": 1.0},  # 0.9 and 1.0
    ]
    assert calibration_error(reliability(questions, answers)) == 0.1  # (0 + 0.3 + 2 * 0.05) / 4
    assert calibration_error(reliability([], [])) is None


def test_in_scope_questions_of_two_formats_are_not_scored_together():
    with pytest.raises(EvaluationError, match="questions with articles"):
        evaluate([STARD_QUESTIONS[0], QUESTIONS[0]], [STARD_ANSWERS[0], ANSWERS[0]])


def test_stard_questions(tmp_path):
    path = tmp_path / "stard.jsonl"
    rows = [
        {"id": 0, "question": "谁可以成为个体工商户？ ", "articles": [
            {"name": "中华人民共和国民法典第五十四条", "text": "自然人从事工商业经营，经依法登记，为个体工商户。\n个体工商户可以起字号。\n"},
            {"name": "中华人民共和国民法典第五十四条", "text": "自然人从事工商业经营，经依法登记，为个体工商户。个体工商户可以起字号。"},
        ]},
        {"id": "a7", "question": "人格权能转让吗？", "articles": [{"name": "民法典第九百九十二条", "text": "人格权不得放弃、转让或者继承。"}]},
    ]
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n\n", encoding="utf-8")
    assert read_stard_questions(path) == [  # whitespace removed, the same article twice kept once
        EvalQuestion("0", "谁可以成为个体工商户？", articles=("自然人从事工商业经营，经依法登记，为个体工商户。个体工商户可以起字号。",)),
        EvalQuestion("a7", "人格权能转让吗？", articles=("人格权不得放弃、转让或者继承。",)),
    ]


GOOD_LINE = '{"id": 1, "question": "问题？", "articles": [{"name": "某法第一条", "text": "条文。"}]}'


@pytest.mark.parametrize(("lines", "reason"), [
    ([GOOD_LINE, '{"id": 2, "question": "问题？", "articles": ['], "line 2: not JSON (Expecting value at column 43)"),  # the line ends at 42
    (["", GOOD_LINE, '["id", "question"]'], 'line 3: expected a JSON object {"id", "question", "articles"}'),
    (['{"id": 2, "question": "问题？"}'], 'line 1: missing "articles"'),
    (['{"articles": []}'], 'line 1: missing "id", "question"'),
    (['{"id": true, "question": "问题？", "articles": []}'], "line 1: id must be a number or a non-empty string, not true"),
    ([GOOD_LINE, GOOD_LINE], "line 2: id 1 again (first on line 1)"),
    (['{"id": 2, "question": null, "articles": []}'], "line 1: question must be a string"),
    (['{"id": 2, "question": "问题？", "articles": []}'], 'line 1: articles must be a non-empty list of {"name", "text"}'),
    (['{"id": 2, "question": "问题？", "articles": [{"name": "某法第一条"}]}'],
     'line 1: article 1 must be an object {"name", "text"} with two strings'),
    (['{"id": 2, "question": "问题？", "articles": [{"name": "甲", "text": "条文。"}, {"name": "某法第二条", "text": " \\n"}]}'],
     "line 1: article 2 (某法第二条) has no text"),
])
def test_a_malformed_stard_line_is_named_with_its_number(tmp_path, lines, reason):
    path = tmp_path / "stard.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EvaluationError) as raised:
        read_stard_questions(path)
    assert str(raised.value) == f"{path} {reason}"


def test_an_empty_stard_file_holds_no_questions(tmp_path):
    path = tmp_path / "stard.jsonl"
    for text in ("", "\n\n  \n"):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(EvaluationError) as raised:
            read_stard_questions(path)
        assert str(raised.value) == f"{path} holds no questions"


def test_folds_by_a_hash_of_the_question_id():
    # sha256("1"), sha256("2"), sha256("3") modulo 5, plus one: fixed, whatever else is asked
    assert [fold_of(qid, 5) for qid in ("1", "2", "3", "17", "o1")] == [1, 2, 4, 2, 2]
    assert [fold_of(qid, 2) for qid in ("1", "2", "3", "17", "o1")] == [2, 2, 1, 2, 1]
    ids = [str(i) for i in range(1000)]
    sizes = [sum(fold_of(qid, 5) == fold for qid in ids) for fold in range(1, 6)]
    assert sum(sizes) == 1000 and min(sizes) > 150  # every question in one fold; none nearly empty
    assert parse_fold("2/5") == (2, 5) and parse_fold(" 5 / 5 ") == (5, 5)
    for text in ("0/5", "6/5", "1/1", "2", "a/b", "-1/5"):
        with pytest.raises(EvaluationError) as raised:
            parse_fold(text)
        assert str(raised.value) == f"a fold is I/N, the I-th of N folds with 1 <= I <= N and N >= 2 (e.g. 2/5), not {text!r}"


def test_qa_eval_prints_the_article_metrics_and_the_reliability_table(tmp_path, monkeypatch):
    def evaluate_file(paths, config, fold=None, **_):
        report = evaluate(STARD_QUESTIONS, STARD_ANSWERS)
        report.fold = f"{fold[0]}/{fold[1]}"
        return report

    monkeypatch.setattr("qa.evaluation.evaluate_file", evaluate_file)
    results = tmp_path / "runs.csv"
    result = run_qa("eval", str(tmp_path / "stard.jsonl"), str(tmp_path / "out.tsv"), "--fold", "2/5", "--csv", str(results))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[: lines.index("outcomes                     n  answered  uncertain  not found")] == [  # the figures of
        "5 questions (fold 2/5), 4 in scope, 1 out of scope",                      # test_article_metrics_are_exact_on_a_hand_made_set
        "hit@1 0.250   hit@3 0.750   hit@5 0.750   hit@10 0.750   mrr@10 0.458",
        "recall@1 0.125   recall@3 0.542   recall@5 0.667   recall@10 0.750   top passage 12 characters on average",
        "primary: hit@5 0.750",
        "out of scope declined 0.000   in scope wrongly declined 0.250",
        "",
        "reliability (correct: a relevant passage among the first 3, which no out-of-scope question has)",
        "confidence       n    mean  correct",
        "0.0-0.1          1   0.050    0.000",
        *(f"0.{i}-0.{i + 1}          0       -        -" for i in range(1, 6)),
        "0.6-0.7          1   0.620    1.000",
        "0.7-0.8          0       -        -",
        "0.8-0.9          1   0.850    1.000",
        "0.9-1.0          2   0.930    0.500",
        "answered 3, 0.667 of them correct   in scope not found 0.250   calibration error 0.288",
        "",
    ]
    data = json.loads(run_qa("eval", str(tmp_path / "stard.jsonl"), "--fold", "2/5", "--json").stdout)
    assert data["fold"] == "2/5" and data["hit@5"] == 0.75 and data["reliability"][9]["correct"] == 0.5
    bad = run_qa("eval", str(tmp_path / "stard.jsonl"), "--fold", "6/5")
    assert bad.exit_code == 1 and "Error: a fold is I/N" in bad.output
    # No doc@k, passage@k nor ndcg@10 for a .jsonl; the top passages of s1-s4: (40 + 2 + 2 + 2) / 4 characters.
    assert results.read_text(encoding="utf-8") == (
        HEADER + f"{tmp_path / 'stard.jsonl'};{tmp_path / 'out.tsv'},sections,5,4,1,,,,,,,,,0.4583,,11.5,0.0,0.25,"
        "0.25,0.75,0.75,0.75,,0.125,0.5417,0.6667,0.75,,0.6667,0.288,2/5\n"
    )


# --- a real STARD evaluation over a tiny library --------------------------------------------------------

# Article 3's first paragraph is 37 characters and its second 291 (its first sentence 95): passages of sentences up
# to 120 characters, or of one article up to 300 cut between its paragraphs, both cut it after the first paragraph,
# so its window [0:20] is in one passage, [40:60], [60:80] and [80:100] in the next ([20:40] straddles the cut).
DEBTS_1 = "个体工商户的债务，个人经营的，以个人财产承担；家庭经营的，以家庭财产承担。"
DEBTS_2 = (
    "个体工商户的债务无法区分是个人经营还是家庭经营的，以家庭财产承担，经营者的配偶和成年子女参与经营或者分享经营收益的，"
    "或者经营收益主要用于家庭成员共同生活的，视为家庭经营，由家庭财产承担责任。"
    + "个体工商户转让经营的，受让人和转让人对转让前的债务另有约定的，从其约定，但是不得对抗善意的债权人。" * 4
)
LAWS = {
    "民法商法/个体工商户法(2024-01-01).md": (
        "# 中华人民共和国个体工商户法\n\n2024年1月1日施行\n\n<!-- INFO END -->\n\n## 第一章 总则\n\n"
        "第一条 为了保护个体工商户的合法权益，规范其经营行为，制定本法。\n\n"
        "第二条 自然人从事工商业经营，经依法登记，为个体工商户。个体工商户可以起字号。\n\n"
        f"## 第二章 债务\n\n第三条 {DEBTS_1}\n\n{DEBTS_2}\n"
    ),
    "社会法/劳动法(2018-12-29).md": (
        "# 中华人民共和国劳动法\n\n<!-- INFO END -->\n\n## 第四章 工作时间和休息休假\n\n"
        "第三十六条 国家实行劳动者每日工作时间不超过 8 小时、平均每周工作时间不超过 44 小时的工时制度。\n\n"
        "第三十八条 用人单位应当保证劳动者每周至少休息一日。\n"
    ),
    "行政法规/个体工商户条例(2016-02-06).md": (
        "# 个体工商户条例\n\n<!-- INFO END -->\n\n"
        "第二条 有经营能力的公民，依照本条例规定经工商行政管理部门登记，从事工商业经营的，为个体工商户。\n"
    ),
}
STARD_LINES = [
    {"id": 14, "question": "个体户欠了债，是用个人的钱还还是用全家的钱还？", "articles": [
        {"name": "中华人民共和国个体工商户法第三条", "text": f"{DEBTS_1}\n\n{DEBTS_2}\n"}]},
    {"id": 15, "question": "谁可以登记成为个体工商户？", "articles": [
        {"name": "中华人民共和国个体工商户法第二条", "text": "自然人从事工商业经营，经依法登记，为个体工商户。个体工商户可以起字号。"},
        {"name": "个体工商户条例第二条", "text": "有经营能力的公民，依照本条例规定经工商行政管理部门登记，从事工商业经营的，为个体工商户。"}]},
    # whitespace in the library's text ("8 小时"), none in the article's
    {"id": 18, "question": "每天最多能让员工工作几个小时？", "articles": [
        {"name": "中华人民共和国劳动法第三十六条", "text": "国家实行劳动者每日工作时间不超过8小时、平均每周工作时间不超过44小时的工时制度。"}]},
]


def test_a_real_stard_evaluation_over_a_tiny_library(tmp_path, embedder):
    """The library as it is, built once into --index; the questions asked of it with `qa eval`, all and by fold."""
    from qa.config import Config
    from qa.store.folder import load_index

    corpus = write_corpus(tmp_path, {})
    for name, text in LAWS.items():
        (corpus / name).parent.mkdir(exist_ok=True)
        (corpus / name).write_text(text, encoding="utf-8")
    questions = tmp_path / "stard.jsonl"
    questions.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in STARD_LINES), encoding="utf-8")
    out_of_scope = tmp_path / "out.tsv"
    out_of_scope.write_text("o1\tzh-Hans\tfar\t0\t\t红烧肉怎么做才好吃？\n", encoding="utf-8")
    index = tmp_path / "index"

    report = evaluate_file([questions, out_of_scope], Config(), embedder, corpus_dir=corpus, index_dir=index)
    # Article 3 is cut in two passages, and each retrieves it.
    debts = read_stard_questions(questions)[0]
    parts = [p for p in load_index(index).passages if DEBTS_1[:10] in p.text or DEBTS_2[:10] in p.text]
    assert len(parts) == 2 and [debts.articles_in(p) for p in parts] == [{0}, {0}]
    assert DEBTS_1[:20] in parts[0].text and DEBTS_1[:20] not in parts[1].text
    # Each question finds a relevant article first; question 15's second article is in another document, so
    # its recall@1 is 1/2, and within 10 of the library's few passages it is found.
    assert (report.questions, report.in_scope, report.out_of_scope) == (4, 3, 1)
    assert report.metrics == {
        "hit@1": 1.0, "hit@3": 1.0, "hit@5": 1.0, "hit@10": 1.0, "hit@100": 1.0,
        "recall@1": 0.8333,  # (1 + 1/2 + 1) / 3
        "recall@3": 1.0, "recall@5": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0,
    }
    assert sum(row["n"] for row in report.reliability) == 4 and report.misses == []
    assert sorted(report.outcomes) == ["in-scope", "in-scope zh-Hans", "out-of-scope", "out-of-scope far", "out-of-scope zh-Hans"]

    # The same through the command, over the index as it is: fold 2 of 2 holds ids 14, 15 (sha256), not 18 nor o1.
    assert [fold_of(qid, 2) for qid in ("14", "15", "18", "o1")] == [2, 2, 1, 1]
    result = run_qa("eval", str(questions), str(out_of_scope), "--index", str(index), "--fold", "2/2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["fold"], data["questions"], data["in_scope"], data["out_of_scope"], data["declined"]) == ("2/2", 2, 2, 0, None)
    assert (data["hit@1"], data["recall@1"], data["recall@10"]) == (1.0, 0.75, 1.0)  # (1 + 1/2) / 2
    in_scope = tmp_path / "in.tsv"
    in_scope.write_text("q1\tzh-Hans\tpara\t1\t\t什么是个体工商户？\n", encoding="utf-8")
    mixed = run_qa("eval", str(questions), str(in_scope), "--index", str(index))
    assert mixed.exit_code == 1 and f"Error: {in_scope} has in-scope questions (case other than 0)" in mixed.output
