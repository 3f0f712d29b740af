"""One lock around every PDFium call in the process.

PDFium is not thread-safe, not even across different documents: two calls at once corrupt the
heap (pypdfium2's documentation says so). The chat page renders cited pages in Gradio worker
threads while a rebuild may read PDFs in another, and the page process died with "free():
corrupted unsorted chunks" when they met. So every use of pypdfium2 holds PDFIUM from opening a
document to closing it, and closes what it opened inside the lock: nothing is left for a
finaliser to close later, unlocked, in whichever thread collects it. Work that is not PDFium's
(OCR, marking an image) runs outside the lock.
"""

import threading

PDFIUM = threading.RLock()  # re-entrant: a helper that locks may be called by code that already holds it


def render(page, scale: float):
    """`page` (a pypdfium2 PdfPage) drawn at `scale` pixels per point, as an RGB PIL image of its own."""
    with PDFIUM:
        bitmap = page.render(scale=scale)
        try:
            return bitmap.to_pil().convert("RGB")  # a copy: the bitmap's buffer is freed below
        finally:
            bitmap.close()
