"""HTML pages (.html .htm, lxml): the visible text by block, h1-h6 open sections; scripts and styles dropped.

A page is decoded by its `<meta charset>` when it declares one (GB2312 and GBK read as GB18030,
their superset, which pages so labelled routinely need), else like a text file (text.py).
"""

import codecs
import re

from qa.documents.pdf_repair import one_line
from qa.documents.readers.extracted import Extracted, TextBuilder
from qa.documents.readers.text import decode_text
from qa.documents.tables import caption, row_lines, table_title, title_row
from qa.errors import DocumentError, short_reason

_HTML_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_HTML_DROPPED = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object", "canvas", "button", "select"}
_HTML_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "html", "li",
    "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead", "ul",
}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def read_html(raw: bytes) -> Extracted:
    """The visible text of an HTML page by block; h1-h6 open sections. Markup is never kept as text."""
    import lxml.etree
    import lxml.html

    text, encoding = _decode_html(raw)
    if not text.strip():
        raise DocumentError("empty file")
    try:
        # The text is already decoded; hand lxml UTF-8 bytes so a <meta charset> cannot re-decode it.
        root = lxml.html.document_fromstring(
            text.encode("utf-8"), parser=lxml.html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
        )
    except (lxml.etree.ParserError, ValueError) as error:
        raise DocumentError(f"not readable HTML ({short_reason(error)})") from None
    builder = TextBuilder()
    _HtmlWalker(builder).walk(root)
    title = root.find(".//title")
    return builder.result(encoding, title=one_line(title.text_content()) if title is not None else "")


def _decode_html(raw: bytes) -> tuple[str, str]:
    declared = _META_CHARSET.search(raw[:4096])
    if declared and not raw.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        name = declared.group(1).decode("ascii").lower()
        if name in ("gb2312", "gbk", "gb18030", "x-gbk"):
            name = "gb18030"  # pages labelled GB2312 or GBK routinely use GBK-only characters
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            codec = None
        if codec:
            try:
                return raw.decode(codec).replace("\r\n", "\n"), name.upper()
            except UnicodeDecodeError as error:
                raise DocumentError(
                    f"bad encoding: the page says charset {name} but byte {error.start} is not {name}; "
                    "fix the <meta charset> or save it as UTF-8"
                ) from None
    return decode_text(raw)


class _HtmlWalker:
    """Walks the element tree, gathering inline text into lines that block elements break."""

    def __init__(self, builder: TextBuilder):
        self.builder = builder
        self.pending: list[str] = []
        self.tables = 0
        self.last_line = ""  # a table's caption if the table follows it

    def walk(self, element) -> None:
        tag = element.tag.lower() if isinstance(element.tag, str) else ""
        if tag in _HTML_DROPPED or not tag:
            return  # the element's tail is handled by the parent
        if tag in _HTML_HEADINGS:
            self.flush()
            self.builder.heading(one_line(element.text_content()), level=int(tag[1]))
            self.last_line = ""
            return
        if tag == "table":
            self.flush()
            self.tables += 1
            named = element.find("caption")
            first, rows = title_row(_html_rows(element))
            title = one_line(named.text_content()) if named is not None else caption(self.last_line) or first
            self.builder.table(table_title(title, self.tables), row_lines(rows))
            self.last_line = ""
            return
        if tag == "br":
            self.flush()
            return
        block = tag in _HTML_BLOCKS
        if block:
            self.flush()
        if element.text:
            self.pending.append(element.text)
        for child in element:
            self.walk(child)
            if child.tail:
                self.pending.append(child.tail)
        if block:
            self.flush()

    def flush(self) -> None:
        # A line break in the source between Chinese characters is no space (one_line).
        line = one_line("".join(self.pending))
        self.builder.line(line)
        self.last_line = line or self.last_line
        self.pending = []


def _html_rows(table) -> list[list[str]]:
    """The cells of each row of an HTML table (not of tables nested in it); a cell spanning
    columns (colspan) is repeated under each, so cells stay under their headers."""
    rows = []
    for row in table.iter("tr"):
        if next(row.iterancestors("table"), None) is not table:
            continue
        cells = []
        for cell in row:
            if isinstance(cell.tag, str) and cell.tag.lower() in ("td", "th"):
                text = one_line(" ".join(_visible_text(cell)))
                span = cell.get("colspan", "1")
                cells.extend([text] * (min(int(span), 50) if span.isdigit() and int(span) > 0 else 1))
        rows.append(cells)
    return rows


def _visible_text(element) -> list[str]:
    """The text of an element without that of scripts and styles inside it."""
    tag = element.tag.lower() if isinstance(element.tag, str) else ""
    if tag in _HTML_DROPPED or not tag:
        return []
    parts = [element.text or ""]
    for child in element:
        parts += _visible_text(child)
        parts.append(child.tail or "")
    return parts
