"""The cited page of a PDF (or an image) as a picture, with the cited lines marked, for the chat page.

A PDF page is rendered by PDFium (pypdfium2). The cited text is found in the page's own text layer,
compared without whitespace (the corpus text has the PDF's wrapped lines joined and the spaces
inside Chinese removed, qa/documents/readers/pdf.py), and the boxes of its characters are merged into one mark
per line. A passage that runs on to the next page is marked as far as this page holds it. A scanned
page (or an image file) has no text layer: its lines are marked where OCR read them, from the
build's OCR cache (qa/documents/ocr.py, read-only, nothing is recognised here); without a cached result the
page is shown unmarked, and the view says so. Only files inside the corpus folder are opened
(qa/documents/corpus.py corpus_file).
"""

import ctypes
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageDraw, ImageSequence, UnidentifiedImageError

from qa.documents.corpus import corpus_file
from qa.documents.ocr import IMAGE_SUFFIXES, OcrPage, cached_page
from qa.documents.pdfium import PDFIUM, render
from qa.errors import CorpusError, PageViewError

WIDTH = 1200  # pixels across a rendered page: small print stays legible
MAX_HEIGHT = 3000  # pixels down at most: a long strip of a page is drawn narrower rather than huge
MAX_SCALE = 3.0  # pixels per PDF point at most (a small page is not blown up past legibility)
MIN_MATCH = 4  # characters: a shorter piece of a citation found on the page could be anywhere
MARK_FILL = (255, 214, 0, 90)  # translucent yellow, like the highlights of the chat page
MARK_EDGE = (230, 81, 0, 255)
SHOWN_SUFFIXES = (".pdf", *IMAGE_SUFFIXES)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PageView:
    """A rendered page of `source`: the image, how many lines of the cited text are marked, and a note
    that says what the image shows (in Chinese and English, for the page)."""

    image: Image.Image
    source: str
    page: int  # 1-based
    pages: int
    marked_lines: int
    note: str


def show_cited_page(corpus_dir: Path, source: str, page: int, cited_text: str, ocr_cache: Path | None = None) -> PageView:
    """Render page `page` (1-based) of the PDF or image `source` (relative to `corpus_dir`) with `cited_text` marked.

    Where the page has no text layer that holds the citation, the lines OCR read are looked up in the
    OCR cache `ocr_cache` (the build's, in the index folder). Raises PageViewError when the source is
    not a PDF or image inside the corpus folder, cannot be opened, or has no such page.
    """
    try:
        path = corpus_file(corpus_dir, source)
    except CorpusError as error:
        raise PageViewError(str(error)) from None
    suffix = path.suffix.lower()
    if suffix not in SHOWN_SUFFIXES:
        raise PageViewError(f"{source}: only pages of PDFs and images can be shown, not {suffix or 'files without a suffix'}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise PageViewError(f"{source}: cannot be read ({error.strerror})") from None
    if suffix == ".pdf":
        image, pages, boxes, has_text = _pdf_page(raw, source, page, cited_text)
    else:
        image, pages = _image_page(raw, source, page)
        boxes, has_text = [], False
    by_ocr = False
    if not boxes and ocr_cache is not None:
        scanned = cached_page(ocr_cache, raw, page)
        if scanned is not None:
            boxes = _ocr_boxes(scanned, cited_text, image.size)
            by_ocr = bool(boxes)
    _mark(image, boxes)
    return PageView(image, source, page, pages, len(boxes), _note(page, len(boxes), has_text, by_ocr))


def _pdf_page(raw: bytes, source: str, page: int, cited_text: str) -> tuple[Image.Image, int, list[Box], bool]:
    """(the page drawn, the PDF's page count, the cited lines' boxes in pixels, whether the page has a text layer)."""
    with PDFIUM:
        try:
            document = pdfium.PdfDocument(raw)
        except pdfium.PdfiumError as error:
            raise PageViewError(f"{source}: cannot open the PDF ({error})") from None
        try:
            pages = len(document)
            _check_page(source, page, pages)
            pdf_page = document[page - 1]
            scale = min(MAX_SCALE, WIDTH / pdf_page.get_width(), MAX_HEIGHT / pdf_page.get_height())
            image = render(pdf_page, scale)
            text_page = pdf_page.get_textpage()
            boxes = [_to_pixels(pdf_page, image.size, box) for box in cited_lines(text_page, cited_text)]
            has_text = text_page.count_chars() > 0
            text_page.close()
            pdf_page.close()
            return image, pages, boxes, has_text
        finally:
            document.close()


def _image_page(raw: bytes, source: str, page: int) -> tuple[Image.Image, int]:
    """(frame `page` of an image file, scaled to WIDTH across, the number of frames)."""
    try:
        picture = Image.open(io.BytesIO(raw))
        frames = getattr(picture, "n_frames", 1)
        _check_page(source, page, frames)
        frame = ImageSequence.Iterator(picture)[page - 1].convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise PageViewError(f"{source}: cannot open the image ({error})") from None
    scale = min(MAX_SCALE, WIDTH / frame.width, MAX_HEIGHT / frame.height)
    return frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))), frames


def _check_page(source: str, page: int, pages: int) -> None:
    if not isinstance(page, int) or isinstance(page, bool) or not 1 <= page <= pages:
        raise PageViewError(f"{source} has no page {page!r}: it has {pages} page{'s' if pages != 1 else ''}")


def _note(page: int, marked: int, has_text: bool, by_ocr: bool) -> str:
    if marked and by_ocr:
        return (f"第 {page} 页是扫描图像，黄色标出文字识别（OCR）读到的引用的 {marked} 行 · Page {page} is a scanned image: "
                "the cited lines are marked in yellow where OCR read them")
    if marked:
        return f"第 {page} 页，黄色标出引用的 {marked} 行 · Page {page}: the cited lines are marked in yellow"
    if not has_text:
        return (f"第 {page} 页是扫描图像，没有文字层，也没有文字识别的结果，无法标出引用的位置 · Page {page} is a scanned "
                "image without a text layer or OCR results: the cited lines cannot be marked")
    return (f"第 {page} 页，未能在此页的文字中找到引用的句子，未作标记 · Page {page}: the cited text was not found in "
            "this page's text, so nothing is marked")


def _ocr_boxes(scanned: OcrPage, cited_text: str, size: tuple[int, int]) -> list[Box]:
    """The boxes, in pixels of an image of `size`, of the rows OCR read that hold `cited_text`. The rows
    are taken in the order the reader joined them into the document's text (OcrPage.rows)."""
    rows = scanned.rows()
    chars, indices = [], []
    for number, row in enumerate(rows):
        for char in _comparable_text(row.text):
            chars.append(char)
            indices.append(number)
    found = _find("".join(chars), "".join(_comparable_text(cited_text)))
    if found is None:
        return []
    across, down = size[0] / max(1, scanned.width), size[1] / max(1, scanned.height)
    covered = dict.fromkeys(indices[found[0] : found[1]])
    return [tuple(round(value * scale) for value, scale in zip(rows[n].box, (across, down, across, down))) for n in covered]


def cited_lines(text_page: pdfium.PdfTextPage, cited_text: str) -> list[tuple[float, float, float, float]]:
    """The boxes (left, bottom, right, top, in PDF points) of the lines of `text_page` that hold `cited_text`.

    The whole text is looked for first; failing that, its longest beginning (at least MIN_MATCH
    characters) that the page holds, for a passage that continues on the next page. Empty if neither.
    """
    page_chars, indices = _comparable(text_page)
    wanted = "".join(_comparable_text(cited_text))
    found = _find(page_chars, wanted)
    if found is None:
        return []
    start, end = found
    return _line_boxes(text_page, indices[start:end])


def _comparable_text(text: str) -> list[str]:
    """`text` character by character as compared: compatibility forms folded (NFKC), whitespace dropped."""
    return [folded for char in text for folded in unicodedata.normalize("NFKC", char) if not folded.isspace() and folded.isprintable()]


def _comparable(text_page: pdfium.PdfTextPage) -> tuple[str, list[int]]:
    """The page's characters as compared, and for each the index of the character of the page it came from."""
    chars, indices = [], []
    for index in range(text_page.count_chars()):
        code = pdfium_c.FPDFText_GetUnicode(text_page.raw, index)
        if not code:
            continue
        for folded in _comparable_text(chr(code)):
            chars.append(folded)
            indices.append(index)
    return "".join(chars), indices


def _find(page_chars: str, wanted: str) -> tuple[int, int] | None:
    """[start, end) of `wanted`, or of its longest beginning of at least MIN_MATCH characters, in `page_chars`."""
    if not wanted:
        return None
    at = page_chars.find(wanted)
    if at >= 0:
        return at, at + len(wanted)
    # A beginning found means every shorter one is found too: search the length by halves.
    low, high = MIN_MATCH - 1, len(wanted) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if wanted[:middle] in page_chars:
            low = middle
        else:
            high = middle - 1
    if low < MIN_MATCH:
        return None
    at = page_chars.find(wanted[:low])
    return at, at + low


def _line_boxes(text_page: pdfium.PdfTextPage, indices: list[int]) -> list[tuple[float, float, float, float]]:
    """One box per line for the characters `indices` (in reading order): a character starts a new line
    when its vertical middle is outside the current line's box."""
    lines: list[list[float]] = []
    for index in dict.fromkeys(indices):  # a character folded into two is boxed once
        left, bottom, right, top = text_page.get_charbox(index)
        if right <= left or top <= bottom:  # a generated space or line break has no box of its own
            continue
        middle = (bottom + top) / 2
        if lines and lines[-1][1] <= middle <= lines[-1][3]:
            line = lines[-1]
            line[0], line[1], line[2], line[3] = min(line[0], left), min(line[1], bottom), max(line[2], right), max(line[3], top)
        else:
            lines.append([left, bottom, right, top])
    return [tuple(line) for line in lines]


def _to_pixels(pdf_page: pdfium.PdfPage, size: tuple[int, int], box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """A box in PDF points as (left, top, right, bottom) pixels of the rendered image; PDFium maps the points,
    so crop boxes and rotated pages come out where they are drawn."""
    corners = []
    for x, y in ((box[0], box[3]), (box[2], box[1])):
        device_x, device_y = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(pdf_page.raw, 0, 0, size[0], size[1], 0, x, y, device_x, device_y)
        corners.append((device_x.value, device_y.value))
    (x0, y0), (x1, y1) = corners
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _mark(image: Image.Image, boxes: list[tuple[int, int, int, int]]) -> None:
    """Draw a translucent band over each box, with a bar in the margin beside it, onto `image`."""
    if not boxes:
        return
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    pad = max(2, image.size[0] // 400)
    for left, top, right, bottom in boxes:
        draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=MARK_FILL, outline=MARK_EDGE, width=pad // 2 + 1)
        draw.rectangle((max(0, left - 6 * pad), top - pad, max(0, left - 4 * pad), bottom + pad), fill=MARK_EDGE)
    image.paste(Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB"))
