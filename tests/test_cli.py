"""The `qa` command end to end on the seed corpus: exact output structure and clean errors."""

import json

import pytest

from .conftest import SEED_CORPUS, case_number
from .helpers import run_qa


@pytest.fixture(scope="module")
def index_dir(seed_assistant):
    return str(seed_assistant.config.index_dir)


def test_ask_json_structure(index_dir):
    result = run_qa("ask", "--json", "--k", "3", "--index", index_dir, "哪些级别的医院之间检查结果互认？")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer) == {"version", "question", "outcome", "answered", "confidence", "passages"}
    assert answer["question"] == "哪些级别的医院之间检查结果互认？"
    assert (answer["version"], answer["outcome"], answer["answered"]) == (2, "answered", True)
    assert [p["rank"] for p in answer["passages"]] == [1, 2, 3]
    top = answer["passages"][0]
    assert set(top) == {"rank", "score", "source", "section", "text", "start", "end", "page"}
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
