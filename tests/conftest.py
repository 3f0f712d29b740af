"""Shared fixtures: the seed files (copies in tests/data/), the real bundled model, a real index of the seed corpus,
and a small corpus of three documents built once, copied for each test that damages or starves a build."""

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub, in tests or CI
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # threads sleep while waiting, as the qa command sets (qa/cli.py)

from qa.config import Config
from qa.embeddings.model import Embedder
from qa.store.folder import load_index

from .helpers import PROJECT, make_corpus, running_page

DATA = Path(__file__).resolve().parent / "data"  # tests/data/README.md says where each file comes from
SEED = DATA / "000_9731c81e8a9d25ab.txt"  # the seed's PDF extraction, input of the import tests
DEV_QUESTIONS = DATA / "dev_questions.tsv"
SEED_CORPUS = PROJECT / "corpus"


# Fixtures that start app.py (15-30 s each on a shared 2-core machine): conftest's public_page, the `page`
# of tests/page/test_access.py, test_api.py and test_events.py, and test_browser.py's site. A test that needs one is marked slow.
STARTS_THE_PAGE = {"public_page", "page", "site"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if STARTS_THE_PAGE & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def read_dev_questions() -> list[dict]:
    rows = []
    for line in DEV_QUESTIONS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        qid, lang, kind, case, evidence, question = line.split("\t")
        rows.append(dict(id=qid, lang=lang, kind=kind, case=int(case), evidence=evidence, question=question))
    return rows


def dev_question(question_id: str) -> dict:
    """The development question with this id, e.g. 'd14'."""
    return next(row for row in read_dev_questions() if row["id"] == question_id)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real bundled model (converted once per machine into the user cache)."""
    return Embedder()


@pytest.fixture(scope="session")
def seed_config(tmp_path_factory) -> Config:
    """Config for the committed seed corpus, with its own index in a temporary folder."""
    return Config(corpus_dir=SEED_CORPUS, index_dir=tmp_path_factory.mktemp("seed-index"))


@pytest.fixture(scope="session")
def seed_assistant(seed_config, embedder):
    from qa.assistant import Assistant

    assistant = Assistant(seed_config, embedder)
    assistant.rebuild()
    return assistant


def case_number(section: str) -> int:
    """The seed's sections begin with the case number: '9 医学检查检验…' -> 9."""
    return int(section.split(" ", 1)[0])


@pytest.fixture(scope="session")
def public_page(seed_assistant, tmp_path_factory) -> dict:
    """The chat page bound to 0.0.0.0 without a login (a careless deployment), over a copy of the seed
    index; shared by tests/page/test_access.py, test_events.py and test_security.py (one app start)."""
    folder = tmp_path_factory.mktemp("public-page")
    index = folder / "index"
    shutil.copytree(seed_assistant.config.index_dir, index, symlinks=True)
    feedback = folder / "feedback.jsonl"
    flags = ("--host", "0.0.0.0", "--corpus", str(SEED_CORPUS), "--index", str(index), "--feedback", str(feedback))
    with running_page(*flags, log=folder / "app.log", env={"QA_AUTH": ""}) as page:
        yield {"url": page.url, "index": index, "feedback": feedback, "log": page.log}


# --- three small documents, built once -------------------------------------------------------------
# The corpus of the tests of what reading, building and loading do with bad files, a damaged index or a
# full disk (tests/documents/test_corpus.py, tests/indexing/test_faults.py, tests/store/test_folder.py).
# tests/indexing/test_rebuilds.py has a `built` of its own: an index built afresh over other documents.

THREE_DOCS = {
    "医保.md": "# 医保\n\n## 检查互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。\n",
    "农业.md": "# 农业\n\n## 茶叶\n\n推进茶旅融合发展，建设茶文化公园。\n",
    "交通.txt": "城市公交实行刷码乘车，七十岁以上老年人免费乘坐公交车。\n",
}
THREE_DOCS_QUESTION = "哪些医院之间检查结果互认？"
THREE_DOCS_ANSWER = "二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。"


def sources(config: Config) -> list[str]:
    """The sources the manifest of `config`'s index lists, sorted."""
    return sorted(load_index(config.index_dir).manifest["sources"])


def top_text(assistant, question: str = THREE_DOCS_QUESTION) -> str:
    """The text of the first passage `assistant` cites for `question`."""
    return assistant.ask(question).passages[0].text


@pytest.fixture(scope="session")
def template(tmp_path_factory, embedder) -> Config:
    """THREE_DOCS built once (embedding cache filled); tests work on copies."""
    from qa.assistant import Assistant

    config = make_corpus(tmp_path_factory.mktemp("template"), THREE_DOCS)
    Assistant(config, embedder).rebuild()
    return config


@pytest.fixture()
def built(template, tmp_path, embedder):
    """An assistant over a copy of `template`'s corpus and index in tmp_path."""
    from qa.assistant import Assistant

    shutil.copytree(template.corpus_dir, tmp_path / "corpus")
    shutil.copytree(template.index_dir, tmp_path / "index", symlinks=True)
    return Assistant(Config(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index"), embedder)
