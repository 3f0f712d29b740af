"""Read the corpus folder: every supported document, its text, and the sections its headings open.

A document's `text` is exactly what a citation's offsets point into: the file's text for .md and
.txt, the extracted (or OCR'd) text for the other formats (see qa/documents/readers/). Headings (Markdown
`#`, Word heading styles, HTML h1-h6, slide titles, large lines of a scan) become the `section` of
the text under them; a plain-text file or a text PDF is one section without a heading. A table is
a section of its own, named after the table, whose every line (one row) is cited on its own.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pathvalidate import sanitize_filename

from qa.documents.ocr import OcrReader, OcrSummary
from qa.documents.readers import READERS, UNSUPPORTED, Heading, Table, extract
from qa.documents.structure import document_date, fallback_title, heading_paths, part_headings, title_heading
from qa.errors import CorpusError, DocumentError

SUPPORTED_SUFFIXES = tuple(READERS)
# Listed too, so that a .doc dropped into the corpus is reported as unsupported instead of ignored.
LISTED_SUFFIXES = SUPPORTED_SUFFIXES + tuple(UNSUPPORTED)


@dataclass(frozen=True)
class Section:
    """A run of body text [start, end) of a document under one heading ("" for none).

    In a table's section (`rows`), each line is one row, cited on its own (qa/passages.py)."""

    heading: str
    start: int
    end: int
    rows: bool = False
    # The headings it sits under and its own, outermost first, the document's title left out:
    # ("人格权编", "第五章 名誉权和荣誉权").
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    source: str  # path relative to the corpus folder, with forward slashes
    text: str
    sections: list[Section]
    encoding: str | None = None  # the encoding a text file was decoded from ("UTF-8", "GB18030"); None for PDF, DOCX
    # Offset in `text` where each page (PDF page, slide) starts, page 1 first; None for sources without pages.
    page_starts: list[int] | None = None
    ocr: OcrSummary | None = None  # the pages read by OCR, if any
    title: str = ""  # its own title (qa/documents/structure.py): the heading that names it, its metadata's, or the file name
    date: str = ""  # its version date, YYYY-MM-DD, where its name or opening gives one


@dataclass(frozen=True)
class Problem:
    """A corpus file that could not be read, and why; it is reported, never silently skipped."""

    source: str
    reason: str  # without the source name: "empty file", "encrypted PDF: it needs a password; …"


def list_sources(corpus_dir: Path) -> list[Path]:
    """The document files under `corpus_dir`, sorted, skipping hidden files and folders.

    Supported formats and known unsupported ones (.doc, .wps…, reported when read) are listed.
    Word's lock files (`~$name.docx`, present while a document is open) and symbolic links that
    lead outside the corpus folder are not.
    """
    if corpus_dir.exists() and not corpus_dir.is_dir():
        raise CorpusError(f"{corpus_dir} is a file, not a folder: give the folder that holds the documents (a file goes inside it)")
    if not corpus_dir.is_dir():
        raise CorpusError(
            f"corpus folder {corpus_dir} does not exist; create it and put documents in it ({', '.join(SUPPORTED_SUFFIXES)})"
        )
    root = corpus_dir.resolve()
    found = []
    for path in sorted(corpus_dir.rglob("*")):
        relative = path.relative_to(corpus_dir)
        if any(part.startswith(".") for part in relative.parts) or path.name.startswith("~$"):
            continue
        if path.suffix.lower() not in LISTED_SUFFIXES or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            continue
        found.append(path)
    return found


def outside_links(corpus_dir: Path) -> list[str]:
    """Names of the symbolic links in `corpus_dir` that lead outside it (to files or folders): never
    followed, so that the corpus is what the folder holds; listed so a build can say so."""
    root = corpus_dir.resolve()
    found = []
    for path in sorted(corpus_dir.rglob("*")):
        if not path.is_symlink() or any(part.startswith(".") for part in path.relative_to(corpus_dir).parts):
            continue
        try:
            inside = path.resolve().is_relative_to(root)
        except (OSError, RuntimeError):  # a loop of links leads nowhere, so not outside either
            inside = True
        if not inside:
            found.append(source_name(path, corpus_dir))
    return found


def source_name(path: Path, corpus_dir: Path) -> str:
    """The name a source is cited by: its path relative to the corpus folder, with forward slashes."""
    return path.relative_to(corpus_dir).as_posix()


def safe_file_name(name: str, replacement: str = "") -> str:
    """`name` as a file name that every file system accepts and `list_sources` lists; may be "".

    Characters and names some file system refuses (`/`, `:`, control characters, CON…) are replaced by
    `replacement` (pathvalidate, for every platform), and what would hide the file is dropped: leading
    dots and spaces, and Word's lock-file prefix '~$'."""
    cleaned = sanitize_filename(name, replacement_text=replacement, platform="universal")
    return cleaned.lstrip(". ").removeprefix("~$").lstrip(". ")


def corpus_file(corpus_dir: Path, source: str) -> Path:
    """The file a source name (relative to `corpus_dir`, as citations give it) names, resolved; CorpusError
    unless it is a file inside the corpus folder, not hidden, reached without leaving the folder.

    A name is checked as text first (absolute, `..`, hidden parts, backslashes), then resolved, so that a
    symbolic link leading outside the corpus is refused like a path that does.
    """
    parts = source.split("/")
    if (not source or "\\" in source or "\x00" in source or source.startswith("/")
            or any(part in ("", ".", "..") or part.startswith(".") for part in parts)):
        raise CorpusError(f"{source!r} is not a document of the corpus: give its name relative to the corpus folder")
    root = corpus_dir.resolve()
    try:
        path = (corpus_dir / source).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a loop of links
        raise CorpusError(f"{source!r} is not a document of the corpus: there is no such file") from None
    if not path.is_relative_to(root):
        raise CorpusError(f"{source!r} is not a document of the corpus: it leads outside the corpus folder")
    if not path.is_file():
        raise CorpusError(f"{source!r} is not a document of the corpus: it is not a file")
    return path


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_hash(path: Path) -> str:
    """The sha256 of a corpus file; for a file that cannot be read (no permission, removed meanwhile) a
    stand-in made of its size and time, so it is still listed, reported by `read_corpus`, and seen
    as changed when it changes."""
    try:
        return file_hash(path)
    except OSError:
        try:
            facts = path.stat()
        except OSError:
            return "unreadable"
        return f"unreadable {facts.st_size} {facts.st_mtime_ns}"


class SourceHashes:
    """The sha256 of every source of a corpus folder, reading only files whose size or modification
    time changed since the previous call (a folder listing and a stat per file otherwise).

    A file written twice within one tick of the file system's clock could keep its size and time,
    so, as git does for its index, a hash is remembered only for a file that was already `settle`
    seconds old when it was read; younger files are read again on the next call.
    """

    def __init__(self, corpus_dir: Path, settle: float = 2.0):
        self.corpus_dir = corpus_dir
        self.settle_ns = int(settle * 1e9)
        self.files_read = 0  # files the last call had to read
        self._known: dict[str, tuple[tuple[int, int], str]] = {}  # source -> ((size, mtime_ns), sha256)

    def current(self, paths: list[Path] | None = None) -> dict[str, str]:
        """Map each source (relative name) among `paths` (default: all listed) to the sha256 of its bytes."""
        paths = list_sources(self.corpus_dir) if paths is None else paths
        hashes, known = {}, {}
        self.files_read = 0
        for path in paths:
            source = source_name(path, self.corpus_dir)
            stamp = _stamp(path)
            remembered = self._known.get(source)
            if stamp is not None and remembered is not None and remembered[0] == stamp:
                hashes[source] = remembered[1]
                known[source] = remembered
                continue
            now = time.time_ns()
            hashes[source] = source_hash(path)
            self.files_read += 1
            if stamp is not None and now - stamp[1] > self.settle_ns:
                known[source] = (stamp, hashes[source])
        self._known = known
        return hashes


def _stamp(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file; None if it cannot be seen (removed meanwhile)."""
    try:
        facts = path.stat()
    except OSError:
        return None
    return facts.st_size, facts.st_mtime_ns


def corpus_snapshot(corpus_dir: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every listed source: a cheap way to notice that something changed."""
    stamps = {source_name(path, corpus_dir): _stamp(path) for path in list_sources(corpus_dir)}
    return {source: stamp for source, stamp in stamps.items() if stamp is not None}


def read_document(path: Path, corpus_dir: Path) -> Document:
    """Read one file into a Document; raise DocumentError naming the file and the reason when it cannot be read."""
    source = source_name(path, corpus_dir)
    try:
        return _read(path, source)
    except DocumentError as error:
        raise DocumentError(f"{source}: {error}") from None


def _read(path: Path, source: str, max_bytes: int | None = None, ocr: OcrReader | None = None) -> Document:
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            # Checked before reading: such a file would hold the build for hours, or exhaust memory.
            raise DocumentError(
                f"too large ({_size(size)}, the limit is {_size(max_bytes)}): split it into "
                "smaller files, or raise the limit with QA_MAX_FILE_MB"
            )
        raw = path.read_bytes()
    except OSError as error:
        raise DocumentError(f"cannot read ({error.strerror})") from None
    extracted = extract(raw, path.suffix, ocr)
    headings = part_headings(extracted.text, extracted.headings)
    title = title_heading(extracted.text, headings)
    return Document(
        source=source,
        text=extracted.text,
        sections=sections_under(extracted.text, headings, extracted.tables, title),
        encoding=extracted.encoding,
        page_starts=extracted.page_starts,
        ocr=extracted.ocr,
        title=title.title if title else extracted.title or fallback_title(source),
        date=document_date(source, extracted.text),
    )


def _size(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size:,} bytes"


def sections_under(
    text: str, headings: list[Heading], tables: list[Table] | None = None, title: Heading | None = None
) -> list[Section]:
    """The body text under each heading (before the first: heading ""); heading lines are not body.
    Each section knows the path of headings it sits under (`title`, the document's, left out).

    Each table is a section of its own between the text before and after it, headed by the
    heading it sits under and its title ("3 小微企业园 · 表1 重点项目"), or its title alone."""
    sections = []
    heading, start, path = "", 0, ()
    for line, line_path in zip(headings, heading_paths(headings, title)):
        sections.append(Section(heading, start, line.start, path=path))
        heading, start, path = line.title, line.end, line_path
    sections.append(Section(heading, start, len(text), path=path))
    for table in tables or []:
        split = []
        for section in sections:
            if section.rows or not section.start <= table.start < section.end:
                split.append(section)
                continue
            named = f"{section.heading} · {table.title}" if section.heading and section.heading != table.title else table.title
            split += [
                Section(section.heading, section.start, table.start, path=section.path),
                Section(named, table.start, table.end, rows=True, path=(*section.path, table.title)),
                Section(section.heading, table.end, section.end, path=section.path),
            ]
        sections = split
    return [section for section in sections if text[section.start : section.end].strip()]


def read_corpus(
    corpus_dir: Path,
    paths: list[Path] | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_bytes: int | None = None,
    ocr: OcrReader | None = None,
) -> tuple[list[Document], list[Problem]]:
    """Read every supported document (or `paths`); files that fail are returned as problems, not dropped silently.

    `progress(done, total)` is called after each file; a file larger than `max_bytes` is a problem, unread.
    `ocr` reads scanned pages and images (with its cache); without one they are read uncached.
    """
    paths = list_sources(corpus_dir) if paths is None else paths
    documents, problems = [], []
    for number, path in enumerate(paths, start=1):
        source = source_name(path, corpus_dir)
        try:
            documents.append(_read(path, source, max_bytes, ocr))
        except DocumentError as error:
            problems.append(Problem(source, str(error)))
        if progress:
            progress(number, len(paths))
    return documents, problems
