"""Import a table of cases ("序号 名称 主要内容") extracted from a PDF into a clean Markdown document.

The layout, as the PDF-to-text extraction leaves it:

    浙江高质量发展建设共同富裕示范区第二批典型经验      <- document title
    序号 名称 主要内容                                  <- table header
    1                                                   <- case number, alone or followed by
    为 民 办 实 事                                      <- the title, wrapped over short lines
    20 年持续 增
    进民生福祉
                                                        <- a blank line ends the title
    每年将十方面民生实事纳入省政府工作报                <- the content, wrapped every ~20 characters,
    告，公开征集……                                      <- running until the next case number

Case numbers are recognised only in sequence (1, 2, 3, ...) and only after a line that ends a
sentence, so a content line that happens to start with a number (`141 颗“诗路珍珠”`, or a wrapped
`2 个项目`) is not taken for a new case.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from qa.documents.corpus import safe_file_name
from qa.documents.pdf_repair import join_lines
from qa.errors import ImportCasesError

_HEADER = re.compile(r"^\s*序\s*号\s+名\s*称\s+主\s*要\s*内\s*容\s*$")
_NUMBER_LINE = re.compile(r"^\s*(\d{1,3})(?:\s+(\S.*))?$")
_ENDS_SENTENCE = re.compile(r"[。！？；.!?;][”’」』）)\]\"']*\s*$")


@dataclass(frozen=True)
class Case:
    """One row of the table: the case's number, its title (名称) and its content (主要内容), lines joined."""

    number: int
    title: str
    text: str


@dataclass(frozen=True)
class CaseTable:
    """The document: its title (the lines above the header) and its cases in order."""

    title: str
    cases: list[Case]

    def to_markdown(self) -> str:
        """The document as Markdown: the title as H1, one `## N title` section per case."""
        parts = [f"# {self.title}\n"]
        for case in self.cases:
            parts.append(f"## {case.number} {case.title}\n\n{case.text}\n")
        return "\n".join(parts)


def parse_case_table(text: str) -> CaseTable:
    """Parse the extracted text of a case table; raise ImportCasesError when it has another layout."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    header_at = next((i for i, line in enumerate(lines) if _HEADER.match(line)), None)
    if header_at is None:
        raise ImportCasesError("no table header '序号 名称 主要内容' found: this is not a case table")
    title = join_lines(lines[:header_at])
    if not title:
        raise ImportCasesError("no document title found above the table header '序号 名称 主要内容'")

    # Group the lines after the header by case, starting a case at the next number in sequence.
    blocks: list[tuple[int, list[str]]] = []
    last_line = ""  # the last non-blank line, to tell a case number from a wrapped number
    for line in lines[header_at + 1 :]:
        match = _NUMBER_LINE.match(line)
        starts_case = not blocks or _ENDS_SENTENCE.search(last_line)
        if line.strip():
            last_line = line
        if match and starts_case and int(match.group(1)) == len(blocks) + 1:
            blocks.append((int(match.group(1)), [match.group(2) or ""]))
        elif blocks:
            blocks[-1][1].append(line)
        elif line.strip():
            raise ImportCasesError(f"text before case 1: {line.strip()[:40]!r}")
    if not blocks:
        raise ImportCasesError("no numbered cases found after the table header")
    return CaseTable(title=title, cases=[_parse_case(number, block) for number, block in blocks])


def _parse_case(number: int, lines: list[str]) -> Case:
    # The title runs from the number to the first blank line after it; the rest is the content.
    while len(lines) > 1 and not lines[0].strip():
        lines = lines[1:]
    title_lines: list[str] = []
    while lines and lines[0].strip():
        title_lines.append(lines.pop(0))
    title, text = join_lines(title_lines), join_lines(lines)
    if not title:
        raise ImportCasesError(f"case {number} has no title")
    if not text:
        raise ImportCasesError(f"case {number} ({title}) has no content")
    return Case(number=number, title=title, text=text)


def import_cases(source: Path, corpus_dir: Path, name: str | None = None, overwrite: bool = False) -> Path:
    """Convert the case table in `source` into `corpus_dir/<name>.md` and return that path.

    The name defaults to the document title. An existing file is replaced only with `overwrite`.
    """
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImportCasesError(f"{source}: no such file") from None
    except UnicodeDecodeError:
        raise ImportCasesError(f"{source}: not UTF-8 text; convert it with iconv first") from None
    except OSError as error:
        raise ImportCasesError(f"{source}: cannot read ({error.strerror})") from None
    table = parse_case_table(text)
    # One file in the corpus folder: path separators become "_", like other characters file systems refuse.
    stem = safe_file_name(name or table.title, "_").rstrip(" .")[:100] or "cases"
    target = corpus_dir / f"{stem}.md"
    if target.exists() and not overwrite:
        raise ImportCasesError(f"{target} already exists; pass --overwrite to replace it")
    corpus_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(table.to_markdown(), encoding="utf-8")
    partial.replace(target)  # never leave a half-written document in the corpus
    return target
