"""Loading reads what the build derived instead of deriving it again: the keyword index's BM25 weights
(the passages' and the sections') are memory-mapped from keywords.npz, its counts read only when asked
for; an index saved before the weights were stored (keyword format 1) still loads, with the same scores."""

import io
import json
import mmap

import numpy as np
import pytest

from qa.assistant import Assistant
from qa.search.keyword import KEYWORDS_FILE, KeywordIndex, load_keywords
from qa.search.sections import Sections

from ..helpers import make_corpus

DOCS = {
    "医保.md": "# 医保\n\n## 检查互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。\n\n"
    "## 异地就医\n\n异地就医直接结算，患者不必垫付。\n",
    "农业.md": "# 农业\n\n## 水果\n\n推动水果产业规模化发展，打响区域公用品牌。\n\n## 茶叶\n\n推进茶旅融合发展。\n",
}
QUESTIONS = ["患者不必重复检查", "水果品牌", "茶旅融合", "没有的词"]


@pytest.fixture()
def small(tmp_path, embedder):
    assistant = Assistant(make_corpus(tmp_path, DOCS), embedder)
    assistant.rebuild()
    return assistant


def memory_mapped(array: np.ndarray) -> bool:
    """Whether `array`'s data lies in a memory-mapped file (somewhere down its chain of bases)."""
    while array is not None and not isinstance(array, mmap.mmap):
        array = getattr(array, "base", None)
    return array is not None


def fresh_index(assistant: Assistant) -> KeywordIndex:
    passages = assistant.index.passages
    return KeywordIndex.build([p.keyword_text() for p in passages], assistant.config.keyword_tokenizer)


def test_the_saved_weights_are_mapped_and_score_as_derived_ones(small, monkeypatch):
    fresh = fresh_index(small)
    groups = Sections(small.index.passages).groups

    def derived(*args):
        raise AssertionError("weights derived on load")

    monkeypatch.setattr("qa.search.keyword._bm25_weights", derived)
    loaded = load_keywords(small.index)
    sections = loaded.grouped(groups)  # stored by the build: read, not derived
    monkeypatch.undo()

    assert memory_mapped(loaded._weights_by_term.data)  # in the file, not in memory
    assert loaded._counts is None  # not read: searching needs only the weights
    assert np.array_equal(loaded.scores(QUESTIONS), fresh.scores(QUESTIONS))
    assert np.array_equal(loaded.coverage(QUESTIONS), fresh.coverage(QUESTIONS))
    assert np.array_equal(sections.coverage(QUESTIONS), fresh.grouped(groups).coverage(QUESTIONS))
    assert (loaded.counts != fresh.counts).nnz == 0  # read when asked for
    assert len(loaded) == len(small.index.passages) and len(sections) == groups.max() + 1


def test_an_index_saved_before_the_weights_were_stored_still_loads(small, tmp_path):
    fresh = fresh_index(small)
    path = tmp_path / KEYWORDS_FILE
    buffer = io.BytesIO()  # keyword format 1, as qa 0.1.0 saved it: counts, vocabulary, settings, compressed
    np.savez_compressed(
        buffer, data=fresh.counts.data, indices=fresh.counts.indices, indptr=fresh.counts.indptr,
        shape=np.array(fresh.counts.shape), vocabulary=np.array(json.dumps(fresh.vocabulary, ensure_ascii=False)),
        settings=np.array(json.dumps({"format": 1, "tokenizer": fresh.tokenizer, "k1": fresh.k1, "b": fresh.b})),
    )
    path.write_bytes(buffer.getvalue())
    loaded = KeywordIndex.load(path, rows=len(fresh))
    assert np.array_equal(loaded.scores(QUESTIONS), fresh.scores(QUESTIONS))


def test_stored_arrays_start_at_a_multiple_of_64_bytes(small):
    """Memory-mapping needs each array's data aligned in the file (the .npz's stored members are padded)."""
    path = small.index.folder / KEYWORDS_FILE
    loaded = KeywordIndex.load(path, rows=len(small.index.passages))
    weights = loaded._weights_by_term
    for array in (weights.data, weights.indices, weights.indptr, loaded.idf):
        assert memory_mapped(array) and array.ctypes.data % 64 == 0
    with np.load(path) as file:  # and numpy reads the file as any .npz
        assert np.array_equal(file["weights_data"], weights.data)
