"""The page's events (qa/page/events.py) and its /ask endpoint with bad, long and odd questions
(tests/questions.py), and the limits the server enforces on them (issue 14): the question's length
(refused above QA_MAX_QUESTION_CHARS before anything reads it, cut to the question box on the page),
the request's size and the events one client may have waiting (qa/page/access.py), the conversation
kept in state; refusals are one line in the server's log.

Over the real protocol: a 50-million-character question sent to /ask costs the server a few MB and
is refused at once, while another client's question goes on being answered.
"""

import asyncio
import json
import statistics
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import pytest
from gradio_client.exceptions import AppError

from qa.config import Config, PageSettings
from qa.page.chat import CorpusView
from qa.page.conversation import Turn
from qa.page.events import BOX_CHARS
from qa.page.layout import build_page

from ..conftest import SEED_CORPUS, case_number
from ..helpers import HTTP_TIMEOUT, page_client, running_page
from ..questions import CHEROKEE, EMOJI, EMPTY, HTML, LONG, NOT_TEXT, QUESTION, RIGHT_TO_LEFT, TOO_LONG, check_answer

# --- the page's events, without a server -----------------------------------------------------------


class CannedChat:
    """The page's service, reduced to what the question events use: each reply echoes its question."""

    def __init__(self):
        self.assistant = SimpleNamespace(config=Config())
        self.asked = []

    def corpus_view(self, samples: int) -> CorpusView:
        return CorpusView()

    def reply(self, question: str, history: list[Turn], within: tuple[str, ...] = ()) -> Turn:
        self.asked.append(question)
        return Turn(question, question, question, shown=f"<p>answer {len(self.asked)}</p>")


def events(chat, **settings) -> dict:
    return {fn.name: fn.fn for fn in build_page(chat, True, PageSettings(**settings)).fns.values()}


def test_the_page_cuts_a_question_to_the_box_and_refuses_one_over_the_limit(caplog):
    chat = CannedChat()
    show_question = events(chat)["show_question"]
    request = gr.Request(username=None)
    with pytest.warns(UserWarning) as warned:
        cleared, messages, pending = show_question("问" * 1500, [], request)
    assert [str(w.message) for w in warned] == ["问题过长，只保留前 1,000 个字符 · The question was cut to its first 1,000 characters"]
    assert pending == "问" * BOX_CHARS and cleared == "" and messages[0]["content"] == f'<div class="qa-question">{"问" * 1000}</div>'

    with pytest.warns(UserWarning) as warned:
        shown = show_question("问" * 20_001, [], request)
    assert [str(w.message) for w in warned] == [TOO_LONG]
    assert shown[2] is None and shown[1] == gr.skip()  # nothing echoed, nothing to answer
    assert [r.getMessage() for r in caplog.records] == [f"question refused from unknown: {TOO_LONG}"]


def test_the_conversation_keeps_its_last_turns():
    chat = CannedChat()
    answer = events(chat, max_turns=3)["answer"]
    turns = []
    for number in range(1, 6):
        messages, turns = answer(f"问题 {number}", turns)
    assert [turn.question for turn in turns] == ["问题 3", "问题 4", "问题 5"]
    assert [m["content"] for m in messages[1::2]] == ["<p>answer 3</p>", "<p>answer 4</p>", "<p>answer 5</p>"]


# --- the /ask endpoint on a running page with no login on every address ---------------------------


@pytest.fixture(scope="module")
def client(public_page):
    return page_client(public_page["url"])


@pytest.mark.parametrize("question", ["", "   ", "\x00\x07"], ids=["empty", "spaces", "control"])
def test_the_api_answers_an_empty_question_with_the_message(client, question):
    with pytest.raises(AppError, match=f"^{EMPTY}$"):
        client.predict(question, api_name="/ask")


def call_ask(url: str, body: bytes) -> tuple[str, object]:
    """POST a raw JSON body to the page's /ask endpoint (gradio's two-step call API): (event, data) of its reply."""
    started = httpx.post(url + "gradio_api/call/ask", content=body, headers={"content-type": "application/json"}, timeout=60)
    assert started.status_code == 200, started.text
    reply = httpx.get(f"{url}gradio_api/call/ask/{started.json()['event_id']}", timeout=300).text
    event, data = [line for line in reply.splitlines() if line][:2]
    return event.removeprefix("event: "), json.loads(data.removeprefix("data: "))


def test_the_api_answers_json_that_no_client_library_sends(public_page):
    url = public_page["url"]
    # A lone surrogate (escaped, so the JSON is valid) and a NUL: clean_question drops both.
    assert call_ask(url, b'{"data": ["\\ud800\\u0000", 0]}')[1]["error"] == EMPTY
    event, data = call_ask(url, b'{"data": ["\\ud800' + QUESTION.encode() + b'", 0]}')
    assert event == "complete" and case_number(data[0]["passages"][0]["section"]) == 1
    for body in (b'{"data": [null, 0]}', b'{"data": [{"a": 1}, 0]}'):
        assert call_ask(url, body) == ("error", {"error": NOT_TEXT, "duration": 10, "visible": True, "title": "Error"})
    assert call_ask(url, b'{"data": ["q", "abc"]}')[1]["error"].endswith("from 1 to 100, not 'abc'")
    # Too few values: gradio refuses before our code runs, and says nothing about its insides.
    assert call_ask(url, b'{"data": ["q"]}') == ("error", {"error": None})


@pytest.mark.parametrize("k", [-1, 101, 2.5])
def test_the_api_refuses_a_bad_k_with_the_message(client, k):
    with pytest.raises(AppError, match=r"^k, the number of passages, must be a whole number from 1 to 100, not "):
        client.predict(QUESTION, k, api_name="/ask")


def test_the_api_answers_long_and_odd_questions(client, seed_assistant):
    long = client.predict(LONG, api_name="/ask")
    assert long == seed_assistant.ask(LONG).to_json() and len(long["notes"]) == 1
    for question in (HTML, EMOJI, RIGHT_TO_LEFT, CHEROKEE, "\x1b[31m" + QUESTION):
        result = client.predict(question, api_name="/ask")
        assert result == seed_assistant.ask(question).to_json()
        check_answer(result, seed_assistant.calibration)


# --- limits over the real protocol ----------------------------------------------------------------


@pytest.fixture(scope="module")
def page(seed_assistant, tmp_path_factory):
    """The chat page on 127.0.0.1 without a login, over the seed index."""
    folder = tmp_path_factory.mktemp("limits")
    config = seed_assistant.config
    flags = ("--corpus", str(SEED_CORPUS), "--index", str(config.index_dir), "--feedback", str(folder / "feedback.jsonl"))
    with running_page(*flags, log=folder / "app.log", env={"QA_AUTH": ""}) as running:
        yield running


def memory_mb(pid: int) -> float:
    """Resident memory of process `pid`, in MB (VmRSS of /proc/PID/status)."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def timed(client, question: str) -> float:
    started = time.monotonic()
    client.predict(question, api_name="/ask")
    return time.monotonic() - started


def test_a_50_million_character_question_costs_the_server_nothing_and_delays_no_one(page):
    attacker, visitor = page_client(page.url), page_client(page.url)
    timed(visitor, QUESTION)  # warm
    alone = statistics.median(timed(visitor, QUESTION) for _ in range(3))
    before = memory_mb(page.process.pid)
    outcome = {}

    def attack():
        started = time.monotonic()
        try:
            attacker.predict("民" * 50_000_000, api_name="/ask")
        except httpx.HTTPStatusError as error:
            outcome["status"] = error.response.status_code
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=attack)
    thread.start()
    time.sleep(0.2)  # the 150 MB request is being encoded and sent
    during = timed(visitor, QUESTION)
    thread.join()
    grown = memory_mb(page.process.pid) - before
    print(f"50M-character question: {outcome}, server memory {before:.0f} MB +{grown:.1f} MB; "
          f"a normal question alone {alone:.2f} s, during it {during:.2f} s")
    assert outcome["status"] == 413
    assert grown < 20  # it took 4.5 GB before the limit
    assert outcome["seconds"] < 10  # mostly this process encoding 150 MB of JSON; it took 28 s before
    # The other client's question waits for nothing but the CPU that the sender shares with it.
    assert during < 5 * alone + 2
    assert "refused POST /gradio_api/queue/join from 127.0.0.1: request too large: a request of 150,000,0" in page.log.read_text()


def test_api_refusals_say_why_and_log_one_line(page):
    client = page_client(page.url)
    with pytest.raises(AppError, match=f"^{TOO_LONG}$"):
        client.predict("x" * 20_001, api_name="/ask")  # under the body limit, over the question limit
    assert client.predict(QUESTION, api_name="/ask")["question"] == QUESTION
    log = page.log.read_text()
    assert f"/ask refused from 127.0.0.1: {TOO_LONG}\n" in log
    assert "Traceback" not in log


class Visitor:
    """One browser tab, speaking Gradio's queue protocol."""

    def __init__(self, url: str):
        self.url = url
        self.session = uuid.uuid4().hex
        self.config = httpx.get(url + "config", timeout=HTTP_TIMEOUT).json()

    def body(self, api_name: str, data: list) -> dict:
        dependency = next(d for d in self.config["dependencies"] if d["api_name"] == api_name)
        trigger = dependency["targets"][0][0] if dependency["targets"] else None
        return {"data": data, "fn_index": dependency["id"], "session_hash": self.session, "event_data": None, "trigger_id": trigger}

    def join(self, api_name: str, data: list) -> httpx.Response:
        return httpx.post(self.url + "gradio_api/queue/join", json=self.body(api_name, data), timeout=HTTP_TIMEOUT)

    def messages(self, until: int) -> list[dict]:
        """The queue's messages to this tab until `until` events have completed."""
        found, completed = [], 0
        with httpx.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": self.session}, timeout=HTTP_TIMEOUT) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    found.append(json.loads(line[5:]))
                    completed += found[-1]["msg"] == "process_completed"
                    if completed == until:
                        return found
        raise AssertionError(f"the stream ended after {completed} of {until} events: {found}")

    def event(self, api_name: str, data: list) -> tuple[list[str], dict]:
        """Run one event: (the warnings it showed, its completion message)."""
        assert self.join(api_name, data).status_code == 200
        messages = self.messages(until=1)
        return [m["log"] for m in messages if m["msg"] == "log"], messages[-1]


def test_the_page_events_refuse_and_cut_long_questions_over_the_protocol(page):
    tab = Visitor(page.url)
    big = tab.join("show_question", ["问" * 1_000_000, None])  # what the issue sent: a 1 MB question and its echo
    assert big.status_code == 413 and big.json()["detail"].startswith("request too large: a request of 3,000,")
    warnings, completed = tab.event("show_question", ["x" * 20_001, None])
    assert warnings == [TOO_LONG] and completed["success"]
    assert "xxxxxxxxxx" not in json.dumps(completed["output"])  # not echoed
    warnings, completed = tab.event("show_question", ["问" * 1500, None])
    assert warnings == ["问题过长，只保留前 1,000 个字符 · The question was cut to its first 1,000 characters"]
    echoed = json.dumps(completed["output"], ensure_ascii=False)
    assert "问" * 1000 in echoed and "问" * 1001 not in echoed
    assert f"question refused from 127.0.0.1: {TOO_LONG}\n" in page.log.read_text()


def test_one_session_cannot_fill_the_queue(page):
    tab = Visitor(page.url)
    body = tab.body("ask", [QUESTION, 1])

    async def join_many(count: int) -> list[int]:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            joined = await asyncio.gather(*(client.post(page.url + "gradio_api/queue/join", json=body) for _ in range(count)))
        return [response.status_code for response in joined]

    statuses = asyncio.run(join_many(30))
    accepted = statuses.count(200)
    assert set(statuses) == {200, 429} and PageSettings().max_waiting_per_session <= accepted < 30
    completed = [m for m in tab.messages(until=accepted) if m["msg"] == "process_completed"]
    assert len(completed) == accepted and all(m["success"] for m in completed)
    # Once answered, the session may ask again.
    assert httpx.post(page.url + "gradio_api/queue/join", json=body, timeout=HTTP_TIMEOUT).status_code == 200
    assert "wait for an answer first" in page.log.read_text()
