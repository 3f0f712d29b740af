"""Written answers on the chat page, in a real headless browser, from a real engine: llama.cpp's server with
Gemma 3 270M (tests/compose/test_composer.py checks the plumbing underneath). A GBNF grammar (QA_LLM_OPTIONS)
fixes what the small model writes: one sentence that card [1] says, one with a figure no card holds.

The page answers first, then streams the written answer above the cards; "not found" sends nothing; a hung
or killed model leaves the extractive answer with a one-line note within the timeout.
"""

import json
import os
import shutil
import signal
import time

import pytest

from qa.assistant import Assistant
from qa.config import Config

from ..conftest import SEED_CORPUS, dev_question
from ..helpers import page_client, running_language_model, running_page
from . import test_browser
from .test_browser import WAIT_MS, ask

# The browser and a fresh tab for each test, as in test_browser.py, on this module's `site`.
browser_context = test_browser.browser_context
page = test_browser.page

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser

TIMEOUT = 45  # QA_LLM_TIMEOUT of the page: long enough for the model on a busy 2-core machine
INVENTED = "每年为全省节省医疗费用500亿元[1]。"
SAW_COMPOSING = """() => {
    window.__qa_saw_composing = false;
    new MutationObserver(() => {
        if (document.querySelector('#qa-chat .qa-composing')) window.__qa_saw_composing = true;
    }).observe(document.body, {childList: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, embedder):
    """The app over the seed, with QA_LLM_URL set to a llama.cpp server made to write `written`."""
    folder = tmp_path_factory.mktemp("browser-compose")
    corpus = folder / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    config = Config(corpus_dir=corpus, index_dir=folder / "index", feedback_file=folder / "feedback.jsonl")
    assistant = Assistant(config, embedder)
    assistant.rebuild()
    first = assistant.ask(dev_question("d14")["question"]).passages[0].text
    supported = first[: first.index("。") + 1] + "[1]"
    written = supported + INVENTED
    grammar = 'root ::= "' + written.replace("\\", "\\\\").replace('"', '\\"') + '"'
    with running_language_model(folder / "llm.log") as model:
        env = {"QA_LLM_URL": model.url, "QA_LLM_OPTIONS": json.dumps({"grammar": grammar}, ensure_ascii=False),
               "QA_LLM_TIMEOUT": str(TIMEOUT)}
        flags = ("--corpus", str(corpus), "--index", str(config.index_dir), "--feedback", str(config.feedback_file))
        with running_page(*flags, log=folder / "app.log", env=env) as served:
            yield {"url": served.url, "config": config, "model": model, "supported": supported}


def composed(answer):
    """The written answer's block in `answer` once it is final (checked, or failed), waiting for it."""
    answer.locator(".qa-composed-tally, .qa-composed-failed").first.wait_for(timeout=WAIT_MS)
    return answer.locator(".qa-composed")


def test_a_written_answer_streams_above_the_cards_and_an_unsupported_sentence_is_marked(page, site):
    page.evaluate(SAW_COMPOSING)
    answer = ask(page, dev_question("d14")["question"])
    block = composed(answer)
    assert page.evaluate("window.__qa_saw_composing"), "the written answer never showed while it was coming"
    sentences = block.locator(".qa-sentence").all_inner_texts()
    assert sentences == [site["supported"]]
    assert block.locator(".qa-unsupported").inner_text() == INVENTED
    assert "未在引文中找到依据" in block.locator(".qa-unsupported-mark").inner_text()
    assert "1/2" in block.locator(".qa-composed-tally").inner_text()
    assert answer.locator(".qa-passage").count() == 5  # the extractive answer stays, under it
    box, first_card = block.bounding_box(), answer.locator(".qa-passage").first.bounding_box()
    assert box["y"] < first_card["y"]


def test_a_not_found_question_sends_nothing(page, site):
    requests_before = site["model"].log.read_text().count("/v1/chat/completions")
    answer = ask(page, "红烧肉怎么做才好吃？")
    assert "没有找到相关内容" in answer.inner_text()
    time.sleep(3)  # a written answer would have started by now
    assert answer.locator(".qa-composed").count() == 0
    assert site["model"].log.read_text().count("/v1/chat/completions") == requests_before


def test_the_compose_endpoint_returns_the_checked_written_answer(site):
    result = page_client(site["url"]).predict(dev_question("d14")["question"], 5, api_name="/compose")
    composed = result["composed"]
    assert composed["text"] == site["supported"] + INVENTED and composed["model"] == "gemma-3-270m"
    assert [(s["supported"], s["reason"]) for s in composed["sentences"]] == [(True, ""), (False, "figure_missing")]
    assert "composed" not in page_client(site["url"]).predict(dev_question("d14")["question"], 5, api_name="/ask")


def test_a_hung_model_leaves_the_extractive_answer_with_a_note_within_the_timeout(page, site):
    model = site["model"].process
    os.kill(model.pid, signal.SIGSTOP)  # it still accepts connections, and answers nothing
    try:
        answer = ask(page, dev_question("d14")["question"])
        answered = time.monotonic()
        note = composed(answer)
        waited = time.monotonic() - answered
    finally:
        os.kill(model.pid, signal.SIGCONT)
    assert "未能撰写回答" in note.inner_text()
    assert waited < TIMEOUT + 20  # the timeout, and the page's own turn
    assert answer.locator(".qa-passage").count() == 5


def test_a_killed_model_leaves_the_extractive_answer_with_a_note(page, site):
    site["model"].process.kill()
    site["model"].process.wait()
    answer = ask(page, dev_question("d14")["question"])
    assert "未能撰写回答" in composed(answer).inner_text()
    assert answer.locator(".qa-passage").count() == 5
