"""OCR of scanned PDFs and images with the real engine (RapidOCR, PP-OCRv4), built into a real index.

Part of the seed is set in a CJK font and rasterised (tests/scans.py): cases 1 and 3 as an
image-only PDF, case 2 as a PNG; the rest of the seed stays Markdown. OCR of a page takes seconds
on a shared 2-core machine, so the scans are small and built once per module.
"""

import io

import pytest

from qa.documents.corpus import read_corpus
from qa.documents.ocr import OCR_CACHE_FILE, OcrReader
from qa.documents.readers import extract
from qa.errors import DocumentError

from ..conftest import case_number, read_dev_questions
from ..scans import character_error_rate, cjk_font, image_pdf, page_images, png, seed_cases, seed_without
from .test_readers import make_pdf

FONT = cjk_font()
needs_font = pytest.mark.skipif(FONT is None, reason="no CJK font on this machine (fc-list :lang=zh finds none; install fonts-wqy-microhei)")
PDF_CASES, PNG_CASES = (1, 3), (2,)


def blank_page(width: int = 300, height: int = 200):
    from PIL import Image

    return Image.new("L", (width, height), 255)


def test_blank_image_is_a_named_problem():
    with pytest.raises(DocumentError) as error:
        extract(png(blank_page()), ".png")
    assert str(error.value) == "OCR found no text in this image (blank, or too faint or small to read)"


def test_broken_image_is_a_named_problem():
    data = png(blank_page())
    with pytest.raises(DocumentError, match=r"^(not a readable image|damaged image, cannot be decoded) \("):
        extract(data[: len(data) // 2], ".png")


def test_pdf_of_blank_scans_is_a_named_problem():
    with pytest.raises(DocumentError) as error:
        extract(image_pdf([blank_page(), blank_page()]), ".pdf")
    assert str(error.value) == (
        "no text in this PDF (2 pages): OCR found none on its scanned pages (blank, or too faint or small to read)"
    )


@pytest.mark.slow  # a full A4 page to OCR: 10-20 s here
@needs_font
def test_mixed_pdf_reads_the_text_page_and_ocrs_the_scanned_one(tmp_path):
    from pypdf import PdfReader, PdfWriter

    text_page = make_pdf([["第一条 本办法自公布之日起施行。"]])
    scan = image_pdf(page_images([("", "第二条 本办法由省人民政府负责解释。")], FONT))
    writer = PdfWriter()
    for part in (text_page, scan):
        writer.append(PdfReader(io.BytesIO(part)))
    buffer = io.BytesIO()
    writer.write(buffer)
    with OcrReader(tmp_path / OCR_CACHE_FILE) as ocr:
        extracted = extract(buffer.getvalue(), ".pdf", ocr)
        assert ocr.recognised == 1  # only the scanned page
    assert extracted.text == "第一条本办法自公布之日起施行。\n第二条本办法由省人民政府负责解释。\n"
    assert extracted.page_starts == [0, extracted.text.index("第二条")]
    assert (extracted.ocr.pages, extracted.ocr.unreadable) == ([2], {})
    assert extracted.ocr.confidence > 0.9


@needs_font
def test_a_page_scanned_upside_down_is_read_turned():
    page = page_images([("", "第三条 本办法自2026年1月1日起施行。")], FONT)[0]
    page = page.crop((0, 0, page.width, page.height // 4)).rotate(180)
    assert extract(png(page), ".png").text == "第三条本办法自2026年1月1日起施行。\n"


# ---------------------------------------------------------------------------------------------
# A corpus with part of the seed scanned


@pytest.fixture(scope="module")
def scanned_seed(tmp_path_factory, embedder):
    """The seed with cases 1 and 3 as an image-only PDF and case 2 as a PNG, plus a PDF whose second
    page is a blank scan; built once, with the progress calls recorded."""
    if FONT is None:
        pytest.skip("no CJK font on this machine (fc-list :lang=zh finds none; install fonts-wqy-microhei)")
    from qa.assistant import Assistant
    from qa.config import Config

    cases = seed_cases()
    corpus = tmp_path_factory.mktemp("scanned-corpus")
    (corpus / "seed.md").write_text(seed_without({*PDF_CASES, *PNG_CASES}), encoding="utf-8")
    (corpus / "案例1和3.pdf").write_bytes(image_pdf(page_images([cases[n] for n in PDF_CASES], FONT)))
    (corpus / "案例2.png").write_bytes(png(page_images([cases[n] for n in PNG_CASES], FONT)[0]))
    notice = make_pdf([["附件：本通知自印发之日起施行，由省发展改革委负责解释。"]])
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for part in (notice, image_pdf([blank_page()])):
        writer.append(PdfReader(io.BytesIO(part)))
    with (corpus / "附件.pdf").open("wb") as file:
        writer.write(file)
    assistant = Assistant(Config(corpus_dir=corpus, index_dir=tmp_path_factory.mktemp("scanned-index")), embedder)
    calls = []
    report = assistant.rebuild(progress=lambda stage, done, total: calls.append((stage, done, total)))
    return assistant, report, calls


@pytest.mark.slow
def test_scanned_seed_is_read_with_at_most_2_percent_character_errors(scanned_seed):
    assistant, report, calls = scanned_seed
    assert report.problems == []
    assert {source: (summary.pages, summary.recognised, summary.cached) for source, summary in report.ocr.items()} == {
        "案例1和3.pdf": ([1], 1, 0), "案例2.png": ([1], 1, 0), "附件.pdf": ([2], 1, 0),
    }
    assert report.ocr["案例1和3.pdf"].confidence > 0.95
    # The blank scanned page is reported, not dropped silently; the rest of the file is indexed.
    assert [(p.source, p.reason) for p in report.page_problems] == [
        ("附件.pdf", "page 2: OCR found no text on it (blank, or too faint or small to read)")
    ]
    assert ("ocr", 1, 1) in calls  # progress per page
    cases = seed_cases()
    config = assistant.config
    with OcrReader(config.index_dir / OCR_CACHE_FILE) as ocr:  # the build's cache: nothing is read again
        for source, numbers in (("案例1和3.pdf", PDF_CASES), ("案例2.png", PNG_CASES)):
            [document], _ = read_corpus(config.corpus_dir, [config.corpus_dir / source], ocr=ocr)
            expected = "".join(heading + body for heading, body in (cases[n] for n in numbers))
            assert character_error_rate(document.text, expected) <= 0.02, document.text
            # Headings are recognised by their larger type: the cases keep their numbers.
            assert [case_number(s.heading) for s in document.sections] == list(numbers)
        assert ocr.recognised == 0


@pytest.mark.slow
def test_scanned_passages_carry_page_one_and_the_dev_questions_find_the_same_case(scanned_seed, seed_assistant):
    assistant, _, _ = scanned_seed
    questions = [q for q in read_dev_questions() if q["case"] in (*PDF_CASES, *PNG_CASES)]
    assert len(questions) == 6
    for question in questions:
        scanned, text = assistant.ask(question["question"], k=3), seed_assistant.ask(question["question"], k=3)
        assert case_number(scanned.passages[0].section) == case_number(text.passages[0].section) == question["case"], question
        if scanned.passages[0].source != "seed.md":
            assert scanned.passages[0].page == 1
    answer = assistant.ask("民生实事的责任怎么分解落实？", k=1).to_json()
    assert (answer["passages"][0]["source"], answer["passages"][0]["page"]) == ("案例1和3.pdf", 1)


@pytest.mark.slow
def test_rebuild_after_adding_one_scanned_file_ocrs_only_that_file(scanned_seed):
    # Last in this module: it adds a file to the shared corpus.
    assistant, _, _ = scanned_seed
    heading, body = seed_cases()[10]
    (assistant.config.corpus_dir / "新增.png").write_bytes(png(page_images([(heading, body[:60])], FONT)[0]))
    report = assistant.rebuild()
    # The unchanged scans are not even read (their passages come from the previous build): one page OCR'd.
    assert {source: (summary.recognised, summary.cached) for source, summary in report.ocr.items()} == {"新增.png": (1, 0)}
    assert report.changes.added == ["新增.png"]
    assert sorted(assistant.index.manifest["ocr"]) == ["新增.png", "案例1和3.pdf", "案例2.png", "附件.pdf"]
