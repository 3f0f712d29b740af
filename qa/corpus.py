"""Read the corpus folder: every supported document, its text, and the sections its headings open.

A document's `text` is exactly what a citation's offsets point into. Markdown headings become the
`section` of the text under them; a plain-text file is one section without a heading.
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import CorpusError

SUPPORTED_SUFFIXES = (".md", ".txt")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


@dataclass(frozen=True)
class Section:
    """A run of body text [start, end) of a document under one heading ("" for none)."""

    heading: str
    start: int
    end: int


@dataclass(frozen=True)
class Document:
    source: str  # path relative to the corpus folder, with forward slashes
    text: str
    sections: list[Section]


@dataclass(frozen=True)
class Problem:
    """A corpus file that could not be read, and why; it is reported, never silently skipped."""

    source: str
    reason: str


def list_sources(corpus_dir: Path) -> list[Path]:
    """The supported files under `corpus_dir`, sorted, skipping hidden files and folders.

    Symbolic links that lead outside the corpus folder are not followed.
    """
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist; create it and put .md or .txt files in it")
    root = corpus_dir.resolve()
    found = []
    for path in sorted(corpus_dir.rglob("*")):
        relative = path.relative_to(corpus_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() not in SUPPORTED_SUFFIXES or not path.is_file():
            continue
        if not path.resolve().is_relative_to(root):
            continue
        found.append(path)
    return found


def source_name(path: Path, corpus_dir: Path) -> str:
    return path.relative_to(corpus_dir).as_posix()


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_hashes(corpus_dir: Path) -> dict[str, str]:
    """Map each supported source (relative name) to the sha256 of its bytes."""
    return {source_name(path, corpus_dir): file_hash(path) for path in list_sources(corpus_dir)}


def read_document(path: Path, corpus_dir: Path) -> Document:
    """Read one file into a Document; raise CorpusError with the reason when it cannot be read."""
    source = source_name(path, corpus_dir)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"{source}: cannot read ({error.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CorpusError(f"{source}: not UTF-8 text (bad byte at offset {error.start}); save it as UTF-8") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if path.suffix.lower() == ".md":
        sections = markdown_sections(text)
    else:
        sections = [Section("", 0, len(text))]
    return Document(source=source, text=text, sections=sections)


def markdown_sections(text: str) -> list[Section]:
    """Split Markdown into the body text under each heading; the heading line itself is not body."""
    sections = []
    heading, start = "", 0
    for match in _HEADING.finditer(text):
        sections.append(Section(heading, start, match.start()))
        heading, start = match.group(2).strip(), match.end()
    sections.append(Section(heading, start, len(text)))
    return [section for section in sections if text[section.start : section.end].strip()]


def read_corpus(corpus_dir: Path) -> tuple[list[Document], list[Problem]]:
    """Read every supported document; files that fail are returned as problems, not dropped silently."""
    documents, problems = [], []
    for path in list_sources(corpus_dir):
        try:
            documents.append(read_document(path, corpus_dir))
        except CorpusError as error:
            problems.append(Problem(source_name(path, corpus_dir), str(error)))
    return documents, problems
