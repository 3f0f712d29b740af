"""The chat page: lay out the page, wire its events to the page's service (qa/page/chat.py), and serve it.

Started by `qa serve` (or `python app.py`, the same command). It listens on 127.0.0.1 unless told
otherwise (--host, QA_HOST or GRADIO_SERVER_NAME). Without a login, anyone who reaches it may ask;
on any address but loopback, rebuilding, feedback and adding or removing documents (qa/documents/uploads.py)
are refused. With a login (--auth-file, QA_AUTH_FILE or QA_AUTH) Gradio asks for it before anything
else. Every request passes the Gate of qa/page/access.py first (host names, sizes, waiting requests,
logins, uploads). A PDF page the latest answer cites can be shown with the cited lines marked
(qa/page/pdf_view.py). The API endpoint "/ask" returns what `qa ask --json` prints. The styles and the scrolling script are package data
(qa/page/static/page.css, qa/page/static/scroll.js). Sends no analytics and loads nothing from the internet.
"""

import errno
import html
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from importlib import resources
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: it reads this on import

import gradio as gr
from starlette.middleware import Middleware

from qa.assistant import Assistant, check_length
from qa.build.pipeline import Progress
from qa.build.prepare import Say, install_model, prepare_index
from qa.config import Config, PageSettings
from qa.documents.corpus import SUPPORTED_SUFFIXES
from qa.documents.ocr import OCR_CACHE_FILE
from qa.documents.uploads import add_document, corpus_documents, remove_document
from qa.errors import PageViewError, QAError, QuestionError, ServeError, UploadError, public_message
from qa.page.access import Gate, LoginThrottle, body_limit, host_names, is_loopback
from qa.page.chat import Chat
from qa.page.conversation import Turn
from qa.page.pdf_view import SHOWN_SUFFIXES, show_cited_page
from qa.page.render import INTERNAL_ERROR, chat_messages, render_status

# For the seed corpus (Zhejiang common-prosperity cases); any question about the corpus works.
SAMPLE_QUESTIONS = [
    "民生实事项目是怎么确定的？",
    "小微企业园怎样帮助块状经济转型？",
    "检查检验结果互认给群众带来什么好处？",
    "Which hospitals share medical test results?",
    "What do courtesy landmarks have to do with civic culture?",
]

PLACEHOLDER = (
    '<div class="qa-placeholder"><p><b>用中文或英文提问，回答只引用文档原文，并注明出处。</b><br>'
    "Ask in Chinese or English: every answer quotes the documents and says where each passage comes from.</p>"
    '<p><mark class="qa-hl qa-best">黄色</mark>标出与问题最匹配的句子 · yellow marks the best-matching sentences<br>'
    "相关度条 · the relevance bar says how closely each passage matches<br>"
    "可以追问 · follow-ups work, e.g. 具体是怎么做的？</p></div>"
)
BOX_CHARS = 1000  # the question box takes this many characters; the server cuts a longer question to it
LOGIN_HINT = "(start the page with --auth-file or QA_AUTH)"
MAX_QUEUED = 256  # events queued on the page in all (Gradio's queue); one more is refused as "queue full"
FILES_AT_ONCE = 4  # an upload request may carry this many files of the largest size the build reads

log = logging.getLogger(__name__)



def static_text(name: str) -> str:
    """A file of qa/page/static/, shipped with the package (declared as package data in pyproject.toml)."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def may_rebuild(rebuild_allowed: bool, username: str | None) -> bool:
    """Whether this visitor may rebuild, vote, or add and remove documents: anyone on a loopback-only
    page, else only a logged-in user.

    The page hides the buttons too, but this check is what the events themselves apply.
    """
    return rebuild_allowed or bool(username)


def upload_limit(max_file_bytes: int) -> int:
    """The largest upload request the page lets in: FILES_AT_ONCE files of `max_file_bytes`, and 1 MB for the form."""
    return FILES_AT_ONCE * max_file_bytes + 1_000_000


def build_page(chat: Chat, rebuild_allowed: bool, settings: PageSettings | None = None) -> gr.Blocks:
    """Lay out the page and wire its events to `chat`; `settings` gives the conversation's length (max_turns)."""
    settings = settings or PageSettings()
    scroll_script = static_text("scroll.js")
    max_chars = chat.assistant.config.max_question_chars

    def show_question(question: str, turns: list[Turn], request: gr.Request):
        # The browser keeps to the box's limit; a client that does not is refused or cut here.
        question = question or ""
        try:
            check_length(question, max_chars)
        except QuestionError as error:
            log.warning("question refused from %s: %s", _client(request), error)
            gr.Warning(str(error))
            return gr.skip(), gr.skip(), None
        question = " ".join(question.split())
        if not question:
            gr.Warning("请输入问题 · Type a question first")
            return gr.skip(), gr.skip(), None
        if len(question) > BOX_CHARS:
            gr.Warning(f"问题过长，只保留前 {BOX_CHARS:,} 个字符 · The question was cut to its first {BOX_CHARS:,} characters")
            question = question[:BOX_CHARS]
        return "", chat_messages(turns, pending=question), question

    def answer(pending: str | None, turns: list[Turn]):
        if pending is None:
            return gr.skip(), gr.skip()
        turns = (turns + [chat.reply(pending, turns)])[-settings.max_turns :]  # what the state keeps and the page resends
        return chat_messages(turns), turns

    def rate(turns: list[Turn], vote: gr.LikeData, request: gr.Request):
        if not may_rebuild(rebuild_allowed, request.username):  # a public page takes votes from logged-in users only
            log.warning("feedback refused from %s: needs a login", _client(request))
            gr.Warning(f"反馈需要登录 · Feedback needs a login {LOGIN_HINT}")
            return
        number = vote.index if isinstance(vote.index, int) else vote.index[0]
        if not 0 <= number // 2 < len(turns) or vote.liked not in (True, False, ""):
            return
        try:
            # Clicking a selected thumb again takes the vote back: Gradio then sends liked="".
            chat.feedback(turns[number // 2], liked=None if vote.liked == "" else vote.liked)
        except QAError as error:
            gr.Warning(public_message(str(error)))
            return
        gr.Info("已记录反馈，谢谢 · Feedback recorded, thank you")

    def rebuild(request: gr.Request):
        if not may_rebuild(rebuild_allowed, request.username):
            log.warning("rebuild refused from %s: needs a login", _client(request))
            gr.Warning(f"重建索引需要登录 · Rebuilding needs a login {LOGIN_HINT}")
            yield render_status(chat.status(), rebuild_allowed=False)
            return
        if not chat.rebuilds.start():
            gr.Info("已在重建 · A rebuild is already running")
        while chat.rebuilds.state().running:
            yield render_status(chat.status(), rebuild_allowed=True)
            time.sleep(0.5)
        yield render_status(chat.status(), rebuild_allowed=True)

    def show_status(request: gr.Request):
        return render_status(chat.status(), rebuild_allowed=may_rebuild(rebuild_allowed, request.username))

    corpus_dir = chat.assistant.config.corpus_dir
    ocr_cache = chat.assistant.config.index_dir / OCR_CACHE_FILE  # where a scanned page's lines were read (qa/documents/ocr.py)
    max_file_bytes = chat.assistant.config.max_file_bytes

    def document_choices(request: gr.Request):
        """The corpus's documents for the remove list; none for a visitor who may not remove them."""
        allowed = may_rebuild(rebuild_allowed, request.username)
        return gr.Dropdown(choices=corpus_documents(corpus_dir) if allowed else [], value=None)

    def rebuild_for_change(request: gr.Request):
        """Rebuild after documents were added or removed, yielding the index panel and the document list."""
        while chat.rebuilds.state().running:  # it may have read the corpus before the change: wait, then rebuild
            yield render_status(chat.status(), rebuild_allowed=True), gr.skip()
            time.sleep(0.5)
        chat.rebuilds.start()
        yield render_status(chat.status(max_age=0), rebuild_allowed=True), document_choices(request)
        while chat.rebuilds.state().running:
            yield render_status(chat.status(), rebuild_allowed=True), gr.skip()
            time.sleep(0.5)
        yield render_status(chat.status(max_age=0), rebuild_allowed=True), gr.skip()

    def add_documents(files: list[str] | None, replace: bool, request: gr.Request):
        if not may_rebuild(rebuild_allowed, request.username):
            log.warning("upload refused from %s: needs a login", _client(request))
            gr.Warning(f"添加文档需要登录 · Adding documents needs a login {LOGIN_HINT}")
            yield render_status(chat.status(), rebuild_allowed=False), gr.skip(), None
            return
        added = []
        for upload in files or []:
            upload = Path(upload)  # in Gradio's upload folder, under the name the browser gave
            try:
                added.append(add_document(corpus_dir, upload.name, upload, max_file_bytes, replace=bool(replace)))
            except UploadError as error:
                log.warning("upload from %s refused: %s", _client(request), error)
                gr.Warning(f"未添加 · Not added: {public_message(str(error))}")
        if not added:
            yield render_status(chat.status(), rebuild_allowed=True), gr.skip(), None
            return
        log.info("added to the corpus from %s: %s", _client(request), ", ".join(added))
        gr.Info(f"已添加 · Added: {'、'.join(added)}; 正在重建索引 · rebuilding the index")
        for panel, listed in rebuild_for_change(request):
            yield panel, listed, None

    def remove_documents(source: str | None, request: gr.Request):
        if not may_rebuild(rebuild_allowed, request.username):
            log.warning("removal refused from %s: needs a login", _client(request))
            gr.Warning(f"删除文档需要登录 · Removing documents needs a login {LOGIN_HINT}")
            yield render_status(chat.status(), rebuild_allowed=False), gr.skip()
            return
        if not source:
            gr.Warning("请先选择要删除的文档 · Choose the document to remove first")
            yield gr.skip(), gr.skip()
            return
        try:
            kept = remove_document(corpus_dir, source)
        except UploadError as error:
            gr.Warning(public_message(str(error)))
            yield gr.skip(), document_choices(request)
            return
        log.info("removed from the corpus by %s: %s (kept as %s)", _client(request), source, kept)
        gr.Info(f"已删除 · Removed: {source}（保存在 corpus/.removed/ · kept in corpus/.removed/）; 正在重建索引 · rebuilding the index")
        yield from rebuild_for_change(request)

    def cited_pages(turns: list[Turn]):
        """The pages of PDFs and images the latest answer cites, for the page view's list."""
        answer = turns[-1].answer if turns else None
        passages = answer.passages if answer is not None else []
        choices = [(f"[{p.rank}] {p.source} · 第 {p.page} 页 · page {p.page}", str(p.rank))
                   for p in passages if p.page is not None and p.source.lower().endswith(SHOWN_SUFFIXES)]
        return gr.Dropdown(choices=choices, value=None), "", None

    def show_page(rank: str | None, turns: list[Turn], request: gr.Request):
        answer = turns[-1].answer if turns else None
        passage = next((p for p in answer.passages if str(p.rank) == rank), None) if answer is not None else None
        if passage is None or passage.page is None:
            return "", None
        try:
            view = show_cited_page(corpus_dir, passage.source, passage.page, passage.text, ocr_cache)
        except PageViewError as error:
            log.warning("page view refused for %s: %s", _client(request), error)
            return _note(f"无法显示此页 · The page cannot be shown: {public_message(str(error))}", "qa-error"), None
        return _note(view.note), view.image

    private = dict(api_visibility="private")
    with gr.Blocks(title="政策文件问答 · Policy Q&A") as page:
        gr.HTML(
            '<div class="qa-header"><h1 style="margin:0">政策文件问答 · Policy document Q&amp;A</h1>'
            '<div class="qa-aside">每个回答都引用文档原文并注明出处，请核对。 '
            "Every answer quotes the documents and says where; check it against the source.</div></div>"
        )
        turns = gr.State([])
        pending = gr.State(None)  # the question being answered
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="对话 · Conversation",
                    show_label=False,
                    elem_id="qa-chat",
                    height=640,
                    layout="panel",
                    autoscroll=False,  # scroll_script shows the start of each answer instead
                    buttons=["copy"],
                    latex_delimiters=[],
                    allow_tags=False,
                    sanitize_html=True,
                    placeholder=PLACEHOLDER,
                    feedback_options=("Like", "Dislike"),
                )
                with gr.Row():
                    question = gr.Textbox(
                        show_label=False,
                        placeholder="输入问题，按回车 · Type a question and press Enter",
                        elem_id="qa-question",
                        scale=5,
                        max_length=BOX_CHARS,
                    )
                    ask_button = gr.Button("提问 · Ask", variant="primary", elem_id="qa-ask", scale=1, min_width=90)
                new_chat = gr.Button("新对话 · New conversation", size="sm", elem_id="qa-new")
                with gr.Accordion("原文页面 · The cited page", open=False, elem_id="qa-page-view"):
                    page_choice = gr.Dropdown(label="最近回答引用的 PDF 或图片页面 · Pages of PDFs and images the latest answer cites",
                                              choices=[], value=None, elem_id="qa-cited-pages")
                    page_note = gr.HTML(elem_id="qa-page-note")
                    page_image = gr.Image(type="pil", format="png", interactive=False, show_label=False,
                                          buttons=["fullscreen"], elem_id="qa-page-image")
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("**示例问题 · Sample questions**")
                samples = [gr.Button(text, size="sm", elem_classes="qa-sample") for text in SAMPLE_QUESTIONS]
                with gr.Accordion("索引 · Index", open=True):
                    status = gr.HTML(elem_id="qa-index-status")
                    rebuild_button = gr.Button("重建索引 · Rebuild index", elem_id="qa-rebuild", visible=rebuild_allowed)
                    if not rebuild_allowed:
                        gr.Markdown(f"重建索引需要登录 · Rebuilding from the page needs a login {LOGIN_HINT}.")
                with gr.Accordion("文档 · Documents", open=False, elem_id="qa-documents-panel"):
                    upload = gr.File(label="添加文档 · Add documents", file_count="multiple", file_types=list(SUPPORTED_SUFFIXES),
                                     height=110, visible=rebuild_allowed, elem_id="qa-upload")
                    replace = gr.Checkbox(label="替换同名文件 · Replace files of the same name", value=False,
                                          visible=rebuild_allowed, elem_id="qa-replace")
                    documents = gr.Dropdown(label="文档 · Documents", choices=[], value=None, visible=rebuild_allowed,
                                            elem_id="qa-documents")
                    remove_button = gr.Button("删除所选文档 · Remove the chosen document", size="sm", variant="stop",
                                              visible=rebuild_allowed, elem_id="qa-remove")
                    if not rebuild_allowed:
                        gr.Markdown(f"添加或删除文档需要登录 · Adding and removing documents needs a login {LOGIN_HINT}.")
                timer = gr.Timer(10)

        triggers = [(question.submit, question), (ask_button.click, question)] + [(s.click, s) for s in samples]
        for trigger, source in triggers:  # a sample button's value is its question
            (
                trigger(show_question, [source, turns], [question, chatbot, pending], concurrency_limit=None, **private)
                .then(None, js=scroll_script)
                .then(answer, [pending, turns], [chatbot, turns], concurrency_id="answer", **private)
                .then(None, js=scroll_script)
                .then(cited_pages, turns, [page_choice, page_note, page_image], concurrency_limit=None, **private)
            )
        page_choice.input(show_page, [page_choice, turns], [page_note, page_image], concurrency_limit=2, **private)
        upload.upload(add_documents, [upload, replace], [status, documents, upload], concurrency_limit=1, **private)
        remove_button.click(remove_documents, documents, [status, documents], concurrency_limit=1, **private)
        page.load(document_choices, None, documents, **private)
        new_chat.click(lambda: ([], [], ""), None, [chatbot, turns, question], **private)
        chatbot.clear(lambda: [], None, turns, **private)  # the chat box's own bin icon
        chatbot.like(rate, [turns], None, **private)
        rebuild_button.click(rebuild, None, status, concurrency_limit=1, **private)
        page.load(show_status, None, status, **private)
        timer.tick(show_status, None, status, concurrency_limit=None, **private)

        def ask_api(question: str, k: int = 0, request: gr.Request = None) -> dict:
            """Answer a question with cited passages; returns the JSON object of `qa ask --json`. k=0: the default (5)."""
            try:
                return chat.assistant.ask(question, k or None).to_json()
            except QAError as error:  # the caller's to fix: one line in the log, no traceback
                log.warning("/ask refused from %s: %s", _client(request), error)
                raise gr.Error(public_message(str(error)), print_exception=False) from None
            except Exception:  # a bug: the details go to the server's log, never to the caller
                log.error("/ask failed:\n%s", traceback.format_exc())
                raise gr.Error(INTERNAL_ERROR, print_exception=False) from None

        gr.api(ask_api, api_name="ask", concurrency_id="answer")
    return page


def _note(text: str, kind: str = "qa-page-note") -> str:
    """A line of the page view as safe HTML (it may name a source)."""
    return f'<div class="{kind}">{html.escape(text)}</div>'


def _client(request: gr.Request | None) -> str:
    """The address a page event or API call came from, for the log."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def waiting_events(page: gr.Blocks) -> list[tuple[str, str]]:
    """(session, client address) of every event queued or running on `page`, from Gradio's queue.

    Its `event_ids_to_events` holds an event from the moment it joins until it has been processed;
    tests/test_limits.py fails if a Gradio release changes that.
    """
    events = list(page._queue.event_ids_to_events.values())
    return [(event.session_hash, _client(event.request)) for event in events]


def check_address(host: str, port: int) -> None:
    """Raise ServeError unless the page can listen on `host`:`port`.

    Checked before the model loads, so that a busy port is said at once rather than after a minute.
    """
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ServeError(f"cannot listen on {host!r}: {getattr(error, 'strerror', None) or error}; {_HOST_HINT}") from None
    error = _bind_error(address)
    if error is not None:
        raise _address_error(host, port, error)


_HOST_HINT = ("give an address of this computer with --host, QA_HOST or GRADIO_SERVER_NAME "
              "(127.0.0.1: this computer only; 0.0.0.0: the network)")


def _bind_error(address: tuple) -> OSError | None:
    """Why a server could not listen on `address` (an entry of getaddrinfo), or None if it could."""
    family, kind, protocol, _, socket_address = address
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind(socket_address)
        except OSError as error:
            return error
    return None


def _address_error(host: str, port: int, error: OSError) -> ServeError:
    if error.errno == errno.EADDRINUSE or "Cannot find empty port" in str(error):
        return ServeError(
            f"port {port} is busy on {host}: another program (perhaps another `qa serve`) listens there; "
            f"choose another port with --port {_free_port_after(host, port)}, or set QA_PORT or GRADIO_SERVER_PORT"
        )
    return ServeError(f"cannot listen on {host} port {port}: {error.strerror or error}; {_HOST_HINT}")


def _free_port_after(host: str, port: int) -> int:
    """The first port after `port` that is free on `host`, to suggest one (`port` + 1 if none of the next 100 is)."""
    for candidate in range(port + 1, min(port + 100, 65536)):
        address = socket.getaddrinfo(host, candidate, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        if _bind_error(address) is None:
            return candidate
    return port + 1


def page_url(host: str, port: int) -> str:
    """Where a browser on this computer finds the page."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    config: Config,
    settings: PageSettings,
    say: Say | None = None,
    progress: Progress | None = None,
    show_report: Callable | None = None,
) -> None:
    """Set up (the model converted, the index built if it cannot be used), then serve the page until interrupted.

    `say` hears what happens, one line each, `progress` follows a build and `show_report` gets its
    BuildReport. Raises QAError before serving: ServeError when the address cannot be used.
    """
    say = say or (lambda message: None)
    check_address(settings.host, settings.port)
    assistant = Assistant(config)
    report = prepare_index(assistant, say, progress)
    if report is not None and show_report is not None:
        show_report(report)
    install_model(config, say)  # said, if it happens: loading would otherwise convert the model silently
    assistant.warm_up()  # the first question as quick as the next (torch is loaded only by a rebuild that needs it)
    chat = Chat(assistant, auto_rebuild=settings.auto_rebuild)
    if settings.auto_rebuild:
        chat.watch()
    rebuild_allowed = (is_loopback(settings.host) and not settings.share) or settings.auth is not None
    page = build_page(chat, rebuild_allowed, settings)
    gate = Middleware(
        Gate,
        names=host_names(settings.host, settings.public_names, settings.share),
        any_address=not is_loopback(settings.host),
        waiting=lambda: waiting_events(page),
        max_body_bytes=body_limit(config.max_question_chars),
        max_waiting_per_session=settings.max_waiting_per_session,
        max_waiting_per_address=settings.max_waiting_per_address,
        logins=LoginThrottle(settings.login_failures, settings.login_lockout) if settings.auth else None,
        max_upload_bytes=upload_limit(config.max_file_bytes) if rebuild_allowed else 0,
    )
    everywhere = " (listening on all of this computer's addresses)" if settings.host in ("0.0.0.0", "::") else ""
    say(f"The chat page is at {page_url(settings.host, settings.port)}{everywhere}; Ctrl-C stops it.")
    try:
        page.queue(default_concurrency_limit=1, max_size=MAX_QUEUED).launch(
            server_name=settings.host,
            server_port=settings.port,
            auth=list(settings.auth) if settings.auth else None,
            share=settings.share,
            quiet=not settings.share,  # its own lines: the address (said above) and how to share
            theme=gr.themes.Default(
                font=["system-ui", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei", "sans-serif"],
                font_mono=["ui-monospace", "Menlo", "Consolas", "monospace"],
            ),
            css=static_text("page.css"),
            ssr_mode=False,
            show_error=False,
            # Files only where documents may be added (the Gate refuses the rest); then no larger than the build reads.
            max_file_size=config.max_file_bytes if rebuild_allowed else 0,
            app_kwargs={"middleware": [gate]},  # every request passes the gate (qa/page/access.py) first
        )
    except OSError as error:  # the port was taken between the check and now
        raise _address_error(settings.host, settings.port, error) from None
