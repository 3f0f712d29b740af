"""Write a sentence-transformers model as ONNX, checked against the model itself, for ONNX Runtime.

Questions and passages are encoded by ONNX Runtime (qa/embeddings/onnx_encoder.py): on 2 cores it
encodes a question 2.7 times as fast as sentence-transformers and 1.25-1.4 times its passages per
second on a quiet machine, 1.6-2.6 times on a busy one (scripts/benchmark.py --only model,
scripts/bench_encoders.py), and answering a question never imports torch. The export is made once
per model, with torch, when the model is installed (`qa model install`) or first used:

    model folder --export()--> <folder>/onnx/  model.onnx(.data), model_int8.onnx(.data), export.json

The graph is the model's own modules (Transformer, Pooling, Normalize) traced by torch.onnx, so
ONNX Runtime computes exactly what sentence-transformers computes; tokenising stays outside, in the
model's own tokenizer.json (`tokenizers`). It is traced with the transformer's eager attention, the
pattern onnxruntime's transformer optimiser recognises: for BERT-like models (XLM-R, the bundled
model's, included) it fuses each layer's attention, GELU and layer norms into single operators
(1,306 nodes become 139). A question then takes ~15% less time, a 250-character passage ~20%, the
statute library's shorter passages ~3% (the bundled model on 2 threads, in turns: 10.2 against 12.0
ms; 20.7 against 17.4 and 36.8 against 35.7 passages a second). The fused graph is checked as the
traced one is, and kept only if it passes. The weights lie in a .data file beside the graph, which
ONNX Runtime maps into memory (a session loads in a tenth of the time, and holds a sixth of the
memory). Before it is used, the export is checked: on texts in simplified and traditional Chinese
and English, short and cut at the token limit, alone and in padded batches, every vector must have
cosine >= PARITY to sentence-transformers' float32 vector, or the export is refused, and the project
says so and encodes with torch instead.

model_int8.onnx has its linear layers' weights dynamically quantised to 8 bits (onnxruntime's
quantize_dynamic): 2-3 times faster again, but its vectors move (cosine ~0.98), so it is used only
when asked for (QA_PRECISION=int8); README, "Encoders", gives its retrieval figures.

A folder that cannot be written (a shared model, a hub cache) gets its export under cache_dir()/encoders/.
export.json records the model files the export was made from (size and modification time): an export
whose model changed since, or made by another version of this code, is made again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qa.config import cache_dir
from qa.errors import ModelError

FORMAT = 3  # 3: attention fused; bump when the export's graph or files change: older exports are made again
RECORD = "export.json"
FLOAT32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
PARITY = 0.9999  # the least cosine to sentence-transformers' vector that an export may give
# The texts parity is checked on: each script, a prompt's worth, and one cut at the token limit.
PARITY_TEXTS = [
    "企业是否必须为从事危险作业的职工缴纳工伤保险费？",
    "企業是否必須為從事危險作業的職工繳納工傷保險費？",
    "Must an employer pay work-injury insurance for staff in dangerous jobs?",
    "第一千零二十五条　行为人为公共利益实施新闻报道、舆论监督等行为，影响他人名誉的，不承担民事责任。",
    "民生实事",
    "浙江省 共同富裕示范区 典型经验 " * 120,
]
# Architectures whose layers onnxruntime's transformer optimiser fuses as it fuses BERT's.
FUSED_AS_BERT = ("bert", "roberta", "xlm-roberta", "camembert")
# Weight files whose size and modification time identify the model an export was made from.
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json", "modules.json")


class ExportRefused(Exception):
    """The model cannot be exported, or its export does not reproduce it: encode with torch instead."""


def export_folder(model_folder: Path) -> Path:
    """Where the export of the model in `model_folder` is written: its onnx/ subfolder, or a folder under
    cache_dir()/encoders/ when that cannot be written."""
    inside, cached = _places(model_folder)
    try:
        inside.mkdir(exist_ok=True)
        tempfile.TemporaryFile(dir=inside).close()
        return inside
    except OSError:
        return cached


def _places(model_folder: Path) -> tuple[Path, Path]:
    """The two places an export may be: beside the model, and in the cache."""
    digest = hashlib.sha256(str(model_folder.resolve()).encode()).hexdigest()[:12]
    return model_folder / "onnx", cache_dir() / "encoders" / f"{model_folder.name}-{digest}"


def model_files(model_folder: Path) -> dict[str, list[int]]:
    """The size and modification time of the files that make the model in `model_folder`."""
    files = {}
    for name in _WEIGHT_FILES:
        path = model_folder / name
        if path.is_file():
            status = path.stat()
            files[name] = [status.st_size, status.st_mtime_ns]
    return files


def current_export(model_folder: Path) -> dict | None:
    """The record of a usable export of the model in `model_folder`, or None if there is none, it was
    made from other model files or by other code, or it was refused (then `record["refused"]` says why)."""
    files = model_files(model_folder)
    for folder in _places(model_folder):  # read where it is, without trying to write there: this runs at every start
        try:
            record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("format") != FORMAT or record.get("model_files") != files:
            continue
        if record.get("refused") is None and not all((folder / name).is_file() for name in (FLOAT32_FILE, f"{FLOAT32_FILE}.data")):
            continue
        record["folder"] = str(folder)
        return record
    return None


def export(model, model_folder: Path, say: Callable[[str], None] | None = None) -> dict:
    """Export the loaded SentenceTransformer `model` (loaded from `model_folder`) beside it, check it,
    and quantise it; returns the export's record. A refused export is recorded too (with the reason),
    so that it is not tried again on every start, and ExportRefused is raised."""
    say = say or (lambda message: None)
    target = export_folder(model_folder)
    record = {"format": FORMAT, "model_files": model_files(model_folder)}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        work.chmod(0o755)
    except OSError as error:
        raise ModelError(f"cannot write the ONNX export of the embedding model to {target}: {error}") from None
    try:
        try:
            say("exporting the embedding model to ONNX (once per model)")
            record.update(_trace(model, work / FLOAT32_FILE))
            say("checking the export against sentence-transformers")
            reference = _Reference(model, record)
            record["parity"] = reference.parity(work / FLOAT32_FILE)
            if record["parity"] < PARITY:
                raise ExportRefused(
                    f"its vectors differ from sentence-transformers' (cosine {record['parity']:.6f} < {PARITY})"
                )
            record["refused"] = None
            say("quantising a copy to 8 bits")
            try:  # from the traced graph: the quantiser cannot read the fused one's operators
                _quantise(work / FLOAT32_FILE, work / INT8_FILE)
                record["int8_parity"] = reference.parity(work / INT8_FILE)
                _weights_apart(work / INT8_FILE)
            except ExportRefused as refusal:  # float32 still serves; only QA_PRECISION=int8 is refused
                (work / INT8_FILE).unlink(missing_ok=True)
                record["int8_refused"] = str(refusal)
            say("fusing its attention for ONNX Runtime")
            record["fused"] = _fuse(model, work / FLOAT32_FILE, reference)
            _weights_apart(work / FLOAT32_FILE)
        except ExportRefused as refusal:
            record["refused"] = str(refusal)
            for name in (FLOAT32_FILE, INT8_FILE):
                (work / name).unlink(missing_ok=True)
        (work / RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _move_into_place(work, target)
    except OSError as error:
        raise ModelError(f"cannot write the ONNX export of the embedding model to {target}: {error}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if record["refused"] is not None:
        raise ExportRefused(record["refused"])
    record["folder"] = str(target)
    return record


def _trace(model, path: Path) -> dict:
    """Trace the model's modules from token ids to its sentence embedding into `path`; returns what the
    encoder needs to feed it (the tokenizer settings it was exported with)."""
    import torch

    modules = list(model)
    names = [type(module).__name__ for module in modules]
    if names[:2] != ["Transformer", "Pooling"] or any(name != "Normalize" for name in names[2:]):
        raise ExportRefused(f"its modules are {', '.join(names)}, not a Transformer, Pooling and Normalize")
    if not getattr(modules[1], "include_prompt", True):
        raise ExportRefused("its pooling leaves the prompt out, which needs the prompt's length at run time")
    if not (model.tokenizer.is_fast and Path(model.tokenizer.name_or_path, "tokenizer.json").is_file()):
        raise ExportRefused("its tokenizer has no tokenizer.json for the `tokenizers` library")

    class Embedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            if "token_type_ids" in model.tokenizer.model_input_names:
                features["token_type_ids"] = torch.zeros_like(input_ids)  # one segment, as every text here
            return self.model(features)["sentence_embedding"]

    example = model.tokenizer(["query: 例子", "passage: 较长一些的例子"], padding=True, return_tensors="pt")
    inputs = (example["input_ids"], example["attention_mask"])
    try:
        # The tracer warns about every Python branch on a tensor's shape; the parity check below is what
        # says whether the traced graph computes the model.
        with torch.no_grad(), warnings.catch_warnings(), _eager_attention(modules[0].auto_model):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Embedding().eval(), inputs, str(path), input_names=["input_ids", "attention_mask"],
                output_names=["embedding"], opset_version=17, dynamo=False,
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                    "embedding": {0: "batch"},
                },
            )
    except Exception as error:  # the exporter raises many types for an operator it cannot write
        raise ExportRefused(f"torch.onnx cannot export it: {str(error).splitlines()[0][:300]}") from None
    return {
        "max_tokens": int(model.max_seq_length),
        "prompts": dict(model.prompts or {}),
        "pad_token": model.tokenizer.pad_token,
        "dimension": int(model.get_embedding_dimension()),
    }


@contextlib.contextmanager
def _eager_attention(transformer):
    """Run the block with `transformer`'s attention computed by its eager (plain matrix product) code,
    whose traced graph the optimiser fuses (scaled_dot_product_attention's, with its NaN guards, it does
    not), then put back the implementation the model was loaded with."""
    loaded = getattr(getattr(transformer, "config", None), "_attn_implementation", None)
    switch = loaded not in (None, "eager") and hasattr(transformer, "set_attn_implementation")
    if switch:
        transformer.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            transformer.set_attn_implementation(loaded)


def _fuse(model, path: Path, reference: _Reference) -> list[str]:
    """Replace the traced graph at `path` by onnxruntime's fusion of it (attention, GELU, layer norms)
    where the architecture is one the optimiser fuses as BERT and the fused graph passes the parity
    check; returns the operators fused, [] where the traced graph stays."""
    config = model[0].auto_model.config
    if getattr(config, "model_type", None) not in FUSED_AS_BERT:
        return []
    fused_path = path.with_name(f"fused-{path.name}")
    try:
        from onnxruntime.transformers import optimizer

        # opt_level 0: only the fusions, written as standard and contrib operators; ONNX Runtime applies
        # its own graph optimisations when it loads the file, as for the traced graph.
        fused = optimizer.optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size, opt_level=0)
        operators = sorted(name for name, count in fused.get_fused_operator_statistics().items() if count)
        if operators:
            fused.save_model_to_file(str(fused_path))
            if reference.parity(fused_path) >= PARITY:
                fused_path.replace(path)
                return operators
    except Exception:  # the optimiser raises many types for a graph it does not know; the traced one serves
        pass
    fused_path.unlink(missing_ok=True)
    return []


class _Reference:
    """sentence-transformers' float32 vectors of PARITY_TEXTS with each of the model's prompts, encoded once
    per export, against which each file written (traced, 8-bit, fused) is checked."""

    def __init__(self, model, record: dict):
        self.model_folder = Path(model.tokenizer.name_or_path)
        self.record = record
        self.texts = [[prompt + text for text in PARITY_TEXTS] for prompt in ("", *record["prompts"].values())]
        self.vectors = [
            model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            for texts in self.texts
        ]

    def parity(self, path: Path) -> float:
        """The least cosine between the vectors of the export at `path` and the model's, the texts encoded
        alone and as one padded batch."""
        from qa.embeddings.onnx_encoder import OnnxEncoder

        encoder = OnnxEncoder(self.model_folder, path, self.record, threads=1)
        least = 1.0
        for texts, reference in zip(self.texts, self.vectors):
            together = encoder.encode(texts)
            alone = np.concatenate([encoder.encode([text]) for text in texts])
            for vectors in (together, alone):
                least = min(least, float(np.min(np.sum(vectors * reference, axis=1))))
        return round(least, 7)


def _weights_apart(path: Path) -> None:
    """Move the weights of the ONNX file `path` into `<name>.data` beside it, which ONNX Runtime maps into
    memory instead of copying: a session loads in 0.14 s instead of 1.05 s and holds 146 MB instead of 873
    (the bundled model, measured), and processes serving the same model share its pages."""
    import onnx

    graph = onnx.load(str(path))
    onnx.save_model(graph, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{path.name}.data", size_threshold=1024)
    (path.parent / f"{path.name}.data").chmod(0o644)  # onnx writes it private; the model is not a secret


def _quantise(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantiser_log = logging.getLogger()  # it advises pre-processing through the root logger, every time
    level = quantiser_log.level
    quantiser_log.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    except Exception as error:  # onnxruntime's quantiser raises many types
        raise ExportRefused(f"onnxruntime cannot quantise it: {str(error).splitlines()[0][:300]}") from None
    finally:
        quantiser_log.setLevel(level)


def _move_into_place(work: Path, target: Path) -> None:
    """Rename the finished export onto `target`, replacing an older one; a process that finished first wins."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        try:
            target.rename(old)
        except OSError:
            return  # another process is replacing it at this moment
        shutil.rmtree(old, ignore_errors=True)
    try:
        work.rename(target)
    except OSError:
        if not (target / RECORD).is_file():
            raise
