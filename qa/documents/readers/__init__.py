"""Turn the bytes of one corpus file into plain text and the headings in it, one reader module per format.

    .md .markdown .txt           text.py         Markdown `#` headings open sections; plain text is one section
    .pdf                         pdf.py          the text layer, or OCR for scanned pages; ruled tables
    .docx                        word.py         paragraphs and tables in order, Heading/Title styles open sections
    .html .htm                   html.py         visible text by block, h1-h6 open sections
    .xlsx                        spreadsheet.py  each sheet a table
    .pptx                        slides.py       each slide a section, its page the slide number
    .png .jpg .jpeg .tif .tiff   image.py        read by OCR; each frame of a TIFF a page

Every reader returns an `Extracted` (extracted.py). Tables become one line per row, each cell with
its header (qa/documents/tables.py), in a section of their own that names the table; paginated
formats (pages.py) record where each page starts, so passages carry pages. A file that cannot be
read raises DocumentError with a reason a person can act on (bad encoding, damaged or encrypted
PDF, broken archive, empty file, an image OCR finds no text in).
"""

from collections.abc import Callable

from qa.documents.ocr import IMAGE_SUFFIXES, OcrReader
from qa.documents.readers.extracted import Extracted, Heading, Table
from qa.documents.readers.html import read_html
from qa.documents.readers.image import read_image
from qa.documents.readers.pdf import pdf_paragraphs, read_pdf
from qa.documents.readers.slides import read_pptx
from qa.documents.readers.spreadsheet import read_xlsx
from qa.documents.readers.text import decode_text, markdown_headings, read_markdown, read_plain_text
from qa.documents.readers.word import read_docx
from qa.errors import DocumentError

__all__ = [
    "READERS", "UNSUPPORTED", "Extracted", "Heading", "Reader", "Table", "decode_text", "extract",
    "markdown_headings", "pdf_paragraphs", "read_docx", "read_html", "read_image", "read_markdown",
    "read_pdf", "read_plain_text", "read_pptx", "read_xlsx",
]

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
