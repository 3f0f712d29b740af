"""Adding and removing documents from the page (qa/documents/uploads.py), the gate's rule for uploads (qa/page/access.py),
the page's add/remove events, and the cited page of a PDF drawn with its lines marked (qa/page/pdf_view.py).

PDFs are drawn here with reportlab (tests/documents/test_readers.py make_pdf); the page's events run as the server
calls them (tests/page/test_security.py page_functions), over a small real index.
"""

import asyncio
import json
import os
from pathlib import Path

import gradio as gr
import httpx
import pytest

from qa.assistant import Assistant
from qa.documents.corpus import SUPPORTED_SUFFIXES, corpus_file, list_sources
from qa.documents.ocr import OCR_CACHE_FILE, OcrReader
from qa.documents.uploads import add_document, corpus_documents, remove_document, safe_name
from qa.errors import CorpusError, PageViewError, UploadError
from qa.page.access import Gate, host_names
from qa.page.chat import Chat
from qa.page.pdf_view import show_cited_page
from qa.page.server import upload_limit

from ..documents.test_readers import make_pdf
from ..helpers import HTTP_TIMEOUT, make_corpus, running_page
from .test_security import PageSession, page_functions

# --- safe names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, stored",
    [
        ("报告 2024.pdf", "报告 2024.pdf"),
        ("../../etc/cron.d/计划.md", "计划.md"),
        ("C:\\Users\\ann\\政策.docx", "政策.docx"),
        (".hidden.txt", "hidden.txt"),
        ("..  .bashrc.md", "bashrc.md"),
        ("~$草稿.docx", "草稿.docx"),
        ("a:b?<c>|d*.html", "abcd.html"),
        ("x\x00y\n.md", "xy.md"),
        ("CON.txt", "CON_.txt"),
        ("Report.PDF", "Report.PDF"),
    ],
)
def test_an_uploaded_name_is_stored_as_its_last_part_never_hidden(name, stored):
    assert safe_name(name) == stored


ACCEPTED = "accepted: " + ", ".join(SUPPORTED_SUFFIXES)  # the readers of qa/documents/readers/


@pytest.mark.parametrize(
    "name, message",
    [
        ("run.exe", f"run.exe: not a document the corpus can read; {ACCEPTED}"),
        ("..", f"..: not a document the corpus can read; {ACCEPTED}"),
        (".pdf", f".pdf: not a document the corpus can read; {ACCEPTED}"),
        ("报告/", f"报告/: not a document the corpus can read; {ACCEPTED}"),
        ("旧文件.doc", "旧文件.doc: this format is not read (old Word format; save it as .docx)"),
    ],
)
def test_a_name_without_a_readable_format_is_refused(name, message):
    with pytest.raises(UploadError) as refused:
        safe_name(name)
    assert str(refused.value) == message


# --- adding and removing -------------------------------------------------------------------------------


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "已有.md").write_text("# 已有\n\n原来的内容。\n", encoding="utf-8")
    return folder


def upload_file(tmp_path: Path, name: str, data: bytes) -> Path:
    """A file as Gradio keeps an upload: in a folder of its own, under the name the browser gave."""
    folder = tmp_path / "gradio" / str(len(list(tmp_path.glob("gradio/*"))))
    folder.mkdir(parents=True)
    path = folder / name
    path.write_bytes(data)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


def test_an_added_document_is_stored_whole_and_nothing_else_is_left(corpus, tmp_path):
    pdf = make_pdf([["民生实事项目由人大代表票决产生。"]])
    stored = add_document(corpus, "../../新政策.pdf", upload_file(tmp_path, "新政策.pdf", pdf), max_bytes=10_000_000)
    assert stored == "新政策.pdf"
    assert (corpus / "新政策.pdf").read_bytes() == pdf
    assert listing(corpus) == ["已有.md", "新政策.pdf"]  # no temporary file left behind
    assert corpus_documents(corpus) == ["已有.md", "新政策.pdf"]


def test_a_file_of_the_same_name_is_replaced_only_when_asked(corpus, tmp_path):
    new = upload_file(tmp_path, "已有.md", "# 新\n\n新的内容。\n".encode())
    with pytest.raises(UploadError, match=r"^已有.md is already in the corpus: it is replaced only when asked to$"):
        add_document(corpus, "已有.md", new, max_bytes=1000)
    assert (corpus / "已有.md").read_text(encoding="utf-8") == "# 已有\n\n原来的内容。\n"
    add_document(corpus, "已有.md", new, max_bytes=1000, replace=True)
    assert (corpus / "已有.md").read_text(encoding="utf-8") == "# 新\n\n新的内容。\n"
    assert listing(corpus) == ["已有.md"]


def test_a_link_of_the_same_name_is_not_followed_or_overwritten(corpus, tmp_path):
    outside = tmp_path / "outside.md"
    outside.write_text("outside", encoding="utf-8")
    (corpus / "链接.md").symlink_to(outside)
    with pytest.raises(UploadError, match="already in the corpus"):
        add_document(corpus, "链接.md", upload_file(tmp_path, "链接.md", b"# x\n\nplanted\n"), max_bytes=1000)
    add_document(corpus, "链接.md", upload_file(tmp_path, "链接.md", b"# x\n\nnew\n"), max_bytes=1000, replace=True)
    assert outside.read_text() == "outside" and not (corpus / "链接.md").is_symlink()


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("大.txt", b"x" * 1001, "大.txt: too large (0.0 MB); the limit is 0 MB a file"),
        ("空.md", b"", "空.md: the file is empty"),
        ("假.pdf", b"<html>not found</html>", "假.pdf: not a PDF file (it does not start as one)"),
        ("假.docx", b"PK but not a zip", "假.docx: not a .docx file (it is not the zip archive such files are)"),
    ],
)
def test_a_refused_file_leaves_the_corpus_as_it_was(corpus, tmp_path, name, data, message):
    with pytest.raises(UploadError) as refused:
        add_document(corpus, name, upload_file(tmp_path, name, data), max_bytes=1000)
    assert str(refused.value) == message
    assert listing(corpus) == ["已有.md"]


def test_a_removed_document_is_kept_aside_where_the_build_does_not_read(corpus):
    (corpus / "子目录").mkdir()
    (corpus / "子目录" / "文件.txt").write_text("内容。", encoding="utf-8")
    kept = remove_document(corpus, "子目录/文件.txt")
    assert kept.parent == corpus / ".removed" and kept.name.endswith("-子目录_文件.txt")
    assert kept.read_text(encoding="utf-8") == "内容。"
    assert corpus_documents(corpus) == ["已有.md"] and [p.name for p in list_sources(corpus)] == ["已有.md"]
    again = remove_document(corpus, "已有.md")
    assert again.exists() and corpus_documents(corpus) == []


@pytest.mark.parametrize("source", ["不存在.md", "../corpus/已有.md", "/etc/passwd", ".removed", "子目录"])
def test_only_a_listed_document_can_be_removed(corpus, source):
    (corpus / "子目录").mkdir()
    with pytest.raises(UploadError, match=r"is not a document of the corpus$"):
        remove_document(corpus, source)
    assert (corpus / "已有.md").exists()


# --- who may add and remove, at the page's events -------------------------------------------------------

DOCS = {"医保.md": "# 医保\n\n## 检查互认\n\n全省二级以上医院之间检查结果互认，减少重复检查。\n"}


@pytest.fixture
def small(tmp_path, embedder) -> Assistant:
    assistant = Assistant(make_corpus(tmp_path, DOCS), embedder)
    assistant.rebuild()
    return assistant


def test_adding_and_removing_needs_a_login_on_a_public_page_and_then_rebuilds(small, tmp_path):
    chat = Chat(small)
    events = page_functions(chat, rebuild_allowed=False)  # a non-loopback address, with a login
    corpus = small.config.corpus_dir
    upload = upload_file(tmp_path, "茶旅.md", "# 茶旅融合\n\n安吉白茶园建成茶旅小镇，游客可以采茶制茶。\n".encode())
    with pytest.warns(UserWarning, match=r"^添加文档需要登录 · Adding documents needs a login"):
        list(events["add_documents"]([str(upload)], False, gr.Request(username=None)))
    with pytest.warns(UserWarning, match=r"^删除文档需要登录 · Removing documents needs a login"):
        list(events["remove_documents"](["医保.md"], gr.Request(username=None)))
    assert listing(corpus) == ["医保.md"]

    list(events["add_documents"]([str(upload)], False, gr.Request(username="ann")))  # returns once rebuilt
    assert listing(corpus) == ["医保.md", "茶旅.md"]
    assert small.ask("在哪里可以采茶？").passages[0].source == "茶旅.md"
    with pytest.warns(UserWarning, match=r"^未添加 · Not added: 茶旅.md is already in the corpus"):
        list(events["add_documents"]([str(upload)], False, gr.Request(username="ann")))

    list(events["remove_documents"](["茶旅.md"], gr.Request(username="ann")))
    assert corpus_documents(corpus) == ["医保.md"]
    assert {p.source for p in small.index.passages} == {"医保.md"}


# --- the gate lets uploads in only from the page, within the limit ---------------------------------------


async def _served(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def gate_status(gate: Gate, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    encoded = [(b"host", b"127.0.0.1:7860")] + [(k.encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "client": ("127.0.0.1", 1), "headers": encoded}
    asyncio.run(gate(scope, receive, send))
    body = sent[1]["body"] if len(sent) > 1 else b""
    return sent[0]["status"], body


def test_the_gate_lets_uploads_in_only_from_the_page_itself_and_within_the_limit():
    def gate(max_upload_bytes: int) -> Gate:
        return Gate(_served, names=host_names("127.0.0.1"), any_address=False, waiting=lambda: [], max_body_bytes=1000,
                    max_waiting_per_session=8, max_waiting_per_address=64, max_upload_bytes=max_upload_bytes)

    multipart = {"content-type": "multipart/form-data; boundary=x"}
    page = {**multipart, "origin": "http://127.0.0.1:7860"}
    open_gate = gate(upload_limit(50_000_000))
    assert open_gate.max_upload_bytes == 201_000_000  # four files of the largest size a build reads, and the form
    assert gate_status(open_gate, "/gradio_api/upload", {**page, "content-length": "200000000"})[0] == 200
    too_large = gate_status(open_gate, "/gradio_api/upload", {**page, "content-length": "201000001"})
    assert too_large == (413, '{"detail": "upload too large: 201.0 MB is over this page\'s limit of 201 MB at a time; '
                              'add fewer or smaller files at once"}'.encode())
    assert gate_status(open_gate, "/gradio_api/upload", page)[0] == 411  # no length stated
    for origin in (None, "null", "http://evil.example", "http://127.0.0.1:9999", "http://localhost:7860"):
        headers = {**multipart, "content-length": "10", **({"origin": origin} if origin else {})}
        assert gate_status(open_gate, "/gradio_api/upload", headers)[0] == 403, origin
    # Only the upload route opens: recordings and multipart bodies elsewhere stay refused.
    for path in ("/gradio_api/process_recording", "/gradio_api/queue/join", "/gradio_api/component_server"):
        assert gate_status(open_gate, path, {**page, "content-length": "10"})[0] == 413, path
    closed = gate(0)
    assert gate_status(closed, "/gradio_api/upload", {**page, "content-length": "10"}) == (
        413, '{"detail": "this page accepts no files: uploads are refused"}'.encode())


# --- the cited page of a PDF ------------------------------------------------------------------------------

PAGE_ONE = ["第一页的开头是一段说明文字，用来占位。", "民生实事项目由人大代表票决产生，群众", "参与度明显提高。这是第二句话。"]
PAGE_TWO = ["第二页只有这一行文字，没有别的内容。"]


@pytest.fixture
def pdf_corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    (folder / "分册").mkdir(parents=True)
    (folder / "分册" / "报告.pdf").write_bytes(make_pdf([PAGE_ONE, PAGE_TWO, []]))
    return folder


def marked_rows(view) -> list[int]:
    """The pixel rows of the image where the marks' yellow shows (the text is black, the page white)."""
    image = view.image
    rows = []
    for y in range(0, image.size[1], 2):
        if any(_yellow(image.getpixel((x, y))) for x in range(0, image.size[0], 4)):
            rows.append(y)
    return rows


def _yellow(pixel) -> bool:
    red, green, blue = pixel
    return red > 230 and green > 200 and blue < 200


def test_the_cited_lines_are_marked_on_the_rendered_page(pdf_corpus):
    view = show_cited_page(pdf_corpus, "分册/报告.pdf", 1, "民生实事项目由人大代表票决产生，群众参与度明显提高。")
    assert (view.page, view.pages, view.marked_lines) == (1, 3, 2)
    assert view.note == "第 1 页，黄色标出引用的 2 行 · Page 1: the cited lines are marked in yellow"
    assert view.image.size[0] == 1200
    rows = marked_rows(view)
    # reportlab drew the lines 16 points apart from 780 points up; the page is 842 points tall.
    scale = 1200 / 595.2756
    second, third = (842 - 780 + 16) * scale, (842 - 780 + 32) * scale  # baselines of the cited lines, in pixels
    assert rows and second - 30 < rows[0] < second and third - 30 < rows[-1] < third + 10
    assert not any(row < (842 - 780) * scale for row in rows)  # the first line is not marked


def test_a_passage_that_runs_on_to_the_next_page_is_marked_as_far_as_this_page_holds_it(pdf_corpus):
    view = show_cited_page(pdf_corpus, "分册/报告.pdf", 1, "这是第二句话。第二页只有这一行文字，")
    assert view.marked_lines == 1


def test_a_page_without_text_is_shown_unmarked_and_says_so(pdf_corpus):
    view = show_cited_page(pdf_corpus, "分册/报告.pdf", 3, "民生实事项目")
    assert view.marked_lines == 0 and marked_rows(view) == []
    assert view.note.startswith("第 3 页是扫描图像，没有文字层，也没有文字识别的结果，无法标出引用的位置 · Page 3 is a scanned image")
    missing = show_cited_page(pdf_corpus, "分册/报告.pdf", 2, "这句话不在此页")
    assert missing.marked_lines == 0 and missing.note.startswith("第 2 页，未能在此页的文字中找到引用的句子")


def test_a_long_strip_of_a_page_is_drawn_narrower_rather_than_huge(tmp_path):
    from reportlab.pdfgen import canvas

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    drawing = canvas.Canvas(str(corpus / "长图.pdf"), pagesize=(600, 12_000))
    drawing.drawString(72, 11_900, "a long strip")
    drawing.save()
    view = show_cited_page(corpus, "长图.pdf", 1, "a long strip")
    assert view.image.size == (150, 3000) and view.marked_lines == 1


# Page views in several threads while a build reads PDFs in another, as on a busy page. PDFium is not
# thread-safe: without qa/documents/pdfium.py this died with "corrupted double-linked list" in 2 of 3 runs.
# In a child process, so that a crash fails this test rather than ending the whole test run.
CONCURRENT = """
import sys, threading
from pathlib import Path
from qa.documents.readers import read_pdf
from qa.page.pdf_view import show_cited_page
corpus = Path(sys.argv[1])
raw = (corpus / "a.pdf").read_bytes()
def view():
    for _ in range(40):
        assert show_cited_page(corpus, "a.pdf", 2, "群众参与度明显提高").marked_lines >= 1
def read():
    for _ in range(40):
        assert "群众参与度明显提高" in read_pdf(raw).text
threads = [threading.Thread(target=view) for _ in range(3)] + [threading.Thread(target=read)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("done")
"""


def test_pages_shown_while_pdfs_are_read_do_not_crash_the_process(tmp_path):
    import subprocess
    import sys

    (tmp_path / "a.pdf").write_bytes(make_pdf([["民生实事项目由人大代表票决产生，群众参与度明显提高。"] * 20] * 3))
    ran = subprocess.run([sys.executable, "-c", CONCURRENT, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0 and ran.stdout.strip() == "done", ran.stderr[-2000:]


SCANNED = ("1 渔船安全码", "舟山市推行渔船安全码，出海渔船每天扫码报备，海上救援时间缩短了一半。安全码汇集渔船位置、船员和救生设备信息。")


def test_a_scanned_page_is_marked_where_ocr_read_the_cited_lines(tmp_path):
    from ..scans import cjk_font, image_pdf, page_images, png

    font = cjk_font()
    if font is None:
        pytest.fail("no CJK font: install fonts-wqy-microhei (fc-list :lang=zh lists none)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    scan = page_images([SCANNED], font)[0]
    (corpus / "扫描件.pdf").write_bytes(image_pdf([scan]))
    (corpus / "扫描件.png").write_bytes(png(scan))
    cache = tmp_path / "index" / OCR_CACHE_FILE
    cited = "安全码汇集渔船位置、船员和救生设备信息。"

    unread = show_cited_page(corpus, "扫描件.pdf", 1, cited, cache)  # not yet in the cache: shown unmarked
    assert unread.marked_lines == 0 and unread.note.startswith("第 1 页是扫描图像，没有文字层，也没有文字识别的结果")
    with OcrReader(cache) as reader:  # what a build does
        reader.read_pdf_pages((corpus / "扫描件.pdf").read_bytes(), [1])
        reader.read_image((corpus / "扫描件.png").read_bytes())
    for source in ("扫描件.pdf", "扫描件.png"):
        view = show_cited_page(corpus, source, 1, cited, cache)
        assert view.marked_lines >= 1, source
        assert view.note == (f"第 1 页是扫描图像，黄色标出文字识别（OCR）读到的引用的 {view.marked_lines} 行 · Page 1 is a "
                             "scanned image: the cited lines are marked in yellow where OCR read them"), source
        rows = marked_rows(view)
        # The heading and the body's first line are above the cited sentence: the marks start below them.
        assert rows and rows[0] > 0.06 * view.image.size[1] and rows[-1] < 0.25 * view.image.size[1], (source, rows[:3], rows[-3:])
    with OcrReader(cache) as next_build:  # the first build was generation 1; the page views did not count as builds
        assert next_build.generation == 2


@pytest.mark.parametrize("page", [0, 4, -1, "1", None])
def test_a_page_the_pdf_lacks_is_refused(pdf_corpus, page):
    with pytest.raises(PageViewError, match=r"^分册/报告.pdf has no page .*: it has 3 pages$"):
        show_cited_page(pdf_corpus, "分册/报告.pdf", page, "x")


def test_only_files_inside_the_corpus_are_opened(pdf_corpus, tmp_path):
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(make_pdf([["外面的文件，不应显示。"]]))
    (pdf_corpus / "链接.pdf").symlink_to(outside)
    (pdf_corpus / "目录链接").symlink_to(tmp_path, target_is_directory=True)
    (pdf_corpus / ".隐藏.pdf").write_bytes(outside.read_bytes())
    (pdf_corpus / "说明.md").write_text("# 说明\n", encoding="utf-8")
    refused = {
        "../outside.pdf": "give its name relative to the corpus folder",
        "分册/../../outside.pdf": "give its name relative to the corpus folder",
        str(outside): "give its name relative to the corpus folder",
        "分册\\..\\..\\outside.pdf": "give its name relative to the corpus folder",
        ".隐藏.pdf": "give its name relative to the corpus folder",
        "链接.pdf": "it leads outside the corpus folder",
        "目录链接/outside.pdf": "it leads outside the corpus folder",
        "没有.pdf": "there is no such file",
        "分册": "it is not a file",
    }
    for source, reason in refused.items():
        with pytest.raises(PageViewError) as error:
            show_cited_page(pdf_corpus, source, 1, "外面")
        assert str(error.value) == f"{source!r} is not a document of the corpus: {reason}", source
        with pytest.raises(CorpusError):
            corpus_file(pdf_corpus, source)
    with pytest.raises(PageViewError, match=r"^说明.md: only pages of PDFs and images can be shown, not .md$"):
        show_cited_page(pdf_corpus, "说明.md", 1, "说明")
    assert corpus_file(pdf_corpus, "分册/报告.pdf") == (pdf_corpus / "分册" / "报告.pdf").resolve()
    assert os.path.exists(outside)


# --- over HTTP: only files uploaded from the page itself reach the corpus --------------------------------


@pytest.mark.slow
def test_over_http_only_a_file_uploaded_from_the_page_is_added(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("loopback-documents")
    config = make_corpus(folder, DOCS)
    Assistant(config, embedder).rebuild()
    corpus = config.corpus_dir
    secret = folder / "secret.md"  # a file of the server, outside the corpus
    secret.write_text("# 秘密\n\n服务器上的秘密文件。\n", encoding="utf-8")
    flags = ("--corpus", str(corpus), "--index", str(config.index_dir))
    env = {"QA_AUTH": "", "GRADIO_TEMP_DIR": str(folder / "gradio-files")}
    with running_page(*flags, log=folder / "app.log", env=env) as page:  # loopback, no login: the computer's user may add
        visitor = PageSession(page.url)
        forged = visitor.event("add_documents", [[{"path": str(secret), "meta": {"_type": "gradio.FileData"}}], False])
        assert forged[-1]["success"] is False and listing(corpus) == ["医保.md"]

        with httpx.Client(timeout=HTTP_TIMEOUT) as client:
            uploaded = client.post(page.url + "gradio_api/upload", headers={"origin": page.url.rstrip("/")},
                                   files=[("files", ("../茶旅.md", "# 茶旅\n\n安吉白茶园建成茶旅小镇。\n".encode(), "text/markdown"))])
        assert uploaded.status_code == 200, uploaded.text
        file = {"path": uploaded.json()[0], "orig_name": "茶旅.md", "meta": {"_type": "gradio.FileData"}}
        added = visitor.event("add_documents", [[file], False])
        assert added[-1]["success"] is True and listing(corpus) == ["医保.md", "茶旅.md"]
        assert "已重建 · Rebuilt: 2 文档 documents" in json.dumps(added[-1]["output"], ensure_ascii=False)

        for name in ("../医保.md", "/etc/passwd", ".removed"):
            refused = visitor.event("remove_documents", [[name]])
            assert listing(corpus) == ["医保.md", "茶旅.md"], (name, refused[-1])
