"""Turn the bytes of one corpus file into plain text and the headings in it, one reader per format.

    .md .markdown   Markdown: `#` headings open sections
    .txt            plain text: one section
    .pdf            text PDFs (pypdf), with the seed importer's clean-up: no spaces inside Chinese,
                    lines the layout wrapped joined into paragraphs, page numbers dropped
    .docx           Word (python-docx): paragraphs and tables in order, Heading/Title styles open sections
    .html .htm      HTML (lxml): visible text by block, h1-h6 open sections; scripts and styles dropped

Text files are decoded as UTF-8 (with or without BOM), UTF-16 with a BOM, or else GB18030, the
superset of GBK and GB2312 that Chinese Windows editors still save in; the encoding used is
returned so the build can say so. A file that cannot be read raises DocumentError with a reason a
person can act on (bad encoding, damaged or encrypted or scanned PDF, broken archive, empty file).

Longer than most modules (~400 lines): one reader per format, each with its own named reasons
for failing (encrypted, scanned, damaged, wrong encoding…), which is most of the code.
"""

import codecs
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

from .cleanup import is_no_space_char, join_lines, remove_spaces_in_chinese
from .errors import DocumentError


@dataclass(frozen=True)
class Heading:
    """A heading line: its title and the span [start, end) of the whole line in the text."""

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


class _TextBuilder:
    """Collects lines of text and remembers which ones are headings, with exact offsets."""

    def __init__(self):
        self.parts: list[str] = []
        self.length = 0
        self.headings: list[Heading] = []

    def line(self, text: str) -> None:
        if not text:
            return
        if self.parts:
            self.parts.append("\n")
            self.length += 1
        self.parts.append(text)
        self.length += len(text)

    def heading(self, title: str) -> None:
        if not title:
            return
        self.line(title)
        self.headings.append(Heading(title, self.length - len(title), self.length))

    def result(self, encoding: str | None = None) -> Extracted:
        return Extracted("".join(self.parts) + "\n" if self.parts else "", self.headings, encoding)


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


def read_pdf(raw: bytes) -> Extracted:
    """The text of a text PDF, cleaned of extraction artifacts; DocumentError if encrypted, scanned or damaged."""
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
    paragraphs = pdf_paragraphs(pages)
    if not paragraphs:
        raise DocumentError(
            f"no text in this PDF ({len(pages)} page{'s' if len(pages) != 1 else ''}): scanned images? "
            "run OCR on it first or use a text PDF"
        )
    builder = _TextBuilder()
    for paragraph in paragraphs:
        builder.line(paragraph)
    return builder.result()


def pdf_paragraphs(pages: list[str]) -> list[str]:
    """Join the lines a PDF layout wrapped into paragraphs, across page breaks too.

    A line ends its paragraph when it is clearly shorter than the document's full lines (a
    paragraph's last line, a heading, a table row); full-width lines run on. Lines that are only a
    page number are dropped.
    """
    pages_lines = []
    for page in pages:
        lines = [line.strip() for line in page.splitlines()]
        pages_lines.append([line for line in lines if line and not _PAGE_NUMBER.fullmatch(line)])
    # One layout width for the whole document: a page's last lines alone cannot tell it.
    widths = sorted(_display_width(line) for lines in pages_lines for line in lines)
    full = widths[int(0.9 * (len(widths) - 1))] if len(widths) >= 3 else None
    paragraphs: list[list[str]] = []
    open_paragraph = False
    for lines in pages_lines:
        for line in lines:
            if open_paragraph:
                paragraphs[-1].append(line)
            else:
                paragraphs.append([line])
            ends = full is None or _display_width(line) < 0.85 * full or line[-1] in _SENTENCE_END
            # A full line ending in 。 may still run on, but a sentence end is a safe place to break.
            open_paragraph = not ends
    cleaned = [join_lines(lines) for lines in paragraphs]
    return [text for text in cleaned if text]


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


# ---------------------------------------------------------------------------------------------
# Word

_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_WORD_HEADING = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


def read_docx(raw: bytes) -> Extracted:
    """Paragraphs and table rows of a .docx in order; Heading and Title styles open sections."""
    import docx
    from docx.table import Table

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
    for item in items:
        if isinstance(item, Table):
            for row in _docx_rows(item):
                builder.line(row)
            continue
        text = item.text.strip()
        style = item.style.name if item.style is not None else ""
        if style == "Title" or _WORD_HEADING.match(style or ""):
            builder.heading(" ".join(text.split()))
        else:
            builder.line(text)
    return builder.result()


def _docx_rows(table) -> list[str]:
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell is returned once per grid column it spans
                continue
            seen.add(id(cell._tc))
            text = " ".join(cell.text.split())
            if text:
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
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

    def walk(self, element) -> None:
        tag = element.tag.lower() if isinstance(element.tag, str) else ""
        if tag in _HTML_DROPPED or not tag:
            return  # the element's tail is handled by the parent
        if tag in _HTML_HEADINGS:
            self.flush()
            self.builder.heading(_clean_inline(element.text_content()))
            return
        if tag == "tr":
            self.flush()
            cells = [_clean_inline(cell.text_content()) for cell in element if isinstance(cell.tag, str) and cell.tag.lower() in ("td", "th")]
            self.builder.line(" | ".join(cell for cell in cells if cell))
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
        self.builder.line(_clean_inline("".join(self.pending)))
        self.pending = []


def _clean_inline(text: str) -> str:
    """Collapse HTML whitespace; a line break in the source between Chinese characters is no space."""
    return remove_spaces_in_chinese(" ".join(text.split()))


# ---------------------------------------------------------------------------------------------

Reader = Callable[[bytes], Extracted]

READERS: dict[str, Reader] = {
    ".md": read_markdown,
    ".markdown": read_markdown,
    ".txt": read_plain_text,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".html": read_html,
    ".htm": read_html,
}

# Document formats people keep beside the supported ones; reported by name rather than ignored.
UNSUPPORTED = {
    ".doc": "old Word format; save it as .docx",
    ".wps": "WPS format; save it as .docx",
    ".rtf": "RTF; save it as .docx",
    ".odt": "OpenDocument text; save it as .docx",
    ".pages": "Pages format; export it as .docx or .pdf",
    ".caj": "CAJ format; export it as .pdf",
}


def extract(raw: bytes, suffix: str) -> Extracted:
    """Read a file's bytes with the reader for its suffix; DocumentError if it cannot be read."""
    suffix = suffix.lower()
    if suffix in UNSUPPORTED:
        raise DocumentError(f"unsupported format ({UNSUPPORTED[suffix]})")
    if not raw.strip():
        raise DocumentError("empty file")
    extracted = READERS[suffix](raw)
    if not extracted.text.strip():
        raise DocumentError("no text in it")
    return extracted


def _short(error: Exception) -> str:
    message = " ".join(str(error).split()) or type(error).__name__
    return message if len(message) <= 120 else message[:117] + "..."
