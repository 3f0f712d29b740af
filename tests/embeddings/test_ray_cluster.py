"""`qa build --ray`: passages embedded by model replicas on a real local Ray cluster (qa/embeddings/ray_cluster.py).

The cluster is started once for the module with one CPU and a small object store (a replica loads
the model in ~10 s here) and shut down after; the build finds it running and uses it.
"""

import sys

import numpy as np
import pytest

from qa.assistant import Assistant
from qa.config import Config
from qa.store.folder import load_index

from ..conftest import SEED_CORPUS, read_dev_questions
from ..helpers import run_qa

QUESTIONS = [q["question"] for q in read_dev_questions()]


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=1, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def built_both_ways(local_ray, tmp_path_factory):
    """The seed built in process and on Ray, both in float32 so that the vectors are comparable to the last digits."""
    in_process = Assistant(Config(corpus_dir=SEED_CORPUS, index_dir=tmp_path_factory.mktemp("in-process"), precision="float32"))
    on_ray = Assistant(Config(corpus_dir=SEED_CORPUS, index_dir=tmp_path_factory.mktemp("on-ray"), precision="float32",
                              ray_address="local"))
    return in_process, in_process.rebuild(), on_ray, on_ray.rebuild()


@pytest.mark.slow
def test_ray_build_embeds_every_passage_like_the_in_process_build(built_both_ways):
    in_process, _, on_ray, report = built_both_ways
    assert report.embedded == report.passages == len(in_process.index.passages) > 0
    assert report.reused == 0
    mine, theirs = in_process.index.vector_matrix(), on_ray.index.vector_matrix()
    cosines = np.sum(mine * theirs, axis=1)
    assert cosines.min() >= 0.9999, cosines.min()
    assert on_ray.index.manifest["passage_vectors"] == {in_process.embedder.model_name: report.passages}


@pytest.mark.slow
def test_ray_build_gives_the_same_answers(built_both_ways):
    in_process, _, on_ray, _ = built_both_ways
    for question, mine, theirs in zip(QUESTIONS, in_process.ask_many(QUESTIONS), on_ray.ask_many(QUESTIONS)):
        assert theirs.outcome == mine.outcome, question
        assert [(p.source, p.start, p.end) for p in theirs.passages] == [(p.source, p.start, p.end) for p in mine.passages], question


@pytest.mark.slow
def test_ray_build_fills_the_embedding_cache(built_both_ways):
    """A rebuild of the Ray-built index, in process, embeds nothing: the replicas' vectors were cached."""
    _, _, on_ray, _ = built_both_ways
    again = Assistant(Config(corpus_dir=SEED_CORPUS, index_dir=on_ray.config.index_dir, precision="float32")).rebuild()
    assert (again.embedded, again.reused) == (0, again.passages)
    assert load_index(on_ray.config.index_dir).manifest["passage_vectors"] == {on_ray.embedder.model_name: again.passages}


@pytest.mark.slow
def test_ray_replicas_give_the_second_encoders_passage_vectors(built_both_ways, tmp_path, monkeypatch):
    """The build stores the replicas' second-encoder vectors: its own process encodes no passage."""
    from qa.embeddings.second_encoder import SECOND_FILE, SecondEncoder

    in_process = built_both_ways[0]
    encoded, embed = [], SecondEncoder.embed
    monkeypatch.setattr(SecondEncoder, "embed", lambda self, texts: encoded.extend(texts) or embed(self, texts))
    on_ray = Assistant(Config(corpus_dir=SEED_CORPUS, index_dir=tmp_path, precision="float32", ray_address="local"))
    on_ray.rebuild()
    assert encoded  # the background questions, in this process
    assert not {passage.embedding_text() for passage in on_ray.index.passages} & set(encoded)
    mine, theirs = (np.load(assistant.index.folder / SECOND_FILE).astype(np.float32) for assistant in (in_process, on_ray))
    assert np.sum(mine * theirs, axis=1).min() >= 0.9999


def test_ray_not_installed_says_how_to_install(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("浙江推进医学检查检验结果互认，减少重复检查。", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is not installed
    result = run_qa("build", "--corpus", str(corpus), "--index", str(tmp_path / "index"), "--ray")
    assert result.exit_code == 1
    assert "embedding on Ray (--ray) needs Ray, which is not installed" in result.output
    assert "pip install -e '.[ray]'" in result.output
    assert not (tmp_path / "index" / "current").exists()
