"""Limits the server enforces on every entry point (issue 14): the question's length (refused above
QA_MAX_QUESTION_CHARS before anything reads it, cut to the question box on the page), the request's
size (qa/page/access.py: refused unread), the conversation kept in state, and the events one client may
have waiting; refusals are one line in the server's log.

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

from qa.assistant import clean_question
from qa.config import Config, PageSettings, config_from_env
from qa.errors import ConfigError, QuestionError
from qa.page.access import Gate, body_limit, host_names
from qa.page.conversation import Turn
from qa.page.events import BOX_CHARS
from qa.page.layout import build_page

from .conftest import SEED_CORPUS, case_number
from .helpers import HTTP_TIMEOUT, page_client, run_qa, running_page

QUESTION = "民生实事项目是怎么确定的？"
TOO_LONG = "the question has 20,001 characters; at most 20,000 are accepted: ask a shorter question"


# --- the question's length ------------------------------------------------------------------------------


def test_a_question_over_the_limit_is_refused_before_it_is_read():
    assert clean_question("问" * 20_000, 20_000) == "问" * 20_000
    with pytest.raises(QuestionError) as error:
        clean_question("问" * 20_001, 20_000)
    assert str(error.value) == TOO_LONG
    with pytest.raises(QuestionError, match="^the question has 50,000,000 characters; at most 20,000 are accepted"):
        clean_question("\x00" * 50_000_000, 20_000)  # refused by its length, not after cleaning 50M characters


def test_the_limit_is_a_setting_read_from_the_environment():
    assert Config().max_question_chars == 20_000
    assert config_from_env({"QA_MAX_QUESTION_CHARS": "500"}).max_question_chars == 500
    for bad in ("0", "-3", "lots", "1e6"):
        with pytest.raises(ConfigError) as error:
            config_from_env({"QA_MAX_QUESTION_CHARS": bad})
        assert str(error.value) == f"QA_MAX_QUESTION_CHARS must be a whole number of 1 or more, not {bad!r}"


def test_the_assistant_refuses_a_question_over_the_limit(seed_assistant):
    with pytest.raises(QuestionError) as error:
        seed_assistant.ask(QUESTION * 1539)  # 20,007 characters
    assert str(error.value) == "the question has 20,007 characters; at most 20,000 are accepted: ask a shorter question"


def test_qa_ask_refuses_a_line_over_the_limit_and_answers_the_others(seed_assistant):
    lines = f"{QUESTION}\n{'问' * 20_001}\n{QUESTION}\n".encode()
    result = run_qa("ask", "--json", "--k", "1", "--index", str(seed_assistant.config.index_dir), "-", input=lines)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"line 2: {TOO_LONG}\n"
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p.get("error") for p in printed] == [None, TOO_LONG, None]
    assert printed[1]["question"] == "问" * 20_000 + "…"  # echoed up to the limit
    assert case_number(printed[0]["passages"][0]["section"]) == case_number(printed[2]["passages"][0]["section"]) == 1


# --- the page's events, without a server -------------------------------------------------------------------


class CannedChat:
    """The page's service, reduced to what the question events use: each reply echoes its question."""

    def __init__(self):
        self.assistant = SimpleNamespace(config=Config())
        self.asked = []

    def reply(self, question: str, history: list[Turn]) -> Turn:
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


# --- the gate, as ASGI middleware without Gradio --------------------------------------------------------


class Received:
    """An ASGI app that records the request bodies it receives and answers 200."""

    def __init__(self):
        self.bodies = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(app, path: str, chunks: list[bytes], headers: dict | None = None, client: str = "10.0.0.1", method: str = "POST"):
    """Send one request of `chunks` to the ASGI `app`: (status, JSON detail or body, chunks it read)."""
    pending = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]
    read = []
    sent = []

    async def receive():
        if pending:
            read.append(pending[0]["body"])
            return pending.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    headers = {"host": "127.0.0.1:7860"} | (headers or {})
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "client": (client, 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, (json.loads(body)["detail"] if status != 200 else body.decode()), len(read)


def gate(received, waiting=(), **limits):
    settings = dict(max_body_bytes=1000, max_waiting_per_session=2, max_waiting_per_address=3) | limits
    return Gate(received, names=host_names("127.0.0.1"), any_address=False, waiting=lambda: list(waiting), **settings)


def test_the_gate_refuses_a_large_body_unread(caplog):
    received = Received()
    app = gate(received)
    assert call(app, "/gradio_api/queue/join", [b"x" * 600, b"y" * 400]) == (200, "ok", 2)
    assert received.bodies == [b"x" * 600 + b"y" * 400]  # handed on whole
    # Said to be too large: refused before a byte is read.
    status, detail, read = call(app, "/gradio_api/queue/join", [b"x" * 1001], {"content-length": "150000083"})
    assert (status, read) == (413, 0)
    assert detail == ("request too large: a request of 150,000,083 bytes is over this page's limit of 1,000 bytes "
                      "(ask a shorter question)")
    # Not said (chunked): refused at the chunk that passes the limit; the rest is never read.
    status, detail, read = call(app, "/gradio_api/call/ask", [b"x" * 600, b"y" * 600, b"z" * 600])
    assert (status, read) == (413, 2) and detail.startswith("request too large: a request is over this page's limit")
    assert len(received.bodies) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "refused POST /gradio_api/queue/join from 10.0.0.1: request too large: a request of 150,000,083 bytes is over "
        "this page's limit of 1,000 bytes (ask a shorter question)",
        "refused POST /gradio_api/call/ask from 10.0.0.1: request too large: a request is over this page's limit of "
        "1,000 bytes (ask a shorter question)",
    ]


def test_the_gate_bounds_what_one_session_and_one_address_have_waiting():
    waiting = [("tab1", "10.0.0.1"), ("tab1", "10.0.0.1"), ("tab2", "10.0.0.1"), ("tab3", "10.0.0.2")]
    app = gate(Received(), waiting)

    def join(session: str, client: str = "10.0.0.9") -> tuple:
        return call(app, "/gradio_api/queue/join", [json.dumps({"session_hash": session}).encode()], client=client)[:2]

    assert join("tab1") == (429, "too many requests at once: this session already has 2 waiting or running (at most 2); "
                                 "wait for an answer first")
    assert join("tab2") == (200, "ok") and join("tab4", "10.0.0.2") == (200, "ok")
    assert join("tab4", "10.0.0.1") == (429, "too many requests at once: 3 from this address are waiting or running "
                                             "(at most 3); wait for an answer first")
    assert call(app, "/gradio_api/upload_progress", [b""], method="GET", client="10.0.0.1")[0] == 200  # only joins count


def test_the_body_limit_holds_a_question_at_the_limit():
    worst = json.dumps({"data": ["😀" * 20_000, 5], "fn_index": 12, "session_hash": uuid.uuid4().hex, "event_data": None})
    assert len(worst.encode()) < body_limit(20_000) < 400_000  # JSON-escaped surrogate pairs: 12 bytes a character


# --- over the real protocol -----------------------------------------------------------------------------


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


def test_a_burst_of_joins_counts_before_the_queue_has_them():
    # Joins that arrive together all pass the check before the first is in the queue; the gate counts
    # them from the moment they are let in, so a burst from one session is bounded all the same.
    release = asyncio.Event()

    async def slow_queue(scope, receive, send):
        await receive()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = Gate(slow_queue, names=host_names("127.0.0.1"), any_address=False, waiting=lambda: [], max_body_bytes=1000,
               max_waiting_per_session=2, max_waiting_per_address=3)
    body = json.dumps({"session_hash": "tab1"}).encode()

    async def join(session: str) -> int:
        messages = [{"type": "http.request", "body": json.dumps({"session_hash": session}).encode(), "more_body": False}]
        sent = []

        async def receive():
            return messages.pop(0) if messages else await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "root_path": "", "client": ("10.0.0.1", 1),
                 "headers": [(b"host", b"localhost:7860"), (b"content-length", str(len(body)).encode())]}
        await app(scope, receive, send)
        return sent[0]["status"]

    async def burst(sessions: tuple[str, ...]) -> list[int]:
        release.clear()
        joins = [asyncio.create_task(join(session)) for session in sessions]
        await asyncio.sleep(0.1)
        release.set()
        return await asyncio.gather(*joins)

    async def two_bursts() -> tuple[list[int], list[int]]:
        return await burst(("tab1",) * 4 + ("tab2",) * 2), await burst(("tab1", "tab1", "tab3"))

    first, second = asyncio.run(two_bursts())
    assert first == [200, 200, 429, 429, 200, 429]  # tab2's second: the address has 3 in flight
    # Nothing counted once the joins are done: the session and the address have their whole allowance again.
    assert second == [200, 200, 200]
