"""Vector index types by corpus size: exact for small corpora, HNSW (or IVF) for large ones, recorded in the manifest.

Approximate indexes are checked on a few thousand synthetic vectors (clustered like embeddings of
documents on a few hundred topics); their speed on 1,000,000 is measured by scripts/benchmark.py.
"""

import json

import faiss
import numpy as np
import pytest

from qa.assistant import Assistant
from qa.config import Config
from qa.errors import ConfigError, IndexCorruptError
from qa.passages import Passage
from qa.store.folder import MANIFEST, current_build, last_build, load_index, make_manifest, write_index
from qa.store.local import LocalStore, choose_vector_index

DIMENSION = 384


def clustered_vectors(count: int, topics: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` normalised vectors around `topics` random directions, and questions near some of them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, DIMENSION)).astype(np.float32)
    vectors = centres[rng.integers(0, topics, count)] + 0.05 * rng.standard_normal((count, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # A question lies near one passage (a paraphrase of it), so its exact top-1 is well defined.
    asked = rng.choice(count, min(count, 200), replace=False)
    questions = vectors[asked] + 0.02 * rng.standard_normal((len(asked), DIMENSION)).astype(np.float32)
    questions /= np.linalg.norm(questions, axis=1, keepdims=True)
    return vectors, questions


def synthetic_passages(count: int) -> list[Passage]:
    return [Passage(id=i, source="synthetic.md", section="", start=10 * i, end=10 * i + 9, text=f"passage {i}") for i in range(count)]


def forced(kind: str) -> Config:
    """The default settings with the vector index `kind` forced."""
    return Config(vector_index=kind)


def test_auto_is_exact_for_small_corpora_and_hnsw_for_large_ones():
    assert choose_vector_index(0) == {"type": "flat", "factory": "Flat"}
    assert choose_vector_index(39_999) == {"type": "flat", "factory": "Flat"}
    hnsw = {"type": "hnsw", "factory": "HNSW32,Flat", "ef_construction": 40, "ef_search": 128}
    assert choose_vector_index(40_000) == hnsw
    assert choose_vector_index(1_000, Config(approximate_from=1_000)) == hnsw
    assert choose_vector_index(10_000_000, forced("flat")) == {"type": "flat", "factory": "Flat"}
    assert choose_vector_index(100, forced("hnsw")) == hnsw
    assert Config().vector_index == "auto" and Config().approximate_from == 40_000


def test_hnsw_settings_come_from_the_config():
    settings = Config(vector_index="hnsw", hnsw_links=16, hnsw_ef_construction=80, hnsw_ef_search=64)
    assert choose_vector_index(100, settings) == {"type": "hnsw", "factory": "HNSW16,Flat", "ef_construction": 80, "ef_search": 64}


def test_ivf_lists_grow_with_the_square_root_of_the_corpus():
    # sqrt(1,000,000) = 1000 -> 1024 lists (a power of two), probing 1024 / 64 = 16 of them.
    assert choose_vector_index(1_000_000, forced("ivf")) == {"type": "ivf", "factory": "IVF1024,Flat", "nprobe": 16}
    # sqrt(3,000) = 55 -> 64 lists, but 3,000 vectors train at most 3,000 // 39 = 76 lists: 64, probing 8.
    assert choose_vector_index(3_000, forced("ivf")) == {"type": "ivf", "factory": "IVF64,Flat", "nprobe": 8}
    # Too few vectors to train more than one list: IVF degenerates to exact search.
    assert choose_vector_index(50, forced("ivf")) == {"type": "ivf", "factory": "IVF1,Flat", "nprobe": 1}


def test_unknown_vector_index_is_refused():
    with pytest.raises(ConfigError, match=r"^vector_index must be one of auto, flat, hnsw, ivf, not 'annoy'$"):
        forced("annoy")


def write(index_dir, manifest, passages, vectors) -> None:
    write_index(index_dir, manifest, passages, vectors, LocalStore(), last_build(index_dir))


@pytest.mark.parametrize("name, faiss_class", [("hnsw", faiss.IndexHNSWFlat), ("ivf", faiss.IndexIVFFlat)])
def test_approximate_index_saves_loads_and_finds_the_exact_top_1(tmp_path, name, faiss_class):
    vectors, questions = clustered_vectors(3_000, topics=300, seed=7)
    settings = choose_vector_index(len(vectors), forced(name))
    manifest = make_manifest("synthetic", DIMENSION, {}, {"synthetic.md": "0" * 64}, 1, len(vectors), vector_index=settings)
    write(tmp_path, manifest, synthetic_passages(len(vectors)), vectors)

    index = load_index(tmp_path)
    assert index.manifest["vector_index"] == settings
    assert isinstance(index.vectors, faiss_class) and index.approximate
    if name == "hnsw":
        assert (index.vectors.hnsw.efSearch, index.vectors.hnsw.efConstruction) == (128, 40)
    else:
        assert (index.vectors.nlist, index.vectors.nprobe) == (64, 8)
    # The passages' own vectors can be read back (the hybrid retriever needs them).
    assert np.array_equal(index.vectors.reconstruct_n(0, 5), vectors[:5])

    exact = faiss.IndexFlatIP(DIMENSION)
    exact.add(vectors)
    _, exact_ids = exact.search(questions, 1)
    found = index.search(questions, 10)
    top_1_agrees = np.mean([row[0][0] == int(best) for row, best in zip(found, exact_ids[:, 0])])
    assert top_1_agrees >= 0.95
    # A second load reads the same index: identical results.
    assert load_index(tmp_path).search(questions, 10) == found


def test_manifest_naming_another_index_type_is_refused(tmp_path):
    vectors, _ = clustered_vectors(100, topics=10, seed=1)
    manifest = make_manifest("synthetic", DIMENSION, {}, {"synthetic.md": "0" * 64}, 1, 100)
    write(tmp_path, manifest, synthetic_passages(100), vectors)
    assert load_index(tmp_path).manifest["vector_index"] == {"type": "flat", "factory": "Flat"}
    path = current_build(tmp_path) / MANIFEST
    changed = json.loads(path.read_text(encoding="utf-8"))
    changed["vector_index"] = choose_vector_index(100, forced("hnsw"))
    path.write_text(json.dumps(changed), encoding="utf-8")
    with pytest.raises(IndexCorruptError, match=r"vectors\.faiss holds a IndexFlatIP, the manifest names vector index \{'type': 'hnsw'"):
        load_index(tmp_path)


def test_manifest_without_vector_index_is_an_exact_index(tmp_path):
    # Indexes built before index types existed have no "vector_index": they are exact.
    vectors, _ = clustered_vectors(100, topics=10, seed=1)
    manifest = make_manifest("synthetic", DIMENSION, {}, {"synthetic.md": "0" * 64}, 1, 100)
    del manifest["vector_index"]
    write(tmp_path, manifest, synthetic_passages(100), vectors)
    index = load_index(tmp_path)
    assert "vector_index" not in index.manifest and not index.approximate
    assert index.search(vectors[:1], 1)[0][0][0] == 0


DOCS = {
    "医保.md": "# 医保\n\n## 检查互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。\n",
    "农业.md": "# 农业\n\n## 水果\n\n推动水果产业规模化发展，打响区域公用品牌。\n\n## 茶叶\n\n推进茶旅融合发展。\n",
}


def test_build_records_the_index_type_and_answers_alike(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    answers = {}
    for name in ("auto", "hnsw"):
        config = Config(corpus_dir=corpus, index_dir=tmp_path / f"index-{name}", vector_index=name)
        assistant = Assistant(config, embedder)
        assistant.rebuild()
        answers[name] = assistant.ask("哪些医院之间检查结果互认？").to_json()
        expected = "flat" if name == "auto" else "hnsw"
        assert load_index(config.index_dir).manifest["vector_index"]["type"] == expected
    assert answers["auto"]["passages"][0]["section"] == "检查互认"
    assert answers["hnsw"] == answers["auto"]


# --- the model's precision ---------------------------------------------------------------------


def test_precision_names_the_cached_vectors():
    from qa.embeddings.model import Embedder

    name = Config().model
    assert Embedder(precision="float32").cache_name == name
    assert Embedder(precision="bfloat16").cache_name == f"{name} (bfloat16 passages)"
    assert Embedder(precision="int8").cache_name == f"{name} (int8 passages)"
    assert Embedder().passage_precision == "float32"  # on ONNX Runtime, or torch where the model cannot be exported
    assert Embedder(device="cuda").passage_precision == "float32" and Embedder(device="cuda").encoder is None


def test_unknown_precision_is_refused():
    from qa.embeddings.model import Embedder
    from qa.errors import ModelError

    with pytest.raises(ModelError, match=r"^unknown precision 'fp8' \(QA_PRECISION\); choose one of auto, float32, bfloat16, int8$"):
        Embedder(precision="fp8")


def test_bfloat16_passages_match_float32_and_questions_are_float32(embedder):
    from qa.embeddings.model import Embedder

    texts = [
        "检查互认\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。",
        "水果\n推动水果产业规模化发展，打响区域公用品牌。",
        "茶叶\n推进茶旅融合发展。",
        "The courtesy landmarks are public places that show civility.",
    ]
    exact = Embedder(precision="float32")
    exact.model = embedder.model  # the same loaded model: only the precision differs
    bfloat16 = Embedder(precision="bfloat16")
    bfloat16.model = embedder.model
    cosines = (exact.embed_passages(texts) * bfloat16.embed_passages(texts)).sum(axis=1)
    assert cosines.min() > 0.9999 and cosines.max() < 1.0 - 1e-7  # close, yet really computed in bfloat16
    question = ["哪些医院之间检查结果互认？"]
    assert np.array_equal(exact.embed_questions(question), bfloat16.embed_questions(question))


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_while_waiting_unless_the_user_says_otherwise(given, expected):
    import os
    import subprocess
    import sys

    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if given:
        environment["OMP_WAIT_POLICY"] = given
    # Set by the `qa` command (and app.py) before torch loads; importing the package sets nothing.
    code = ("import os, qa; imported = os.environ.get('OMP_WAIT_POLICY'); from qa.cli import main; "
            "main(['model', '--help'], standalone_mode=False); print(imported, os.environ['OMP_WAIT_POLICY'])")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment).stdout
    assert printed.splitlines()[-1] == f"{given} {expected}"
