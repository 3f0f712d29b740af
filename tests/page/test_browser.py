"""The chat page in a real headless browser: Debian's chromium driven by Playwright.

One app process serves the module, over a temporary corpus: the seed cases plus a document whose
text contains HTML markup (which must show up as text, never run). Every test opens a fresh tab
(a fresh conversation), and checks that the page fetched nothing from outside 127.0.0.1.
Screenshots are kept in test-output/browser/ (git-ignored).
"""

import shutil
import time
from pathlib import Path

import httpx
import pytest

from qa.assistant import Assistant
from qa.config import Config
from qa.feedback import read_feedback

from ..conftest import SEED_CORPUS, case_number, dev_question
from ..helpers import PROJECT, running_page

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.browser  # and slow, as every test that starts app.py (conftest)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]
SCREENSHOTS = PROJECT / "test-output" / "browser"
WAIT_MS = 180_000  # this machine is shared and slow; nothing below depends on speed

MARKUP_DOCUMENT = """# 网页标记测试

## 1 网页标记原样显示

本段专门检验网页标记：<script>window.__qa_xss = 1</script> 和 <img src=x onerror="window.__qa_xss = 2"> 都应当作为文字原样显示。
"""
MARKUP_SENTENCE = '本段专门检验网页标记：<script>window.__qa_xss = 1</script> 和 <img src=x onerror="window.__qa_xss = 2"> 都应当作为文字原样显示。'


@pytest.fixture(scope="module")
def site(tmp_path_factory, embedder):
    """The app over a temporary corpus (seed + markup document), its index built here with the session's model."""
    folder = tmp_path_factory.mktemp("browser")
    corpus = folder / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    (corpus / "markup.md").write_text(MARKUP_DOCUMENT, encoding="utf-8")
    config = Config(corpus_dir=corpus, index_dir=folder / "index", feedback_file=folder / "feedback.jsonl")
    Assistant(config, embedder).rebuild()
    flags = ("--corpus", str(corpus), "--index", str(config.index_dir), "--feedback", str(config.feedback_file))
    with running_page(*flags, log=folder / "app.log") as served:
        yield {"url": served.url, "config": config}


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `apt-get install -y chromium` (scripts/test does)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # an empty user data dir
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(WAIT_MS)
        yield context
        context.close()


@pytest.fixture
def page(site, browser_context, request):
    """A fresh tab on the page; afterwards, a screenshot, and a check that every request stayed local."""
    tab = browser_context.new_page()
    requested: list[str] = []
    tab.on("request", lambda r: requested.append(r.url))
    tab.goto(site["url"])
    tab.wait_for_selector("#qa-question textarea")
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"))
    tab.close()
    outside = [url for url in requested if not url.startswith(site["url"])]
    assert outside == [], f"the page fetched from outside the app: {outside}"


def ask(page, question: str):
    """Type a question, press Enter, and return the locator of its answer (the last one in the chat)."""
    before = page.locator("#qa-chat .qa-answer, #qa-chat .qa-error").count()
    page.fill("#qa-question textarea", question)
    page.press("#qa-question textarea", "Enter")
    page.wait_for_function(
        f"document.querySelectorAll('#qa-chat .qa-answer, #qa-chat .qa-error').length > {before}", timeout=WAIT_MS
    )
    return page.locator("#qa-chat .qa-answer, #qa-chat .qa-error").last


def wait_for_records(path: Path, count: int, seconds: float = 120) -> list[dict]:
    """The feedback log once it holds `count` records (the page writes it after the click returns)."""
    deadline = time.monotonic() + seconds
    while len(records := read_feedback(path)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return records


def test_chinese_question_shows_cited_passages_of_the_right_case_with_a_highlight(page):
    row = dev_question("d14")  # 哪些级别的医院之间检查结果互认？ -> case 9
    answer = ask(page, row["question"])
    first = answer.locator(".qa-passage").first
    assert first.locator(".qa-case").inner_text() == f"案例 {row['case']}"
    assert "医学检查检验结果互认共享改革" in first.locator(".qa-title").inner_text()
    assert first.locator(".qa-source").inner_text() == "浙江高质量发展建设共同富裕示范区第二批典型经验.md"
    assert answer.locator(".qa-passage").count() == 5
    # The answer line quotes the best sentence of card [1], which is highlighted there; the evidence
    # (the hospital levels) is among the first cards (it is card [2]: see the strict xfail in test_chat).
    best = first.locator("mark.qa-best")
    assert answer.locator("mark.qa-best").count() == 1 and best.count() == 1 and best.is_visible()
    quoted = answer.locator(".qa-answer-line blockquote").inner_text()
    assert best.inner_text() in quoted and quoted.rstrip().endswith("[1]")
    cited = "".join(answer.locator(".qa-passage .qa-text").nth(i).inner_text() for i in range(3))
    assert row["evidence"] in cited.replace("\n", "")
    assert answer.locator(".qa-label").first.inner_text() == "最相关的原文"
    assert "相关度" in first.locator(".qa-score").inner_text()


def test_the_whole_case_opens_in_place_and_a_follow_up_shows_what_was_searched(page):
    first_question = dev_question("d10")["question"]  # 怎样吸引年轻人回乡创业？
    answer = ask(page, first_question)
    passage = answer.locator(".qa-passage").first
    section = passage.locator(".qa-section-text")
    assert not section.is_visible()
    passage.locator(".qa-section summary").click()
    assert section.is_visible()
    assert passage.locator(".qa-text").inner_text() == section.locator("mark.qa-cited").inner_text()
    assert len(section.inner_text()) > len(passage.locator(".qa-text").inner_text())

    follow = ask(page, "具体是怎么做的？")
    assert follow.locator(".qa-searched q").inner_text() == f"{first_question} 具体是怎么做的？"
    assert page.locator("#qa-chat .user-row").count() == 2


def test_out_of_scope_question_says_nothing_was_found(page):
    # (The dev set's English off-topic question may come out "uncertain": English thresholds sit low.)
    answer = ask(page, "红烧肉怎么做才好吃？")
    assert "没有找到相关内容" in answer.locator(".qa-not-found-line").inner_text()
    weak = answer.locator("details.qa-weak-matches")
    assert weak.count() == 1 and weak.get_attribute("open") is None  # folded
    assert not answer.locator(".qa-passage").first.is_visible()
    assert answer.locator(".qa-answer-line").count() == 0


def test_markup_in_a_passage_and_in_a_question_shows_as_text(page):
    answer = ask(page, "<b>网页标记</b>会原样显示吗？")
    texts = answer.locator(".qa-passage .qa-text").all_text_contents()
    assert MARKUP_SENTENCE in texts
    assert page.locator("#qa-chat .user-row").last.inner_text().strip() == "<b>网页标记</b>会原样显示吗？"
    assert page.locator("#qa-chat img[src='x']").count() == 0
    assert page.locator("#qa-chat script").count() == 0
    assert page.evaluate("window.__qa_xss === undefined")


def test_a_sample_question_and_a_thumbs_up_go_to_the_feedback_log(page, site):
    page.get_by_role("button", name="检查检验结果互认给群众带来什么好处？").click()
    page.wait_for_selector("#qa-chat .qa-answer")
    like = page.locator("#qa-chat .bot-row").last.get_by_role("button", name="Like", exact=True)
    like.click()
    records = wait_for_records(site["config"].feedback_file, 1)
    assert [(r["rating"], r["question"]) for r in records] == [("up", "检查检验结果互认给群众带来什么好处？")]
    assert case_number(records[0]["passages"][0]["section"]) == 9
    page.wait_for_selector("text=已记录反馈")
    page.locator("#qa-chat .bot-row").last.get_by_role("button", name="Liked", exact=True).click()  # take it back
    assert [r["rating"] for r in wait_for_records(site["config"].feedback_file, 2)] == ["up", "cleared"]


def test_the_document_picker_limits_the_next_questions_until_cleared(page):
    question = dev_question("d14")["question"]  # 哪些级别的医院之间检查结果互认？ -> the seed's case 9
    page.locator("#qa-filter").get_by_text("限定范围").first.click()
    picker = page.locator("#qa-documents input")
    picker.click()
    picker.fill("mark")  # typing filters the list
    assert page.get_by_role("option").all_inner_texts() == ["markup.md"]
    page.get_by_role("option", name="markup.md").click()
    line = page.locator("#qa-filter-line")
    line.get_by_text("仅在 markup.md 中查找").wait_for()
    reply = page.locator("#qa-chat .bot-row").last  # the scope is said above the answer
    answer = ask(page, question)
    assert reply.locator(".qa-scope").inner_text() == "仅在 markup.md 中查找"
    assert set(answer.locator(".qa-source").all_text_contents()) == {"markup.md"}

    follow = ask(page, "具体是怎么做的？")  # a follow-up keeps the scope
    assert reply.locator(".qa-scope").inner_text() == "仅在 markup.md 中查找"
    assert set(follow.locator(".qa-source").all_text_contents()) == {"markup.md"}

    page.locator("#qa-filter-clear").click()
    line.wait_for(state="hidden")
    whole = ask(page, question)
    assert reply.locator(".qa-scope").count() == 0
    assert whole.locator(".qa-source").first.inner_text() == "浙江高质量发展建设共同富裕示范区第二批典型经验.md"


def test_english_question_gets_english_labels(page):
    answer = ask(page, dev_question("d21")["question"])  # Which regulation covers mutual recognition of medical test results?
    labels = answer.inner_text()
    assert ("Cited passages" in labels) or ("Nothing relevant found" in labels)
    assert "引用段落" not in labels and "相关度" not in labels


def test_the_page_notices_a_corpus_change_and_rebuilds_while_answering(page, site):
    status = page.locator("#qa-index-status")
    page.wait_for_selector("#qa-index-status >> text=语料与索引一致")
    (site["config"].corpus_dir / "island.md").write_text(
        "# 海岛\n\n## 1 海岛渔村发展民宿\n\n海岛渔村把闲置渔民房改造成特色民宿，渔民当上了民宿管家。\n", encoding="utf-8"
    )
    page.reload()
    page.wait_for_selector("#qa-index-status >> text=语料已更改")
    assert "新增 added island.md" in status.inner_text()
    # Record every state the status panel shows, to see the live progress however fast the build is.
    page.evaluate(
        """() => { window.__qa_states = [];
        new MutationObserver(() => window.__qa_states.push(document.querySelector('#qa-index-status').innerText))
          .observe(document.querySelector('#qa-index-status'), {subtree: true, childList: true, characterData: true}); }"""
    )
    page.get_by_role("button", name="重建索引 · Rebuild index").click()
    answer = ask(page, dev_question("d14")["question"])  # answered from whichever index is served: never a gap
    assert answer.locator(".qa-case").first.inner_text() == "案例 9"
    page.wait_for_selector("#qa-index-status >> text=已重建")
    assert any("正在重建" in state for state in page.evaluate("window.__qa_states"))
    assert "3 文档 documents" in status.inner_text() and "语料与索引一致" in status.inner_text()
    island = ask(page, "海岛渔村怎么发展民宿？")
    assert island.locator(".qa-source").first.inner_text() == "island.md"


# --- documents added from the page, and the cited page of a PDF ------------------------------------------

# Page 1 is long enough that the passage answering about the safety code starts on page 2.
FISHING_PAGES = [
    ["舟山渔区情况说明。", "舟山群岛由一千多个岛屿组成，是全国最大的海洋渔场之一。",
     "渔区历史悠久，渔民世代以捕捞为生，带鱼、大黄鱼和墨鱼是传统的主要渔获。", "近年来渔区发展海水养殖和水产品加工，渔民收入稳步增加。",
     "各乡镇建立了渔业合作社，统一收购和销售渔获，减少了中间环节。", "渔港建设不断加强，避风锚地可以容纳数千艘渔船。",
     "渔区学校和卫生院覆盖所有住人岛屿，渔民子女就近入学。", "这一页介绍的是渔区的基本情况。"],
    ["舟山市推行渔船安全码，出海渔船每天扫码报备，", "海上救援时间缩短了一半。", "安全码汇集渔船位置、船员和救生设备信息，",
     "遇险时救援力量可以直接调取。"],
]


@pytest.fixture(scope="module")
def login_site(tmp_path_factory, embedder):
    """The app with a login (--auth-file) over a two-document corpus, files up to 1 MB, Gradio's upload folder its own."""
    from .test_access import write_logins

    folder = tmp_path_factory.mktemp("documents")
    corpus = folder / "corpus"
    corpus.mkdir()
    (corpus / "医保.md").write_text("# 医保\n\n## 检查互认\n\n全省二级以上医院之间检查结果互认，减少重复检查。\n", encoding="utf-8")
    (corpus / "茶旅.md").write_text("# 茶旅\n\n## 茶旅融合\n\n安吉白茶园建成茶旅小镇，游客可以采茶制茶。\n", encoding="utf-8")
    config = Config(corpus_dir=corpus, index_dir=folder / "index", feedback_file=folder / "feedback.jsonl")
    Assistant(config, embedder).rebuild()
    logins = write_logins(folder / "logins.txt", "ann:right-password\n")
    flags = ("--corpus", str(corpus), "--index", str(config.index_dir), "--auth-file", str(logins))
    uploads = folder / "gradio-files"
    with running_page(*flags, log=folder / "app.log", env={"QA_AUTH": "", "GRADIO_TEMP_DIR": str(uploads), "QA_MAX_FILE_MB": "1"}) as served:
        yield {"url": served.url, "corpus": corpus, "uploads": uploads, "folder": folder}


def test_a_logged_in_user_adds_a_pdf_and_the_next_answer_cites_its_page(login_site, browser_context):
    from ..documents.test_readers import make_pdf

    url, corpus = login_site["url"], login_site["corpus"]
    pdf = login_site["folder"] / "渔船安全码.pdf"
    pdf.write_bytes(make_pdf(FISHING_PAGES))
    # Refused at the server, not only hidden: an upload sent as the page would send it, but without a login.
    with httpx.Client(timeout=120) as client:
        refused = client.post(url + "gradio_api/upload", files=[("files", ("渔船安全码.pdf", pdf.read_bytes(), "application/pdf"))],
                              headers={"origin": url.rstrip("/")})
    assert (refused.status_code, refused.json()["detail"]["error"]) == (401, "Not authenticated")
    stored = login_site["uploads"]
    assert not stored.exists() or not [p for p in stored.rglob("*") if p.is_file()]

    tab = browser_context.new_page()
    tab.goto(url)
    tab.locator("input[type=text]").first.fill("ann")
    tab.locator("input[type=password]").fill("right-password")
    tab.get_by_role("button", name="Login").click()
    tab.wait_for_selector("#qa-question textarea")
    tab.locator("#qa-documents-panel").get_by_text("文档 · Documents").first.click()
    big = login_site["folder"] / "大文件.txt"  # over the page's QA_MAX_FILE_MB=1
    big.write_bytes("政策".encode() * 300_000)
    tab.locator("#qa-upload input[type=file]").set_input_files(str(big))
    tab.wait_for_selector('text=File(s) exceed the maximum allowed size of 976.6 Kb: "大文件.txt"')
    tab.locator("#qa-upload input[type=file]").set_input_files(str(pdf))
    tab.wait_for_selector("#qa-index-status >> text=已重建")
    assert "3 文档 documents" in tab.locator("#qa-index-status").inner_text()
    assert sorted(p.name for p in corpus.iterdir()) == ["医保.md", "渔船安全码.pdf", "茶旅.md"]

    answer = ask(tab, "渔船安全码有什么用？")
    first = answer.locator(".qa-passage").first
    assert first.locator(".qa-source").inner_text() == "渔船安全码.pdf"
    assert "第 2 页" in first.inner_text()

    # The cited page, drawn with the cited lines marked.
    tab.locator("#qa-page-view").get_by_text("原文页面").first.click()
    tab.locator("#qa-cited-pages input").click()
    tab.get_by_role("option", name="[1] 渔船安全码.pdf · 第 2 页 · page 2").click()
    tab.wait_for_function("document.querySelector('#qa-page-image img')?.naturalWidth > 0", timeout=WAIT_MS)
    assert "第 2 页，黄色标出引用的" in tab.locator("#qa-page-note").inner_text()
    assert tab.evaluate("document.querySelector('#qa-page-image img').naturalWidth") == 1200
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.locator("#qa-page-view").screenshot(path=str(SCREENSHOTS / "page-view.png"))

    # A file swapped for a link to one outside the corpus is not opened.
    outside = login_site["folder"] / "outside.pdf"
    outside.write_bytes(make_pdf([["外面"], ["外面的文件"]]))
    (corpus / "渔船安全码.pdf").unlink()
    (corpus / "渔船安全码.pdf").symlink_to(outside)
    ask(tab, "渔船安全码有什么用？")  # the index still cites it; its page list starts afresh
    tab.locator("#qa-cited-pages input").click()
    tab.get_by_role("option", name="[1] 渔船安全码.pdf · 第 2 页 · page 2").click()
    tab.wait_for_selector("#qa-page-note >> text=it leads outside the corpus folder")
    assert tab.locator("#qa-page-image img").count() == 0
    tab.screenshot(path=str(SCREENSHOTS / "documents-and-page-view.png"))
    tab.close()
