"""The text of paginated documents (PDF pages, scanned images) from what is on each page.

Lines the layout wrapped are joined into paragraphs (pdf_repair's clean-up: no spaces inside
Chinese), page numbers dropped, headings and tables placed where they come, and where each page
starts recorded. On pages read by OCR, short lines set clearly larger than the body are headings.
The thresholds below are part of how a document is read, not settings: the build reads the corpus
again when this code changes (qa/indexing/changes.py reader_fingerprint hashes qa/documents), which it
could not know of a setting.
"""

import re
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field

from qa.documents.ocr import OcrPage, OcrReader, OcrSummary
from qa.documents.pdf_repair import join_lines, remove_spaces_in_chinese
from qa.documents.readers.extracted import Extracted, TextBuilder
from qa.documents.tables import caption, row_lines, table_title, title_row

SENTENCE_END = "。！？；：…!?;:”’」』）)"
# Running page numbers: "3", "- 3 -", "第 3 页", "第3页 共10页", "3 / 10".
PAGE_NUMBER = re.compile(r"[-–—\s]*\d{1,4}[-–—\s]*|第\s*\d+\s*页(\s*共\s*\d+\s*页)?|\d+\s*/\s*\d+")
# A line of an OCR'd page set in characters this much larger than the body's is a heading.
_HEADING_SIZE = 1.15
_HEADING_CHARS = 40
_NUMBERED_TITLE = re.compile(r"^(\d{1,2})(?=[^\d\s.．、年月日号届次个%％])")


@dataclass
class PageItem:
    """One thing on a page, in reading order: a text line, a heading, or a table's rows."""

    kind: str  # "line", "heading" or "table"
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)


def page_lines(text: str) -> list[str]:
    """The non-blank lines of a page's text layer, stripped, without those that are only a page number."""
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not PAGE_NUMBER.fullmatch(line)]


@contextmanager
def ocr_reader(ocr: OcrReader | None):
    """The build's OCR reader, or one without a cache for this file only."""
    if ocr is not None:
        yield ocr
    else:
        with OcrReader() as own:
            yield own


def ocr_items(pages: list[OcrPage]) -> list[list[PageItem]]:
    """The rows OCR read on each page as items; short rows set clearly larger than the body are headings."""
    rows = [page.rows() for page in pages]
    # The body's character size: the median over characters, not rows (headings are many short rows).
    sizes = sorted((row.size, len(row.text)) for page_rows in rows for row in page_rows)
    half, seen, body = sum(n for _, n in sizes) / 2, 0, 0.0
    for size, n in sizes:
        seen += n
        if seen >= half:
            body = size
            break
    items = []
    for page_rows in rows:
        page_items = []
        for row in page_rows:
            text = remove_spaces_in_chinese(row.text)
            if PAGE_NUMBER.fullmatch(text):
                continue
            heading = row.size >= _HEADING_SIZE * body and len(text) <= _HEADING_CHARS and text[-1] not in SENTENCE_END
            page_items.append(PageItem("heading", _heading_title(text)) if heading else PageItem("line", text))
        items.append(page_items)
    return items


def _heading_title(text: str) -> str:
    """A recognised heading with the space after its number put back ("1为民办实事" -> "1 为民办实事"):
    the clean-up drops it, and case numbers are read from "number, space, title"."""
    return _NUMBERED_TITLE.sub(r"\1 ", text)


def layout(pages: list[list[PageItem]], ocr: OcrSummary | None = None) -> Extracted:
    """The text of a paginated document from the items of each page: wrapped lines joined into
    paragraphs (a line clearly shorter than the document's full lines ends one), headings and tables
    as they come, each page's start recorded."""
    # One layout width for the whole document: a page's last lines alone cannot tell it.
    widths = sorted(_display_width(item.text) for items in pages for item in items if item.kind == "line")
    full = widths[int(0.9 * (len(widths) - 1))] if len(widths) >= 3 else None
    builder = TextBuilder()
    paragraph: list[tuple[str, int]] = []  # lines of the open paragraph, with their page
    last_line = ""  # the last line written, a table's caption if the table follows it

    def close() -> None:
        nonlocal paragraph, last_line
        if paragraph:
            lines = [line for line, _ in paragraph]
            text = join_lines(lines)
            breaks = {}
            for k in range(1, len(paragraph)):
                if paragraph[k][1] != paragraph[k - 1][1]:
                    breaks[paragraph[k][1]] = len(join_lines(lines[: k + 1])) - len(remove_spaces_in_chinese(lines[k]))
            builder.line(text, breaks)
            last_line = text or last_line
        paragraph = []

    tables = 0
    for number, items in enumerate(pages, start=1):
        builder.page(number)
        for item in items:
            if item.kind == "line":
                paragraph.append((item.text, number))
                # A full line ending in 。 may still run on, but a sentence end is a safe place to break.
                if full is None or _display_width(item.text) < 0.85 * full or item.text[-1] in SENTENCE_END:
                    close()
                continue
            close()
            if item.kind == "heading":
                builder.heading(item.text)
                last_line = ""
            else:
                tables += 1
                title, rows = title_row(item.rows)
                builder.table(table_title(caption(last_line) or title, tables), row_lines(rows))
                last_line = ""
    close()
    return builder.result(pages=len(pages), ocr=ocr)


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)
