"""Fine-tune a sentence-transformers model on the library's questions, on the CPU, resumable. Two ways (`side`):

- "questions" (the default): only the questions' encoder learns; the passages keep the vectors the index holds,
  made by the model the tune starts from (`train_questions`). Each question is scored against every passage of
  the library at once, its labelled passages the right answers and all others wrong (a softmax over the index's
  vectors, as e5 itself was trained, at e5's scale), so the hardest negatives are always in. Nothing is
  re-embedded: the tuned index is built from the index's cached vectors, and a tune costs minutes. On the statute
  library's held-out fold this gave hit@5 0.646 against the whole model's 0.658 with the default fusion weights,
  0.700 against 0.675 with the weights each tune fits, in 10 minutes against 71 (README).
- "both": the whole model learns from (question, positive, hard negative) triplets (`train`), and the library
  must be embedded again with it.

For "both", the loss is sentence-transformers' MultipleNegativesRankingLoss: each question is scored against its positive,
its hard negative and every other passage of the batch, and learns to rank its positive first. A batch never
holds two triplets of one question or one positive passage twice (`batches`), since either would be a right
answer counted as a wrong one. The loop is a plain torch loop over the loss (sentence-transformers' own trainer
needs the `datasets` and `accelerate` packages, which this project does not install), with:

- the word-embedding matrix frozen by default (TuneSettings.freeze_word_embeddings): 96 of the bundled model's
  118 million weights are that matrix, 250,000 tokens × 384; its gradient and optimiser state would be most of a
  step's time and memory on two cores, and a thousand questions cannot retrain it; the 12 layers above it learn;
- bfloat16 autocast where the CPU computes bfloat16 natively (as the project embeds passages, qa/embeddings/model.py),
  the weights and optimiser in float32;
- a checkpoint (the trainable weights, the optimiser, the schedule, the step) every `checkpoint_every` steps and
  when stopped (Ctrl-C or SIGTERM): the same command then goes on from there, with the same batches (seeded);
- progress after every step with the time left, from the mean time of the steps done so far.
"""

import contextlib
import hashlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from qa.errors import ModelError, TuneError, TuneInterrupted
from qa.tuning.negatives import Triplet

CHECKPOINT = "checkpoint.pt"


SIDES = ("questions", "both")
# Epochs when not given: what measured best on the statute library's held-out fold for each side (README).
# Questions: 3 (dense hit@5 0.637, 0.650, 0.662, 0.650 after 1-4); both: 2 (hit@5 0.658 against one's 0.641).
DEFAULT_EPOCHS = {"questions": 3, "both": 2}


@dataclass(frozen=True)
class TuneSettings:
    """How `qa tune` trains and what it holds out. The defaults are what the README's figures were measured with."""

    side: str = "questions"  # what learns: the questions' encoder only, or the whole model (module note)
    epochs: int | None = None  # None: DEFAULT_EPOCHS of the side
    batch_size: int = 32
    learning_rate: float = 5e-5
    # Questions side: the softmax's scale over cosines, 1 / temperature: e5 was trained at a temperature of 0.01.
    scale: float = 100.0
    warmup: float = 0.1  # share of the steps over which the learning rate rises from 0
    max_seq_length: int = 128  # tokens a text is cut to while training (questions and the project's passages fit)
    freeze_word_embeddings: bool = True
    hard_negatives: int = 1  # both sides: triplets per positive passage, each with another hard negative
    fold: tuple[int, int] = (1, 5)  # (I, N): fold I of N is held out, as `qa eval --fold I/N` picks it
    seed: int = 0
    checkpoint_every: int = 10  # steps

    def __post_init__(self):
        if self.side not in SIDES:
            raise TuneError(f"unknown side {self.side!r}: choose one of {', '.join(SIDES)}")
        if self.epochs is None:
            object.__setattr__(self, "epochs", DEFAULT_EPOCHS[self.side])

    def to_json(self) -> dict:
        facts = {**asdict(self), "fold": f"{self.fold[0]}/{self.fold[1]}"}
        unused = ("hard_negatives",) if self.side == "questions" else ("scale",)
        return {key: value for key, value in facts.items() if key not in unused}


@dataclass(frozen=True)
class StepProgress:
    """Where training stands after a step: steps done of all, the step's loss, and the time left in seconds."""

    step: int
    steps: int
    loss: float
    seconds_left: float


def batches(triplets: list[Triplet], batch_size: int, seed: int) -> list[list[int]]:
    """The triplets' positions in batches of at most `batch_size`, shuffled by `seed`: no batch holds two triplets
    of one question or one positive text twice (a full batch that cannot take one starts the next)."""
    order = list(range(len(triplets)))
    random.Random(seed).shuffle(order)
    result: list[list[int]] = []
    open_batches: list[tuple[list[int], set[str], set[str]]] = []
    for position in order:
        triplet = triplets[position]
        for batch, questions, positives in open_batches:
            if len(batch) < batch_size and triplet.question_id not in questions and triplet.positive not in positives:
                batch.append(position)
                questions.add(triplet.question_id)
                positives.add(triplet.positive)
                break
        else:
            open_batches.append(([position], {triplet.question_id}, {triplet.positive}))
        full = [b for b in open_batches if len(b[0]) >= batch_size]
        for done in full:
            result.append(done[0])
            open_batches.remove(done)
    result.extend(batch for batch, _, _ in open_batches)
    return result


def plan_hash(base: str, triplets: list[Triplet], settings: TuneSettings) -> str:
    """What a checkpoint belongs to: the base model, the triplets and the settings; a checkpoint of another plan is not resumed."""
    digest = hashlib.sha256(json.dumps([base, settings.to_json()], sort_keys=True).encode())
    for triplet in triplets:
        digest.update(json.dumps(triplet.to_json(), ensure_ascii=False, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def question_plan(base: str, questions: list[tuple[str, list[int]]], passage_vectors, settings: TuneSettings) -> str:
    """`plan_hash` of a questions' tune: the base model, the questions and their rows, the passages' vectors, the settings."""
    import numpy as np

    digest = hashlib.sha256(json.dumps([base, settings.to_json(), questions], ensure_ascii=False).encode())
    digest.update(np.ascontiguousarray(passage_vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def load_model(name: str):
    """The sentence-transformers model `name` (the bundled one, a hub name or a folder), on the CPU, float32."""
    from qa.embeddings.model import Embedder

    return Embedder(name, device="cpu").model


def train(
    base: str, triplets: list[Triplet], output: Path, work: Path, settings: TuneSettings,
    progress: Callable[[StepProgress], None] | None = None, say: Callable[[str], None] = lambda message: None,
) -> Path:
    """Fine-tune the whole model `base` on `triplets` and write it, a sentence-transformers folder, to `output`.

    `work` keeps the checkpoint: a run stopped (TuneInterrupted) goes on from its last checkpoint when called
    again with the same base, triplets and settings. `output` must not exist; it appears whole, at the end.
    Returns `output`."""
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if not triplets:
        raise TuneError("no training pairs: nothing to tune on")
    torch.manual_seed(settings.seed)
    model = load_model(base)
    loss_function = MultipleNegativesRankingLoss(model)
    query_prompt = (model.prompts or {}).get("query", "")
    passage_prompt = (model.prompts or {}).get("passage", "")

    def loss_of(positions: list[int]):
        batch = [triplets[i] for i in positions]
        features = [
            model.preprocess([query_prompt + t.question for t in batch]),
            model.preprocess([passage_prompt + t.positive for t in batch]),
            model.preprocess([passage_prompt + t.negative for t in batch]),
        ]
        return loss_function(features, torch.arange(len(batch)))

    schedule = [batch for epoch in range(settings.epochs) for batch in batches(triplets, settings.batch_size, settings.seed + epoch)]
    _fit(model, schedule, loss_of, plan_hash(base, triplets, settings), work, settings, progress, say)
    _save(model, output)
    (work / CHECKPOINT).unlink(missing_ok=True)  # only once the model is written
    return output


def train_questions(
    base: str, questions: list[tuple[str, list[int]]], passage_vectors, output: Path, work: Path, settings: TuneSettings,
    progress: Callable[[StepProgress], None] | None = None, say: Callable[[str], None] = lambda message: None,
    files: dict[str, str] | None = None,
) -> Path:
    """Fine-tune the questions' encoder of `base` on `questions` (a text and the rows of `passage_vectors` that
    answer it) against the fixed, normalised `passage_vectors` (the index's: one row a passage), and write it to
    `output` with `files` (name → text) beside it. Stopped and resumed as `train`. Returns `output`."""
    import numpy as np
    import torch

    if not questions:
        raise TuneError("no training pairs: nothing to tune on")
    torch.manual_seed(settings.seed)
    model = load_model(base)
    passages = torch.from_numpy(np.array(passage_vectors, dtype=np.float32))  # a copy: the index's is read-only
    prompt = (model.prompts or {}).get("query", "")

    def loss_of(positions: list[int]):
        features = model.preprocess([prompt + questions[i][0] for i in positions])
        vectors = torch.nn.functional.normalize(model(features)["sentence_embedding"].float(), dim=-1)
        scores = (vectors @ passages.T) * settings.scale
        answers = torch.full_like(scores, float("-inf"))
        for row, position in enumerate(positions):
            answers[row, questions[position][1]] = 0.0
        # -log of the probability that the softmax over every passage gives to the question's own passages
        return (torch.logsumexp(scores, dim=1) - torch.logsumexp(scores + answers, dim=1)).mean()

    schedule = []
    for epoch in range(settings.epochs):
        order = list(range(len(questions)))
        random.Random(settings.seed + epoch).shuffle(order)
        schedule += [order[start : start + settings.batch_size] for start in range(0, len(order), settings.batch_size)]
    _fit(model, schedule, loss_of, question_plan(base, questions, passage_vectors, settings), work, settings, progress, say)
    _save(model, output, files)
    (work / CHECKPOINT).unlink(missing_ok=True)
    return output


def _fit(model, schedule: list[list[int]], loss_of, plan: str, work: Path, settings: TuneSettings,
         progress: Callable[[StepProgress], None] | None, say: Callable[[str], None]) -> None:
    """Train `model` in place on the batches of `schedule`, each step minimising `loss_of(batch)`: AdamW, a linear
    warm-up and decay, checkpoints in `work` (of `plan`: another plan's is not resumed), progress, Ctrl-C/SIGTERM."""
    import torch

    from qa.embeddings.model import native_bfloat16

    served_length = model.max_seq_length
    model.max_seq_length = min(served_length, settings.max_seq_length)
    if settings.freeze_word_embeddings:
        for name, parameter in model.named_parameters():
            if "word_embeddings" in name:
                parameter.requires_grad_(False)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=settings.learning_rate)
    warmup = max(1, round(settings.warmup * len(schedule)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (len(schedule) - step) / max(1, len(schedule) - warmup)))
    )
    checkpoint = work / CHECKPOINT
    step = 0
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=False)
        if saved.get("plan") == plan:
            model.load_state_dict(saved["weights"], strict=False)
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            step = saved["step"]
            say(f"going on from the checkpoint in {work}: step {step} of {len(schedule)}")
        else:
            say(f"the checkpoint in {work} is of other pairs or settings: starting afresh")

    def save_checkpoint() -> None:
        partial = checkpoint.with_suffix(".partial")
        torch.save({"plan": plan, "step": step, "weights": {n: p.detach().clone() for n, p in trainable.items()},
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, partial)
        os.replace(partial, checkpoint)

    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if native_bfloat16() else contextlib.nullcontext
    model.train()
    started, first_step = time.monotonic(), step
    with _sigterm_as_interrupt():
        try:
            while step < len(schedule):
                with autocast():
                    loss = loss_of(schedule[step])
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if step % settings.checkpoint_every == 0 and step < len(schedule):
                    save_checkpoint()
                if progress:
                    per_step = (time.monotonic() - started) / (step - first_step)
                    progress(StepProgress(step, len(schedule), float(loss.detach()), per_step * (len(schedule) - step)))
        except KeyboardInterrupt:
            save_checkpoint()
            raise TuneInterrupted(
                f"stopped at step {step} of {len(schedule)}; the checkpoint is in {work}: run the same command again to go on"
            ) from None
    model.max_seq_length = served_length
    model.eval()


def _save(model, output: Path, files: dict[str, str] | None = None) -> None:
    """Write `model` and `files` (name → text) to `output`, which appears whole or not at all."""
    partial = output.with_name(f".{output.name}.partial")
    try:
        model.save(str(partial))
        for name, text in (files or {}).items():
            (partial / name).write_text(text, encoding="utf-8")
        for path in partial.rglob("*"):  # safetensors writes its file private; a model is not a secret
            path.chmod(0o755 if path.is_dir() else 0o644)
        os.replace(partial, output)
    except OSError as error:
        raise ModelError(f"cannot write the tuned model to {output}: {error.strerror or error}") from None


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a `kill`, a stopping service) stops training as Ctrl-C does: with a checkpoint."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
