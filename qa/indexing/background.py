"""The relevance decision's background for a build: how generic off-topic questions score on its corpus.

Measured by qa/decision/background.py through the build's own retriever; stored in the build folder
(BACKGROUND_FILE) and reused as it is while the settings that decide the scores (the models, the
retrieval settings, the background questions) stay the same and the passages are the same, or have
changed by at most `DRIFT` of them since it was measured: 300 off-topic questions' best passages move
too little for a few edited passages of a large corpus to matter, and measuring them again costs a
one-file rebuild of 100,000 passages ten seconds or more. The passages changed since the measurement
add up from build to build in the manifest ("background": {"passages_changed": n}); a small corpus
(under 100 passages) is measured again on any change.
"""

import dataclasses
import hashlib
from collections import Counter

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

# Share of the passages that may change (added, removed or edited, counted from build to build) before
# the background is measured again.
DRIFT = 0.01


def background(
    passages: list[Passage], texts: list[str], vectors: np.ndarray, keywords: KeywordIndex, second: np.ndarray,
    second_encoder: CachedSecond, embedder: Embedder, config: Config, cache: EmbeddingCache, previous: Build | None,
    old_texts: list[str] | None = None, progress: Progress | None = None,
) -> tuple[Background, int]:
    """How generic off-topic questions score on this corpus (see qa/decision/background.py), and how many
    passages changed since it was measured (for the manifest's "background").

    Their vectors are kept in the embedding cache (after the first build a rebuild loads no model for
    them), and the second encoder reads the passages they find from `second`, the build's vectors. `texts`
    are the passages' keyword texts (`Passage.keyword_text`, what the model reads too), `old_texts` those
    of the build `previous`, whose background is reused as it is when it was
    measured with the same settings, on the same passages or on passages that differ by at most `DRIFT`
    of them (see the module note). progress("background", done, total): questions searched, of all of
    them (once 0 of 0 when the previous build's background is reused).
    """
    progress = progress or (lambda stage, done, total: None)
    fingerprint = background_fingerprint(texts, embedder, config)
    if previous is not None:
        try:
            before = Background.read(previous.folder)
            changed = int((previous.manifest.get("background") or {}).get("passages_changed", 0))
            if before.fingerprint == fingerprint:
                progress("background", 0, 0)
                return before, changed
            if old_texts is not None and _settings_of(before.fingerprint) == _settings_of(fingerprint):
                changed += changed_passages(old_texts, texts)
                if changed <= DRIFT * len(passages):
                    progress("background", 0, 0)
                    return before, changed
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
    return dataclasses.replace(measured, fingerprint=fingerprint), 0


def changed_passages(old: list[str], new: list[str]) -> int:
    """How many passages an edit changed, from keyword texts `old` to `new` (what the keyword index and
    the model read): the larger of those added and those removed (an edited passage is one of each)."""
    before, after = Counter(old), Counter(new)
    return max(sum((after - before).values()), sum((before - after).values()))


def _settings_of(fingerprint: str) -> str:
    """The part of a background's fingerprint that names its settings ("" for one of another form)."""
    return fingerprint.split(":")[0] if ":" in fingerprint else ""


# Background questions searched between two progress reports.
_SEARCH_CHUNK = 32


def background_fingerprint(texts: list[str], embedder: Embedder, config: Config) -> str:
    """"settings:passages", two hashes: of what decides the background's scores but the passages (the
    models, the retrieval settings, the background questions), and of the passages' keyword texts `texts`."""
    settings = hashlib.sha256()
    # "matched passage": the second encoder reads the passage that matched, with its title (not the citation).
    named = (embedder.model_name, SecondEncoder.name, "matched passage", config.fusion, config.keyword_tokenizer, config.keyword_weight,
             config.section_weight, config.english_second_weight, config.english_keyword_weight, config.rrf_k,
             config.max_citation_share, config.max_citation_chars)
    settings.update(repr(named).encode())
    settings.update(background_questions_file().read_bytes())
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() + b"\x1f")  # holds what the model reads too
    return f"{settings.hexdigest()}:{digest.hexdigest()}"
