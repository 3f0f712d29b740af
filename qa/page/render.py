"""The chat page's HTML: answers with their cited passages, questions, errors, and the index panel.

Every piece of question or corpus text goes through `html.escape` before it is placed in the
page, and the markup around it is built here, so a passage containing `<script>` shows up as those
characters. Rendered answers are single-line HTML: Gradio's chat box runs messages through
Markdown, which passes an HTML block through untouched only up to its first blank line.

Labels follow the language of the question: Chinese when it contains Chinese characters, English
otherwise. The passages cited are the same either way (the model is multilingual).

Longer than most modules on purpose: every piece of the page's markup is built here,
so that one file can be checked for escaping.
"""

import html
import re
import time
from datetime import datetime

from qa.answer import Answer, CitedPassage
from qa.compose.check import unsupported_mark
from qa.compose.composer import Composition
from qa.decision.outcomes import ANSWERED, NOT_FOUND, UNCERTAIN
from qa.errors import public_message
from qa.page.conversation import Turn
from qa.page.highlight import Highlights
from qa.page.index_status import IndexStatus, RebuildState
from qa.passages import Passage
from qa.text import language, split_case

# Where a written answer goes in an answer's HTML (qa/page/chat.py Chat.compose puts it there as it comes).
COMPOSED_SLOT = '<div class="qa-composed-slot"></div>'
# What a visitor sees when answering fails unexpectedly (a bug): the details go to the server's log only.
INTERNAL_ERROR = "服务器内部错误，详情已记入服务器日志 · an internal error occurred; the details are in the server's log"

LABELS = {
    "zh": {
        "searched": "检索的问题",
        "combined": "追问已与上一个问题合并",
        "answer_line": "最相关的原文",
        "passages": "引用段落",
        "case": "案例 {number}",
        "source": "来源文件",
        "page": "第 {page} 页",
        "date": "版本 {date}",
        "offsets": "第 {start}–{end} 字",
        "relevance": "相关度",
        "relevance_means": "相关度：估计这段原文回答了问题的把握（按未参与校准的问题检验）",
        "uncertain": "可能相关，请核对原文",
        "uncertain_detail": "下面的段落可能回答了这个问题，但证据不够强，请对照原文判断。",
        "uncertain_no_figure": "问题问的是一个数字（数量、年份、比例等），下面的段落讲到了这个话题，却没有写出数字：原文可能没有写明。",
        "weak": "弱匹配",
        "asked_before": "曾以此段答复的类似问题",
        "open_case": "在此展开整个案例 {number}",
        "open_section": "在此展开整节",
        "open_context": "在此展开上下文",
        "cited_here": "引用的段落已标出",
        "not_found": "没有找到相关内容",
        "not_found_detail": "文档中没有与这个问题足够相关的段落，因此不作回答。",
        "weak_matches": "最接近的 {count} 个段落：弱匹配，仅供参考，不是答案",
        "note": "说明",
        "error": "无法回答",
        "composed": "撰写的回答",
        "composed_by": "由 {model} 根据下列引用段落撰写，每句已与所引段落核对",
        "composing": "正在撰写…",
        "a_model": "语言模型",
        "composed_checked": "{supported}/{checked} 句在所引段落中找到依据",
        "composed_failed": "未能撰写回答，以下是原文摘录",
    },
    "en": {
        "searched": "Searched for",
        "combined": "your follow-up was combined with the previous question",
        "answer_line": "Most relevant sentence",
        "passages": "Cited passages",
        "case": "Case {number}",
        "source": "Source file",
        "page": "page {page}",
        "date": "version of {date}",
        "offsets": "characters {start}–{end}",
        "relevance": "relevance",
        "relevance_means": "relevance: the estimated chance that the passage answers the question (checked on questions not used to calibrate it)",
        "uncertain": "Possibly relevant: please check the source text (可能相关，请核对原文)",
        "uncertain_detail": "The passages below may answer the question, but the evidence is not strong; check them against the source.",
        "uncertain_no_figure": (
            "The question asks for a figure (an amount, a count, a year, a share); the passages below are on the topic "
            "but state none: the source may not say."
        ),
        "weak": "weak match",
        "asked_before": "This passage answered a similar question before",
        "open_case": "Open the whole case {number} here",
        "open_section": "Open the whole section here",
        "open_context": "Open the surrounding text here",
        "cited_here": "the cited passage is marked",
        "not_found": "Nothing relevant found (没有找到相关内容)",
        "not_found_detail": "No passage in the documents is relevant enough to answer this question, so none is given as an answer.",
        "weak_matches": "The {count} closest passages: weak matches, for reference only, not an answer",
        "note": "Note",
        "error": "Cannot answer",
        "composed": "Written answer",
        "composed_by": "written by {model} from the cited passages below; every sentence checked against the passages it cites",
        "composing": "Writing…",
        "a_model": "the language model",
        "composed_checked": "{supported} of {checked} sentences found in the passages they cite",
        "composed_failed": "No written answer; the passages below quote the sources",
    },
}


def _uncertain_detail(answer: Answer) -> str:
    """The label that says why an answer is uncertain: the figure asked for is missing, or the evidence is weak."""
    return "uncertain_no_figure" if answer.lacks_figure else "uncertain_detail"


class SectionTexts:
    """The text of each section of an index, pieced together from its passages, to open a case in place.

    Passages hold all of a section's sentences; the whitespace between two passages is not stored,
    so a gap between them is shown as a line break.
    """

    def __init__(self, passages: list[Passage], max_chars: int = 2400):
        self.max_chars = max_chars
        self._sections: dict[tuple[str, str], list[Passage]] = {}
        for passage in passages:
            self._sections.setdefault((passage.source, passage.section), []).append(passage)
        for members in self._sections.values():
            members.sort(key=lambda passage: passage.start)

    def pieces(self, cited: CitedPassage) -> list[tuple[str, bool]]:
        """The section of `cited` as (text, is_cited) pieces, the cited span as one piece (it may cover
        several index passages); long sections are cut to a window of about `max_chars` around it,
        with '…' where text is left out."""
        members = self._sections.get((cited.source, cited.section), [])
        inside = [i for i, passage in enumerate(members) if passage.start < cited.end and passage.end > cited.start]
        if not inside:
            return [(cited.text, True)]
        first, last = inside[0], inside[-1]
        size = sum(len(members[i].text) for i in range(first, last + 1))
        while size < self.max_chars and (first > 0 or last < len(members) - 1):
            if first > 0:
                first -= 1
                size += len(members[first].text)
            if last < len(members) - 1 and size < self.max_chars:
                last += 1
                size += len(members[last].text)
        pieces: list[tuple[str, bool]] = [("…\n", False)] if first > 0 else []
        for i in range(first, last + 1):
            is_cited = inside[0] <= i <= inside[-1]
            if i > first and members[i].start > members[i - 1].end:
                _add_piece(pieces, "\n", is_cited and i - 1 >= inside[0])
            _add_piece(pieces, members[i].text, is_cited)
        if last < len(members) - 1:
            pieces.append(("\n…", False))
        return pieces


def _add_piece(pieces: list[tuple[str, bool]], text: str, cited: bool) -> None:
    if pieces and pieces[-1][1] == cited:
        pieces[-1] = (pieces[-1][0] + text, cited)
    else:
        pieces.append((text, cited))


def _text(value: str) -> str:
    """Corpus or question text as HTML text: escaped, line breaks kept, no raw newline (see module doc)."""
    # A lone \r ends a line for Markdown too: left raw, two of them would end the HTML block early.
    return html.escape(value, quote=True).replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def _marked(text: str, spans: list[tuple[int, int]], best: tuple[int, int] | None) -> str:
    parts, position = [], 0
    for start, end in sorted(spans):
        css = "qa-hl qa-best" if (start, end) == best else "qa-hl"
        parts.append(_text(text[position:start]))
        parts.append(f'<mark class="{css}">{_text(text[start:end])}</mark>')
        position = end
    parts.append(_text(text[position:]))
    return "".join(parts)


def chat_messages(turns: list[Turn], pending: str | None = None) -> list[dict]:
    """The chat box's messages for `turns` (two per turn), plus `pending` shown as a question being answered."""
    messages = []
    for turn in turns:
        messages.append({"role": "user", "content": render_question(turn.question)})
        messages.append({"role": "assistant", "content": turn.shown})
    if pending is not None:
        searching = "正在检索…" if language(pending) == "zh" else "Searching…"
        messages.append({"role": "user", "content": render_question(pending)})
        messages.append({"role": "assistant", "content": f'<div class="qa-pending">{searching}</div>'})
    return messages


def render_question(question: str) -> str:
    """A question as it appears in the chat: the typed text, escaped."""
    return f'<div class="qa-question">{_text(question)}</div>'


def render_answer(
    answer: Answer,
    turn: Turn,
    highlights: Highlights | None = None,
    sections: SectionTexts | None = None,
) -> str:
    """An answer as safe single-line HTML, by its outcome: answered (the best sentence of passage [1]
    quoted, then the cited passages), uncertain (the same under a plain warning), or not found (the
    closest passages folded away as weak matches). The answer's `uncertain_from` and `answered_from` are
    the calibrated thresholds it was judged against: the relevance bars turn colour there, and passages
    below the first are marked weak."""
    lang = language(turn.question)
    labels = LABELS[lang]
    highlights = highlights or Highlights()
    uncertain_from = answer.uncertain_from
    scale = (uncertain_from, answer.answered_from)
    css = {ANSWERED: "", UNCERTAIN: " qa-uncertain", NOT_FOUND: " qa-not-found"}[answer.outcome]
    out = [f'<div class="qa-answer{css}" lang="{"zh-CN" if lang == "zh" else "en"}">']
    if turn.combined:
        out.append(
            f'<div class="qa-searched">{labels["searched"]}: <q>{_text(turn.searched)}</q> '
            f'<span class="qa-aside">({labels["combined"]})</span></div>'
        )
    for note in answer.notes:
        out.append(f'<div class="qa-note">{labels["note"]}: {_text(note)}</div>')
    if answer.outcome == NOT_FOUND:
        out.append(
            f'<div class="qa-not-found-line"><strong>{labels["not_found"]}</strong></div>'
            f'<p class="qa-not-found-detail">{labels["not_found_detail"]}</p>'
        )
        if answer.passages:
            out.append(
                f'<details class="qa-weak-matches"><summary>{labels["weak_matches"].format(count=len(answer.passages))}</summary>'
                '<div class="qa-passages">'
            )
            for passage in answer.passages:
                out.append(_render_passage(passage, labels, Highlights(), sections, True, scale))
            out.append("</div></details>")
        out.append("</div>")
        return "".join(out)
    if answer.outcome == UNCERTAIN:
        out.append(
            f'<div class="qa-uncertain-line"><strong>{labels["uncertain"]}</strong></div>'
            f'<p class="qa-uncertain-detail">{labels[_uncertain_detail(answer)]}</p>'
        )
    out.append(COMPOSED_SLOT)
    best = highlights.best
    if best is not None:
        out.append(
            f'<div class="qa-answer-line"><div class="qa-label">{labels["answer_line"]}</div>'
            f'<blockquote>“{_text(best.text)}” <sup class="qa-ref">[{best.rank}]</sup></blockquote></div>'
        )
    out.append(
        f'<div class="qa-label">{labels["passages"]} <span class="qa-aside qa-relevance-means">{labels["relevance_means"]}</span></div>'
        '<div class="qa-passages">'
    )
    for passage in answer.passages:
        out.append(_render_passage(passage, labels, highlights, sections, passage.score < uncertain_from, scale))
    out.append("</div></div>")
    return "".join(out)


def render_composed(composition: Composition, question: str) -> str:
    """A written answer as safe single-line HTML: each sentence with its citations as on the cards, a sentence
    the passages it cites do not support marked with the reason; while it comes, the text so far; when
    there is none, one line that says why (the extractive answer below stands)."""
    lang = language(question)
    labels = LABELS[lang]
    if composition.note:
        return f'<div class="qa-composed qa-composed-failed">{labels["composed_failed"]} ({_text(public_message(composition.note))})</div>'
    model = composition.model or labels["a_model"]  # not known yet: the endpoint names it
    head = f'<div class="qa-label">{labels["composed"]} <span class="qa-aside">{labels["composed_by"].format(model=_text(model))}</span></div>'
    if not composition.done:
        return (f'<div class="qa-composed qa-composing">{head}<div class="qa-composed-text">{_text(composition.text)}</div>'
                f'<div class="qa-aside">{labels["composing"]}</div></div>')
    sentences = []
    for sentence in composition.sentences:
        if sentence.supported is False:
            reason = unsupported_mark(sentence, english=lang == "en")
            sentences.append(f'<span class="qa-unsupported" title="{_text(reason)}">{_cited(sentence.text)}</span>'
                             f'<span class="qa-unsupported-mark">⚠ {_text(reason)}</span>')
        else:
            sentences.append(f'<span class="qa-sentence">{_cited(sentence.text)}</span>')
    checked = [sentence for sentence in composition.sentences if sentence.supported is not None]
    tally = labels["composed_checked"].format(supported=sum(bool(s.supported) for s in checked), checked=len(checked))
    return (f'<div class="qa-composed">{head}<div class="qa-composed-text">{" ".join(sentences)}</div>'
            f'<div class="qa-aside qa-composed-tally">{tally}</div></div>')


def _cited(sentence: str) -> str:
    """A written sentence as HTML text, its citations ([1], [1, 3]) set like the cards' numbers."""
    return _CITATION.sub(lambda match: f'<sup class="qa-ref">{match.group()}</sup>', _text(sentence))


_CITATION = re.compile(r"[\[【［]\s*\d+(?:\s*[,，、\-–~]\s*\d+)*\s*[\]】］]")


def _render_passage(
    passage: CitedPassage,
    labels: dict,
    highlights: Highlights,
    sections: SectionTexts | None,
    weak: bool,
    scale: tuple[float, float],
) -> str:
    number, title = split_case(passage.section)
    percent = round(passage.score * 100)
    head = [f'<span class="qa-ref">[{passage.rank}]</span>']
    if number is not None:
        head.append(f'<span class="qa-case">{labels["case"].format(number=_text(number))}</span>')
    if passage.label:  # a unit of the document's structure, cited as people cite it: 《title》 path › label
        if passage.title:
            head.append(f'<span class="qa-doc-title">《{_text(passage.title)}》</span>')
        where = " › ".join(part for part in (passage.headings, passage.label) if part)
        head.append(f'<span class="qa-title">{_text(where)}</span>')
    elif title:
        head.append(f'<span class="qa-title">{_text(title)}</span>')
    meta = (
        f'<span class="qa-source" title="{labels["source"]}">{_text(passage.source)}</span>'
        + (f'<span class="qa-date">{labels["date"].format(date=passage.date)}</span>' if passage.label and passage.date else "")
        + (f'<span class="qa-page">{labels["page"].format(page=passage.page)}</span>' if passage.page is not None else "")
        + f'<span class="qa-offsets">{labels["offsets"].format(start=passage.start, end=passage.end)}</span>'
        f'<span class="qa-score" title="{labels["relevance"]} {passage.score:.2f}">{labels["relevance"]} '
        # The bar is red below the "not found" threshold, yellow while uncertain, green where answered.
        f'<meter min="0" max="1" low="{scale[0]:g}" high="{scale[1]:g}" optimum="1" '
        f'value="{passage.score:.4f}"></meter> '
        f'<b>{percent}%</b></span>'
    )
    if weak:
        meta += f'<span class="qa-weak-tag">{labels["weak"]}</span>'
    best = highlights.best
    best_span = (best.start, best.end) if best is not None and best.rank == passage.rank else None
    body = _marked(passage.text, highlights.spans(passage.rank), best_span)
    card = [
        f'<div class="qa-passage{" qa-weak" if weak else ""}" data-rank="{passage.rank}">',
        f'<div class="qa-head">{" ".join(head)}</div>',
        f'<div class="qa-meta">{meta}</div>',
        f'<div class="qa-text">{body}</div>',
    ]
    if passage.asked_before:  # lifted by a question the index remembers (`qa remember`): say which, to check it
        card.append(f'<div class="qa-asked-before">{labels["asked_before"]}: <q>{_text(passage.asked_before)}</q></div>')
    if sections is not None:
        if number is not None:
            summary = labels["open_case"].format(number=_text(number))
        else:
            summary = labels["open_section"] if passage.section else labels["open_context"]
        whole = "".join(
            f'<mark class="qa-cited">{_text(text)}</mark>' if cited else _text(text)
            for text, cited in sections.pieces(passage)
        )
        card.append(
            f'<details class="qa-section"><summary>{summary} <span class="qa-aside">({labels["cited_here"]})</span></summary>'
            f'<div class="qa-section-text">{whole}</div></details>'
        )
    card.append("</div>")
    return "".join(card)


def render_error(message: str, question: str) -> str:
    """A QAError's message in the chat, in the question's language (without the server's paths)."""
    labels = LABELS[language(question)]
    return f'<div class="qa-error"><strong>{labels["error"]}</strong>: {_text(public_message(message))}</div>'


def render_status(status: IndexStatus, rebuild_allowed: bool = True) -> str:
    """The index panel as safe HTML (labels in Chinese and English: the panel is not tied to a question)."""
    rows = []
    if status.error:
        rows.append(f'<div class="qa-error">{_text(public_message(status.error))}</div>')
    if status.documents is not None:
        built = _local_time(status.built_at) if status.built_at else "?"
        facts = (
            ("文档 Documents", str(status.documents)),
            ("段落 Passages", str(status.passages)),
            ("模型 Model", status.model or "?"),
            ("建立 Built", built),
            *((("记住的问题 Remembered", f"{status.remembered} (qa remember)"),) if status.remembered else ()),
        )
        rows.append(
            '<div class="qa-index-facts">'
            + "".join(f'<div><span class="qa-fact">{name}</span> {_text(value)}</div>' for name, value in facts)
            + "</div>"
        )
    changes = status.changes
    if changes is not None:
        if changes.any:
            listed = "".join(
                f"<li>{label} {_text(public_message(source))}</li>"
                for label, sources in (
                    ("新增 added", changes.added), ("修改 changed", changes.changed), ("删除 removed", changes.removed),
                    ("设置 settings", changes.settings),
                )
                for source in sources
            )
            what = "语料已更改 · Corpus changed" if changes.added or changes.changed or changes.removed else "设置已更改 · Settings changed"
            action = "请重建索引 · rebuild the index to include them" if rebuild_allowed else "需要重建索引 · the index needs a rebuild"
            rows.append(f'<div class="qa-changed"><b>{what} since the build</b>; {action}:<ul>{listed}</ul></div>')
        else:
            rows.append('<div class="qa-unchanged">语料与索引一致 · Corpus unchanged since the build</div>')
    rows.append(_render_rebuild(status.rebuild))
    return f'<div class="qa-index">{"".join(rows)}</div>'


_STAGES = {
    "starting": "准备 starting",
    "reading": "读取文件 reading files",
    "ocr": "文字识别 OCR of scanned pages",
    "cache": "转换向量缓存 converting the embedding cache",
    "passages": "复用已有向量 reusing cached passages",
    "model": "加载模型 loading the model",
    "embedding": "向量化 embedding passages",
    "keywords": "关键词索引 keyword index (BM25)",
    "second": "第二编码器 second encoder over passages",
    "background": "背景问题 the decision's background questions",
    "writing": "写入并检查 writing and checking the index",
    "vectors": "向量索引 adding vectors to the vector index",
}


def _render_rebuild(state: RebuildState) -> str:
    if state.running:
        elapsed = time.time() - (state.started or time.time())
        stage = _STAGES.get(state.stage or "", _text(state.stage or ""))
        counts = ""
        if state.total:
            counts = f' <progress max="{state.total}" value="{state.done}"></progress> {state.done}/{state.total}'
            spent = time.time() - (state.stage_started or time.time())
            if state.stage in ("cache", "embedding", "ocr", "keywords", "second", "background", "vectors") and state.done and spent > 0:
                rate = state.done / spent
                counts += f" · {rate:.1f}/s · 约 about {(state.total - state.done) / rate:.0f} s 剩余 left"
        return (
            f'<div class="qa-rebuild qa-running">正在重建索引 · Rebuilding: {stage}{counts} · {elapsed:.0f} s'
            '<br><span class="qa-aside">旧索引继续回答问题 · questions are answered from the old index until the new one is ready</span></div>'
        )
    if state.error:
        return (
            f'<div class="qa-rebuild qa-error">重建失败 · Rebuild failed: {_text(public_message(state.error))}'
            '<br><span class="qa-aside">旧索引仍在使用 · the old index is still in use</span></div>'
        )
    if state.report is not None:
        report = state.report
        skipped = "".join(f"<li>{_text(p.source)}: {_text(p.reason)}</li>" for p in report.problems + report.page_problems)
        read_by_ocr = "".join(
            f"<li>{_text(source)}: {len(summary.pages)} 页 pages, 平均置信度 mean confidence {summary.confidence:.3f}</li>"
            for source, summary in report.ocr.items()
        )
        return (
            f'<div class="qa-rebuild qa-done">已重建 · Rebuilt: {report.documents} 文档 documents, '
            f"{report.passages} 段落 passages, {report.seconds:.1f} s"
            + (f"<br>文字识别 · read by OCR:<ul>{read_by_ocr}</ul>" if read_by_ocr else "")
            + (f"<br>跳过 · skipped:<ul>{skipped}</ul>" if skipped else "")
            + "</div>"
        )
    return ""


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    except ValueError:
        return iso
