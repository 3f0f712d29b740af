"""The relevance decision's background for a build: how generic off-topic questions score on its corpus.

Measured by qa/decision/background.py through the build's own retriever; stored in the build folder
(BACKGROUND_FILE) and reused as it is while the passages and the settings that decide the scores stay
the same.
"""

import dataclasses
import hashlib

import numpy as np

from qa.config import Config
from qa.decision.background import Background, background_questions, background_questions_file, measure_background
from qa.embeddings.cache import EmbeddingCache
from qa.embeddings.model import Embedder
from qa.embeddings.second_encoder import SecondEncoder, SecondOpinion
from qa.errors import IndexCorruptError
from qa.indexing.embedding import CachedSecond, cached_vectors
from qa.indexing.report import Progress
from qa.passages import Passage
from qa.search.keyword import KeywordIndex
from qa.search.retrieval import HybridRetriever
from qa.store.base import Build
from qa.text import main_script


def background(
    passages: list[Passage], vectors: np.ndarray, keywords: KeywordIndex, second: np.ndarray,
    second_encoder: CachedSecond, embedder: Embedder, config: Config, cache: EmbeddingCache, previous: Build | None,
    progress: Progress | None = None,
) -> Background:
    """How generic off-topic questions score on this corpus (see qa/decision/background.py).

    Their vectors are kept in the embedding cache (after the first build a rebuild loads no model for
    them), and the second encoder reads the passages they find from `second`, the build's vectors. When the
    passages, the model, the retrieval settings and the background questions are those of the build
    `previous`, its background is reused as it is. progress("background", done, total): questions
    searched, of all of them (once 0 of 0 when the previous build's background is reused).
    """
    progress = progress or (lambda stage, done, total: None)
    fingerprint = background_fingerprint(passages, embedder, config)
    if previous is not None:
        try:
            before = Background.read(previous.folder)
            if before.fingerprint == fingerprint:
                progress("background", 0, 0)
                return before
        except IndexCorruptError:  # none to reuse: measured afresh
            pass

    class CachedQuestions:  # the embedder's question vectors, through the cache
        def embed_questions(self, questions: list[str]) -> np.ndarray:
            return cached_vectors(cache, questions, f"{embedder.model_name} (questions)", embedder.embed_questions)

    opinion = SecondOpinion(second_encoder, passages, second)
    retriever = HybridRetriever(passages, vectors, keywords, CachedQuestions(), config, second=opinion)

    total = sum(len(questions) for questions in background_questions().values())
    searched = [0]
    progress("background", 0, total)

    def search_top(questions: list[str], written: list[str]) -> list[tuple[int, float]]:
        if not questions:
            return []
        asked, best = retriever.read(questions, written), []  # embedded at once, searched a chunk at a time
        for start in range(0, len(asked), _SEARCH_CHUNK):
            best += [(hits[0].passage.id, hits[0].similarity) for hits in retriever.search_read(asked[start : start + _SEARCH_CHUNK], 1)]
            searched[0] += len(asked[start : start + _SEARCH_CHUNK])
            progress("background", searched[0], total)
        return best

    measured = measure_background(search_top, opinion, main_script([passage.text for passage in passages]))
    return dataclasses.replace(measured, fingerprint=fingerprint)


# Background questions searched between two progress reports.
_SEARCH_CHUNK = 32


def background_fingerprint(passages: list[Passage], embedder: Embedder, config: Config) -> str:
    """A hash of what decides the background's scores: the passages, the models and the retrieval settings."""
    digest = hashlib.sha256()
    # "matched passage": the second encoder reads the passage that matched, with its title (not the citation).
    settings = (embedder.model_name, SecondEncoder.name, "matched passage", config.fusion, config.keyword_tokenizer, config.keyword_weight,
                config.section_weight, config.english_second_weight, config.english_keyword_weight, config.rrf_k,
                config.max_citation_share, config.max_citation_chars)
    digest.update(repr(settings).encode())
    digest.update(background_questions_file().read_bytes())
    for passage in passages:
        digest.update(passage.keyword_text().encode() + b"\x1f")  # holds what the model reads too
    return digest.hexdigest()
