"""The chat page's layout: its components, and which event (qa/page/events.py) each one triggers.

The chat box, the question box and sample questions, the cited-page view, the index panel with its
rebuild button, and the documents panel. The buttons that change something are shown only where a
visitor without a login may use them. The styles and the scrolling script are package data
(qa/page/static/page.css, qa/page/static/scroll.js). The page sends no analytics.
"""

from importlib import resources

import gradio as gr

from qa.config import PageSettings
from qa.documents.corpus import SUPPORTED_SUFFIXES
from qa.page.chat import Chat
from qa.page.events import BOX_CHARS, LOGIN_HINT, PageEvents

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


def static_text(name: str) -> str:
    """A file of qa/page/static/, shipped with the package (declared as package data in pyproject.toml)."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def build_page(chat: Chat, rebuild_allowed: bool, settings: PageSettings | None = None) -> gr.Blocks:
    """Lay out the page and wire its events to `chat`; `settings` gives the conversation's length (max_turns).

    `rebuild_allowed`: whether visitors without a login may rebuild, vote and change the documents.
    """
    settings = settings or PageSettings()
    events = PageEvents(chat, rebuild_allowed, settings.max_turns)
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

        # Gradio numbers the events, and their API names, in the order they are registered here. An event
        # with no concurrency_id is grouped with the others of the same function object (the lowest limit
        # of the group holds), so each handler is taken from `events` once and the same object wired
        # everywhere it is used: the page load's limit of 1 holds for the timer's status updates too.
        show_question, answer, cited_pages, show_status = events.show_question, events.answer, events.cited_pages, events.show_status
        triggers = [(question.submit, question), (ask_button.click, question)] + [(s.click, s) for s in samples]
        for trigger, source in triggers:  # a sample button's value is its question
            (
                trigger(show_question, [source, turns], [question, chatbot, pending], concurrency_limit=None, **private)
                .then(None, js=scroll_script)
                .then(answer, [pending, turns], [chatbot, turns], concurrency_id="answer", **private)
                .then(None, js=scroll_script)
                .then(cited_pages, turns, [page_choice, page_note, page_image], concurrency_limit=None, **private)
            )
        page_choice.input(events.show_page, [page_choice, turns], [page_note, page_image], concurrency_limit=2, **private)
        upload.upload(events.add_documents, [upload, replace], [status, documents, upload], concurrency_limit=1, **private)
        remove_button.click(events.remove_documents, documents, [status, documents], concurrency_limit=1, **private)
        page.load(events.document_choices, None, documents, **private)
        new_chat.click(lambda: ([], [], ""), None, [chatbot, turns, question], **private)
        chatbot.clear(lambda: [], None, turns, **private)  # the chat box's own bin icon
        chatbot.like(events.rate, [turns], None, **private)
        rebuild_button.click(events.rebuild, None, status, concurrency_limit=1, **private)
        page.load(show_status, None, status, **private)
        timer.tick(show_status, None, status, concurrency_limit=None, **private)
        gr.api(events.ask_api, api_name="ask", concurrency_id="answer")
    return page
