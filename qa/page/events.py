"""The chat page's events: what asking, voting, rebuilding, adding and removing documents and showing a
cited page do, as the methods of `PageEvents`.

Each method takes what Gradio hands the event (the components' values, a `gr.Request`) and returns or
yields the components' new values, so it can be called without a browser. qa/page/layout.py wires them
to the page's components under their method names (the names of the page's events); the work is done
by the page's service (qa/page/chat.py), qa/documents/uploads.py and qa/page/pdf_view.py.

Voting, rebuilding and adding or removing documents need a login on a page that is not for this
computer only (`may_rebuild`); the page hides those buttons too, but this check is what counts.
"""

import html
import logging
import time
import traceback
from pathlib import Path

import gradio as gr

from qa.assistant import check_length
from qa.documents.ocr import OCR_CACHE_FILE
from qa.documents.uploads import add_document, corpus_documents, remove_document
from qa.errors import PageViewError, QAError, QuestionError, UploadError, public_message
from qa.page.chat import Chat
from qa.page.conversation import Turn
from qa.page.pdf_view import SHOWN_SUFFIXES, show_cited_page
from qa.page.render import INTERNAL_ERROR, chat_messages, render_status

BOX_CHARS = 1000  # the question box takes this many characters; the server cuts a longer question to it
LOGIN_HINT = "(start the page with --auth-file or QA_AUTH)"
# What a visitor without a login is told, by the name of what was refused (which is also the log's word).
NEEDS_LOGIN = {
    "feedback": "反馈需要登录 · Feedback needs a login",
    "rebuild": "重建索引需要登录 · Rebuilding needs a login",
    "upload": "添加文档需要登录 · Adding documents needs a login",
    "removal": "删除文档需要登录 · Removing documents needs a login",
}
REBUILD_POLL = 0.5  # seconds between two looks at a running rebuild, for the index panel

log = logging.getLogger(__name__)


def may_rebuild(rebuild_allowed: bool, username: str | None) -> bool:
    """Whether this visitor may rebuild, vote, or add and remove documents: anyone on a loopback-only
    page, else only a logged-in user."""
    return rebuild_allowed or bool(username)


def request_address(request: gr.Request | None) -> str:
    """The address a page event or API call came from, for the log; "unknown" without one."""
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


class PageEvents:
    """The page's events, for `chat` (the page's service). `rebuild_allowed`: whether visitors without a
    login may rebuild, vote and change the documents; `max_turns`: the turns a conversation keeps."""

    def __init__(self, chat: Chat, rebuild_allowed: bool, max_turns: int):
        self.chat = chat
        self.rebuild_allowed = rebuild_allowed
        self.max_turns = max_turns
        config = chat.assistant.config
        self.max_chars = config.max_question_chars
        self.corpus_dir = config.corpus_dir
        self.ocr_cache = config.index_dir / OCR_CACHE_FILE  # where a scanned page's lines were read (qa/documents/ocr.py)
        self.max_file_bytes = config.max_file_bytes

    def show_question(self, question: str, turns: list[Turn], request: gr.Request):
        """Echo a question as it will be answered: (the cleared box, the chat's messages, the pending question)."""
        # The browser keeps to the box's limit; a client that does not is refused or cut here.
        question = question or ""
        try:
            check_length(question, self.max_chars)
        except QuestionError as error:
            log.warning("question refused from %s: %s", request_address(request), error)
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

    def answer(self, pending: str | None, turns: list[Turn]):
        """Answer the pending question: (the chat's messages, the turns kept)."""
        if pending is None:
            return gr.skip(), gr.skip()
        turns = (turns + [self.chat.reply(pending, turns)])[-self.max_turns :]  # what the state keeps and the page resends
        return chat_messages(turns), turns

    def rate(self, turns: list[Turn], vote: gr.LikeData, request: gr.Request) -> None:
        """Record a thumb on an answer (a second click on the same thumb takes the vote back)."""
        if self._refused_without_login("feedback", request):
            return
        number = vote.index if isinstance(vote.index, int) else vote.index[0]
        if not 0 <= number // 2 < len(turns) or vote.liked not in (True, False, ""):
            return
        try:
            # Clicking a selected thumb again takes the vote back: Gradio then sends liked="".
            self.chat.feedback(turns[number // 2], liked=None if vote.liked == "" else vote.liked)
        except QAError as error:
            gr.Warning(public_message(str(error)))
            return
        gr.Info("已记录反馈，谢谢 · Feedback recorded, thank you")

    def rebuild(self, request: gr.Request):
        """Start a rebuild (unless one is running) and yield the index panel until it is over."""
        if self._refused_without_login("rebuild", request):
            yield render_status(self.chat.status(), rebuild_allowed=False)
            return
        if not self.chat.rebuilds.start():
            gr.Info("已在重建 · A rebuild is already running")
        while self.chat.rebuilds.state().running:
            yield render_status(self.chat.status(), rebuild_allowed=True)
            time.sleep(REBUILD_POLL)
        yield render_status(self.chat.status(), rebuild_allowed=True)

    def show_status(self, request: gr.Request) -> str:
        """The index panel, its advice suited to what this visitor may do."""
        return render_status(self.chat.status(), rebuild_allowed=may_rebuild(self.rebuild_allowed, request.username))

    def document_choices(self, request: gr.Request) -> gr.Dropdown:
        """The corpus's documents for the remove list; none for a visitor who may not remove them."""
        allowed = may_rebuild(self.rebuild_allowed, request.username)
        return gr.Dropdown(choices=corpus_documents(self.corpus_dir) if allowed else [], value=None)

    def add_documents(self, files: list[str] | None, replace: bool, request: gr.Request):
        """Add the uploaded files to the corpus and rebuild: yields (index panel, document list, upload box)."""
        if self._refused_without_login("upload", request):
            yield render_status(self.chat.status(), rebuild_allowed=False), gr.skip(), None
            return
        added = []
        for upload in files or []:
            upload = Path(upload)  # in Gradio's upload folder, under the name the browser gave
            try:
                added.append(add_document(self.corpus_dir, upload.name, upload, self.max_file_bytes, replace=bool(replace)))
            except UploadError as error:
                log.warning("upload from %s refused: %s", request_address(request), error)
                gr.Warning(f"未添加 · Not added: {public_message(str(error))}")
        if not added:
            yield render_status(self.chat.status(), rebuild_allowed=True), gr.skip(), None
            return
        log.info("added to the corpus from %s: %s", request_address(request), ", ".join(added))
        gr.Info(f"已添加 · Added: {'、'.join(added)}; 正在重建索引 · rebuilding the index")
        for panel, listed in self.rebuild_for_change(request):
            yield panel, listed, None

    def remove_documents(self, source: str | None, request: gr.Request):
        """Move a document out of the corpus (into corpus/.removed/) and rebuild: yields (index panel, document list)."""
        if self._refused_without_login("removal", request):
            yield render_status(self.chat.status(), rebuild_allowed=False), gr.skip()
            return
        if not source:
            gr.Warning("请先选择要删除的文档 · Choose the document to remove first")
            yield gr.skip(), gr.skip()
            return
        try:
            kept = remove_document(self.corpus_dir, source)
        except UploadError as error:
            gr.Warning(public_message(str(error)))
            yield gr.skip(), self.document_choices(request)
            return
        log.info("removed from the corpus by %s: %s (kept as %s)", request_address(request), source, kept)
        gr.Info(f"已删除 · Removed: {source}（保存在 corpus/.removed/ · kept in corpus/.removed/）; 正在重建索引 · rebuilding the index")
        yield from self.rebuild_for_change(request)

    def rebuild_for_change(self, request: gr.Request):
        """Rebuild after documents were added or removed, yielding the index panel and the document list."""
        chat = self.chat
        while chat.rebuilds.state().running:  # it may have read the corpus before the change: wait, then rebuild
            yield render_status(chat.status(), rebuild_allowed=True), gr.skip()
            time.sleep(REBUILD_POLL)
        chat.rebuilds.start()
        yield render_status(chat.status(max_age=0), rebuild_allowed=True), self.document_choices(request)
        while chat.rebuilds.state().running:
            yield render_status(chat.status(), rebuild_allowed=True), gr.skip()
            time.sleep(REBUILD_POLL)
        yield render_status(chat.status(max_age=0), rebuild_allowed=True), gr.skip()

    def cited_pages(self, turns: list[Turn]):
        """The pages of PDFs and images the latest answer cites, for the page view's list (the view cleared)."""
        answer = turns[-1].answer if turns else None
        passages = answer.passages if answer is not None else []
        choices = [(f"[{p.rank}] {p.source} · 第 {p.page} 页 · page {p.page}", str(p.rank))
                   for p in passages if p.page is not None and p.source.lower().endswith(SHOWN_SUFFIXES)]
        return gr.Dropdown(choices=choices, value=None), "", None

    def show_page(self, rank: str | None, turns: list[Turn], request: gr.Request):
        """The page that passage `rank` of the latest answer cites: (a note as HTML, the image or None)."""
        answer = turns[-1].answer if turns else None
        passage = next((p for p in answer.passages if str(p.rank) == rank), None) if answer is not None else None
        if passage is None or passage.page is None:
            return "", None
        try:
            view = show_cited_page(self.corpus_dir, passage.source, passage.page, passage.text, self.ocr_cache)
        except PageViewError as error:
            log.warning("page view refused for %s: %s", request_address(request), error)
            return _note(f"无法显示此页 · The page cannot be shown: {public_message(str(error))}", "qa-error"), None
        return _note(view.note), view.image

    def ask_api(self, question: str, k: int = 0, request: gr.Request = None) -> dict:
        """Answer a question with cited passages; returns the JSON object of `qa ask --json`. k=0: the default (5)."""
        try:
            return self.chat.assistant.ask(question, k or None).to_json()
        except QAError as error:  # the caller's to fix: one line in the log, no traceback
            log.warning("/ask refused from %s: %s", request_address(request), error)
            raise gr.Error(public_message(str(error)), print_exception=False) from None
        except Exception:  # a bug: the details go to the server's log, never to the caller
            log.error("/ask failed:\n%s", traceback.format_exc())
            raise gr.Error(INTERNAL_ERROR, print_exception=False) from None

    def _refused_without_login(self, action: str, request: gr.Request) -> bool:
        """Whether `action` (a key of NEEDS_LOGIN) is refused to this visitor; if so, logged and said to them."""
        if may_rebuild(self.rebuild_allowed, request.username):
            return False
        log.warning("%s refused from %s: needs a login", action, request_address(request))
        gr.Warning(f"{NEEDS_LOGIN[action]} {LOGIN_HINT}")
        return True


def _note(text: str, kind: str = "qa-page-note") -> str:
    """A line of the page view as safe HTML (it may name a source)."""
    return f'<div class="{kind}">{html.escape(text)}</div>'
