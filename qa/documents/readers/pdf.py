"""PDFs page by page: the text layer (pypdf), or OCR for a page that has an image and no usable text.

The seed importer's clean-up applies (pages.py): no spaces inside Chinese, lines the layout wrapped
joined into paragraphs, page numbers dropped. Ruled tables are found by pdfplumber and become one
line per row (qa/documents/tables.py). Scanned pages are read by qa/documents/ocr.py, where lines set
larger than the body open sections. A PDF that is encrypted, damaged or without text on any page
raises DocumentError saying which.
"""

import io
import logging

from qa.documents.ocr import OcrReader, OcrSummary
from qa.documents.pdfium import PDFIUM
from qa.documents.readers.extracted import Extracted
from qa.documents.readers.pages import PAGE_NUMBER, PageItem, layout, ocr_items, ocr_reader, page_lines
from qa.documents.tables import clean_cell
from qa.errors import DocumentError, short_reason

# A page whose text layer has fewer usable characters than this, and an image, is read by OCR.
_USABLE_TEXT = 20


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
        raise DocumentError(f"damaged PDF, cannot be parsed ({short_reason(error)})") from None
    items = [[PageItem("line", line) for line in page_lines(text)] for text in pages]
    scanned, ruled = _pages_to_look_at(raw, pages)
    for number, page_items in _pdf_tables(raw, ruled).items():
        items[number - 1] = page_items
    summary = None
    if scanned:
        summary = OcrSummary()
        with ocr_reader(ocr) as reader:
            read = reader.read_pdf_pages(raw, scanned)
        for page in read:
            summary.add(page)
        for page, page_items in zip(read, ocr_items(read)):
            items[page.number - 1] = page_items
    extracted = layout(items, summary)
    if not extracted.text.strip():
        count = f"{len(pages)} page{'s' if len(pages) != 1 else ''}"
        if scanned:
            raise DocumentError(f"no text in this PDF ({count}): OCR found none on its scanned pages (blank, or too faint or small to read)")
        raise DocumentError(f"no text in this PDF ({count}): no text layer and no scanned images to read")
    extracted.title = _metadata_title(reader)
    return extracted


def _metadata_title(reader) -> str:
    """The PDF's own title, unless it is the name of the file it was made from ("Microsoft Word - 通知.doc")."""
    try:
        title = " ".join(str((reader.metadata or {}).get("/Title") or "").split())
    except Exception:  # a damaged info dictionary: the title then comes from the text
        return ""
    if title.lower().startswith(("microsoft word", "untitled")) or title.lower().endswith((".doc", ".docx", ".pdf", ".wps")):
        return ""
    return title


def pdf_paragraphs(pages: list[str]) -> list[str]:
    """Join the lines a PDF layout wrapped into paragraphs, across page breaks too.

    A line ends its paragraph when it is clearly shorter than the document's full lines (a
    paragraph's last line, a heading, a table row); full-width lines run on. Lines that are only a
    page number are dropped.
    """
    extracted = layout([[PageItem("line", line) for line in page_lines(page)] for page in pages])
    return [line for line in extracted.text.split("\n") if line]


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
                if _usable("".join(page_lines(text))) < _USABLE_TEXT:
                    if next(page.get_objects(filter=(pdfium.FPDF_PAGEOBJ_IMAGE,), max_depth=8), None) is not None:
                        scanned.append(number)
                elif sum(1 for _ in page.get_objects(filter=(pdfium.FPDF_PAGEOBJ_PATH,), max_depth=8)) >= 4:
                    ruled.append(number)
                page.close()
        finally:
            document.close()
    return scanned, ruled


def _pdf_tables(raw: bytes, numbers: list[int]) -> dict[int, list[PageItem]]:
    """The items of each page among `numbers` that holds a ruled table (pdfplumber), in reading order:
    its text lines outside the tables and each table's rows, by their place on the page."""
    if not numbers:
        return {}
    import pdfplumber

    found: dict[int, list[PageItem]] = {}
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
                placed = [(line["top"], PageItem("line", line["text"].strip())) for line in outside.extract_text_lines()]
                placed += [
                    (table.bbox[1], PageItem("table", rows=[[clean_cell(cell) for cell in row] for row in table.extract()]))
                    for table in tables
                ]
                placed.sort(key=lambda entry: entry[0])
                found[number] = [item for _, item in placed if item.kind == "table" or not PAGE_NUMBER.fullmatch(item.text)]
    except Exception:  # pdfminer fails on PDFs pypdf reads; their text layer stands, tables as plain lines
        return {}
    return found
