"""Scanned documents made from known text, for tests/documents/test_ocr.py and scripts/ocr_eval.py.

Text is set with reportlab in a CJK font (headings larger than the body, as in a printed policy
document), the pages are rasterised with pypdfium2 at 200 dpi in grey, and saved as an image-only
PDF (Pillow: one image per page, no text layer) or as PNG. The character error rate compares what
OCR read with the text that was set, whitespace removed on both sides.
"""

import io
import re
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape

from .helpers import PROJECT

SEED_FILE = PROJECT / "corpus" / "浙江高质量发展建设共同富裕示范区第二批典型经验.md"
DPI = 200


def cjk_font() -> Path | None:
    """A font file with Chinese glyphs (fontconfig's first for :lang=zh), or None if the machine has none."""
    try:
        listed = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    files = sorted(Path(line.split(":")[0].strip()) for line in listed.splitlines() if line.strip())
    return next((path for path in files if path.suffix.lower() in (".ttf", ".ttc") and path.is_file()), None)


def seed_cases() -> dict[int, tuple[str, str]]:
    """The seed's cases by number: (heading "1 为民办实事…", body text)."""
    text = SEED_FILE.read_text(encoding="utf-8")
    cases = {}
    for match in re.finditer(r"^## ((\d+) .+)\n+((?:(?!^#).*\n?)*)", text, re.MULTILINE):
        cases[int(match.group(2))] = (match.group(1).strip(), match.group(3).strip())
    return cases


def seed_without(numbers: set[int]) -> str:
    """The seed as Markdown without the cases `numbers` (they are given as scans instead)."""
    title = SEED_FILE.read_text(encoding="utf-8").splitlines()[0]
    kept = [f"## {heading}\n\n{body}\n" for number, (heading, body) in seed_cases().items() if number not in numbers]
    return title + "\n\n" + "\n".join(kept)


def page_images(blocks: list[tuple[str, str]], font: Path):
    """Pages (PIL images, grey, 200 dpi, A4) showing each (heading, body) block: heading 15 pt, body 12 pt."""
    import pypdfium2
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    pdfmetrics.registerFont(TTFont("scan-cjk", str(font), subfontIndex=0))
    body = ParagraphStyle("body", fontName="scan-cjk", fontSize=12, leading=19, wordWrap="CJK", firstLineIndent=24)
    heading = ParagraphStyle("heading", fontName="scan-cjk", fontSize=15, leading=26, wordWrap="CJK")
    story = []
    for title, text in blocks:
        if title:
            story.append(Paragraph(escape(title), heading))  # reportlab reads its text as markup
        for paragraph in text.split("\n"):
            if paragraph.strip():
                story.append(Paragraph(escape(paragraph.strip()), body))
        story.append(Spacer(1, 8))
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4).build(story)
    document = pypdfium2.PdfDocument(buffer.getvalue())
    try:
        return [document[n].render(scale=DPI / 72, grayscale=True).to_pil().convert("L") for n in range(len(document))]
    finally:
        document.close()


def image_pdf(images) -> bytes:
    """An image-only PDF, one image a page: what a scanner produces."""
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=DPI)
    return buffer.getvalue()


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def character_error_rate(recognised: str, source: str) -> float:
    """Edits (insertions, deletions, substitutions) from `source` to `recognised` per source character,
    whitespace removed from both: Chinese text has none, and line breaks are layout."""
    from rapidfuzz.distance import Levenshtein

    source, recognised = "".join(source.split()), "".join(recognised.split())
    return Levenshtein.distance(source, recognised) / max(1, len(source))
