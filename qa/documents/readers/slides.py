"""PowerPoint presentations (.pptx, python-pptx): each slide a section, titled by its title, its page the slide number."""

import io
import zipfile

from qa.documents.pdf_repair import one_line
from qa.documents.readers.extracted import OLE_SIGNATURE, Extracted, TextBuilder
from qa.documents.tables import clean_cell, row_lines, table_title, title_row
from qa.errors import DocumentError, short_reason


def read_pptx(raw: bytes) -> Extracted:
    """Each slide of a .pptx a section titled by its title ("第 N 张幻灯片" if it has none), its page the
    slide number; text boxes top down, tables as row lines. Speaker notes are not read."""
    import pptx
    from pptx.exc import PackageNotFoundError

    if raw.startswith(OLE_SIGNATURE):
        raise DocumentError("password-protected or old-format PowerPoint file, not a .pptx archive; save it as an unprotected .pptx")
    try:
        slides = list(pptx.Presentation(io.BytesIO(raw)).slides)
    except (zipfile.BadZipFile, PackageNotFoundError) as error:
        raise DocumentError(f"broken .pptx archive ({short_reason(error)})") from None
    except Exception as error:  # python-pptx and lxml raise various types on a damaged package
        raise DocumentError(f"broken .pptx archive ({short_reason(error)})") from None
    builder = TextBuilder()
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
                    builder.line(one_line("".join(run.text for run in paragraph.runs)))
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
