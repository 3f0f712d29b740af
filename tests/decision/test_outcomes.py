"""The three outcomes (answered, uncertain, not found) on questions the project has not seen, and the
rules for showing scores: issue 10.

The questions below are new phrasings, none of them in eval/*.tsv (the evaluation set) or the dev
questions. Thresholds are read from the shipped calibration (qa/decision/data/relevance.json), never
written here: it is refitted as the evaluation grows.
"""

import json

import pytest

from qa.answer import MAX_SCORE, Answer, CitedPassage, make_answer, passage_scores
from qa.config import Config
from qa.decision.calibration import FEATURES, Calibration, load_calibration
from qa.decision.evidence import absent_names, asks_figure, holds_figure, named_things
from qa.decision.outcomes import OUTCOMES
from qa.decision.relevance import Judgement
from qa.evaluation import evaluate, read_tsv_questions
from qa.page.highlight import Highlighter
from qa.passages import Passage, split_sentences
from qa.search.keyword import KeywordIndex
from qa.search.retrieval import Hit
from qa.terminal import print_answer
from qa.text import case_number, script, split_case, to_simplified

from ..helpers import run_qa

# --- the decision on unseen-style questions about the seed ------------------------------------------

IN_SCOPE = {
    "zh-Hant": [
        ("醫學檢查結果互認覆蓋哪些醫院？", 9),
        ("怎樣吸引年輕人回鄉創業？", 7),
        ("小微企業園的廠房能不能按層分開辦產權登記？", 3),
        ("水稻田裡還能養魚嗎？", 6),
        ("老房子修繕要遵循什麼原則？", 7),
        ("換了醫院還要重新做檢查嗎？", 9),
    ],
    "en": [
        ("What is the Zhejiang courtesy campaign?", 10),
        ("Do patients have to redo medical tests when they change hospitals?", 9),
        ("How can farmers earn ten thousand yuan from one mu of land?", 6),
        ("Which poetry routes were built across the province?", 8),
        ("How are small firms moved into industrial parks?", 3),
    ],
    "zh-Hans": [
        ("换了医院还要重新做检查吗？", 9),
        ("种水果的农民怎么多挣钱？", 4),
        ("做家政和小吃能打出什么品牌？", 5),
        ("老百姓能不能投票决定政府办什么实事？", 1),
        ("开车让行人是哪项文明行动？", 10),
        ("大企业带头的产业平台是怎么建的？", 2),
    ],
}
# A recipe, a football score and a phone in each script: far from every case.
UNRELATED = {
    "zh-Hans": ["番茄炒蛋先放蛋还是先放番茄？", "皇马昨晚进了几个球？", "安卓手机怎么截图？"],
    "zh-Hant": ["餃子餡怎麼調才香？", "昨晚湖人隊贏了幾分？", "新買的手機怎麼備份照片？"],
    "en": [
        "How many minutes do I bake a frozen pizza?",
        "Who won the football match between Liverpool and Chelsea?",
        "How do I take a screenshot on an Android phone?",
    ],
}
# Off-topic too, closer to the threshold today: "uncertain" costs a glance, "answered" would be wrong.
NEVER_ANSWERED = [
    "What's a good recipe for chocolate chip cookies?",
    "红烧肉怎么做才好吃？",
    "How long should I boil an egg?",
    "苹果手机电池不耐用怎么办？",
]


def test_the_questions_are_written_in_the_script_they_are_filed_under():
    for written_in, questions in IN_SCOPE.items():
        assert {script(question) for question, _ in questions} == {written_in}
    for written_in, questions in UNRELATED.items():
        assert {script(question) for question in questions} == {written_in}


@pytest.mark.parametrize(
    "question, case", [pytest.param(q, c, id=q) for questions in IN_SCOPE.values() for q, c in questions]
)
def test_an_unseen_in_scope_question_is_not_declined_and_cites_its_case_first(seed_assistant, question, case):
    answer = seed_assistant.ask(question)
    assert (answer.outcome, case_number(answer.passages[0].section)) in {("answered", case), ("uncertain", case)}, (
        answer.confidence, answer.evidence, [p.section for p in answer.passages],
    )


@pytest.mark.parametrize("question", [pytest.param(q, id=q) for questions in UNRELATED.values() for q in questions])
def test_an_unrelated_question_is_not_found(seed_assistant, question):
    answer = seed_assistant.ask(question)
    assert answer.outcome == "not_found", (answer.confidence, answer.evidence)
    assert answer.answered is False and answer.confidence < seed_assistant.calibration.bar(question)[0]


def test_no_off_topic_question_is_answered(seed_assistant):
    answers = seed_assistant.ask_many(NEVER_ANSWERED)
    assert [(a.question, a.outcome) for a in answers if a.outcome == "answered"] == []


def test_a_question_about_another_province_or_the_first_batch_is_never_answered(seed_assistant):
    # The seed is Zhejiang's second batch of cases: the same topics elsewhere or in the first batch are near misses.
    near = ["江苏省的医院之间检查结果互认吗？", "How does Guangdong save old village houses?", "第一批典型经验里有哪些茶产业的做法？"]
    for answer in seed_assistant.ask_many(near):
        assert answer.evidence["absent"] >= 1 and answer.outcome != "answered", (answer.question, answer.confidence)


# A figure the corpus does not state, about a topic it covers: the case is worth a glance, not an answer.
FIGURE_NOT_STATED = [
    "省里给每个万亩千亿平台拨了多少专项资金？",
    "拯救老屋行动是从哪一年开始实施的？",
    "How many tourists visited the poetry roads last year?",
]
# A figure the corpus does state: its passage holds it.
FIGURE_STATED = [("互认的检查报告有效期是几天？", 9), ("检查检验结果互认出台了几套数字化标准？", 9), ("詩路珍珠總共選了多少顆？", 8)]


def test_a_figure_the_corpus_does_not_state_is_uncertain_not_answered(seed_assistant):
    for answer in seed_assistant.ask_many(FIGURE_NOT_STATED):
        assert (answer.evidence["no_figure"], answer.outcome) == (1.0, "uncertain"), (answer.question, answer.confidence)


def test_qa_ask_says_when_the_figure_asked_is_missing(seed_assistant):
    result = run_qa("ask", "--index", str(seed_assistant.config.index_dir), FIGURE_NOT_STATED[0])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        "可能相关，请核对原文 (possibly relevant: check the source text)",
        "note: the question asks for a figure; the passages are on the topic but state none (the source may not say)",
    ]


def test_a_figure_the_corpus_states_is_found_in_its_case(seed_assistant):
    for (question, case), answer in zip(FIGURE_STATED, seed_assistant.ask_many([q for q, _ in FIGURE_STATED])):
        assert answer.evidence["no_figure"] == 0.0 and answer.outcome != "not_found", (question, answer.confidence)
        assert case_number(answer.passages[0].section) == case


# --- the decision's arithmetic ------------------------------------------------------------------------

PASSAGE = Passage(id=0, source="a.md", section="1 甲", start=0, end=4, text="推出应用")


def test_the_confidence_is_the_logistic_of_the_weighted_evidence_and_the_thresholds_give_the_outcome():
    calibration = Calibration({"dense": 0.5, "coverage": 2.0, "absent": -3.0}, bias=-1.0, thresholds={"zh": (0.2, 0.8), "en": (0.1, 0.7)})
    # z = -1 + 0.5 · 4 + 2 · 0.5 = 2 -> 1 / (1 + e^-2) = 0.8808
    assert round(calibration.confidence({"dense": 4.0, "coverage": 0.5, "absent": 0.0}, "问题"), 4) == 0.8808
    # The same with one absent name: z = -1 -> 0.2689
    assert round(calibration.confidence({"dense": 4.0, "coverage": 0.5, "absent": 1.0}, "问题"), 4) == 0.2689
    assert [calibration.outcome(c, "问题") for c in (0.8, 0.7999, 0.2, 0.1999)] == ["answered", "uncertain", "uncertain", "not_found"]
    # English questions have thresholds of their own.
    assert [calibration.outcome(c, "why?") for c in (0.7, 0.6999, 0.1, 0.0999)] == ["answered", "uncertain", "uncertain", "not_found"]


def test_missing_figure_evidence_lowers_the_confidence_to_uncertain_never_to_not_found():
    calibration = Calibration({"dense": 1.0, "no_figure": -6.0}, bias=0.0, thresholds={"zh": (0.2, 0.8), "en": (0.1, 0.7)})
    # On topic (z = 3 -> 0.95): the missing figure takes it to 0.05, which the "uncertain" bar (0.2) stops.
    assert calibration.confidence({"dense": 3.0, "no_figure": 1.0}, "多少？") == 0.2
    assert calibration.confidence({"dense": 3.0, "no_figure": 0.0}, "多少？") == calibration.score({"dense": 3.0})
    # Off topic (z = -3 -> 0.047): below the bar with or without the figure, so not found as before.
    assert calibration.confidence({"dense": -3.0, "no_figure": 1.0}, "多少？") == calibration.score({"dense": -3.0})
    # Enough evidence to answer despite the missing figure keeps its own score.
    assert calibration.confidence({"dense": 9.0, "no_figure": 1.0}, "How many?") == calibration.score({"dense": 3.0})


@pytest.mark.parametrize("question, asks", [
    ("浙江一共建了多少个小微企业园？", True), ("詩路珍珠分幾類？", True), ("票决制是哪一年开始的？", True),
    ("What share of spending goes to livelihoods?", True), ("How long are reports valid?", True),
    ("这些平台有哪几种开发模式？", False),  # which kinds, not how many
    ("几乎所有医院都互认吗？", False), ("How are farmers linked to the fruit industry?", False),
    ("老屋在多大程度上保留了原貌？", False),  # how far, not how big
])
def test_a_question_asks_for_a_figure_when_it_asks_how_many_how_much_which_year_or_what_share(question, asks):
    assert asks_figure(question) is asks


@pytest.mark.parametrize("text, holds", [
    ("对30天内符合规定的检查报告予以互认", True), ("八大类共141颗", True), ("四条诗路", True), ("三分之二以上", True),
    ("十大文明行动", True), ("二级甲等", True), ("Farmers earn ten thousand yuan a mu.", True), ("Half of the budget", True),
    ("统一规划、统一标准", False), ("一村一品、一村一景", False), ("建立全生命周期服务", False), ("Someone often goes", False),
])
def test_a_figure_is_digits_or_a_chinese_numeral_before_a_unit(text, holds):
    assert holds_figure(text) is holds


def test_the_shipped_calibration_is_usable():
    calibration = load_calibration()
    assert set(calibration.thresholds) == {"zh", "en"}
    assert all(0 < low < high < 1 for low, high in calibration.thresholds.values())
    assert set(calibration.weights) <= set(FEATURES)
    assert calibration.weights["absent"] < 0  # a name the corpus lacks counts against answering
    assert calibration.weights["no_figure"] < 0  # so does a figure asked for and not in the passage


def test_make_answer_takes_the_judgement_of_the_first_hit():
    strong, weak = Hit(PASSAGE, similarity=0.9, score=2.0), Hit(PASSAGE, similarity=0.8, score=1.0)
    judgement = Judgement("uncertain", 0.6, {"dense": 3.0}, uncertain_from=0.3, answered_from=0.7)
    answer = make_answer("?", [strong, weak], judgement)
    assert (answer.outcome, answer.answered, answer.confidence, answer.evidence) == ("uncertain", False, 0.6, {"dense": 3.0})
    assert [p.score for p in answer.passages] == [0.6, 0.3]  # 0.6 · 1/2 for the second
    assert (answer.uncertain_from, answer.answered_from) == (0.3, 0.7)  # the bar it was judged against
    nothing = make_answer("?", [], judgement)
    assert (nothing.outcome, nothing.confidence, nothing.passages) == ("not_found", 0.0, [])
    assert (nothing.uncertain_from, nothing.answered_from) == (0.3, 0.7)


# --- score display rules ------------------------------------------------------------------------------


def hits(*scores: float) -> list[Hit]:
    return [Hit(PASSAGE, similarity=0.5, score=score) for score in scores]


def test_card_scores_scale_the_confidence_by_the_retrieval_score_relative_to_the_first():
    # 0.8 · (1, 0.75, 0.75, 0.25)
    assert passage_scores(0.8, hits(2.0, 1.5, 1.5, 0.5)) == [0.8, 0.6, 0.6, 0.2]
    assert passage_scores(0.8, hits()) == []
    # A first hit with no score: the others get none either.
    assert passage_scores(0.8, hits(0.0, 0.0)) == [0.8, 0.0]


@pytest.mark.parametrize("confidence", [1.0, 0.9999, 0.995, 0.99, 0.9, 0.5, 0.01])
def test_card_scores_fall_with_the_rank_stay_below_one_and_tie_only_for_equal_retrieval_scores(confidence):
    retrieval = [1.0, 0.999, 0.99, 0.99, 0.9, 0.5]
    scores = passage_scores(confidence, hits(*retrieval))
    assert all(0 <= score <= MAX_SCORE == 0.99 for score in scores)
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == round(min(MAX_SCORE, confidence), 3)
    # Never two cards at the top (0.99, shown as 99%) unless retrieval could not tell them apart.
    at_the_top = [r for r, score in zip(retrieval, scores) if score == MAX_SCORE]
    assert len(set(at_the_top)) <= 1, scores


def test_seed_answers_show_falling_scores_and_a_consistent_json(seed_assistant):
    questions = [q for questions in IN_SCOPE.values() for q, _ in questions] + [q for qs in UNRELATED.values() for q in qs]
    for answer in seed_assistant.ask_many(questions):
        scores = [p.score for p in answer.passages]
        assert scores == sorted(scores, reverse=True) and scores[0] <= MAX_SCORE
        if answer.outcome != "not_found":  # (declined ones may all read 0.001)
            assert scores.count(scores[0]) == 1, (answer.question, scores)  # different passages, one first
        shown = answer.to_json()
        assert (shown["version"], shown["outcome"], shown["answered"]) == (5, answer.outcome, answer.outcome == "answered")
        assert shown["outcome"] in OUTCOMES and shown["confidence"] == answer.confidence
        assert [p["rank"] for p in shown["passages"]] == [1, 2, 3, 4, 5]
        assert json.loads(json.dumps(shown, ensure_ascii=False)) == shown
        # The answer carries the bar its language's thresholds set; the JSON does not.
        assert (answer.uncertain_from, answer.answered_from) == seed_assistant.calibration.bar(answer.question)
        assert set(shown) == {"version", "question", "outcome", "answered", "confidence", "passages", "within", "calibration"}
        assert shown["calibration"] == "shipped"  # the seed's test index has no verdict of its own


# --- the CLI's text output ----------------------------------------------------------------------------


def cited(rank, score, text="第一句。", start=0, section="9 医学检查检验结果互认"):
    return CitedPassage(rank=rank, score=score, source="cases.md", section=section, text=text, start=start, end=start + len(text))


def test_the_cli_prints_the_outcome_line_percentages_and_weak_matches(capsys):
    passages = [cited(1, 0.5, "互认。"), cited(2, 0.123, "别的。", start=10)]
    print_answer(Answer("问题", "uncertain", 0.5, passages, uncertain_from=0.2))
    assert capsys.readouterr().out == (
        "可能相关，请核对原文 (possibly relevant: check the source text)\n"
        "[1] 50%  cases.md · 9 医学检查检验结果互认 (characters 0–3)\n"
        "    互认。\n"
        "[2] 12%  (weak match)  cases.md · 9 医学检查检验结果互认 (characters 10–13)\n"
        "    别的。\n"
    )
    print_answer(Answer("问题", "answered", 0.9, [cited(1, 0.9, "互认。")], uncertain_from=0.2))
    assert capsys.readouterr().out == "[1] 90%  cases.md · 9 医学检查检验结果互认 (characters 0–3)\n    互认。\n"
    # Not found: every closest passage is a weak match, whatever its score.
    print_answer(Answer("问题", "not_found", 0.1, [cited(1, 0.1, "互认。")], uncertain_from=0.05))
    assert capsys.readouterr().out == (
        "没有找到相关内容 (nothing relevant found). Closest passages, weak matches:\n"
        "[1] 10%  (weak match)  cases.md · 9 医学检查检验结果互认 (characters 0–3)\n"
        "    互认。\n"
    )


def test_qa_ask_marks_an_uncertain_answer_and_its_weak_cards(seed_assistant, monkeypatch):
    """`qa ask` on the seed with the shipped weights and thresholds moved so that this answer is uncertain
    and its last cards weak: the command uses the assistant's calibration for both."""
    question = "哪些级别的医院之间检查结果互认？"
    expected = seed_assistant.ask(question)
    scores = [p.score for p in expected.passages]
    weak_below = (scores[1] + scores[2]) / 2  # between cards [2] and [3]
    shipped = load_calibration()
    moved = Calibration(shipped.weights, shipped.bias, thresholds={"zh": (weak_below, 0.999999), "en": (weak_below, 0.999999)})
    monkeypatch.setattr("qa.assistant.load_calibration", lambda: moved)
    result = run_qa("ask", "--index", str(seed_assistant.config.index_dir), question)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "可能相关，请核对原文 (possibly relevant: check the source text)"
    cards = [line for line in lines if line.startswith("[")]
    assert [line.split("  ")[0] for line in cards] == [f"[{p.rank}] {p.score:.0%}" for p in expected.passages]
    assert ["(weak match)" in line for line in cards] == [False, False, True, True, True]


# --- highlights ---------------------------------------------------------------------------------------


def test_highlights_on_the_seed_quote_card_1_and_never_mark_a_whole_passage(seed_assistant):
    highlighter = Highlighter(seed_assistant.embedder, lambda: seed_assistant.keywords)
    questions = [q for questions in IN_SCOPE.values() for q, _ in questions]
    for answer in seed_assistant.ask_many(questions):
        highlights = highlighter.highlight(answer.question, answer.passages)
        assert highlights.best.rank == 1, answer.question
        assert highlights.best in highlights.marked[1]
        for passage in answer.passages:
            sentences = split_sentences(passage.text)
            marked = highlights.marked.get(passage.rank, [])
            assert len(marked) < len(sentences) or len(sentences) == 1, (answer.question, passage.text)
            # A sentence is marked for the question's keywords; the answer line is the one exception.
            assert all(s.coverage > 0 or s is highlights.best for s in marked), answer.question


def test_the_answer_line_comes_from_card_1_even_when_card_2_has_the_closer_sentence(embedder):
    texts = ["推进茶旅融合发展。", "茶产业和旅游深度融合，建设茶文化公园。发展林下经济。"]
    keywords = KeywordIndex.build(texts)
    passages = [
        CitedPassage(rank=1, score=0.5, source="a.md", section="1 茶", text=texts[0], start=0, end=9),
        CitedPassage(rank=2, score=0.4, source="a.md", section="2 茶", text=texts[1], start=20, end=47),
    ]
    highlights = Highlighter(embedder, keywords).highlight("茶产业和旅游怎么深度融合？", passages)
    assert (highlights.best.rank, highlights.best.text) == (1, "推进茶旅融合发展。")
    # Card 2 marks its own matching sentence only, not 发展林下经济, which holds none of the question's words.
    assert [s.text for s in highlights.marked[2]] == ["茶产业和旅游深度融合，建设茶文化公园。"]


def test_a_passage_whose_every_sentence_matches_is_marked_by_its_best_sentence_only(embedder):
    text = "推进茶旅融合。茶旅融合富民。发展茶旅融合。"
    passage = CitedPassage(rank=1, score=0.5, source="a.md", section="1 茶", text=text, start=0, end=len(text))
    # A margin of 1 lets every sentence that holds the keywords join the best one: all three would.
    highlighter = Highlighter(embedder, KeywordIndex.build([text, "别的内容。"]), Config(highlight_margin=1.0))
    highlights = highlighter.highlight("茶旅融合", [passage])
    assert len(split_sentences(text)) == 3 and highlights.best.coverage == 1.0
    assert highlights.marked[1] == [highlights.best]


# --- text facts and named things ----------------------------------------------------------------------


def test_script_of_a_text():
    assert [script(t) for t in ("医院检查结果互认", "醫院檢查結果互認", "hospital tests", "What is 医保?", "")] == [
        "zh-Hans", "zh-Hant", "en", "zh-Hans", "en",
    ]
    assert to_simplified("醫學檢查結果互認覆蓋哪些醫院？") == "医学检查结果互认覆盖哪些医院？"
    assert to_simplified("courtesy 有禮") == "courtesy 有礼"
    assert (case_number("9 医学检查检验结果互认"), case_number("概述")) == (9, None)
    assert (split_case("10 浙江有礼"), split_case("概述")) == (("10", "浙江有礼"), (None, "概述"))


def test_keyword_index_contains():
    index = KeywordIndex.build(["浙江第二批典型经验。", "培育一批产业集群。", "发展是第一要务。"])
    assert index.contains("产业集群") and index.contains("產業集群")  # a word, in either script
    assert index.contains("典型经验")
    assert not index.contains("广东") and not index.contains("集群产业")
    # 第一批: its bigrams 第一 and 一批 both occur, the word does not.
    assert index.contains("第一批") and not index.contains("第一批", whole_word=True)
    assert index.contains("第二批", whole_word=True)


def test_named_things_and_the_ones_the_corpus_lacks():
    assert named_things("江苏省的医院检查结果互认吗？") == [("江苏省",)]
    assert named_things("What about Guangdong?") == [("广东",)]
    assert named_things("廣東省有類似的做法嗎？") == [("广东省",)]
    assert named_things("2023年浙江有什么民生实事？") == [("浙江",), ("2023",)]
    assert named_things("第一批典型经验有哪些？") == [("第一批",)]
    assert named_things("怎样吸引年轻人回乡创业？") == []
    # Digits inside a Latin token (a terminal colour code, 5G) are not a number the question names.
    assert named_things("[31m民生实事项目") == [] and named_things("5G基站建设") == []
    index = KeywordIndex.build(["浙江第二批典型经验。", "培育一批产业集群。", "发展是第一要务。"])
    assert absent_names("第一批典型经验有哪些？", index.contains) == 1
    assert absent_names("第二批典型经验有哪些？", index.contains) == 0
    assert absent_names("浙江的典型经验？", index.contains) == 0
    assert absent_names("江苏省和广东省的第一批经验？", index.contains) == 2  # three absent, counted up to 2


# --- qa eval's outcome table --------------------------------------------------------------------------

IN_SCOPE_TSV = (
    "# id\tlang\tkind\tcase\tevidence\tquestion\n"
    "q1\tzh-Hans\tpara\t9\t互认\t医院检查结果互认吗？\n"
    "q2\tzh-Hans\tpara\t9\t互认\t换医院要重新检查吗？\n"
    "q3\tzh-Hant\tpara\t9\t互认\t醫院檢查結果互認嗎？\n"
    "q4\ten\tpara\t9\t互认\tAre test results shared between hospitals?\n"
)
OUT_OF_SCOPE_TSV = (
    "o1\tzh-Hans\tnear\t0\t\t江苏省的医院互认吗？\n"
    "o2\ten\tfar\t0\t\tHow do I bake a pizza?\n"
    "o3\tzh-Hant\tfar\t0\t\t紅燒肉怎麼做？\n"
)
TINY_OUTCOMES = {"q1": "answered", "q2": "uncertain", "q3": "uncertain", "q4": "not_found",
                 "o1": "uncertain", "o2": "not_found", "o3": "not_found"}


def test_qa_eval_prints_the_share_of_each_outcome_per_group(tmp_path, monkeypatch):
    files = [tmp_path / "in.tsv", tmp_path / "out.tsv"]
    files[0].write_text(IN_SCOPE_TSV, encoding="utf-8")
    files[1].write_text(OUT_OF_SCOPE_TSV, encoding="utf-8")

    def evaluate_file(paths, config, **_):
        """The real TSV reading and scoring of the files asked together; the answers made by hand."""
        questions = [question for path in paths for question in read_tsv_questions(path)]
        right = [cited(1, 0.5, "互认。")]
        return evaluate(questions, [Answer(q.question, TINY_OUTCOMES[q.id], 0.5, right) for q in questions])

    monkeypatch.setattr("qa.evaluation.evaluate_file", evaluate_file)
    result = run_qa("eval", *map(str, files))
    assert result.exit_code == 0, result.output
    table = result.stdout[result.stdout.index("outcomes") :].splitlines()
    assert table == [
        "outcomes                     n  answered  uncertain  not found",
        # q1-q4: one answered, two uncertain, one not found
        "in-scope                     4     0.250      0.500      0.250",
        "in-scope en                  1     0.000      0.000      1.000",
        "in-scope zh-Hans             2     0.500      0.500      0.000",
        "in-scope zh-Hant             1     0.000      1.000      0.000",
        # o1-o3: one uncertain (the near miss), two not found; by script and by kind
        "out-of-scope                 3     0.000      0.333      0.667",
        "out-of-scope en              1     0.000      0.000      1.000",
        "out-of-scope far             2     0.000      0.000      1.000",
        "out-of-scope near            1     0.000      1.000      0.000",
        "out-of-scope zh-Hans         1     0.000      1.000      0.000",
        "out-of-scope zh-Hant         1     0.000      0.000      1.000",
    ]
    report = json.loads(run_qa("eval", "--json", *map(str, files)).stdout)
    assert report["outcomes"]["out-of-scope"] == {"n": 3, "answered": 0.0, "uncertain": 0.3333, "not_found": 0.6667}
    assert report["wrongly_declined"] == 0.25 and report["declined"] == 0.6667


# --- the second encoder's passage vectors, stored by the build ---------------------------------------


def test_build_stores_the_second_encoders_passage_vectors(seed_assistant):
    """second.npy holds, row by row, what the second encoder makes of each passage's embedding text."""
    import numpy as np

    from qa.embeddings.second_encoder import SECOND_FILE, SecondEncoder

    index = seed_assistant.index
    stored = np.load(index.folder / SECOND_FILE)
    assert stored.shape == (len(index.passages), 512)
    assert SECOND_FILE in index.manifest["files"]  # checksummed like the other files
    rows = [0, len(index.passages) // 2, len(index.passages) - 1]
    fresh = SecondEncoder().embed([index.passages[row].embedding_text() for row in rows])
    assert stored.dtype == np.float16 and np.min(np.sum(stored[rows].astype(np.float32) * fresh, axis=1)) > 0.9999


def test_an_index_built_before_the_stored_vectors_answers_alike(seed_assistant, seed_config, embedder, tmp_path):
    """An older build without second.npy still answers (encoding passages when asked), with the same
    outcomes, and `qa status` asks for a rebuild."""
    import shutil

    from qa.assistant import Assistant
    from qa.config import Config
    from qa.embeddings.second_encoder import SECOND_FILE

    old = tmp_path / "index"
    shutil.copytree(seed_config.index_dir, old, symlinks=True)
    folder = old / "builds" / seed_assistant.index.folder.name
    (folder / SECOND_FILE).unlink()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"][SECOND_FILE]
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    older = Assistant(Config(corpus_dir=seed_config.corpus_dir, index_dir=old), embedder)
    questions = [question for by_script in IN_SCOPE.values() for question, _ in by_script[:2]] + UNRELATED["en"][:1]
    for now, before in zip(seed_assistant.ask_many(questions), older.ask_many(questions)):
        assert (before.outcome, [(p.source, p.start) for p in before.passages]) == (now.outcome, [(p.source, p.start) for p in now.passages])
        assert before.confidence == pytest.approx(now.confidence, abs=1e-3)
    status = run_qa("status", "--index", str(old), "--corpus", str(seed_config.corpus_dir))
    assert "second encoder's passage vectors" in status.output
