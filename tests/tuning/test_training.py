"""Training (qa/tuning/training.py): batches without a right answer counted wrong; a tiny real tune of the bundled
model that ranks its own pairs higher, of both sides and of the questions' side alone; a stopped tune that goes
on from its checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest

from qa.config import DEFAULT_MODEL_NAME
from qa.errors import TuneInterrupted
from qa.tuning.negatives import Triplet
from qa.tuning.training import CHECKPOINT, TuneSettings, batches, train, train_questions

DATA = Path(__file__).resolve().parent / "data"


def test_a_batch_never_holds_one_question_or_one_positive_twice():
    triplets = [Triplet("a", "问A", "甲", "乙"), Triplet("a", "问A", "丙", "乙"), Triplet("b", "问B", "甲", "丁"),
                Triplet("c", "问C", "戊", "乙"), Triplet("d", "问D", "己", "甲")]
    found = batches(triplets, 2, seed=0)
    assert sorted(i for batch in found for i in batch) == [0, 1, 2, 3, 4]  # every triplet once
    for batch in found:
        assert len(batch) <= 2
        assert len({triplets[i].question_id for i in batch}) == len(batch)
        assert len({triplets[i].positive for i in batch}) == len(batch)
    assert found == batches(triplets, 2, seed=0)  # the same seed, the same batches: what resuming relies on


def article_triplets() -> list[Triplet]:
    """A triplet per question of tests/tuning/data/questions.jsonl and relevant article: the article as the passage
    (its law's name first, as a passage's embedding text reads), the next question's first article as the negative."""
    rows = [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    texts = [[f"{a['name'].split('第')[0]}\n{a['text'].strip()}" for a in row["articles"]] for row in rows]
    return [
        Triplet(str(row["id"]), row["question"], text, texts[(i + 1) % len(rows)][0])
        for i, row in enumerate(rows) for text in texts[i] if text != texts[(i + 1) % len(rows)][0]
    ]


def ranks_and_margins(model, triplets: list[Triplet]) -> tuple[list[int], list[float]]:
    """For each triplet: the rank (1 = first) of its positive among all the triplets' passages for its question, and
    the positive's cosine minus the negative's."""
    passages = list(dict.fromkeys(t for triplet in triplets for t in (triplet.positive, triplet.negative)))
    questions = model.encode([t.question for t in triplets], prompt_name="query", normalize_embeddings=True)
    vectors = dict(zip(passages, model.encode(passages, prompt_name="passage", normalize_embeddings=True)))
    matrix = np.stack([vectors[p] for p in passages])
    ranks, margins = [], []
    for triplet, question in zip(triplets, questions):
        scores = matrix @ question
        ranks.append(int((scores > float(vectors[triplet.positive] @ question)).sum()) + 1)
        margins.append(float(vectors[triplet.positive] @ question - vectors[triplet.negative] @ question))
    return ranks, margins


@pytest.mark.slow  # ~40 s on 2 shared cores: two loads of the model, 4 steps, 38 passages encoded twice
def test_a_tiny_tune_changes_the_model_and_ranks_its_own_pairs_higher(tmp_path):
    from sentence_transformers import SentenceTransformer

    from qa.tuning.training import load_model

    triplets = article_triplets()
    assert len(triplets) == 19
    base = load_model(DEFAULT_MODEL_NAME)
    ranks_before, margins_before = ranks_and_margins(base, triplets)
    output = train(DEFAULT_MODEL_NAME, triplets, tmp_path / "tuned", tmp_path / "work",
                   TuneSettings(epochs=1, batch_size=8, learning_rate=1e-4))
    tuned = SentenceTransformer(str(output), device="cpu")
    layer = "0.model.encoder.layer.0.attention.self.query.weight"
    assert not np.allclose(base.state_dict()[layer].numpy(), tuned.state_dict()[layer].numpy())
    words = "0.model.embeddings.word_embeddings.weight"  # frozen by default
    assert np.array_equal(base.state_dict()[words].numpy(), tuned.state_dict()[words].numpy())
    assert tuned.max_seq_length == base.max_seq_length  # trained on 128 tokens, served as the base model
    assert tuned.prompts == base.prompts
    ranks_after, margins_after = ranks_and_margins(tuned, triplets)
    assert sum(ranks_after) < sum(ranks_before)
    assert np.mean(margins_after) > np.mean(margins_before) + 0.01
    assert not (tmp_path / "work" / CHECKPOINT).exists()  # removed once the model is written


@pytest.mark.slow  # ~25 s: two loads of the model and 4 steps
def test_a_stopped_tune_goes_on_from_its_checkpoint(tmp_path):
    triplets = article_triplets()
    settings = TuneSettings(epochs=1, batch_size=8, checkpoint_every=100)
    output, work = tmp_path / "tuned", tmp_path / "work"
    work.mkdir()

    def stop_after_the_first_step(step):
        if step.step == 1:
            raise KeyboardInterrupt

    with pytest.raises(TuneInterrupted) as stopped:
        train(DEFAULT_MODEL_NAME, triplets, output, work, settings, progress=stop_after_the_first_step)
    assert str(stopped.value) == f"stopped at step 1 of 4; the checkpoint is in {work}: run the same command again to go on"
    assert (work / CHECKPOINT).is_file() and not output.exists()
    said, steps = [], []
    train(DEFAULT_MODEL_NAME, triplets, output, work, settings, progress=lambda step: steps.append(step.step), say=said.append)
    assert said == [f"going on from the checkpoint in {work}: step 1 of 4"]
    assert steps == [2, 3, 4]
    assert (output / "model.safetensors").is_file()


@pytest.mark.slow  # ~100 s on 2 shared cores: the tuned model's ONNX export is most of it
def test_a_questions_tune_ranks_its_own_pairs_higher_against_the_same_passage_vectors(tmp_path):
    from sentence_transformers import SentenceTransformer

    from qa.embeddings.model import PASSAGE_MODEL_FILE, Embedder, passage_model
    from qa.tuning.training import load_model

    triplets = article_triplets()
    base = load_model(DEFAULT_MODEL_NAME)
    passages = list(dict.fromkeys(t for triplet in triplets for t in (triplet.positive, triplet.negative)))
    vectors = base.encode(passages, prompt_name="passage", normalize_embeddings=True)
    rows: dict[str, list[int]] = {}
    for triplet in triplets:
        rows.setdefault(triplet.question, []).append(passages.index(triplet.positive))
    questions = list(rows.items())
    assert len(questions) == 14  # one question's only article is the next one's negative: no triplet

    def first_ranks(model) -> list[int]:
        asked = model.encode([question for question, _ in questions], prompt_name="query", normalize_embeddings=True)
        scores = asked @ vectors.T
        return [int((scores[i] > scores[i, right].max()).sum()) + 1 for i, (_, right) in enumerate(questions)]

    named = {PASSAGE_MODEL_FILE: json.dumps({"passage_model": DEFAULT_MODEL_NAME})}
    output = train_questions(DEFAULT_MODEL_NAME, questions, vectors, tmp_path / "tuned", tmp_path / "work",
                             TuneSettings(epochs=3, batch_size=8, learning_rate=1e-4), files=named)
    tuned = SentenceTransformer(str(output), device="cpu")
    assert sum(first_ranks(tuned)) < sum(first_ranks(base))
    assert tuned.prompts == base.prompts and tuned.max_seq_length == base.max_seq_length
    assert not (tmp_path / "work" / CHECKPOINT).exists()
    # The tuned folder encodes questions; its passages are the base model's, filed under the base model's name.
    assert passage_model(str(output)) == DEFAULT_MODEL_NAME
    served = Embedder(str(output))
    assert served.passages.model_name == DEFAULT_MODEL_NAME
    assert served.cache_name_for("float32") == DEFAULT_MODEL_NAME
    assert np.min(np.sum(served.embed_passages(passages[:4]) * vectors[:4], axis=1)) > 0.9999
    assert np.min(np.sum(served.embed_questions(["谁可以成为个体工商户？"]) * tuned.encode(
        ["谁可以成为个体工商户？"], prompt_name="query", normalize_embeddings=True), axis=1)) > 0.9999


def test_an_unknown_side_is_refused():
    from qa.errors import TuneError

    with pytest.raises(TuneError, match="unknown side 'passages': choose one of questions, both"):
        TuneSettings(side="passages")
    assert TuneSettings().epochs == 3 and TuneSettings(side="both").epochs == 2 and TuneSettings(epochs=5).epochs == 5
