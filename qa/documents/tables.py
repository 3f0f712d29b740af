"""Tables as text a person can read and a question can match: one line per row, each cell with its header.

    项目 | 指标 | 完成时间            项目：小微企业园；指标：新建30个；完成时间：2025年
    小微企业园 | 新建30个 | 2025年  ->

The first row with any text is the header (unless it is a title: one cell over a wider table, see
`title_row`); every later row becomes one line. A cell under an empty
header is written alone; empty cells are left out; a row that repeats the header (tables that
continue across PDF pages repeat it) is dropped. Each line is cited as one passage (see
qa/passages.py), under a section that names the table (see `table_title`).
"""

import re

from qa.documents.pdf_repair import one_line

CELL_SEPARATOR = "；"
HEADER_SEPARATOR = "："
_SENTENCE_END = "。！？；：…!?;:"


def clean_cell(value: object) -> str:
    """A cell's text on one line: whitespace collapsed, none between Chinese characters."""
    return "" if value is None else one_line(str(value))


def row_lines(rows: list[list[str]]) -> list[str]:
    """The body rows of a table as `header：value；header：value` lines (cells already cleaned)."""
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    if not body:  # a table of one row has no header to repeat: its cells in order
        return [CELL_SEPARATOR.join(cell for cell in header if cell)]
    lines = []
    for row in body:
        if row == header:
            continue
        cells = []
        for number, value in enumerate(row):
            name = header[number] if number < len(header) else ""
            if value:
                cells.append(f"{name}{HEADER_SEPARATOR}{value}" if name and name != value else value)
        if cells:
            lines.append(CELL_SEPARATOR.join(cells))
    return lines


def title_row(rows: list[list[str]]) -> tuple[str | None, list[list[str]]]:
    """(the table's title, the other rows) when its first row with text has one cell over a table
    whose other rows have several (a spreadsheet's "2025年民生指标" across the top); else (None, rows)."""
    rows = [row for row in rows if any(row)]
    if len(rows) >= 2 and sum(1 for cell in rows[0] if cell) == 1 and max(sum(1 for cell in row if cell) for row in rows[1:]) >= 2:
        return next(cell for cell in rows[0] if cell), rows[1:]
    return None, rows


_CAPTION = re.compile(r"^(?:附?表\s*[\d一二三四五六七八九十]+|.{0,40}(?:表|清单|一览|情况|统计|名单|目录))")


def caption(line: str) -> str | None:
    """`line` if it reads like a table's caption ("表1 重点项目", "2025年重点任务清单"), else None."""
    line = line.strip()
    if not line or len(line) > 40 or line[-1] in _SENTENCE_END:
        return None
    return line if _CAPTION.match(line) else None


def table_title(caption_line: str | None, number: int) -> str:
    """The name a table's rows are cited under: its caption, or "表 N" (its number in the document)."""
    return caption_line or f"表 {number}"
