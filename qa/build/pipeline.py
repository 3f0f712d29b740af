"""Build the index from the corpus: read documents, cut passages, embed what is new, write the index.

A build always produces a complete index of the corpus folder, but reads only files whose content
changed since the previous build (the others' passages are taken from it, while the reading code,
parsers and settings are the same: the manifest's "reader"), and embeds only passages whose
embedding text the embedding cache (qa/embeddings/cache.py) has not seen with this model: after
an edit to one file, only that file is read and only its changed passages go through the model,
and when nothing needs embedding the model is not even loaded. The new index is written beside the old one and
made current in one step (qa/store/folder.py), under a lock that keeps a second build out.

A few passages are embedded without loading sentence-transformers (qa/embeddings/model.py), in float32,
and cached under the float32 name even where the model's own passages are bfloat16 (a CPU with
bfloat16): a small rebuild then reuses its own earlier float32 vectors too, and the manifest's
"passage_vectors" counts the passages by what made their vectors. A build that loads the model
embeds those few passages again in the model's precision, so a large build leaves one kind.

A file that cannot be read is reported with the reason and left out, and the other files are
indexed. If that file was indexed before, the version indexed before is kept (its passages are
carried over from the previous index), because a half-copied or wrongly saved file should not make
answers vanish; the build reports it as kept, `qa status` keeps listing it as unreadable, and it is
replaced as soon as the file can be read again. Deleting the file is how a document is withdrawn.

Also answers "what changed since the last build": the sha256 of every source file against the
hashes recorded in the manifest (`SourceHashes` reads again only files whose size or time changed),
and the model and chunking settings against the ones the manifest records.

Longer than most modules (~400 lines): the build is one transaction (read, reuse, embed, write,
swap) and its change report and status share its bookkeeping; splitting them would scatter it.
"""

import dataclasses
import hashlib
import importlib.metadata
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qa import text
from qa.config import Config
from qa.decision.relevance import BACKGROUND_FILE, Background, background_questions_file, measure_background
from qa.documents.corpus import Document, Problem, SourceHashes, corpus_snapshot, list_sources, outside_links, read_corpus, source_name
from qa.documents.ocr import OCR_CACHE_FILE, OcrReader, OcrSummary, ocr_settings
from qa.embeddings.cache import CACHE_FILE, EmbeddingCache
from qa.embeddings.model import Embedder
from qa.embeddings.second_encoder import DIMENSION as SECOND_DIMENSION
from qa.embeddings.second_encoder import SECOND_FILE, SecondEncoder, SecondOpinion
from qa.embeddings.second_encoder import STORED as SECOND_STORED
from qa.errors import CorpusError, IndexCorruptError, IndexMismatchError, IndexMissingError
from qa.passages import Passage, make_passages
from qa.search import keyword
from qa.search.keyword import KEYWORDS_FILE, KeywordIndex, tokenize
from qa.search.retrieval import HybridRetriever
from qa.store.base import store_for
from qa.store.folder import build_lock, choose_vector_index, current_build, load_passages, make_manifest, read_manifest, write_index
from qa.text import main_script

# progress(stage, done, total) is called with these stages, in this order:
#   "reading"    files read, of the files that need reading: new, changed or unreadable before, or all
#                of them after a change of reader (after each file; none when nothing changed)
#   "ocr"        pages read by OCR, of the pages of the file being read that need it (after each page;
#                only while reading a scanned PDF or an image, between two "reading" calls)
#   "passages"   passages whose vectors the embedding cache already had, of all passages (once)
#   "model"      0 of 1 while the embedding model loads, 1 of 1 once loaded (only if something needs embedding)
#   "embedding"  passages embedded, of those the cache did not have (after each batch; once with 0 of 0 if none)
#   "writing"    0 of 1 while the index is written and checked, 1 of 1 once it is current
Progress = Callable[[str, int, int], None]

# Texts embedded between two saves to the cache: what a build killed midway can lose.
_CHUNK_BATCHES = 8
# What the keyword index reads (Passage.keyword_text), recorded so that `qa status` asks an index that
# read something else to be rebuilt.
KEYWORD_TEXT = "document name, section title, text"


@dataclass
class CorpusChanges:
    """How the corpus folder differs from what the current index was built from."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Files that could not be read at the last build and have not changed since: a rebuild would not help.
    unreadable: list[Problem] = field(default_factory=list)
    # Settings that decide the passages or their vectors (model, chunking) and differ from the index's.
    settings: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.settings)


@dataclass
class BuildReport:
    documents: int  # documents in the new index, kept versions of unreadable files included
    passages: int
    problems: list[Problem]  # files that could not be read, with the reason
    changes: CorpusChanges  # files added / changed / removed / unchanged since the previous build
    seconds: float
    folder: str
    embedded: int = 0  # texts the model embedded in this build (passages with the same text share one)
    reused: int = 0  # passages whose vectors came from the embedding cache
    # Passages by the embedding cache name of what made their vectors (the model's name, with its precision
    # unless float32): two names when a small rebuild embedded a few passages in float32 (see the module note).
    vectors_by: dict[str, int] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # unreadable files whose previously indexed version was kept
    notes: list[str] = field(default_factory=list)  # things worth knowing: encodings guessed, cache trouble
    seconds_by_stage: dict[str, float] = field(default_factory=dict)  # reading, model, embedding, writing
    ocr: dict[str, OcrSummary] = field(default_factory=dict)  # by source: the pages read by OCR, and how surely
    # Pages of indexed files that could not be read (OCR found no text): reason "page 3: …"; the rest of the file is indexed.
    page_problems: list[Problem] = field(default_factory=list)


def compare_sources(
    recorded: dict[str, str], current: dict[str, str], unreadable: dict[str, dict] | None = None
) -> CorpusChanges:
    """Sort sources into added / changed / removed / unchanged (and still unreadable) by their hashes.

    `recorded` maps each indexed source to the hash of the version indexed; `unreadable` maps the
    sources the last build could not read to {"sha256", "reason"} of the file it tried.
    """
    unreadable = unreadable or {}
    changes = CorpusChanges()
    for source in sorted(current):
        if source in unreadable and unreadable[source].get("sha256") == current[source]:
            changes.unreadable.append(Problem(source, unreadable[source].get("reason", "")))
        elif source not in recorded:
            changes.added.append(source)
        elif recorded[source] == current[source]:
            changes.unchanged.append(source)
        else:
            changes.changed.append(source)
    changes.removed = sorted((recorded.keys() | unreadable.keys()) - current.keys())
    return changes


def corpus_changes(config: Config, hashes: SourceHashes | None = None) -> CorpusChanges:
    """What changed in the corpus folder and the settings since the current index was built (all added if none was).

    `hashes` remembers the files it has read, so that repeated checks read only files that changed.
    """
    manifest = _previous_manifest(config.index_dir) or {}
    current = (hashes or SourceHashes(config.corpus_dir)).current()
    changes = compare_sources(manifest.get("sources", {}), current, manifest.get("problems", {}))
    changes.settings = settings_changes(config, manifest) if manifest else []
    return changes


def settings_changes(config: Config, manifest: dict) -> list[str]:
    """How `config`'s model and chunking differ from those recorded in `manifest`, one line each; [] if alike."""
    found = []
    if manifest.get("model") != config.model:
        found.append(f"model: the index was built with {manifest.get('model')!r}, the settings name {config.model!r}")
    built, now = manifest.get("chunking") or {}, config.chunking()
    if built != now:
        found.append(f"chunking: the index was built with {_settings_text(built)}, the settings say {_settings_text(now)}")
    if "files" in manifest and manifest.get("keyword_text") != KEYWORD_TEXT:
        found.append("keywords: the index was built before its keyword index read each document's name "
                     "(questions naming the whole document may find the wrong section until it is rebuilt)")
    if SECOND_FILE not in manifest.get("files", {SECOND_FILE: None}):
        found.append("relevance: the index was built before it stored the second encoder's passage vectors "
                     "(answers are slower and judged on the old background until it is rebuilt)")
    return found


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{name} {value}" for name, value in sorted(settings.items())) or "nothing recorded"


def build_index(config: Config, embedder: Embedder, progress: Progress | None = None) -> BuildReport:
    """Build a complete index of `config.corpus_dir` into `config.index_dir`, replacing the old one atomically.

    Only passages the embedding cache lacks are embedded. Files that cannot be read are reported
    in `problems` and left out (or, if indexed before, kept as they were: see the module note); the
    build fails with CorpusError when nothing at all can be indexed, so an empty corpus never
    replaces a good index, and with BuildLockedError when another build of the index is running.
    """
    started = time.perf_counter()
    progress = progress or (lambda stage, done, total: None)
    timings: dict[str, float] = {}
    ocr_progress = lambda done, total: progress("ocr", done, total)  # noqa: E731
    with build_lock(config.index_dir), OcrReader(config.index_dir / OCR_CACHE_FILE, ocr_progress) as ocr:
        paths = list_sources(config.corpus_dir)
        # Hashes are taken before reading, so a file edited during the build shows up as changed later.
        hashes = SourceHashes(config.corpus_dir).current(paths)
        previous = _previous_manifest(config.index_dir)
        changes = compare_sources(
            (previous or {}).get("sources", {}), hashes, (previous or {}).get("problems", {})
        )
        reader = _reader_fingerprint(config)
        old = _previous_passages(config.index_dir, previous)
        # Files unchanged since the previous build, read by the same code and settings: their passages
        # are taken from it unread (a one-file edit of a large corpus reads one file, not all of them).
        unread = _passages_of(old, previous, _unchanged_sources(previous, hashes, reader))
        documents, problems = read_corpus(
            config.corpus_dir, [path for path in paths if source_name(path, config.corpus_dir) not in unread],
            progress=lambda done, total: progress("reading", done, total), max_bytes=config.max_file_bytes, ocr=ocr,
        )
        # Unreadable files that the previous build indexed keep their earlier version (see the module note).
        kept = _passages_of(old, previous, {problem.source for problem in problems})
        passages = _passages_in_order(paths, config.corpus_dir, documents, {**unread, **kept}, config.max_passage_chars)
        timings["reading"] = time.perf_counter() - started
        if not passages:
            reasons = "; ".join(f"{p.source}: {p.reason}" for p in problems) or "it holds no readable documents"
            raise CorpusError(f"nothing to index in {config.corpus_dir}: {reasons}")

        notes = [
            f"{document.source}: read as {document.encoding} (not UTF-8)"
            for document in documents
            if document.encoding not in (None, "UTF-8")
        ]
        notes += [f"{name}: a link to outside the corpus folder, not followed" for name in outside_links(config.corpus_dir)]
        if ocr.problem:
            notes.append(ocr.problem)
        ocr_done = {document.source: document.ocr for document in documents if document.ocr is not None}
        page_problems = [
            Problem(source, f"page {page}: {reason}") for source, summary in ocr_done.items() for page, reason in summary.unreadable.items()
        ]
        cache_file = config.index_dir / CACHE_FILE
        with EmbeddingCache(cache_file, embedder.cache_name, _tokenizer_name(config.keyword_tokenizer)) as cache:
            vectors, embedded, reused, vectors_by = _vectors_for(
                [passage.embedding_text() for passage in passages], cache, embedder, progress, timings, config
            )
            sources = {document.source: hashes[document.source] for document in documents}
            sources.update({source: previous["sources"][source] for source in kept})
            sources.update({source: hashes[source] for source in unread})
            manifest = make_manifest(
                model=config.model,
                dimension=vectors.shape[1],
                chunking=config.chunking(),
                sources=dict(sorted(sources.items())),
                documents=len(sources),
                passages=len(passages),
                vector_index=choose_vector_index(len(passages), config.vector_index, config.approximate_from),
            )
            manifest["passage_vectors"] = vectors_by
            manifest["problems"] = {
                problem.source: {"sha256": hashes[problem.source], "reason": problem.reason, "kept": problem.source in kept}
                for problem in problems
            }
            manifest["ocr"] = {source: summary.to_dict() for source, summary in ocr_done.items()}
            manifest["ocr"].update({source: previous["ocr"][source] for source in unread if source in previous.get("ocr", {})})
            manifest["reader"] = reader
            manifest["keyword_text"] = KEYWORD_TEXT
            writing = time.perf_counter()
            progress("writing", 0, 1)
            keywords = _keyword_index(passages, config.keyword_tokenizer, cache)  # BM25 beside the vectors (qa/search/keyword.py)
            second_encoder = CachedSecond(cache)  # one encoder for passages and background questions
            second = _second_vectors(passages, second_encoder)  # qa/embeddings/second_encoder.py
            background = _background(passages, vectors, keywords, second, second_encoder, embedder, config, cache)  # qa/decision/relevance.py
            folder = write_index(
                config.index_dir, manifest, passages, vectors,
                extra_files={KEYWORDS_FILE: keywords.save, BACKGROUND_FILE: background.write,
                             SECOND_FILE: lambda path: _save_array(path, second)},
                store=store_for(config),  # local FAISS files or Milvus (qa/store/base.py), updated from the previous build
            )
            progress("writing", 1, 1)
            timings["writing"] = time.perf_counter() - writing
            cache.forget_unused()  # only after a successful build: a failed one must not cost the cache
            ocr.keep([hashes[source] for source in unread])  # their scans are read again after a change of reader
            ocr.forget_unused()
            if cache.problem:
                notes.append(cache.problem)
    return BuildReport(
        documents=len(sources),
        passages=len(passages),
        problems=problems,
        changes=changes,
        seconds=time.perf_counter() - started,
        folder=str(folder),
        embedded=embedded,
        reused=reused,
        vectors_by=vectors_by,
        kept=sorted(kept),
        notes=notes,
        seconds_by_stage=timings,
        ocr=ocr_done,
        page_problems=page_problems,
    )


def _previous_manifest(index_dir: Path) -> dict | None:
    try:
        return read_manifest(index_dir)
    except (IndexMissingError, IndexCorruptError, IndexMismatchError):
        return None


def _previous_passages(index_dir: Path, previous: dict | None) -> list[Passage] | None:
    """The passages of the index in use, which a build may keep; None if there is none it can trust."""
    if previous is None:
        return None
    try:
        return load_passages(index_dir)
    except (IndexMissingError, IndexCorruptError, IndexMismatchError):
        return None  # nothing trustworthy to keep: every file is read, unreadable ones reported as skipped


def _passages_of(old: list[Passage] | None, previous: dict | None, sources: set[str]) -> dict[str, list[Passage]]:
    """The passages `old` (the previous build's, `previous` its manifest) holds of each of `sources` that
    it indexed ([] for a source without passages); {} without `old`."""
    if old is None or not sources:
        return {}
    found: dict[str, list[Passage]] = {source: [] for source in sources if source in previous.get("sources", {})}
    for passage in old:
        if passage.source in found:
            found[passage.source].append(passage)
    return found


def _unchanged_sources(previous: dict | None, hashes: dict[str, str], reader: str) -> set[str]:
    """Files with the content the previous build read without trouble, when it read them with the same
    reader (`_reader_fingerprint`): reading them again would give the same passages."""
    if previous is None or previous.get("reader") != reader:
        return set()
    indexed, troubled = previous.get("sources", {}), previous.get("problems", {})
    return {source for source, digest in hashes.items() if indexed.get(source) == digest and source not in troubled}


# What decides a file's passages besides its bytes: this code (the whole reading subpackage, and the
# passage and text rules), the parsers' versions and the settings.
_READER_CODE = ("documents", "passages.py", "text.py")
_READER_LIBRARIES = ("pypdf", "python-docx", "lxml", "pdfplumber", "openpyxl", "python-pptx", "rapidocr-onnxruntime",
                     "pypdfium2", "opencc")


def _reader_fingerprint(config: Config) -> str:
    digest = hashlib.sha256()
    package = Path(__file__).parent.parent
    for name in _READER_CODE:
        path = package / name
        for module in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(module.relative_to(package).as_posix().encode() + b"\0" + module.read_bytes())
    for library in _READER_LIBRARIES:
        try:
            digest.update(f"{library} {importlib.metadata.version(library)}\n".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{library} missing\n".encode())
    digest.update(repr((config.chunking(), config.max_file_bytes, ocr_settings())).encode())
    return digest.hexdigest()


def _passages_in_order(
    paths: list[Path], corpus_dir: Path, documents: list[Document], kept: dict[str, list[Passage]], max_chars: int
) -> list[Passage]:
    """All passages, numbered from 0 in the corpus's file order; `kept`: passages of files not read now
    (unchanged, or unreadable and kept in their earlier version), in their place."""
    by_source = {document.source: document for document in documents}
    passages: list[Passage] = []
    for path in paths:
        source = source_name(path, corpus_dir)
        if source in by_source:
            passages.extend(make_passages([by_source[source]], max_chars, first_id=len(passages)))
        elif source in kept:
            first = len(passages)  # not inside the generator: extend() grows the list as it reads
            passages.extend(dataclasses.replace(p, id=first + n) for n, p in enumerate(kept[source]))
    return passages


def _vectors_for(
    texts: list[str], cache: EmbeddingCache, embedder: Embedder, progress: Progress, timings: dict[str, float],
    config: Config | None = None,
) -> tuple[np.ndarray, int, int, dict[str, int]]:
    """The vector of every text, from the cache or the embedder (on Ray when `config.ray_address` is
    set); returns (vectors, texts embedded, passages reused, passages by the cache name of what made
    their vectors)."""
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
        fresh = _embed_on_ray(missing, cache, config, progress, timings)
        dimensions = {len(vector) for vector, _ in fresh.values()} | {len(vector) for vector in cached if vector is not None}
        if len(dimensions) > 1:  # the cached vectors were made by another model of the same name
            cache.clear()
            cached, names, reused = [None] * len(texts), [None] * len(texts), 0
            missing = sorted(set(texts), key=len, reverse=True)
            fresh = _embed_on_ray(missing, cache, config, progress, timings)
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


def _embed_on_ray(
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
            cache.put(chunk, second, model=SecondEncoder.name)  # the replicas' second-encoder vectors: see _second_vectors
            fresh.update((text, (vector, name)) for text, vector in zip(chunk, vectors))
        timings["embedding"] = time.perf_counter() - embedding
    return fresh


def _tokenizer_name(tokenizer: str) -> str:
    # Tokens depend on the code of qa/search/keyword.py and qa/text.py (stop words, patterns), on jieba's
    # dictionary and OpenCC's tables: any change makes a different name, so stale tokens are never reused.
    code = hashlib.sha256(Path(keyword.__file__).read_bytes() + Path(text.__file__).read_bytes()).hexdigest()[:16]
    versions = f"jieba {importlib.metadata.version('jieba')}|opencc {importlib.metadata.version('opencc')}"
    return f"{tokenizer}|keyword.py {code}|{versions}"


def _background(
    passages: list[Passage], vectors: np.ndarray, keywords: KeywordIndex, second: np.ndarray,
    second_encoder: "CachedSecond", embedder: Embedder, config: Config, cache: EmbeddingCache,
) -> Background:
    """How generic off-topic questions score on this corpus (see qa/decision/relevance.py).

    Their vectors are kept in the embedding cache (after the first build a rebuild loads no model for
    them), and the second encoder reads the passages they find from `second`, the build's vectors. When the passages,
    the model, the retrieval settings and the background questions are those of the index in use,
    its background is reused as it is.
    """
    fingerprint = _background_fingerprint(passages, embedder, config)
    try:
        previous = Background.read(current_build(config.index_dir))
        if previous.fingerprint == fingerprint:
            return previous
    except (IndexMissingError, IndexCorruptError):
        pass

    class CachedQuestions:  # the embedder's question vectors, through the cache
        def embed_questions(self, questions: list[str]) -> np.ndarray:
            return _cached(cache, questions, f"{embedder.model_name} (questions)", embedder.embed_questions)

    opinion = SecondOpinion(second_encoder, passages, second)
    retriever = HybridRetriever(passages, vectors, keywords, CachedQuestions(), config, second=opinion)

    def search_top(questions: list[str], written: list[str]) -> list[tuple[int, float]]:
        return [(hits[0].passage.id, hits[0].similarity) for hits in retriever.search_many(questions, 1, written)]

    measured = measure_background(search_top, opinion, main_script([passage.text for passage in passages]))
    return dataclasses.replace(measured, fingerprint=fingerprint)


class CachedSecond:
    """The second encoder's vectors through the embedding cache: a rebuild encodes only new texts,
    and the encoder is loaded only when there are some."""

    def __init__(self, cache: EmbeddingCache):
        self.cache = cache
        self.encoder = SecondEncoder()

    def embed(self, texts: list[str]) -> np.ndarray:
        return _cached(self.cache, texts, self.encoder.name, self.encoder.embed)


def _second_vectors(passages: list[Passage], second_encoder: CachedSecond) -> np.ndarray:
    """The second encoder's vector of every passage's embedding text, stored with the build (SECOND_FILE)."""
    if not passages:
        return np.zeros((0, SECOND_DIMENSION), dtype=SECOND_STORED)
    return second_encoder.embed([passage.embedding_text() for passage in passages]).astype(SECOND_STORED)


def _cached(cache: EmbeddingCache, texts: list[str], model: str, encode) -> np.ndarray:
    """Vectors of `texts` by `model`: from the cache, and `encode`d (then cached) where it has none."""
    found = _through_cache(texts, lambda some: cache.get(some, model=model),
                           lambda some, vectors: cache.put(some, vectors, model=model), encode)
    return np.stack(found).astype(np.float32, copy=False)


def _through_cache(texts: list[str], get, put, make) -> list:
    """What `make` gives for each of `texts`: `get` from a cache (None where it has nothing), `make`
    only for the texts it lacks (each once), and `put` those back."""
    found = get(texts)
    missing = list(dict.fromkeys(text for text, value in zip(texts, found) if value is None))
    if missing:
        fresh = make(missing)
        put(missing, fresh)
        by_text = dict(zip(missing, fresh))
        found = [value if value is not None else by_text[text] for text, value in zip(texts, found)]
    return found


def _save_array(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as file:  # np.save(path) would add ".npy" to a name without it
        np.save(file, np.ascontiguousarray(array), allow_pickle=False)


def _background_fingerprint(passages: list[Passage], embedder: Embedder, config: Config) -> str:
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


def _keyword_index(passages: list[Passage], tokenizer: str, cache: EmbeddingCache) -> KeywordIndex:
    """The keyword index of `passages` (row i = passage i), tokenizing only texts the cache has no tokens for."""
    token_lists = _through_cache([passage.keyword_text() for passage in passages], cache.get_tokens, cache.put_tokens,
                                 lambda texts: [tokenize(text, tokenizer) for text in texts])
    return KeywordIndex.from_tokens(token_lists, tokenizer)


def wait_for_change(
    corpus_dir: Path, since: dict[str, tuple[int, int]] | None, interval: float = 2.0
) -> dict[str, tuple[int, int]] | None:
    """Block until the corpus folder differs from the snapshot `since`, then until it stays the same for one interval.

    Snapshots (from `corpus_snapshot`) hold each file's size and modification time, so polling
    costs a directory listing, not a read. Waiting for the folder to settle means a file being
    copied in is indexed once, complete. Returns the new snapshot (None while the folder is missing).
    """
    def snapshot():
        try:
            return corpus_snapshot(corpus_dir)
        except CorpusError:
            return None

    current = snapshot()
    while current == since:
        time.sleep(interval)
        current = snapshot()
    while True:
        time.sleep(interval)
        settled = snapshot()
        if settled == current:
            return current
        current = settled
