"""The chat page's events: what asking, choosing what to search, voting, rebuilding, adding and removing
documents and showing a cited page do, as the methods of `PageEvents`.

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
from dataclasses import replace
from pathlib import Path

import gradio as gr

from qa.assistant import check_length
from qa.documents.ocr import OCR_CACHE_FILE
from qa.documents.uploads import add_document, remove_document
from qa.errors import ComposeError, PageViewError, QAError, QuestionError, UploadError, public_message
from qa.page.chat import Chat, CorpusView
from qa.page.conversation import Turn
from qa.page.pdf_view import SHOWN_SUFFIXES, show_cited_page
from qa.page.render import INTERNAL_ERROR, chat_messages, render_status
from qa.page.scope import collection_choices, render_collections, render_filter, scope

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
SAMPLES = 5  # sample questions the page shows at most

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
        self.laid_out: CorpusView | None = None  # what the page was laid out with (build_page sets it)
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

    def answer(self, pending: str | None, turns: list[Turn], collections: list[str] | None = None, documents: list[str] | None = None):
        """Answer the pending question within the chosen collections and documents (none: the whole corpus):
        (the chat's messages, the turns kept)."""
        if pending is None:
            return gr.skip(), gr.skip()
        reply = self.chat.reply(pending, turns, scope(collections, documents))
        turns = (turns + [reply])[-self.max_turns :]  # what the state keeps and the page resends
        return chat_messages(turns), turns

    def compose(self, turns: list[Turn]):
        """The written answer to the latest turn, as it comes: (the chat's messages, the turns kept); nothing
        changes when the page has no composer or the answer is not worth composing."""
        updated = False
        for composed in self.chat.compose(turns[-1]) if turns else ():
            turns, updated = turns[:-1] + [composed], True
            yield chat_messages(turns), turns
        if not updated:
            yield gr.skip(), gr.skip()

    def show_scope(self, collections: list[str] | None, documents: list[str] | None):
        """The line under the question box that says what the next questions search, and its clear button:
        both hidden while nothing is chosen."""
        within = scope(collections, documents)
        return gr.HTML(render_filter(within), visible=bool(within)), gr.Button(visible=bool(within))

    def clear_scope(self):
        """No collection and no document chosen: the next questions search the whole corpus."""
        return [], []

    def corpus_view(self) -> CorpusView:
        """The served corpus's collections, documents and sample questions, as the page shows them."""
        return self.chat.corpus_view(SAMPLES)

    def load_corpus(self):
        """On opening the page: the document list (never laid out with the page: qa/page/layout.py), and the
        collections, the documents panel and the samples where they differ from what the page was laid
        out with (a rebuild since)."""
        view = self.corpus_view()
        updates = corpus_updates(view)
        if view == self.laid_out:
            return tuple(update if kind is gr.Dropdown else gr.skip() for kind, update in zip(CORPUS_COMPONENTS, updates))
        return updates

    def refresh_corpus(self, collections: list[str] | None, documents: list[str] | None):
        """After a rebuild: the filter's choices, the documents panel and the samples afresh, what was chosen
        kept where the index still holds it."""
        return corpus_updates(self.corpus_view(), collections, documents)

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

    def add_documents(self, files: list[str] | None, replace: bool, request: gr.Request):
        """Add the uploaded files to the corpus and rebuild: yields (index panel, upload box)."""
        if self._refused_without_login("upload", request):
            yield render_status(self.chat.status(), rebuild_allowed=False), None
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
            yield render_status(self.chat.status(), rebuild_allowed=True), None
            return
        log.info("added to the corpus from %s: %s", request_address(request), ", ".join(added))
        gr.Info(f"已添加 · Added: {'、'.join(added)}; 正在重建索引 · rebuilding the index")
        for panel in self.rebuild_for_change():
            yield panel, None

    def remove_documents(self, sources: list[str] | str | None, request: gr.Request):
        """Move the documents chosen in the filter out of the corpus (into corpus/.removed/) and rebuild:
        yields the index panel."""
        if self._refused_without_login("removal", request):
            yield render_status(self.chat.status(), rebuild_allowed=False)
            return
        sources = [sources] if isinstance(sources, str) else list(sources or [])
        if not sources:
            gr.Warning("请先在“限定范围”的文档列表中选择要删除的文档 · Choose the documents to remove in the filter's document list first")
            yield gr.skip()
            return
        removed = []
        for source in sources:
            try:
                kept = remove_document(self.corpus_dir, source)
            except UploadError as error:
                gr.Warning(public_message(str(error)))
                continue
            log.info("removed from the corpus by %s: %s (kept as %s)", request_address(request), source, kept)
            removed.append(source)
        if not removed:
            yield gr.skip()
            return
        gr.Info(f"已删除 · Removed: {'、'.join(removed)}（保存在 corpus/.removed/ · kept in corpus/.removed/）; 正在重建索引 · rebuilding the index")
        yield from self.rebuild_for_change()

    def rebuild_for_change(self):
        """Rebuild after documents were added or removed, yielding the index panel until it is over."""
        chat = self.chat
        while chat.rebuilds.state().running:  # it may have read the corpus before the change: wait, then rebuild
            yield render_status(chat.status(), rebuild_allowed=True)
            time.sleep(REBUILD_POLL)
        chat.rebuilds.start()
        yield render_status(chat.status(max_age=0), rebuild_allowed=True)
        while chat.rebuilds.state().running:
            yield render_status(chat.status(), rebuild_allowed=True)
            time.sleep(REBUILD_POLL)
        yield render_status(chat.status(max_age=0), rebuild_allowed=True)

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
        return self._answer_api(question, k, request, compose=False)

    def compose_api(self, question: str, k: int = 0, request: gr.Request = None) -> dict:
        """The same with the written answer (`composed`, as `qa ask --compose --json`), on a page started with a
        language model (QA_LLM_URL); a page without one says so."""
        return self._answer_api(question, k, request, compose=True)

    def _answer_api(self, question: str, k: int, request: gr.Request | None, compose: bool) -> dict:
        name = "/compose" if compose else "/ask"
        try:
            if compose and self.chat.composer is None:
                raise ComposeError("this page has no language model to write answers: start it with QA_LLM_URL set")
            answer = self.chat.assistant.ask(question, k or None)
            if compose:
                answer = replace(answer, composed=self.chat.composer.compose(answer))
            return answer.to_json()
        except QAError as error:  # the caller's to fix: one line in the log, no traceback
            log.warning("%s refused from %s: %s", name, request_address(request), error)
            raise gr.Error(public_message(str(error)), print_exception=False) from None
        except Exception:  # a bug: the details go to the server's log, never to the caller
            log.error("%s failed:\n%s", name, traceback.format_exc())
            raise gr.Error(INTERNAL_ERROR, print_exception=False) from None

    def _refused_without_login(self, action: str, request: gr.Request) -> bool:
        """Whether `action` (a key of NEEDS_LOGIN) is refused to this visitor; if so, logged and said to them."""
        if may_rebuild(self.rebuild_allowed, request.username):
            return False
        log.warning("%s refused from %s: needs a login", action, request_address(request))
        gr.Warning(f"{NEEDS_LOGIN[action]} {LOGIN_HINT}")
        return True


def corpus_settings(view: CorpusView, collections: list[str] | None = None, documents: list[str] | None = None) -> list[dict]:
    """The settings of the components that show the corpus, for `view`: the filter, its collections, its
    documents, the documents panel's summary, then each sample button; what was chosen is kept where
    `view` still holds it. The layout takes them as arguments, `corpus_updates` as updates."""
    names = {name for name, _ in view.collections}
    held = set(view.documents)
    samples = list(view.samples[:SAMPLES]) + [None] * (SAMPLES - len(view.samples[:SAMPLES]))
    return [
        {"visible": len(view.documents) > 1},
        {"choices": collection_choices(view.collections), "value": [c for c in collections or [] if c in names],
         "visible": bool(view.collections)},
        {"choices": list(view.documents), "value": [d for d in documents or [] if d in held], "multiselect": True},
        {"value": render_collections(view.collections, view.documents)},
        *({"value": text, "visible": True} if text else {"visible": False} for text in samples),
    ]


CORPUS_COMPONENTS = (gr.Accordion, gr.CheckboxGroup, gr.Dropdown, gr.HTML) + (gr.Button,) * SAMPLES


def corpus_updates(view: CorpusView, collections: list[str] | None = None, documents: list[str] | None = None) -> tuple:
    """`corpus_settings` as the updates an event returns."""
    return tuple(kind(**settings) for kind, settings in zip(CORPUS_COMPONENTS, corpus_settings(view, collections, documents)))


def _note(text: str, kind: str = "qa-page-note") -> str:
    """A line of the page view as safe HTML (it may name a source)."""
    return f'<div class="{kind}">{html.escape(text)}</div>'
