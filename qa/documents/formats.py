"""Turn the bytes of one corpus file into plain text and the headings in it, one reader per format.

    .md .markdown   Markdown: `#` headings open sections
    .txt            plain text: one section
    .pdf            PDFs page by page: the text layer (pypdf), or OCR (qa/documents/ocr.py) for a page that has an
                    image and no usable text; the seed importer's clean-up: no spaces inside Chinese,
                    lines the layout wrapped joined into paragraphs, page numbers dropped; ruled tables
                    found by pdfplumber; on OCR'd pages, lines set larger than the body open sections
    .docx           Word (python-docx): paragraphs and tables in order, Heading/Title styles open sections
    .html .htm      HTML (lxml): visible text by block, h1-h6 open sections; scripts and styles dropped
    .xlsx           Excel (openpyxl): each sheet a table
    .pptx           PowerPoint (python-pptx): each slide a section, titled by its title, its page the slide number
    .png .jpg .jpeg .tif .tiff   images, read by OCR; each frame of a TIFF a page

Tables become one line per row, each cell with its header (qa/documents/tables.py), in a section of their own
that names the table. Paginated formats record where each page starts, so passages carry pages.

Text files are decoded as UTF-8 (with or without BOM), UTF-16 with a BOM, or else GB18030, the
superset of GBK and GB2312 that Chinese Windows editors still save in; the encoding used is
returned so the build can say so. A file that cannot be read raises DocumentError with a reason a
person can act on (bad encoding, damaged or encrypted PDF, broken archive, empty file, an image OCR
finds no text in).

Longer than most modules (~700 lines): one reader per format, each with its own named reasons
for failing (encrypted, damaged, wrong encoding…), which is most of the code; OCR itself and
the table layout live in qa/documents/ocr.py and qa/documents/tables.py.
"""

import codecs
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from qa.documents.ocr import IMAGE_SUFFIXES, OcrPage, OcrReader, OcrSummary
from qa.documents.pdf_repair import is_no_space_char, join_lines, remove_spaces_in_chinese
from qa.documents.pdfium import PDFIUM
from qa.documents.tables import caption, clean_cell, row_lines, table_title, title_row
from qa.errors import DocumentError


@dataclass(frozen=True)
class Heading:
    """A heading line: its title and the span [start, end) of the whole line in the text."""

    title: str
    start: int
    end: int


@dataclass(frozen=True)
class Table:
    """The rows of a table, one line each, spanning [start, end) of the text; `title` names the table."""

    title: str
    start: int
    end: int


@dataclass
class Extracted:
    """What a reader got out of a file: the text citations point into, its headings, the encoding used."""

    text: str
    headings: list[Heading] = field(default_factory=list)
    encoding: str | None = None  # for formats read as text (.md, .txt, .html); None for .pdf, .docx
    page_starts: list[int] | None = None  # offset where each page starts, page 1 first; None without pages
    tables: list[Table] = field(default_factory=list)
    ocr: OcrSummary | None = None  # the pages read by OCR, if any


class _TextBuilder:
    """Collects lines of text and remembers which are headings and table rows, and where pages start."""

    def __init__(self):
        self.parts: list[str] = []
        self.length = 0
        self.headings: list[Heading] = []
        self.tables: list[Table] = []
        self.page_starts: dict[int, int] = {}
        self._pages: list[int] = []  # pages begun whose first text has not come yet

    def page(self, number: int) -> None:
        """Page `number` (1-based) begins: its start is where the next text goes."""
        self._pages.append(number)

    def line(self, text: str, pages: dict[int, int] | None = None) -> None:
        """Add a line; `pages` maps pages that begin inside it (a paragraph run across a page break) to their offset in it."""
        if not text:
            return
        if self.parts:
            self.parts.append("\n")
            self.length += 1
        for number in self._pages:
            self.page_starts[number] = self.length
        self._pages = []
        for number, offset in (pages or {}).items():
            self.page_starts[number] = self.length + offset
        self.parts.append(text)
        self.length += len(text)

    def heading(self, title: str, shown: bool = True) -> None:
        """A heading; one not `shown` (a slide without a title) opens its section without a line in the text."""
        if not title:
            return
        if shown:
            self.line(title)
            self.headings.append(Heading(title, self.length - len(title), self.length))
        else:
            self.headings.append(Heading(title, self.length, self.length))

    def table(self, title: str, rows: list[str]) -> None:
        """A table's row lines (from qa/documents/tables.py), cited under `title`."""
        rows = [row for row in rows if row]
        if not rows:
            return
        self.line(rows[0])
        start = self.length - len(rows[0])
        for row in rows[1:]:
            self.line(row)
        self.tables.append(Table(title, start, self.length))

    def result(self, encoding: str | None = None, pages: int | None = None, ocr: OcrSummary | None = None) -> Extracted:
        """The text and its structure; `pages`: how many pages the source has (None: it has none)."""
        text = "".join(self.parts) + "\n" if self.parts else ""
        page_starts = None
        if pages is not None:
            # A page without text starts where the next page with text does (or at the end).
            page_starts, following = [0] * pages, len(text)
            for number in range(pages, 0, -1):
                following = self.page_starts.get(number, following)
                page_starts[number - 1] = following
            page_starts[0] = 0
        return Extracted(text, self.headings, encoding, page_starts, self.tables, ocr)


# ---------------------------------------------------------------------------------------------
# Text files


def decode_text(raw: bytes) -> tuple[str, str]:
    """Decode a text file's bytes; return (text, encoding used), or raise DocumentError.

    UTF-8 is tried first: GBK bytes are almost never valid UTF-8, so a file that decodes is UTF-8.
    GB18030 decodes many byte sequences that are not Chinese (Latin-1 `é` followed by a letter is a
    valid pair), so its result is accepted only when the characters it produced look like Chinese.
    """
    if raw.startswith(codecs.BOM_UTF8):
        candidates = [("utf-8-sig", "UTF-8")]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = [("utf-16", "UTF-16")]
    else:
        candidates = [("utf-8", "UTF-8"), ("gb18030", "GB18030")]
    first_error = None
    for codec, name in candidates:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as error:
            first_error = first_error or error
            continue
        if codec == "gb18030" and not _looks_chinese(text):
            continue
        if "\x00" in text:
            raise DocumentError("binary data, not text (it contains NUL bytes)")
        return text.replace("\r\n", "\n").replace("\r", "\n"), name
    offset = first_error.start if first_error else 0
    if len(candidates) == 1:
        name = candidates[0][1]
        raise DocumentError(
            f"bad encoding: starts with a {name} byte-order mark but is not {name} (bad byte at offset {offset}); "
            "save it as UTF-8"
        )
    raise DocumentError(
        f"bad encoding: neither UTF-8 nor GB18030 Chinese text (undecodable byte at offset {offset}); save it as UTF-8"
    )


def _looks_chinese(text: str) -> bool:
    """True when nearly all non-ASCII characters are Chinese characters or Chinese punctuation."""
    wide = [char for char in text if not char.isascii()]
    if not wide:
        return True
    chinese = sum(1 for char in wide if is_no_space_char(char) or char in "·—…“”‘’①②③④⑤⑥⑦⑧⑨⑩")
    return chinese >= 0.9 * len(wide)


_MARKDOWN_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def markdown_headings(text: str) -> list[Heading]:
    """The `#` heading lines of Markdown text."""
    return [Heading(match.group(2).strip(), match.start(), match.end()) for match in _MARKDOWN_HEADING.finditer(text)]


def read_markdown(raw: bytes) -> Extracted:
    text, encoding = decode_text(raw)
    return Extracted(text, markdown_headings(text), encoding)


def read_plain_text(raw: bytes) -> Extracted:
    text, encoding = decode_text(raw)
    return Extracted(text, [], encoding)


# ---------------------------------------------------------------------------------------------
# PDF

_SENTENCE_END = "。！？；：…!?;:”’」』）)"
# Running page numbers: "3", "- 3 -", "第 3 页", "第3页 共10页", "3 / 10".
_PAGE_NUMBER = re.compile(r"[-–—\s]*\d{1,4}[-–—\s]*|第\s*\d+\s*页(\s*共\s*\d+\s*页)?|\d+\s*/\s*\d+")


# A page whose text layer has fewer usable characters than this, and an image, is read by OCR.
_USABLE_TEXT = 20
# A line of an OCR'd page set in characters this much larger than the body's is a heading.
_HEADING_SIZE = 1.15
_HEADING_CHARS = 40


@dataclass
class _Item:
    """One thing on a PDF page, in reading order: a text line, a heading, or a table's rows."""

    kind: str  # "line", "heading" or "table"
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)


def read_pdf(raw: bytes, ocr: OcrReader | None = None) -> Extracted:
    """The text of a PDF page by page: its text layer, or OCR where a page has an image and no usable text.

    DocumentError if it is encrypted or damaged, or no page has text. `ocr` reads (and caches) the
    scanned pages; without one, they are read without a cache.
    """
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    # pypdf logs every recoverable oddity of a PDF; the build reports what matters itself.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(raw), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # PDFs locked only against editing open with the empty password
            except DependencyError:
                opened = False
            if not opened:
                raise DocumentError("encrypted PDF: it needs a password; save a copy without protection")
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except Exception as error:  # pypdf raises many types (PdfReadError, ValueError, KeyError…) on damaged files
        raise DocumentError(f"damaged PDF, cannot be parsed ({_short(error)})") from None
    items = [[_Item("line", line) for line in _page_lines(text)] for text in pages]
    scanned, ruled = _pages_to_look_at(raw, pages)
    for number, page_items in _pdf_tables(raw, ruled).items():
        items[number - 1] = page_items
    summary = None
    if scanned:
        summary = OcrSummary()
        with _reader(ocr) as reader:
            read = reader.read_pdf_pages(raw, scanned)
        for page in read:
            summary.add(page)
        for page, page_items in zip(read, _ocr_items(read)):
            items[page.number - 1] = page_items
    extracted = _layout(items, summary)
    if not extracted.text.strip():
        count = f"{len(pages)} page{'s' if len(pages) != 1 else ''}"
        if scanned:
            raise DocumentError(f"no text in this PDF ({count}): OCR found none on its scanned pages (blank, or too faint or small to read)")
        raise DocumentError(f"no text in this PDF ({count}): no text layer and no scanned images to read")
    return extracted


@contextmanager
def _reader(ocr: OcrReader | None):
    """The build's OCR reader, or one without a cache for this file only."""
    if ocr is not None:
        yield ocr
    else:
        with OcrReader() as own:
            yield own


def _page_lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not _PAGE_NUMBER.fullmatch(line)]


def _usable(text: str) -> int:
    """How many characters of a text layer are real text (not private-use glyph codes or replacement marks)."""
    return sum(1 for char in text if not char.isspace() and char != "\ufffd" and not "\ue000" <= char <= "\uf8ff")


def _pages_to_look_at(raw: bytes, pages: list[str]) -> tuple[list[int], list[int]]:
    """(pages to read by OCR, pages that may hold a ruled table), 1-based, as pdfium sees their objects.

    A page is OCR'd when it has an image and fewer than _USABLE_TEXT usable characters of text (page
    numbers aside): a scan, or a scan under a stamp of text. A blank page has no image and is left
    alone. Ruled tables are drawn with lines or boxes, so only pages with several drawn paths are
    searched for tables (pdfplumber is slow)."""
    import pypdfium2
    import pypdfium2.raw as pdfium

    scanned, ruled = [], []
    with PDFIUM:
        try:
            document = pypdfium2.PdfDocument(raw)
        except pypdfium2.PdfiumError:
            return [], []  # pypdf could read it; pdfium cannot: keep the text layer as it is
        try:
            for number, text in enumerate(pages, start=1):
                page = document[number - 1]
                if _usable("".join(_page_lines(text))) < _USABLE_TEXT:
                    if next(page.get_objects(filter=(pdfium.FPDF_PAGEOBJ_IMAGE,), max_depth=8), None) is not None:
                        scanned.append(number)
                elif sum(1 for _ in page.get_objects(filter=(pdfium.FPDF_PAGEOBJ_PATH,), max_depth=8)) >= 4:
                    ruled.append(number)
                page.close()
        finally:
            document.close()
    return scanned, ruled


def _pdf_tables(raw: bytes, numbers: list[int]) -> dict[int, list[_Item]]:
    """The items of each page among `numbers` that holds a ruled table (pdfplumber), in reading order:
    its text lines outside the tables and each table's rows, by their place on the page."""
    if not numbers:
        return {}
    import pdfplumber

    found: dict[int, list[_Item]] = {}
    try:
        with pdfplumber.open(io.BytesIO(raw)) as pdf:
            for number in numbers:
                page = pdf.pages[number - 1]
                tables = [table for table in page.find_tables() if len(table.rows) >= 2]
                if not tables:
                    continue
                outside = page
                for table in tables:
                    outside = outside.outside_bbox(table.bbox)
                placed = [(line["top"], _Item("line", line["text"].strip())) for line in outside.extract_text_lines()]
                placed += [
                    (table.bbox[1], _Item("table", rows=[[clean_cell(cell) for cell in row] for row in table.extract()]))
                    for table in tables
                ]
                placed.sort(key=lambda entry: entry[0])
                found[number] = [item for _, item in placed if item.kind == "table" or not _PAGE_NUMBER.fullmatch(item.text)]
    except Exception:  # pdfminer fails on PDFs pypdf reads; their text layer stands, tables as plain lines
        return {}
    return found


def _ocr_items(pages: list[OcrPage]) -> list[list[_Item]]:
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
            if _PAGE_NUMBER.fullmatch(text):
                continue
            heading = row.size >= _HEADING_SIZE * body and len(text) <= _HEADING_CHARS and text[-1] not in _SENTENCE_END
            page_items.append(_Item("heading", _heading_title(text)) if heading else _Item("line", text))
        items.append(page_items)
    return items


_NUMBERED_TITLE = re.compile(r"^(\d{1,2})(?=[^\d\s.．、年月日号届次个%％])")


def _heading_title(text: str) -> str:
    """A recognised heading with the space after its number put back ("1为民办实事" -> "1 为民办实事"):
    the clean-up drops it, and case numbers are read from "number, space, title"."""
    return _NUMBERED_TITLE.sub(r"\1 ", text)


def _layout(pages: list[list[_Item]], ocr: OcrSummary | None = None) -> Extracted:
    """The text of a paginated document: wrapped lines joined into paragraphs (see `pdf_paragraphs`),
    headings and tables as they come, each page's start recorded."""
    # One layout width for the whole document: a page's last lines alone cannot tell it.
    widths = sorted(_display_width(item.text) for items in pages for item in items if item.kind == "line")
    full = widths[int(0.9 * (len(widths) - 1))] if len(widths) >= 3 else None
    builder = _TextBuilder()
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
                if full is None or _display_width(item.text) < 0.85 * full or item.text[-1] in _SENTENCE_END:
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


def pdf_paragraphs(pages: list[str]) -> list[str]:
    """Join the lines a PDF layout wrapped into paragraphs, across page breaks too.

    A line ends its paragraph when it is clearly shorter than the document's full lines (a
    paragraph's last line, a heading, a table row); full-width lines run on. Lines that are only a
    page number are dropped.
    """
    extracted = _layout([[_Item("line", line) for line in _page_lines(page)] for page in pages])
    return [line for line in extracted.text.split("\n") if line]


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


# ---------------------------------------------------------------------------------------------
# Word

_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_WORD_HEADING = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


def read_docx(raw: bytes) -> Extracted:
    """Paragraphs and tables of a .docx in order; Heading and Title styles open sections; a table is
    cited under its caption (the short line before it, "表1 …") or as "表 N"."""
    import docx
    from docx.table import Table as DocxTable

    if raw.startswith(_OLE_SIGNATURE):
        # Word writes password-protected files, and old .doc files, as OLE containers, not zip.
        raise DocumentError(
            "password-protected or old-format Word file, not a .docx archive; save it as an unprotected .docx"
        )
    try:
        document = docx.Document(io.BytesIO(raw))
        items = list(document.iter_inner_content())
    except zipfile.BadZipFile as error:
        raise DocumentError(f"broken .docx archive ({_short(error)})") from None
    except Exception as error:  # python-docx and lxml raise various types on a damaged package
        raise DocumentError(f"broken .docx archive ({_short(error)})") from None
    builder = _TextBuilder()
    last_line, tables = "", 0
    for item in items:
        if isinstance(item, DocxTable):
            tables += 1
            title, rows = title_row(_docx_rows(item))
            builder.table(table_title(caption(last_line) or title, tables), row_lines(rows))
            last_line = ""
            continue
        text = item.text.strip()
        style = item.style.name if item.style is not None else ""
        if style == "Title" or _WORD_HEADING.match(style or ""):
            builder.heading(" ".join(text.split()))
            last_line = ""
        else:
            builder.line(text)
            last_line = text or last_line
    return builder.result()


def _docx_rows(table) -> list[list[str]]:
    """The cells of each row; a cell merged across columns once, one merged down rows in every row it spans."""
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is returned once per grid column it spans
                continue
            seen.add(id(cell._tc))
            cells.append(clean_cell(cell.text))
        rows.append(cells)
    return rows


# ---------------------------------------------------------------------------------------------
# HTML

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
        raise DocumentError(f"not readable HTML ({_short(error)})") from None
    builder = _TextBuilder()
    _HtmlWalker(builder).walk(root)
    return builder.result(encoding)


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

    def __init__(self, builder: _TextBuilder):
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
            self.builder.heading(_clean_inline(element.text_content()))
            self.last_line = ""
            return
        if tag == "table":
            self.flush()
            self.tables += 1
            named = element.find("caption")
            first, rows = title_row(_html_rows(element))
            title = _clean_inline(named.text_content()) if named is not None else caption(self.last_line) or first
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
        line = _clean_inline("".join(self.pending))
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
                text = _clean_inline(" ".join(_visible_text(cell)))
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


def _clean_inline(text: str) -> str:
    """Collapse HTML whitespace; a line break in the source between Chinese characters is no space."""
    return remove_spaces_in_chinese(" ".join(text.split()))


# ---------------------------------------------------------------------------------------------
# Excel and PowerPoint


def read_xlsx(raw: bytes) -> Extracted:
    """Each sheet of an .xlsx as a table cited under the sheet's name: its first row with text is the header.

    Formulas are read as the values Excel last saved with them (a file written by a program that
    never computed them has none)."""
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except zipfile.BadZipFile as error:
        raise DocumentError(f"broken .xlsx archive ({_short(error)})") from None
    except Exception as error:  # openpyxl raises KeyError, InvalidFileException, lxml errors… on damaged packages
        raise DocumentError(f"broken .xlsx archive ({_short(error)})") from None
    builder = _TextBuilder()
    try:
        for sheet in workbook.worksheets:
            title, rows = title_row([[_excel_cell(value) for value in row] for row in sheet.iter_rows(values_only=True)])
            name = clean_cell(sheet.title)
            builder.table(f"{name} · {title}" if title else name, row_lines(rows))
    except Exception as error:  # a damaged sheet inside a readable package
        raise DocumentError(f"broken .xlsx archive ({_short(error)})") from None
    finally:
        workbook.close()
    return builder.result()


def _excel_cell(value) -> str:
    import datetime

    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Excel stores every number as a float: 2025.0 is the year 2025
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    return clean_cell(value)


def read_pptx(raw: bytes) -> Extracted:
    """Each slide of a .pptx a section titled by its title ("第 N 张幻灯片" if it has none), its page the
    slide number; text boxes top down, tables as row lines. Speaker notes are not read."""
    import pptx
    from pptx.exc import PackageNotFoundError

    if raw.startswith(_OLE_SIGNATURE):
        raise DocumentError("password-protected or old-format PowerPoint file, not a .pptx archive; save it as an unprotected .pptx")
    try:
        slides = list(pptx.Presentation(io.BytesIO(raw)).slides)
    except (zipfile.BadZipFile, PackageNotFoundError) as error:
        raise DocumentError(f"broken .pptx archive ({_short(error)})") from None
    except Exception as error:  # python-pptx and lxml raise various types on a damaged package
        raise DocumentError(f"broken .pptx archive ({_short(error)})") from None
    builder = _TextBuilder()
    for number, slide in enumerate(slides, start=1):
        builder.page(number)
        title_shape = slide.shapes.title
        title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None and title_shape.has_text_frame else ""
        builder.heading(title or f"第 {number} 张幻灯片", shown=bool(title))
        tables = 0
        for shape in _slide_shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            if getattr(shape, "has_table", False) and shape.has_table:
                tables += 1
                title, rows = title_row([[clean_cell(cell.text) for cell in row.cells] for row in shape.table.rows])
                builder.table(table_title(title, tables), row_lines(rows))  # under the slide's section
            elif shape.has_text_frame:
                for paragraph in shape.text_frame.paragraphs:
                    builder.line(_clean_inline("".join(run.text for run in paragraph.runs)))
    return builder.result(pages=len(slides))


def _slide_shapes(shapes) -> list:
    """The shapes of a slide, groups opened, top down then left to right (the order a person reads)."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    found = []
    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            found += _slide_shapes(shape.shapes)
        else:
            found.append(shape)
    return sorted(found, key=lambda shape: (shape.top or 0, shape.left or 0))


# ---------------------------------------------------------------------------------------------
# Images


def read_image(raw: bytes, ocr: OcrReader | None = None) -> Extracted:
    """The text of an image by OCR, each frame of a multi-page TIFF a page; DocumentError if it has none."""
    with _reader(ocr) as reader:
        pages = reader.read_image(raw)
    summary = OcrSummary()
    for page in pages:
        summary.add(page)
    extracted = _layout(_ocr_items(pages), summary)
    if not extracted.text.strip():
        raise DocumentError("OCR found no text in this image (blank, or too faint or small to read)")
    return extracted


# ---------------------------------------------------------------------------------------------

Reader = Callable[..., Extracted]  # (raw) -> Extracted; those in _READ_BY_OCR take (raw, ocr)

READERS: dict[str, Reader] = {
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".txt": read_plain_text,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".html": read_html,
    ".htm": read_html,
    ".xlsx": read_xlsx,
    ".pptx": read_pptx,
    **{suffix: read_image for suffix in IMAGE_SUFFIXES},
}
# Readers that may need OCR; they are given the build's OcrReader (and its cache).
_READ_BY_OCR = {".pdf", *IMAGE_SUFFIXES}

# Document formats people keep beside the supported ones; reported by name rather than ignored.
UNSUPPORTED = {
    ".doc": "old Word format; save it as .docx",
    ".wps": "WPS format; save it as .docx",
    ".rtf": "RTF; save it as .docx",
    ".odt": "OpenDocument text; save it as .docx",
    ".pages": "Pages format; export it as .docx or .pdf",
    ".caj": "CAJ format; export it as .pdf",
    ".xls": "old Excel format; save it as .xlsx",
    ".ppt": "old PowerPoint format; save it as .pptx",
}


def extract(raw: bytes, suffix: str, ocr: OcrReader | None = None) -> Extracted:
    """Read a file's bytes with the reader for its suffix; DocumentError if it cannot be read.

    `ocr` reads scanned pages and images through its cache; without one they are read uncached."""
    suffix = suffix.lower()
    if suffix in UNSUPPORTED:
        raise DocumentError(f"unsupported format ({UNSUPPORTED[suffix]})")
    if not raw.strip():
        raise DocumentError("empty file")
    extracted = READERS[suffix](raw, ocr) if suffix in _READ_BY_OCR else READERS[suffix](raw)
    if not extracted.text.strip():
        raise DocumentError("no text in it")
    return extracted


def _short(error: Exception) -> str:
    message = " ".join(str(error).split()) or type(error).__name__
    return message if len(message) <= 120 else message[:117] + "..."
