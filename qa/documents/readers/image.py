"""Images (.png .jpg .jpeg .tif .tiff) read by OCR (qa/documents/ocr.py); each frame of a TIFF a page."""

from qa.documents.ocr import OcrReader, OcrSummary
from qa.documents.readers.extracted import Extracted
from qa.documents.readers.pages import layout, ocr_items, ocr_reader
from qa.errors import DocumentError


def read_image(raw: bytes, ocr: OcrReader | None = None) -> Extracted:
    """The text of an image by OCR, each frame of a multi-page TIFF a page; DocumentError if it has none."""
    with ocr_reader(ocr) as reader:
        pages = reader.read_image(raw)
    summary = OcrSummary()
    for page in pages:
        summary.add(page)
    extracted = layout(ocr_items(pages), summary)
    if not extracted.text.strip():
        raise DocumentError("OCR found no text in this image (blank, or too faint or small to read)")
    return extracted
