"""The page's filter (issue 22): collections and documents chosen under the question box limit the next
questions (`Assistant.ask(..., within=...)`), the answer says so, follow-ups keep the scope, a name the
index does not hold is a message in the chat; the documents panel counts the collections; the sample
questions are the corpus's own. Over a small library in folders, its index built with the real model;
the page's events are called as Gradio calls them, without a browser."""

import gradio as gr
import pytest

from qa.assistant import Assistant
from qa.config import Config, PageSettings
from qa.documents.samples import QUESTIONS_FILE
from qa.page.chat import Chat, CorpusView
from qa.page.events import SAMPLES, corpus_settings
from qa.page.layout import build_page
from qa.page.scope import render_collections, render_filter, render_scope, scope

from .test_samples import SEED_SAMPLES

LIBRARY = {
    "民法典/人格权编.md": (
        "# 人格权编\n\n## 第五章 名誉权和荣誉权\n\n"
        "第一千零二十四条 民事主体享有名誉权。任何组织或者个人不得以侮辱、诽谤等方式侵害他人的名誉权。\n"
    ),
    "民法典/合同编.md": "# 合同编\n\n## 第一章 一般规定\n\n第四百六十四条 合同是民事主体之间设立、变更、终止民事法律关系的协议。\n",
    "司法解释/民事/名誉权案件解答.md": (
        "# 关于审理名誉权案件若干问题的解答\n\n## 一、名誉权案件的受理\n\n"
        "问：名誉权受到侵害向人民法院起诉的，人民法院是否受理？\n答：公民、法人认为自己的名誉权受到侵害，向人民法院提起诉讼的，人民法院应当依法受理。\n"
    ),
    "刑法/刑法.md": (
        "# 中华人民共和国刑法\n\n## 第四章 侵犯公民人身权利、民主权利罪\n\n"
        "第二百四十六条 以暴力或者其他方法公然侮辱他人或者捏造事实诽谤他人，情节严重的，处三年以下有期徒刑、拘役、管制或者剥夺政治权利。\n"
    ),
    "通知.md": "# 通知\n\n## 关于加强农村公路养护的要求\n\n各地要建立农村公路养护长效机制，保障农村公路安全畅通。\n",
}
QUESTION = "侮辱诽谤他人侵害名誉权怎么处理？"


@pytest.fixture(scope="module")
def library(tmp_path_factory, embedder) -> Assistant:
    folder = tmp_path_factory.mktemp("library")
    for source, text in LIBRARY.items():
        path = folder / "corpus" / source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assistant = Assistant(Config(corpus_dir=folder / "corpus", index_dir=folder / "index"), embedder)
    assistant.rebuild()
    return assistant


@pytest.fixture
def page_events(library):
    """The library's page as laid out, and its events by name (the functions Gradio calls)."""
    page = build_page(Chat(library), True, PageSettings())
    return page, {fn.name: fn for fn in page.fns.values() if fn.name}


def sources(turn) -> set[str]:
    return {passage.source for passage in turn.answer.passages}


def test_a_question_asked_within_a_collection_cites_only_it_and_says_so(page_events):
    _, events = page_events
    answer = events["answer"].fn
    messages, turns = answer(QUESTION, [], ["司法解释"], [])
    assert turns[-1].within == ("司法解释",) and turns[-1].answer.within == ("司法解释",)
    assert sources(turns[-1]) == {"司法解释/民事/名誉权案件解答.md"}
    assert messages[-1]["content"].startswith('<div class="qa-scope" title="司法解释">仅在 司法解释 中查找</div><div class="qa-answer')

    # A follow-up keeps the scope still chosen, and is searched with its topic.
    messages, turns = answer("具体怎么起诉？", turns, ["司法解释"], [])
    assert turns[-1].combined and turns[-1].within == ("司法解释",)
    assert sources(turns[-1]) == {"司法解释/民事/名誉权案件解答.md"}

    # A document, and a collection with it: each named once, the collection first.
    messages, turns = answer(QUESTION, turns, ["刑法"], ["民法典/人格权编.md", "刑法/刑法.md"])
    assert turns[-1].within == ("刑法", "民法典/人格权编.md", "刑法/刑法.md")
    assert sources(turns[-1]) <= {"刑法/刑法.md", "民法典/人格权编.md"}
    assert "仅在 刑法、民法典/人格权编.md、刑法/刑法.md 中查找" in messages[-1]["content"]

    # Nothing chosen: the whole corpus, and no line saying otherwise.
    messages, turns = answer(QUESTION, turns, [], [])
    assert turns[-1].within == () and turns[-1].answer.within == ()
    assert len(sources(turns[-1])) > 1 and "qa-scope" not in messages[-1]["content"]


def test_the_answer_event_is_wired_to_the_filter(page_events):
    page, events = page_events
    inputs = [getattr(block, "elem_id", None) for block in events["answer"].inputs]
    assert inputs[2:] == ["qa-collections", "qa-documents"]
    documents = next(block for block in page.blocks.values() if getattr(block, "elem_id", None) == "qa-documents")
    assert documents.multiselect and documents.filterable and documents.choices == []  # the list comes with the page load
    loaded = events["load_corpus"].fn()[2]
    assert loaded.multiselect and [value for _, value in loaded.choices] == sorted(LIBRARY) and loaded.value == []


def test_a_filter_naming_nothing_in_the_index_is_a_message_in_the_chat(page_events, caplog):
    _, events = page_events
    messages, turns = events["answer"].fn(QUESTION, [], [], ["民法典/人格权.md"])
    shown = messages[-1]["content"]
    assert turns[-1].answer is None and "ScopeError" not in shown and "Traceback" not in shown
    assert shown.startswith('<div class="qa-error"><strong>无法回答</strong>: ')
    assert "民法典/人格权.md" in shown and "人格权编" in shown  # the name asked for, and the nearest
    assert "Traceback" not in caplog.text


def test_the_chosen_scope_is_said_under_the_box_and_cleared(page_events):
    _, events = page_events
    line, clear = events["show_scope"].fn(["民法典"], ["通知.md"])
    assert line.value == render_filter(("民法典", "通知.md")) and line.visible and clear.visible
    assert "仅在 <b>民法典、通知.md</b> 中查找 · Searching only in 民法典, 通知.md" in line.value
    line, clear = events["show_scope"].fn([], None)
    assert line.visible is False and clear.visible is False
    assert events["clear_scope"].fn() == ([], [])


def test_scope_lines_escape_names_and_shorten_long_lists():
    names = ("a<b>.md", "b.md", "c.md", "d.md", "e.md")
    assert render_scope(names[:1], "zh") == '<div class="qa-scope" title="a&lt;b&gt;.md">仅在 a&lt;b&gt;.md 中查找</div>'
    assert ">仅在 a&lt;b&gt;.md、b.md、c.md 等 5 项 中查找<" in render_scope(names, "zh")
    assert ">Searched only in a&lt;b&gt;.md, b.md, c.md and 2 more<" in render_scope(names, "en")
    assert render_scope((), "zh") == render_filter(()) == ""
    assert scope(["民法典", "民法典"], ["民法典", "a.md"]) == ("民法典", "a.md")


def test_the_documents_panel_and_the_filter_count_the_collections(library, page_events):
    page, _ = page_events
    assert library.collections() == [("刑法", 1), ("司法解释", 1), ("司法解释/民事", 1), ("民法典", 2)]
    collections = next(block for block in page.blocks.values() if getattr(block, "elem_id", None) == "qa-collections")
    assert collections.choices == [("刑法 (1)", "刑法"), ("司法解释 (1)", "司法解释"), ("司法解释/民事 (1)", "司法解释/民事"),
                                   ("民法典 (2)", "民法典")]
    panel = next(block for block in page.blocks.values() if getattr(block, "elem_id", None) == "qa-collections-panel")
    assert panel.value == render_collections(library.collections(), library.documents())
    assert panel.value.startswith('<div class="qa-collections"><div>5 文档 documents · 4 合集 collections</div>')
    assert '<li style="margin-left:14px" title="司法解释/民事">民事 <span class="qa-count">1</span></li>' in panel.value
    assert '<li style="margin-left:0px" title="民法典">民法典 <span class="qa-count">2</span></li>' in panel.value
    assert '（不在合集中 · not in a collection） <span class="qa-count">1</span>' in panel.value


def test_after_a_rebuild_the_choices_keep_what_the_index_still_holds():
    view = CorpusView((("民法典", 1),), ("民法典/合同编.md", "通知.md"), ("问题？",))
    settings = corpus_settings(view, ["民法典", "刑法"], ["刑法/刑法.md", "通知.md"])
    assert settings[1]["value"] == ["民法典"] and settings[2]["value"] == ["通知.md"] and settings[2]["multiselect"]
    assert settings[0] == {"visible": True}
    assert settings[4:] == [{"value": "问题？", "visible": True}] + [{"visible": False}] * (SAMPLES - 1)
    one = corpus_settings(CorpusView((), ("通知.md",), ()))
    assert one[0] == {"visible": False} and one[1]["visible"] is False  # one document: nothing to choose between


def sample_buttons(page) -> list[str]:
    return [block.value for block in page.blocks.values() if "qa-sample" in (getattr(block, "elem_classes", None) or [])
            and block.visible]


def test_samples_are_drawn_from_this_corpus_headings_never_the_seeds(library, page_events):
    page, events = page_events
    shown = sample_buttons(page)
    assert sorted(shown) == sorted([
        "关于「名誉权和荣誉权」有哪些规定？", "关于「名誉权案件的受理」有哪些规定？", "关于「侵犯公民人身权利、民主权利罪」有哪些规定？",
        "关于「加强农村公路养护的要求」有哪些规定？",
    ])  # 合同编's only heading is generic (一般规定)
    assert not set(shown) & set(SEED_SAMPLES)
    loaded = events["load_corpus"].fn()  # unchanged since laid out: only the document list is sent
    assert loaded[:2] + loaded[3:] == (gr.skip(),) * (3 + SAMPLES) and isinstance(loaded[2], gr.Dropdown)

    # Questions written for the corpus replace them, from the next page load on.
    questions = library.config.corpus_dir / QUESTIONS_FILE
    questions.write_text("# 示例\n名誉权受到侵害怎么办？\n农村公路谁来养护？\n", encoding="utf-8")
    try:
        updates = events["load_corpus"].fn()
        assert [u.value for u in updates[4:] if u.visible] == ["名誉权受到侵害怎么办？", "农村公路谁来养护？"]
        assert [u.visible for u in updates[4:]] == [True, True] + [False] * (SAMPLES - 2)
        assert sample_buttons(build_page(Chat(library), True, PageSettings())) == ["名誉权受到侵害怎么办？", "农村公路谁来养护？"]
    finally:
        questions.unlink()


def test_the_seed_page_shows_the_seed_samples(seed_assistant):
    assert sample_buttons(build_page(Chat(seed_assistant), True, PageSettings())) == SEED_SAMPLES

