"""Written answers from a real engine: llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) serving
Gemma 3 270M from PyPI. The model is too small to answer well, so a GBNF grammar (QA_LLM_OPTIONS, passed to
the engine as any engine option is) fixes what it writes where a test needs known sentences; the tests check
the plumbing: streaming, citations parsed, unsupported sentences marked, timeouts, a killed, hung, refusing or
babbling server, the key kept out of every message."""

import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qa.compose.composer import Composer
from qa.config import ComposerSettings
from qa.decision.outcomes import NOT_FOUND

from ..conftest import dev_question
from ..helpers import PROJECT, free_port, run_qa, running_language_model

pytestmark = pytest.mark.slow  # each test asks a language model on this 2-core machine
ROOMY = 300.0  # seconds: the deadline of a test that expects an answer, on a busy machine


def forced(text: str) -> tuple[tuple[str, object], ...]:
    """Engine options that make the model write exactly `text` (a GBNF grammar of one literal)."""
    literal = text.replace("\\", "\\\\").replace('"', '\\"')
    return (("grammar", f'root ::= "{literal}"'),)


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    with running_language_model(tmp_path_factory.mktemp("llm") / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def answer(seed_assistant):
    """The seed's answer to 哪些级别的医院之间检查结果互认？ (answered: its cards are about case 9)."""
    answer = seed_assistant.ask(dev_question("d14")["question"])
    assert answer.outcome != NOT_FOUND
    return answer


def composer_for(assistant, url: str, **settings) -> Composer:
    return Composer.for_assistant(ComposerSettings(llm_url=url, **{"llm_timeout": ROOMY, **settings}), assistant)


def test_the_answer_streams_then_every_sentence_is_checked(seed_assistant, answer, language_model):
    first = answer.passages[0].text
    supported = first[: first.index("。") + 1] + "[1]"
    text = f"{supported}每年为全省节省医疗费用500亿元[1]。医院之间检查结果互认。"
    composer = composer_for(seed_assistant, language_model.url, llm_options=forced(text))  # the model's name: asked of the endpoint
    drafts = list(composer.stream(answer))
    final = drafts[-1]
    assert all(not draft.done for draft in drafts[:-1]) and len(drafts) >= 2, "the answer came in one piece"
    assert all(text.startswith(draft.text) for draft in drafts[:-1])
    assert (final.done, final.note, final.text, final.model) == (True, "", text, "gemma-3-270m")
    assert [(s.cites, s.supported, s.reason) for s in final.sentences] == [
        ((1,), True, ""), ((1,), False, "figure_missing"), ((), False, "no_citation"),
    ]
    assert final.supported_share == pytest.approx(1 / 3, abs=1e-3)
    shown = answer.__class__(**{**answer.__dict__, "composed": final}).to_json()["composed"]
    assert shown["sentences"][1]["missing_figures"] == ["500亿"] and shown["model"] == "gemma-3-270m"


def test_the_model_writes_in_its_own_words_and_the_check_reads_them(seed_assistant, answer, language_model):
    """No grammar: what the small model makes of the prompt, whatever it is, is split, parsed and checked."""
    final = composer_for(seed_assistant, language_model.url, llm_max_tokens=80).compose(answer)
    assert final.note == "" and final.text and final.sentences
    assert all(s.supported is None or s.reason in ("", "no_citation", "unknown_passage", "figure_missing", "unsupported")
               for s in final.sentences)


def test_a_not_found_answer_is_never_sent(seed_assistant):
    answer = seed_assistant.ask("北京市的共同富裕示范区有哪些经验？")
    assert answer.outcome == NOT_FOUND
    port = free_port()  # nothing listens: a request would end in a note, not in silence
    assert list(composer_for(seed_assistant, f"http://127.0.0.1:{port}/v1", llm_model="m").stream(answer)) == []


def test_a_server_killed_while_writing_leaves_a_note(seed_assistant, answer, tmp_path):
    with running_language_model(tmp_path / "server.log") as server:
        composer = composer_for(seed_assistant, server.url, llm_max_tokens=400, llm_options=(("ignore_eos", True),))
        started = time.monotonic()
        results = []
        for composition in composer.stream(answer):
            results.append(composition)
            if not composition.done and len(results) == 1:
                os.kill(server.process.pid, signal.SIGKILL)
    assert results[-1].done and results[-1].text == "" and "language model" in results[-1].note
    assert time.monotonic() - started < ROOMY


@pytest.mark.parametrize("model", ["m", None])  # None: the endpoint is first asked for its model, in the same deadline
def test_a_hung_server_costs_the_timeout_and_no_more(seed_assistant, answer, model):
    with socket.socket() as listener:  # accepts the connection, reads the request, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        composer = composer_for(seed_assistant, url, llm_model=model, llm_timeout=2.0)
        started = time.monotonic()
        final = composer.compose(answer)
        waited = time.monotonic() - started
    assert final.text == "" and "did not" in final.note
    assert waited < 2.0 + 1.5  # the timeout, and the check of nothing


class Babbler(BaseHTTPRequestHandler):
    """An endpoint that answers every request with a web page, not the API's JSON."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html><body>Bad gateway, try later</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_babbling_server_leaves_a_note(seed_assistant, answer):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Babbler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        final = composer_for(seed_assistant, f"http://127.0.0.1:{server.server_port}/v1", llm_model="m").compose(answer)
    finally:
        server.shutdown()
    assert final.text == "" and final.note.startswith("the language model at ")


def test_a_refused_key_is_said_without_showing_the_key(seed_assistant, answer, tmp_path):
    with running_language_model(tmp_path / "server.log", api_key="the-right-key") as server:
        final = composer_for(seed_assistant, server.url, llm_key="sk-wrong-key-4242", llm_model="m").compose(answer)
        assert "401" in final.note and "sk-wrong-key-4242" not in final.note
        right = composer_for(seed_assistant, server.url, llm_key="the-right-key", llm_options=forced("互认[1]。")).compose(answer)
        assert right.note == "" and right.text == "互认[1]。"


def test_qa_ask_compose_prints_the_checked_answer_and_json_carries_it(seed_config, seed_assistant, answer, language_model):
    question = dev_question("d14")["question"]
    text = "每年为全省节省医疗费用500亿元[1]。"
    env = {"QA_LLM_URL": language_model.url, "QA_LLM_OPTIONS": json.dumps(dict(forced(text)), ensure_ascii=False),
           "QA_LLM_TIMEOUT": str(ROOMY)}
    flags = ["--index", str(seed_config.index_dir)]
    shown = run_qa("ask", "--compose", *flags, question, env=env)
    assert shown.exit_code == 0, shown.output
    assert text in shown.output and "⚠ 未在引文中找到依据：数字不在所引资料中" in shown.output
    printed = run_qa("ask", "--compose", "--json", *flags, question, env=env)
    composed = json.loads(printed.output)["composed"]
    assert composed["text"] == text and composed["sentences"][0]["reason"] == "figure_missing"
    plain = json.loads(run_qa("ask", "--json", *flags, question, env=env).output)
    assert "composed" not in plain  # asked for only with --compose


def test_qa_ask_compose_without_a_language_model_says_what_to_set(seed_config, seed_assistant):
    shown = run_qa("ask", "--compose", "--index", str(seed_config.index_dir), "问题", env={"QA_LLM_URL": ""})
    assert shown.exit_code == 1 and "QA_LLM_URL" in shown.output and "Traceback" not in shown.output


def test_qa_eval_compose_reports_the_written_answers(seed_config, seed_assistant, language_model):
    text = "这项经验见所引段落[1]。"  # cites card [1] and claims nothing it says: checked, never supported
    env = {"QA_LLM_URL": language_model.url, "QA_LLM_OPTIONS": json.dumps(dict(forced(text)), ensure_ascii=False),
           "QA_LLM_TIMEOUT": str(ROOMY)}
    shown = run_qa("eval", "--compose", "--json", "--fold", "1/10", "--index", str(seed_config.index_dir),
                   str(PROJECT / "eval" / "seed_in_scope.tsv"), env=env)
    report = json.loads(shown.output)
    figures = report["composing"]
    assert figures["composed"] >= 3 and figures["failed"] == 0 and figures["sentences"] == figures["composed"]
    assert (figures["supported_share"], figures["fully_supported"]) == (0.0, 0.0)
    # Each answer cites its card [1] once: the share of right first cards among the answers written.
    assert figures["citation_precision"] == figures["cites_relevant"] and 0 < figures["citation_precision"] <= 1
