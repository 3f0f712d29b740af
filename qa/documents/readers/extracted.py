"""What a reader gets out of a file, and the builder every reader writes it with.

The text is what citations point into; headings open sections, tables are sections of their own
(qa/documents/corpus.py), and paginated formats record where each page starts, so passages carry pages.
"""

from dataclasses import dataclass, field

from qa.documents.ocr import OcrSummary

# What Word and PowerPoint files start with when they are not zip archives: password-protected
# files and the old .doc/.ppt formats are OLE containers.
OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


@dataclass(frozen=True)
class Heading:
    """A heading line: its title, the span [start, end) of the whole line in the text, and its level (1 the
    outermost, as Markdown's `#`, Word's Heading 1 or HTML's h1; 0 a Word Title)."""

    title: str
    start: int
    end: int
    level: int = 1


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
    title: str = ""  # the title the file's metadata gives (PDF, Word, HTML <title>), if any


class TextBuilder:
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

    def heading(self, title: str, shown: bool = True, level: int = 1) -> None:
        """A heading; one not `shown` (a slide without a title) opens its section without a line in the text."""
        if not title:
            return
        if shown:
            self.line(title)
            self.headings.append(Heading(title, self.length - len(title), self.length, level))
        else:
            self.headings.append(Heading(title, self.length, self.length, level))

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

    def result(
        self, encoding: str | None = None, pages: int | None = None, ocr: OcrSummary | None = None, title: str = ""
    ) -> Extracted:
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
        return Extracted(text, self.headings, encoding, page_starts, self.tables, ocr, title)
