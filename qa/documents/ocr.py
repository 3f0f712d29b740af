"""Read the text of page images by OCR: scanned PDF pages and image files (.png .jpg .tif…), offline.

RapidOCR (`rapidocr-onnxruntime`) runs PaddleOCR's PP-OCRv4 Chinese/English detection and
recognition models on onnxruntime; the models ship inside its wheel, so nothing is downloaded. A
PDF page is rendered by pypdfium2 at about 2,000 pixels on its long side, the size RapidOCR scales
larger images down to anyway. Each recognised line keeps its confidence and its box.

OCR takes seconds a page, so results are cached by file content: the key is the sha256 of the
file's bytes, the page number and the OCR settings (engine version, rendering size), in
`ocr-cache.sqlite` in the index folder beside the embedding cache. An unchanged file is never
OCR'd twice, whatever its name; a page OCR found nothing on is cached too (the same pixels give
the same nothing). As in the embedding cache, rows no build used in the last two builds are
deleted after a successful build, and a damaged file is started afresh, never trusted.

Longer than most modules: the engine, its cache and the pages' lines share one cache key and one
rendering, which must change together.
"""

import hashlib
import importlib.metadata
import io
import json
import sqlite3
import statistics
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qa.cache_file import connect_cache, open_cache
from qa.documents.pdfium import PDFIUM, render
from qa.errors import DocumentError, short_reason

OCR_CACHE_FILE = "ocr-cache.sqlite"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# The thresholds below are part of how a page is read, not settings: the build reads the corpus again
# when this code changes (qa/indexing/changes.py reader_fingerprint hashes qa/documents), which it could
# not know of a setting.
# RapidOCR scales an image down to 2,000 pixels on its long side before detection; rendering a
# page larger only costs time, smaller loses small print.
PAGE_PIXELS = 2000
MAX_DPI = 300
# Lines recognised with less confidence are dropped (RapidOCR's own default threshold).
MIN_CONFIDENCE = 0.5
# A page read upright with less mean confidence than this is read upside down too (see `_recognise`).
UPSIDE_DOWN_BELOW = 0.8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    settings TEXT NOT NULL,     -- engine version and rendering size
    file BLOB NOT NULL,         -- sha256 of the file's bytes
    page INTEGER NOT NULL,      -- 1-based
    used INTEGER NOT NULL,      -- the generation (build number) that last used the row
    result TEXT NOT NULL,       -- JSON: {"width", "height", "lines": [[text, confidence, x0, y0, x1, y1], ...]}
    PRIMARY KEY (settings, file, page)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS generations (generation INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class OcrLine:
    """One recognised line: its text, the engine's confidence (0..1) and its box in page pixels."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1

    @property
    def character_size(self) -> float:
        """The width of one Chinese character in pixels (half that for a Latin letter or digit): the
        font size, steadier than the box's height, which quotes and descenders stretch."""
        width = sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in self.text)
        return (self.box[2] - self.box[0]) / max(1, width / 2)


@dataclass(frozen=True)
class OcrRow:
    """The lines on one row of a page, left to right, as one text; `size` is their character size."""

    text: str
    confidence: float
    box: tuple[float, float, float, float]
    size: float


@dataclass(frozen=True)
class OcrPage:
    """What OCR read on one page (1-based `number`): lines in reading order, top down, left to right."""

    number: int
    lines: list[OcrLine]
    width: int
    height: int
    from_cache: bool = False

    def rows(self) -> list[OcrRow]:
        """The page's lines with boxes side by side on one row merged (a table row, a spaced title),
        left to right, joined by a space; the clean-up later drops spaces between Chinese characters."""
        rows: list[list[OcrLine]] = []
        for line in sorted(self.lines, key=lambda line: (line.box[1] + line.box[3]) / 2):
            middle = (line.box[1] + line.box[3]) / 2
            if rows and rows[-1][0].box[1] < middle < rows[-1][0].box[3]:
                rows[-1].append(line)
            else:
                rows.append([line])
        merged = []
        for row in rows:
            row.sort(key=lambda line: line.box[0])
            left, top = min(line.box[0] for line in row), min(line.box[1] for line in row)
            right = max(line.box[2] for line in row)
            text = " ".join(line.text for line in row)
            characters = sum(len(line.text) for line in row)
            confidence = sum(line.confidence * len(line.text) for line in row) / max(1, characters)
            bottom = max(line.box[3] for line in row)
            size = statistics.median(line.character_size for line in row)
            merged.append(OcrRow(text, confidence, (left, top, right, bottom), size))
        return merged


@dataclass
class OcrSummary:
    """What OCR did for one file, for the build's summary: pages read, how, and how sure it was."""

    pages: list[int] = field(default_factory=list)  # 1-based numbers of the pages read by OCR
    recognised: int = 0  # pages the engine read in this build
    cached: int = 0  # pages whose text came from the OCR cache
    characters: int = 0
    confidence: float = 0.0  # mean over the recognised characters
    unreadable: dict[int, str] = field(default_factory=dict)  # page -> why OCR found nothing usable

    def add(self, page: OcrPage) -> None:
        self.pages.append(page.number)
        if page.from_cache:
            self.cached += 1
        else:
            self.recognised += 1
        characters = sum(len(line.text) for line in page.lines)
        if characters:
            total = self.confidence * self.characters + sum(line.confidence * len(line.text) for line in page.lines)
            self.characters += characters
            self.confidence = total / self.characters
        else:
            self.unreadable[page.number] = "OCR found no text on it (blank, or too faint or small to read)"

    def to_dict(self) -> dict:
        return {
            "pages": self.pages, "recognised": self.recognised, "cached": self.cached,
            "characters": self.characters, "confidence": round(self.confidence, 4),
            "unreadable": {str(page): reason for page, reason in self.unreadable.items()},
        }


class OcrReader:
    """Reads page images by OCR through the cache; one per build (use with `with` to close the cache).

    `progress(done, total)` is called after each page of a file that needs OCR. `recognised` counts
    the pages the engine actually read since this reader was made (cached pages are not counted).
    The engine is loaded on the first page that is not in the cache.
    """

    def __init__(self, cache_path: Path | None = None, progress: Callable[[int, int], None] | None = None):
        self.progress = progress or (lambda done, total: None)
        self.recognised = 0
        self.problem: str | None = None  # why the cache could not be used, if it could not
        self._engine = None
        self.settings = ocr_settings()
        self.path = Path(cache_path) if cache_path is not None else None
        self.connection: sqlite3.Connection | None = None
        # A corpus without scans gets no cache file; an existing one is opened now, so that this build
        # counts as a generation of it (see `forget_unused`) even if it reads nothing by OCR.
        if self.path is None or self.path.exists():
            self._connect()

    def _connect(self) -> None:
        if self.path is None:
            self.connection = connect_cache(":memory:", self._prepare)
        else:
            self.connection, self.problem = open_cache(self.path, self._prepare, "OCR cache", "scanned pages are read again")

    def _prepare(self, connection: sqlite3.Connection) -> None:
        connection.executescript(_SCHEMA)
        row = connection.execute("SELECT max(generation) FROM generations").fetchone()
        self.generation = (row[0] or 0) + 1
        connection.execute("DELETE FROM generations")
        connection.execute("INSERT INTO generations VALUES (?)", (self.generation,))

    # -- reading ------------------------------------------------------------------------------

    def read_pdf_pages(self, raw: bytes, numbers: list[int]) -> list[OcrPage]:
        """OCR the pages `numbers` (1-based) of a PDF, rendering only those the cache lacks."""
        file = hashlib.sha256(raw).digest()
        pages: list[OcrPage] = []
        document = None
        try:
            for done, number in enumerate(numbers):
                page = self._cached(file, number)
                if page is None:
                    with PDFIUM:  # rendering only: recognition runs outside the lock
                        if document is None:
                            import pypdfium2

                            try:
                                document = pypdfium2.PdfDocument(raw)
                            except pypdfium2.PdfiumError as error:
                                raise DocumentError(f"damaged PDF, its pages cannot be rendered for OCR ({error})") from None
                        pdf_page = document[number - 1]
                        image = _render(pdf_page)
                        pdf_page.close()
                    page = self._recognise(file, number, image)
                pages.append(page)
                self.progress(done + 1, len(numbers))
        finally:
            if document is not None:
                with PDFIUM:
                    document.close()
        return pages

    def read_image(self, raw: bytes) -> list[OcrPage]:
        """OCR every frame of an image file (a multi-page TIFF has several; other images one)."""
        from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

        file = hashlib.sha256(raw).digest()
        try:
            image = Image.open(io.BytesIO(raw))
            frames = getattr(image, "n_frames", 1)
        except (UnidentifiedImageError, OSError) as error:
            raise DocumentError(f"not a readable image ({short_reason(error)})") from None
        except Image.DecompressionBombError:
            raise DocumentError("image too large to read (over 179 million pixels); scale it down") from None
        pages = []
        for number in range(1, frames + 1):
            page = self._cached(file, number)
            if page is None:
                try:
                    frame = ImageSequence.Iterator(image)[number - 1]
                    # A phone photo is stored sideways with an EXIF note saying how to turn it.
                    pixels = _fit(ImageOps.exif_transpose(frame).convert("RGB"))
                except (OSError, ValueError) as error:  # truncated or damaged image data
                    raise DocumentError(f"damaged image, cannot be decoded ({short_reason(error)})") from None
                except Image.DecompressionBombError:
                    raise DocumentError("image too large to read (over 179 million pixels); scale it down") from None
                page = self._recognise(file, number, pixels)
            pages.append(page)
            self.progress(number, frames)
        return pages

    @property
    def engine(self):
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as error:  # OpenCV needs libGL.so.1 and libglib on Linux; a bare container may lack them
                raise DocumentError(
                    f"OCR is not available here ({short_reason(error)}); install the system library it names "
                    "(e.g. apt-get install libgl1 libglib2.0-0) to read scanned pages and images"
                ) from None

            # No per-line angle classifier: it turned whole upright lines upside down, which then read as
            # nothing (3 of 12 CMRC paragraphs set as scans lost a line). Pages are turned instead (`_recognise`).
            self._engine = RapidOCR(use_cls=False, text_score=0.0)  # every line: `_lines` keeps the confident ones
        return self._engine

    def _recognise(self, file: bytes, number: int, image) -> OcrPage:
        """Read one page image; a page that reads badly upright (under UPSIDE_DOWN_BELOW confidence, or
        nothing) is read turned half round too, and the better reading kept (a sheet scanned upside down)."""
        self.recognised += 1
        lines, boxes = self._lines(image)
        if boxes and _confidence(lines) < UPSIDE_DOWN_BELOW:  # text was found but reads badly
            turned, _ = self._lines(image.rotate(180))
            if _confidence(turned) * sum(len(line.text) for line in turned) > _confidence(lines) * sum(len(line.text) for line in lines):
                lines = [OcrLine(line.text, line.confidence, (image.width - line.box[2], image.height - line.box[3],
                                                              image.width - line.box[0], image.height - line.box[1])) for line in turned]
        page = OcrPage(number, lines, image.width, image.height)
        self._store(file, page)
        return page

    def _lines(self, image) -> tuple[list[OcrLine], bool]:
        """The lines read on an image with at least MIN_CONFIDENCE, and whether any text was detected at all."""
        import numpy as np

        found, _ = self.engine(np.asarray(image))
        lines = []
        for points, text, confidence in found or []:
            text = text.strip()
            if not text or confidence < MIN_CONFIDENCE:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            lines.append(OcrLine(text, float(confidence), (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))))
        return lines, bool(found)

    # -- the cache ----------------------------------------------------------------------------

    def _cached(self, file: bytes, number: int) -> OcrPage | None:
        if self.connection is None:
            self._connect()
        try:
            row = self.connection.execute(
                "SELECT result FROM pages WHERE settings = ? AND file = ? AND page = ?", (self.settings, file, number)
            ).fetchone()
            if row is None:
                return None
            self.connection.execute(
                "UPDATE pages SET used = ? WHERE settings = ? AND file = ? AND page = ?", (self.generation, self.settings, file, number)
            )
            return _cached_result(number, row[0])
        except (sqlite3.Error, ValueError, KeyError, TypeError):
            return None  # an unreadable row is read again by OCR and stored afresh

    def _store(self, file: bytes, page: OcrPage) -> None:
        result = {
            "width": page.width, "height": page.height,
            "lines": [[line.text, round(line.confidence, 4), *(round(v, 1) for v in line.box)] for line in page.lines],
        }
        try:
            self.connection.execute(
                "INSERT OR REPLACE INTO pages (settings, file, page, used, result) VALUES (?, ?, ?, ?, ?)",
                (self.settings, file, page.number, self.generation, json.dumps(result, ensure_ascii=False)),
            )
        except sqlite3.Error as error:
            self.problem = f"OCR cache {self.path} cannot be written ({error}); new OCR results are not kept"

    def keep(self, files: list[str]) -> None:
        """Count the cached pages of these files (sha256, hex) as used by this build although it did not
        read them (their passages came from the previous build): a later reader change reads them again."""
        if self.connection is None or not files:
            return
        try:
            self.connection.executemany("UPDATE pages SET used = ? WHERE file = ?", [(self.generation, bytes.fromhex(f)) for f in files])
        except sqlite3.Error:
            pass  # at worst those scans are read by OCR again

    def forget_unused(self) -> int:
        """Delete pages used by neither this build nor the previous one (call after a successful build)."""
        if self.connection is None:
            return 0
        try:
            return self.connection.execute("DELETE FROM pages WHERE used < ?", (self.generation - 1,)).rowcount
        except sqlite3.Error:
            return 0

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()

    def __enter__(self) -> "OcrReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ocr_settings() -> str:
    """What an OCR result depends on besides the file (the engine's version, the rendering size): part of the cache's key."""
    return f"rapidocr-onnxruntime {importlib.metadata.version('rapidocr-onnxruntime')}|{PAGE_PIXELS}px|upright lines"


def cached_page(cache_path: Path, raw: bytes, number: int) -> OcrPage | None:
    """What OCR read on page `number` (1-based) of the file whose bytes are `raw`, as the cache at
    `cache_path` holds it; None if it holds nothing usable. The cache is opened read-only: nothing is
    recognised or written, and the builds' bookkeeping is untouched (the chat page's page view)."""
    path = Path(cache_path)
    if not path.is_file():
        return None
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        row = connection.execute(
            "SELECT result FROM pages WHERE settings = ? AND file = ? AND page = ?",
            (ocr_settings(), hashlib.sha256(raw).digest(), number),
        ).fetchone()
        return None if row is None else _cached_result(number, row[0])
    except (sqlite3.Error, ValueError, KeyError, TypeError):
        return None
    finally:
        connection.close()


def _cached_result(number: int, result: str) -> OcrPage:
    """A page as the cache stores it (JSON of `OcrReader._store`); ValueError, KeyError or TypeError if damaged."""
    result = json.loads(result)
    lines = [OcrLine(text, confidence, (x0, y0, x1, y1)) for text, confidence, x0, y0, x1, y1 in result["lines"]]
    return OcrPage(number, lines, result["width"], result["height"], from_cache=True)


def _confidence(lines: list[OcrLine]) -> float:
    """Mean confidence per character of `lines`; 0 for none."""
    characters = sum(len(line.text) for line in lines)
    return sum(line.confidence * len(line.text) for line in lines) / characters if characters else 0.0


def _render(page):
    """A PDF page as a PIL image of about PAGE_PIXELS on its long side."""
    width, height = page.get_size()  # in points
    scale = min(PAGE_PIXELS / max(width, height, 1), MAX_DPI / 72)  # a small page is not blown up past print resolution
    return render(page, scale)


def _fit(image):
    """An image scaled down to PAGE_PIXELS on its long side (smaller images are left as they are)."""
    longest = max(image.size)
    if longest <= PAGE_PIXELS:
        return image
    scale = PAGE_PIXELS / longest
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
