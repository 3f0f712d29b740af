"""The chat page's layout: its components, and which event (qa/page/events.py) each one triggers.

The chat box, the question box with the filter under it (collections, and a document list to type
into; what is chosen is said under the box and cleared with one click), the sample questions (the
corpus's own: qa/documents/samples.py), the cited-page view, the index panel with its rebuild button,
and the documents panel (the collections with their counts; adding documents, and removing those
chosen in the filter). The buttons that change something are shown only where a visitor without a
login may use them. The styles and the scrolling script are package data
(qa/page/static/page.css, qa/page/static/scroll.js). The page sends no analytics.
"""

from importlib import resources

import gradio as gr

from qa.config import PageSettings
from qa.documents.corpus import SUPPORTED_SUFFIXES
from qa.page.chat import Chat
from qa.page.events import BOX_CHARS, LOGIN_HINT, PageEvents, corpus_settings

COMPOSING = 4  # written answers streamed at once, across all visitors: a language model server serves a few in parallel
PLACEHOLDER = (
    '<div class="qa-placeholder"><p><b>用中文或英文提问，回答只引用文档原文，并注明出处。</b><br>'
    "Ask in Chinese or English: every answer quotes the documents and says where each passage comes from.</p>"
    '<p><mark class="qa-hl qa-best">黄色</mark>标出与问题最匹配的句子 · yellow marks the best-matching sentences<br>'
    "相关度条 · the relevance bar says how closely each passage matches<br>"
    "可以追问 · follow-ups work, e.g. 具体是怎么做的？</p></div>"
)


def static_text(name: str) -> str:
    """A file of qa/page/static/, shipped with the package (declared as package data in pyproject.toml)."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def build_page(chat: Chat, rebuild_allowed: bool, settings: PageSettings | None = None) -> gr.Blocks:
    """Lay out the page and wire its events to `chat`; `settings` gives the conversation's length (max_turns).

    `rebuild_allowed`: whether visitors without a login may rebuild, vote and change the documents.
    """
    settings = settings or PageSettings()
    events = PageEvents(chat, rebuild_allowed, settings.max_turns)
    # The corpus as the page is laid out with it; each visitor's page load sends only what a rebuild changed since.
    events.laid_out = view = events.corpus_view()
    shown = corpus_settings(view)
    scroll_script = static_text("scroll.js")
    private = dict(api_visibility="private")
    with gr.Blocks(title="政策文件问答 · Policy Q&A", analytics_enabled=False) as page:
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
                with gr.Row(equal_height=False, elem_id="qa-filter-row"):
                    scope_line = gr.HTML(visible=False, elem_id="qa-filter-line", scale=5)
                    clear_scope = gr.Button("清除范围 · Clear", size="sm", visible=False, elem_id="qa-filter-clear",
                                            scale=1, min_width=90)
                with gr.Accordion("限定范围 · Search only in…", open=False, elem_id="qa-filter", **shown[0]) as filter_box:
                    collections = gr.CheckboxGroup(label="合集 · Collections", elem_id="qa-collections", **shown[1])
                    # Typing filters the list: with 1,500 documents, the way to find one. The list comes with the
                    # page load (events.load_corpus), not in the page's config, which would hold it four times
                    # (the choices, and three descriptions of the API's values): 600 KB for 1,512 documents.
                    documents = gr.Dropdown(label="文档 · Documents", filterable=True, info="输入名称筛选 · type to filter",
                                            elem_id="qa-documents", **{**shown[2], "choices": []})
                new_chat = gr.Button("新对话 · New conversation", size="sm", elem_id="qa-new")
                with gr.Accordion("原文页面 · The cited page", open=False, elem_id="qa-page-view"):
                    page_choice = gr.Dropdown(label="最近回答引用的 PDF 或图片页面 · Pages of PDFs and images the latest answer cites",
                                              choices=[], value=None, elem_id="qa-cited-pages")
                    page_note = gr.HTML(elem_id="qa-page-note")
                    page_image = gr.Image(type="pil", format="png", interactive=False, show_label=False,
                                          buttons=["fullscreen"], elem_id="qa-page-image")
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("**示例问题 · Sample questions**")
                samples = [gr.Button(size="sm", elem_classes="qa-sample", **sample) for sample in shown[4:]]
                with gr.Accordion("索引 · Index", open=True):
                    status = gr.HTML(elem_id="qa-index-status")
                    rebuild_button = gr.Button("重建索引 · Rebuild index", elem_id="qa-rebuild", visible=rebuild_allowed)
                    if not rebuild_allowed:
                        gr.Markdown(f"重建索引需要登录 · Rebuilding from the page needs a login {LOGIN_HINT}.")
                with gr.Accordion("文档 · Documents", open=False, elem_id="qa-documents-panel"):
                    panel = gr.HTML(elem_id="qa-collections-panel", **shown[3])
                    upload = gr.File(label="添加文档 · Add documents", file_count="multiple", file_types=list(SUPPORTED_SUFFIXES),
                                     height=110, visible=rebuild_allowed, elem_id="qa-upload")
                    replace = gr.Checkbox(label="替换同名文件 · Replace files of the same name", value=False,
                                          visible=rebuild_allowed, elem_id="qa-replace")
                    # The documents to remove are chosen in the filter's list: one list of documents on the page.
                    remove_button = gr.Button("删除“限定范围”中选择的文档 · Remove the documents chosen under “Search only in”",
                                              size="sm", variant="stop", visible=rebuild_allowed, elem_id="qa-remove")
                    if not rebuild_allowed:
                        gr.Markdown(f"添加或删除文档需要登录 · Adding and removing documents needs a login {LOGIN_HINT}.")
                timer = gr.Timer(10)

        # Gradio numbers the events, and their API names, in the order they are registered here. An event
        # with no concurrency_id is grouped with the others of the same function object (the lowest limit
        # of the group holds), so each handler is taken from `events` once and the same object wired
        # everywhere it is used: the page load's limit of 1 holds for the timer's status updates too.
        show_question, answer, cited_pages, show_status = events.show_question, events.answer, events.cited_pages, events.show_status
        compose = events.compose
        triggers = [(question.submit, question), (ask_button.click, question)] + [(s.click, s) for s in samples]
        for trigger, source in triggers:  # a sample button's value is its question
            (
                trigger(show_question, [source, turns], [question, chatbot, pending], concurrency_limit=None, **private)
                .then(None, js=scroll_script)
                .then(answer, [pending, turns, collections, documents], [chatbot, turns], concurrency_id="answer", **private)
                .then(None, js=scroll_script)
                .then(cited_pages, turns, [page_choice, page_note, page_image], concurrency_limit=None, **private)
                # A written answer, when the page has a language model: its own queue, so a slow model never holds
                # up the next question's retrieval.
                .then(compose, turns, [chatbot, turns], concurrency_id="compose", concurrency_limit=COMPOSING,
                      api_name="compose_in_page", **private)  # its name left free for the /compose endpoint
            )
        page_choice.input(events.show_page, [page_choice, turns], [page_note, page_image], concurrency_limit=2, **private)
        show_scope, refresh_corpus = events.show_scope, events.refresh_corpus
        for chosen in (collections, documents):
            chosen.change(show_scope, [collections, documents], [scope_line, clear_scope], concurrency_limit=None,
                          show_progress="hidden", **private)
        clear_scope.click(events.clear_scope, None, [collections, documents], concurrency_limit=None, **private)
        corpus = [filter_box, collections, documents, panel, *samples]
        upload.upload(events.add_documents, [upload, replace], [status, upload], concurrency_limit=1, **private).then(
            refresh_corpus, [collections, documents], corpus, concurrency_limit=None, **private)
        remove_button.click(events.remove_documents, documents, status, concurrency_limit=1, **private).then(
            refresh_corpus, [collections, documents], corpus, concurrency_limit=None, **private)
        page.load(events.load_corpus, None, corpus, **private)
        new_chat.click(lambda: ([], [], ""), None, [chatbot, turns, question], **private)
        chatbot.clear(lambda: [], None, turns, **private)  # the chat box's own bin icon
        chatbot.like(events.rate, [turns], None, **private)
        rebuild_button.click(events.rebuild, None, status, concurrency_limit=1, **private).then(
            refresh_corpus, [collections, documents], corpus, concurrency_limit=None, **private)
        page.load(show_status, None, status, **private)
        timer.tick(show_status, None, status, concurrency_limit=None, **private)
        gr.api(events.ask_api, api_name="ask", concurrency_id="answer")
        # Written answers through the API: an endpoint of their own, so /ask stays as it was for every client.
        gr.api(events.compose_api, api_name="compose", concurrency_id="compose", concurrency_limit=COMPOSING)
    return page

