"""A build's vectors and keyword tokens, through the embedding cache (qa/embeddings/cache.py).

Only passages whose embedding text the cache has not seen with this model are embedded: after an
edit to one file only its changed passages go through the model, and when nothing needs embedding
the model is not even loaded. With `Config.ray_address` they are embedded on Ray instead
(qa/embeddings/ray_cluster.py), each batch cached as it comes back.

A few passages are embedded without loading sentence-transformers (qa/embeddings/model.py), in float32,
and cached under the float32 name even where the model's own passages are bfloat16 (a CPU with
bfloat16): a small rebuild then reuses its own earlier float32 vectors too, and the manifest's
"passage_vectors" counts the passages by what made their vectors. A build that loads the model
embeds those few passages again in the model's precision, so a large build leaves one kind.
"""

import hashlib
import importlib.metadata
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import sparse

from qa import text
from qa.config import Config
from qa.embeddings.cache import EmbeddingCache
from qa.embeddings.model import Embedder
from qa.embeddings.second_encoder import DIMENSION as SECOND_DIMENSION
from qa.embeddings.second_encoder import STORED as SECOND_STORED
from qa.embeddings.second_encoder import SecondEncoder
from qa.indexing.report import Progress
from qa.passages import Passage
from qa.search import keyword
from qa.search.keyword import KeywordIndex, tokenize

# Texts embedded between two saves to the cache: what a build killed midway can lose.
_CHUNK_BATCHES = 8


def passage_vectors(
    texts: list[str], cache: EmbeddingCache, embedder: Embedder, progress: Progress, timings: dict[str, float],
    config: Config | None = None,
) -> tuple[np.ndarray, int, int, dict[str, int]]:
    """The vector of every text, from the cache or the embedder (on Ray when `config.ray_address` is
    set); returns (vectors, texts embedded, passages reused, passages by the cache name of what made
    their vectors). Passages are the passage model's to encode (`Embedder.passages`)."""
    embedder = embedder.passages
    cached = cache.get(texts)  # the model's own vectors, under embedder.cache_name
    if len({len(vector) for vector in cached if vector is not None}) > 1:
        cache.clear()  # vectors of two dimensions under one name: the model changed behind it
        cached = [None] * len(texts)
    names = [cache.model if vector is not None else None for vector in cached]
    exact = embedder.cache_name_for("float32")
    if exact != cache.model:
        # Float32 vectors that small rebuilds made without the model (see the module note): reused by
        # another small rebuild, made again in the model's precision by a build that loads the model.
        cache.models.add(exact)  # their rows are forgotten like the model's once no build uses them
        wanted = list(dict.fromkeys(text for text, vector in zip(texts, cached) if vector is None))
        small = dict(zip(wanted, cache.get(wanted, model=exact))) if wanted else {}
        still = sum(vector is None for vector in small.values())
        if still == 0 or embedder.without_model(still):
            for i, text in enumerate(texts):
                if cached[i] is None and small[text] is not None:
                    cached[i], names[i] = small[text], exact
    reused = sum(vector is not None for vector in cached)
    progress("passages", reused, len(texts))
    # Longest first, as sentence-transformers' encode sorts them: batches of similar length pad least.
    missing = sorted({text for text, vector in zip(texts, cached) if vector is None}, key=len, reverse=True)
    fresh: dict[str, tuple[np.ndarray, str]] = {}
    if not missing:
        progress("embedding", 0, 0)
    elif config is not None and config.ray_address is not None:
        fresh = embed_on_ray(missing, cache, config, progress, timings)
        dimensions = {len(vector) for vector, _ in fresh.values()} | {len(vector) for vector in cached if vector is not None}
        if len(dimensions) > 1:  # the cached vectors were made by another model of the same name
            cache.clear()
            cached, names, reused = [None] * len(texts), [None] * len(texts), 0
            missing = sorted(set(texts), key=len, reverse=True)
            fresh = embed_on_ray(missing, cache, config, progress, timings)
    else:
        loading = time.perf_counter()
        progress("model", 0, 1)
        if not embedder.without_model(len(missing)):
            embedder.model  # sentence-transformers: loaded only now that enough needs embedding
        dimension = embedder.dimension
        progress("model", 1, 1)
        timings["model"] = time.perf_counter() - loading
        if reused and len(next(vector for vector in cached if vector is not None)) != dimension:
            cache.clear()  # the cached vectors were made by another model of the same name
            cached = [None] * len(texts)
            reused = 0
            missing = sorted(set(texts), key=len, reverse=True)
        embedding = time.perf_counter()
        progress("embedding", 0, len(missing))
        chunk_size = embedder.batch_size * _CHUNK_BATCHES
        for start in range(0, len(missing), chunk_size):
            chunk = missing[start : start + chunk_size]
            name = embedder.cache_name_for(embedder.precision_for(len(chunk)))  # what embeds this chunk
            vectors = embedder.embed_passages(
                chunk, progress=lambda done, total, start=start: progress("embedding", start + done, len(missing))
            )
            cache.put(chunk, vectors, model=name)  # saved before the next chunk: a killed build loses at most one chunk
            fresh.update((text, (vector, name)) for text, vector in zip(chunk, vectors))
        timings["embedding"] = time.perf_counter() - embedding
    rows, made_by = [], []
    for text, vector, name in zip(texts, cached, names):
        if vector is None:
            vector, name = fresh[text]
        rows.append(vector)
        made_by.append(name)
    counts = dict(sorted(Counter(made_by).items()))
    return np.ascontiguousarray(np.stack(rows), dtype=np.float32), len(missing), reused, counts


def embed_on_ray(
    texts: list[str], cache: EmbeddingCache, config: Config, progress: Progress, timings: dict[str, float]
) -> dict[str, tuple[np.ndarray, str]]:
    """Embed `texts` on Ray (qa/embeddings/ray_cluster.py), saving each batch to the cache as it comes back."""
    from qa.embeddings.ray_cluster import RayEmbedding

    loading = time.perf_counter()
    progress("model", 0, 1)  # the bundled model is converted here once, before the replicas load it
    fresh: dict[str, tuple[np.ndarray, str]] = {}
    with RayEmbedding(config, config.ray_address) as ray:
        progress("model", 1, 1)
        timings["model"] = time.perf_counter() - loading
        embedding = time.perf_counter()
        progress("embedding", 0, len(texts))
        for chunk, vectors, name, second in ray.embed(texts, progress=lambda done, total: progress("embedding", done, total)):
            cache.put(chunk, vectors, model=name)  # a killed build keeps every batch that came back
            cache.put(chunk, second, model=SecondEncoder.name)  # the replicas' second-encoder vectors: see second_vectors
            fresh.update((text, (vector, name)) for text, vector in zip(chunk, vectors))
        timings["embedding"] = time.perf_counter() - embedding
    return fresh


def tokenizer_name(tokenizer: str) -> str:
    """The name of the keyword tokens `tokenizer` makes with this code and these dictionaries (recorded in
    the manifest as "keyword_tokens": a rebuild takes the previous build's counts only under the same name)."""
    # Tokens depend on the code of qa/search/keyword.py and qa/text.py (stop words, patterns), on jieba's
    # dictionary and OpenCC's tables: any change makes a different name, so stale tokens are never reused.
    code = hashlib.sha256(Path(keyword.__file__).read_bytes() + Path(text.__file__).read_bytes()).hexdigest()[:16]
    versions = f"jieba {importlib.metadata.version('jieba')}|opencc {importlib.metadata.version('opencc')}"
    return f"{tokenizer}|keyword.py {code}|{versions}"


class CachedSecond:
    """The second encoder's vectors through the embedding cache (kept there in float16, as the build
    stores them): a rebuild encodes only new texts, and the encoder is loaded only when there are some.

    Every vector it gives is rounded to float16, whether it came from the cache or the encoder, so a
    build gives the same vectors whatever its cache held."""

    def __init__(self, cache: EmbeddingCache, encoder: SecondEncoder | None = None, threads: int = 0):
        """`threads`: how many batches of passages the encoder (when not given) encodes at once; 0: one per core."""
        self.cache = cache
        self.encoder = encoder or SecondEncoder(threads=threads or os.cpu_count() or 1)

    def embed(self, texts: list[str], progress=None, dtype=np.float32) -> np.ndarray:
        """Vectors of `texts` (float16 values, as `dtype`); `progress(done, total)` after each chunk
        encoded, of the texts the cache lacks (once 0 of 0 when it has them all)."""
        found = self.cache.get(texts, model=self.encoder.name)
        missing = list(dict.fromkeys(text for text, vector in zip(texts, found) if vector is None))
        progress = progress or (lambda done, total: None)
        progress(0, len(missing))
        fresh: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), _SECOND_CHUNK):
            chunk = missing[start : start + _SECOND_CHUNK]
            vectors = self.encoder.embed(chunk).astype(SECOND_STORED)
            self.cache.put(chunk, vectors, model=self.encoder.name)  # a killed build keeps what it encoded
            fresh.update(zip(chunk, vectors))
            progress(start + len(chunk), len(missing))
        rows = [vector if vector is not None else fresh[text] for text, vector in zip(texts, found)]
        if not rows:
            return np.zeros((0, SECOND_DIMENSION), dtype=dtype)
        return np.stack(rows).astype(SECOND_STORED).astype(dtype, copy=False)


# Passages the second encoder reads between two saves to the cache (and progress reports): ~1 s each on a core.
_SECOND_CHUNK = 512


def second_vectors(passages: list[Passage], second_encoder: CachedSecond, progress: Progress | None = None) -> np.ndarray:
    """The second encoder's vector of every passage's embedding text, stored with the build (SECOND_FILE);
    progress("second", done, total) as it encodes the passages the cache lacks."""
    report = (lambda done, total: progress("second", done, total)) if progress else None
    return second_encoder.embed([passage.embedding_text() for passage in passages], report, dtype=SECOND_STORED)


def cached_vectors(cache: EmbeddingCache, texts: list[str], model: str, encode) -> np.ndarray:
    """Vectors of `texts` by `model`: from the cache, and `encode`d (then cached) where it has none."""
    found = cache.get(texts, model=model)
    missing = list(dict.fromkeys(text for text, vector in zip(texts, found) if vector is None))
    if missing:
        fresh = encode(missing)
        cache.put(missing, fresh, model=model)
        by_text = dict(zip(missing, fresh))
        found = [vector if vector is not None else by_text[text] for text, vector in zip(texts, found)]
    return np.stack(found).astype(np.float32, copy=False)


# Passages tokenized between two progress reports.
_TOKENIZE_CHUNK = 2000


def keyword_index(
    texts: list[str], tokenizer: str, previous: tuple[list[str], KeywordIndex] | None = None,
    progress: Progress | None = None,
) -> KeywordIndex:
    """The keyword index of the passages whose keyword texts (`Passage.keyword_text`) are `texts` (row i =
    passage i); progress("keywords", done, total) as it tokenizes.

    `previous`: the keyword texts of the previous build's passages and its keyword index, made with the
    same tokens (`tokenizer_name`); a passage whose keyword text it indexed takes its row of counts, and
    only the others are tokenized (jieba reads ~3,000 passages a second: a one-file edit of 100,000 passages
    would otherwise spend half a minute here). The result holds the same terms and counts as an index
    built afresh, its vocabulary in another order (which no score depends on)."""
    progress = progress or (lambda stage, done, total: None)
    rows = np.full(len(texts), -1, dtype=np.int64)
    if previous is not None:
        old_texts, old = previous
        row_of = {text: row for row, text in enumerate(old_texts)}
        rows = np.fromiter((row_of.get(text, -1) for text in texts), dtype=np.int64, count=len(texts))
    new = np.flatnonzero(rows < 0)
    progress("keywords", 0, len(new))
    token_lists = []
    for start in range(0, len(new), _TOKENIZE_CHUNK):
        token_lists += [tokenize(texts[i], tokenizer) for i in new[start : start + _TOKENIZE_CHUNK]]
        progress("keywords", len(token_lists), len(new))
    if previous is None or len(new) == len(texts):
        return KeywordIndex.from_tokens(token_lists, tokenizer)
    term_ids = dict(old.term_ids)  # the old vocabulary, extended by the new passages' new terms
    flat = [token for tokens in token_lists for token in tokens]
    for term in dict.fromkeys(flat):
        term_ids.setdefault(term, len(term_ids))
    vocabulary = old.vocabulary + list(term_ids)[len(old.vocabulary) :]
    columns = np.fromiter(map(term_ids.__getitem__, flat), dtype=np.int64, count=len(flat))
    lines = np.repeat(np.arange(len(token_lists)), [len(tokens) for tokens in token_lists])
    counted = sparse.csr_matrix((np.ones(len(flat), dtype=np.float32), (lines, columns)), shape=(len(new), len(vocabulary)))
    counted.sum_duplicates()
    kept = old.counts[rows[rows >= 0]]
    kept.resize((kept.shape[0], len(vocabulary)))
    stacked = sparse.vstack([kept, counted], format="csr")
    order = np.empty(len(texts), dtype=np.int64)  # row i of the result is row order[i] of `stacked`
    order[rows >= 0] = np.arange(len(texts) - len(new))
    order[new] = len(texts) - len(new) + np.arange(len(new))
    counts = stacked[order]
    used = np.flatnonzero(np.bincount(counts.indices, minlength=len(vocabulary)))  # terms only removed passages held go
    if len(used) < len(vocabulary):
        counts = counts[:, used]
        vocabulary = [vocabulary[term] for term in used]
    return KeywordIndex(counts, vocabulary, tokenizer)
