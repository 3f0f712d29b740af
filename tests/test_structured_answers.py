"""A law's articles through every front end: `qa ask`, `--json` (version 3 and later) and the page's cards name the
law, its headings and the article, with its version date; the seed's cards keep their case numbers."""

import json

import pytest
from click.testing import CliRunner

from qa.assistant import Assistant
from qa.cli import main
from qa.config import Config
from qa.page.conversation import plan_turn
from qa.page.render import render_answer

from .documents.test_structure import write_corpus

QUESTION = "新闻报道中捏造事实影响他人名誉的，要承担民事责任吗？"
CITATION = "《中华人民共和国民法典》 人格权编 › 第五章 名誉权和荣誉权 › 第一千零二十五条"


@pytest.fixture(scope="module")
def law(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("law")
    config = Config(corpus_dir=write_corpus(root), index_dir=root / "index")
    assistant = Assistant(config, embedder)
    assistant.rebuild()
    return config, assistant


def test_json_names_the_article_as_people_cite_it(law):
    _, assistant = law
    answer = assistant.ask(QUESTION).to_json()
    assert answer["version"] == 5
    first = answer["passages"][0]
    assert first["citation"] == CITATION
    assert (first["title"], first["date"], first["label"]) == ("中华人民共和国民法典", "2021-01-01", "第一千零二十五条")
    assert first["headings"] == "人格权编 › 第五章 名誉权和荣誉权" and "path" not in first  # gradio_client would fetch a "path"
    assert first["text"].startswith("第一千零二十五条") and "第一千零二十六条" not in first["text"]


def test_qa_ask_prints_the_citation_and_the_file(law):
    config, _ = law
    result = CliRunner().invoke(
        main, ["ask", "--index", str(config.index_dir), QUESTION], prog_name="qa"
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("[1] "))
    assert lines[first].endswith(f"{CITATION} (2021-01-01)")
    assert lines[first + 1].strip().startswith("民法典/人格权编.md, characters ")


def test_the_card_is_headed_by_the_citation(law):
    _, assistant = law
    answer = assistant.ask(QUESTION)
    html = render_answer(answer, plan_turn(QUESTION, []))
    assert '<span class="qa-doc-title">《中华人民共和国民法典》</span>' in html
    assert '<span class="qa-title">人格权编 › 第五章 名誉权和荣誉权 › 第一千零二十五条</span>' in html
    assert '<span class="qa-date">版本 2021-01-01</span>' in html


def test_the_seed_keeps_its_case_numbers(seed_assistant):
    answer = seed_assistant.ask("哪些级别的医院之间检查结果互认？")
    first = answer.to_json()["passages"][0]
    assert first["label"] == "" and first["title"] == "浙江高质量发展建设共同富裕示范区第二批典型经验"
    html = render_answer(answer, plan_turn(answer.question, []))
    assert 'class="qa-case"' in html and "qa-doc-title" not in html
    assert json.loads(json.dumps(answer.to_json()))["version"] == 5
