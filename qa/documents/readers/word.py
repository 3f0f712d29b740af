"""Word documents (.docx, python-docx): paragraphs and tables in order, Heading and Title styles open sections."""

import io
import re
import zipfile

from qa.documents.readers.extracted import OLE_SIGNATURE, Extracted, TextBuilder
from qa.documents.tables import caption, clean_cell, row_lines, table_title, title_row
from qa.errors import DocumentError, short_reason

_WORD_HEADING = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


def read_docx(raw: bytes) -> Extracted:
    """Paragraphs and tables of a .docx in order; Heading and Title styles open sections; a table is
    cited under its caption (the short line before it, "表1 …") or as "表 N"."""
    import docx
    from docx.table import Table as DocxTable

    if raw.startswith(OLE_SIGNATURE):
        raise DocumentError(
            "password-protected or old-format Word file, not a .docx archive; save it as an unprotected .docx"
        )
    try:
        document = docx.Document(io.BytesIO(raw))
        items = list(document.iter_inner_content())
    except zipfile.BadZipFile as error:
        raise DocumentError(f"broken .docx archive ({short_reason(error)})") from None
    except Exception as error:  # python-docx and lxml raise various types on a damaged package
        raise DocumentError(f"broken .docx archive ({short_reason(error)})") from None
    builder = TextBuilder()
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
        numbered = _WORD_HEADING.match(style or "")
        if style == "Title" or numbered:
            builder.heading(" ".join(text.split()), level=int(numbered.group(1)) if numbered else 0)
            last_line = ""
        else:
            builder.line(text)
            last_line = text or last_line
    return builder.result(title=(document.core_properties.title or "").strip())


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
