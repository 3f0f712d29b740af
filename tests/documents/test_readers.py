"""Document formats: real PDF, DOCX, HTML and text files made here, read into exact text and sections.

The PDFs are drawn with reportlab's built-in Chinese font (STSong-Light, no font file needed),
as lines placed where a layout would wrap them, so extraction has the artifacts real PDFs have.
"""

import io
from pathlib import Path

import pytest

from qa.documents.corpus import Document, Problem, Section, read_corpus, read_document
from qa.documents.readers import decode_text, extract, pdf_paragraphs
from qa.errors import DocumentError
from qa.passages import make_passages

# ---------------------------------------------------------------------------------------------
# Makers of real files (also used by tests/indexing/, tests/page/ and test_ocr.py, test_tables.py here)


def make_pdf(pages: list[list[str]], encrypt_with: str | None = None, owner_password: str | None = None) -> bytes:
    """A PDF with one text line per string, top down, in a Chinese font; [] draws a page with only a box."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buffer = io.BytesIO()
    drawing = canvas.Canvas(buffer)
    for lines in pages:
        if not lines:
            drawing.rect(72, 400, 300, 200, fill=1)  # what a scan's image looks like to a text extractor
        drawing.setFont("STSong-Light", 12)
        for number, line in enumerate(lines):
            drawing.drawString(72, 780 - 16 * number, line)
        drawing.showPage()
    drawing.save()
    data = buffer.getvalue()
    if encrypt_with is None and owner_password is None:
        return data
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=encrypt_with or "", owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(title: str, blocks: list[tuple[str, object]]) -> bytes:
    """A .docx with a Title and blocks ("heading", text), ("paragraph", text) or ("table", rows)."""
    import docx

    document = docx.Document()
    document.add_heading(title, level=0)
    for kind, value in blocks:
        if kind == "heading":
            document.add_heading(value, level=1)
        elif kind == "paragraph":
            document.add_paragraph(value)
        else:
            table = document.add_table(rows=len(value), cols=len(value[0]))
            for row, cells in zip(table.rows, value):
                for cell, text in zip(row.cells, cells):
                    cell.text = text
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


# Lines as a two-column-free A4 layout wraps them: the first two are full width.
POLICY_PAGE_1 = [
    "第一条 为了促进乡村振兴，吸引年轻人回乡创业，根据有关",
    "法律法规，结合本省实际，制定本办法。2021 年全省共培育 141",
    "家示范企业。",
    "第二条 扶持措施",
    "- 1 -",
]
POLICY_PAGE_2 = [
    "第三条 对返乡创业的青年，按规定给予一次性创业补贴，并",
    "提供 Zhejiang Province 创业担保贷款贴息，每人最高 50 万元。",
    "2",
]


# ---------------------------------------------------------------------------------------------
# PDF


def test_pdf_text_is_cleaned_like_the_seed_importer():
    extracted = extract(make_pdf([POLICY_PAGE_1, POLICY_PAGE_2]), ".pdf")
    assert extracted.text == (
        "第一条为了促进乡村振兴，吸引年轻人回乡创业，根据有关法律法规，结合本省实际，制定本办法。"
        "2021年全省共培育141家示范企业。\n"
        "第二条扶持措施\n"
        "第三条对返乡创业的青年，按规定给予一次性创业补贴，并提供Zhejiang Province创业担保贷款贴息，每人最高50万元。\n"
    )
    assert extracted.headings == [] and extracted.encoding is None


def test_pdf_paragraphs_run_on_across_a_page_break():
    # The last line of page 1 is full width and unfinished: the paragraph continues on page 2.
    pages = ["一二三四五六七八九十一二三四五六七八九十\n一二三四五六七八九十一二三四五六七八九十\n甲乙丙丁戊己庚辛壬癸甲乙丙丁戊己庚辛壬癸", "继续。\n新段。"]
    assert pdf_paragraphs(pages) == [
        "一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十甲乙丙丁戊己庚辛壬癸甲乙丙丁戊己庚辛壬癸继续。",
        "新段。",
    ]


def test_pdf_pages_start_where_their_text_does_even_inside_a_paragraph(tmp_path):
    # Page 1's last line is full width and unfinished: the paragraph runs on, and page 2 starts inside it.
    first = ["一二三四五六七八九十一二三四五六七八九十", "一二三四五六七八九十一二三四五六七八九十", "甲乙丙丁戊己庚辛壬癸甲乙丙丁戊己庚辛壬癸"]
    (tmp_path / "a.pdf").write_bytes(make_pdf([first, ["继续。", "新段。"], [], ["第四页。"]]))  # page 3: only a box
    document = read_document(tmp_path / "a.pdf", tmp_path)
    text = document.text
    assert document.page_starts == [0, text.index("继续"), text.index("第四页"), text.index("第四页")]
    assert [(p.text[-4:], p.page) for p in make_passages([document], max_chars=5)] == [("癸继续。", 1), ("新段。", 2), ("第四页。", 4)]


def test_pdf_locked_only_against_editing_is_read():
    data = make_pdf([["第一条 本办法自公布之日起施行。"]], owner_password="owner")
    assert extract(data, ".pdf").text == "第一条本办法自公布之日起施行。\n"


def test_encrypted_pdf_is_a_named_problem():
    data = make_pdf([["机密内容。"]], encrypt_with="secret", owner_password="owner")
    with pytest.raises(DocumentError) as error:
        extract(data, ".pdf")
    assert str(error.value) == "encrypted PDF: it needs a password; save a copy without protection"


def test_pdf_without_text_or_images_is_a_named_problem():
    # Scanned PDFs are read by OCR (tests/documents/test_ocr.py); a PDF of drawn boxes has nothing to read.
    with pytest.raises(DocumentError) as error:
        extract(make_pdf([[], []]), ".pdf")
    assert str(error.value) == "no text in this PDF (2 pages): no text layer and no scanned images to read"


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.4\nthis is not really a PDF", b"plain words, no PDF at all"],
    ids=["garbage-after-header", "not-a-pdf"],
)
def test_damaged_pdf_is_a_named_problem(data):
    with pytest.raises(DocumentError, match=r"^damaged PDF, cannot be parsed \(.+\)$"):
        extract(data, ".pdf")


def test_truncated_pdf_is_a_named_problem_or_its_readable_part():
    whole = make_pdf([POLICY_PAGE_1, POLICY_PAGE_2])
    with pytest.raises(DocumentError, match=r"^damaged PDF, cannot be parsed|^no text in this PDF"):
        extract(whole[: len(whole) // 3], ".pdf")


# ---------------------------------------------------------------------------------------------
# Word


def test_docx_paragraphs_tables_and_heading_sections(tmp_path):
    data = make_docx(
        "乡村振兴促进办法",
        [
            ("heading", "第一章 总则"),
            ("paragraph", "第一条 为了促进乡村振兴，制定本办法。"),
            ("table", [["序号", "名称"], ["1", "浙江省 杭州市"]]),
            ("heading", "第二章 附则"),
            ("paragraph", "第二条 本办法自公布之日起施行。"),
        ],
    )
    (tmp_path / "办法.docx").write_bytes(data)
    document = read_document(tmp_path / "办法.docx", tmp_path)
    assert document.text == (
        "乡村振兴促进办法\n第一章 总则\n第一条 为了促进乡村振兴，制定本办法。\n序号：1；名称：浙江省杭州市\n"
        "第二章 附则\n第二条 本办法自公布之日起施行。\n"
    )
    bodies = [(s.heading, document.text[s.start : s.end].strip(), s.rows) for s in document.sections]
    assert bodies == [
        ("第一章 总则", "第一条 为了促进乡村振兴，制定本办法。", False),
        ("第一章 总则 · 表 1", "序号：1；名称：浙江省杭州市", True),  # a table is a section of its own
        ("第二章 附则", "第二条 本办法自公布之日起施行。", False),
    ]


def test_broken_docx_archive_is_a_named_problem():
    data = make_docx("标题", [("paragraph", "正文。")])
    with pytest.raises(DocumentError) as error:
        extract(data[: len(data) // 2], ".docx")
    assert str(error.value) == "broken .docx archive (File is not a zip file)"


def test_password_protected_word_file_is_a_named_problem():
    # Word saves protected documents as OLE containers; only the signature matters for the check.
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    with pytest.raises(DocumentError) as error:
        extract(data, ".docx")
    assert str(error.value) == (
        "password-protected or old-format Word file, not a .docx archive; save it as an unprotected .docx"
    )


# ---------------------------------------------------------------------------------------------
# HTML


def test_html_visible_text_by_block_with_heading_sections():
    page = """<!doctype html><html><head><meta charset="gbk"><title>页面标题</title>
    <style>p { color: red }</style><script>var secret = "不应出现";</script></head>
    <body><nav>首页 &gt; 政策</nav>
    <h1>乡村振兴</h1>
    <p>第一条　为了促进
       乡村振兴，<b>制定</b>本办法。</p>
    <table><tr><th>序号</th><th>名称</th></tr><tr><td>1</td><td>浙江省</td></tr></table>
    <h2>附则</h2><div>文中的 &lt;script&gt; 是文字。<br>第二行</div><!-- 注释 -->
    </body></html>"""
    extracted = extract(page.encode("gbk"), ".html")
    assert extracted.encoding == "GB18030"
    assert extracted.text == (
        "首页>政策\n乡村振兴\n第一条为了促进乡村振兴，制定本办法。\n序号：1；名称：浙江省\n"
        "附则\n文中的<script>是文字。\n第二行\n"
    )
    assert [(h.title, extracted.text[h.start : h.end]) for h in extracted.headings] == [
        ("乡村振兴", "乡村振兴"),
        ("附则", "附则"),
    ]


def test_html_that_lies_about_its_charset_is_a_named_problem():
    page = '<html><head><meta charset="utf-8"></head><body><p>政策</p></body></html>'.encode("gbk")
    with pytest.raises(DocumentError) as error:
        extract(page, ".htm")
    assert str(error.value) == (
        "bad encoding: the page says charset utf-8 but byte 50 is not utf-8; fix the <meta charset> or save it as UTF-8"
    )


# ---------------------------------------------------------------------------------------------
# Text encodings and empty files


def test_gbk_text_is_read_as_gb18030_and_says_so():
    assert decode_text("第一条，鼓励年轻人回乡创业。".encode("gbk")) == ("第一条，鼓励年轻人回乡创业。", "GB18030")
    assert decode_text("第一条\r\n".encode("utf-8-sig")) == ("第一条\n", "UTF-8")
    assert decode_text("第一条".encode("utf-16")) == ("第一条", "UTF-16")


def test_latin1_text_is_not_mistaken_for_chinese():
    # "é " and "è " are valid GB18030 byte pairs, but decode to characters no Chinese text uses together.
    with pytest.raises(DocumentError) as error:
        decode_text("Le café est à côté de la rivière.".encode("latin-1"))
    assert str(error.value) == (
        "bad encoding: neither UTF-8 nor GB18030 Chinese text (undecodable byte at offset 6); save it as UTF-8"
    )


@pytest.mark.parametrize("suffix", [".txt", ".md", ".pdf", ".docx", ".html"])
def test_empty_file_is_a_named_problem(suffix):
    with pytest.raises(DocumentError) as error:
        extract(b" \n", suffix)
    assert str(error.value) == "empty file"


def test_binary_data_named_txt_is_a_named_problem():
    with pytest.raises(DocumentError, match=r"^binary data, not text \(it contains NUL bytes\)$"):
        extract(b"abc\x00def", ".txt")


# ---------------------------------------------------------------------------------------------
# The corpus folder


def test_corpus_of_every_format_reads_good_files_and_names_the_bad_ones(tmp_path):
    (tmp_path / "a.md").write_text("# 标题\n\n正文。\n", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes("国标编码的正文。".encode("gbk"))
    (tmp_path / "c.pdf").write_bytes(make_pdf([["第一条 本办法自公布之日起施行。"]]))
    (tmp_path / "d.docx").write_bytes(make_docx("办法", [("paragraph", "条文。")]))
    (tmp_path / "e.html").write_text("<p>网页正文。</p>", encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n%%EOF")
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0")
    (tmp_path / "~$d.docx").write_bytes(b"owner lock file Word keeps while d.docx is open")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")  # images are read by OCR: a broken one is named
    (tmp_path / "data.json").write_bytes(b"{}")  # not a document format: not listed

    documents, problems = read_corpus(tmp_path)

    assert [(d.source, d.text, d.encoding) for d in documents] == [
        ("a.md", "# 标题\n\n正文。\n", "UTF-8"),
        ("b.txt", "国标编码的正文。", "GB18030"),
        ("c.pdf", "第一条本办法自公布之日起施行。\n", None),
        ("d.docx", "办法\n条文。\n", None),
        ("e.html", "网页正文。\n", "UTF-8"),
    ]
    assert documents[0].sections == [Section("标题", 4, 10)]
    assert [p.source for p in problems] == ["broken.pdf", "empty.txt", "image.png", "old.doc"]
    assert problems[1] == Problem("empty.txt", "empty file")
    assert problems[2].reason.startswith("not a readable image (cannot identify image file")
    assert problems[3] == Problem("old.doc", "unsupported format (old Word format; save it as .docx)")
    assert problems[0].reason.startswith("damaged PDF, cannot be parsed (")


def test_read_document_names_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_bytes(b"")
    with pytest.raises(DocumentError) as error:
        read_document(tmp_path / "sub" / "x.txt", tmp_path)
    assert str(error.value) == "sub/x.txt: empty file"


def test_markdown_document_offsets_are_the_file_text(tmp_path):
    path: Path = tmp_path / "a.md"
    path.write_text("前言。\n\n# 第一章\n\n正文。\n", encoding="utf-8")
    document = read_document(path, tmp_path)
    assert document == Document(
        "a.md", "前言。\n\n# 第一章\n\n正文。\n", [Section("", 0, 5), Section("第一章", 10, 16, path=("第一章",))], "UTF-8",
        title="a",  # text comes before the heading, so it does not name the document: the file does
    )
