"""Build the index from the corpus: read what changed, reuse the rest, embed what is new, write the index.

A build always produces a complete index of the corpus folder, but reads only files whose content
changed since the previous build (the others' passages are taken from it, while the reading code,
parsers and settings are the same: qa/indexing/changes.py), and embeds only passages whose embedding
text the embedding cache has not seen with this model (qa/indexing/embedding.py). The new index is
written beside the old one through the store the settings choose, and made current in one step
(qa/store/folder.py), under a lock that keeps a second build out. The previous build's manifest is
read once, at the start, and what needs it is given it.

A file that cannot be read is reported with the reason and left out, and the other files are
indexed. If that file was indexed before, the version indexed before is kept (its passages are
carried over from the previous index), because a half-copied or wrongly saved file should not make
answers vanish; the build reports it as kept, `qa status` keeps listing it as unreadable, and it is
replaced as soon as the file can be read again. Deleting the file is how a document is withdrawn.
"""

import time
from pathlib import Path

import numpy as np

from qa.config import Config
from qa.decision.background import BACKGROUND_FILE
from qa.documents.corpus import Document, Problem, SourceHashes, list_sources, outside_links, read_corpus, source_name
from qa.documents.ocr import OCR_CACHE_FILE, OcrReader
from qa.embeddings.cache import CACHE_FILE, EmbeddingCache
from qa.embeddings.model import Embedder
from qa.embeddings.second_encoder import SECOND_FILE, SecondEncoder
from qa.errors import CorpusError, IndexCorruptError, IndexMismatchError, IndexMissingError
from qa.indexing.background import background
from qa.indexing.changes import KEYWORD_TEXT, compare_sources, reader_fingerprint, unchanged_sources
from qa.indexing.embedding import CachedSecond, keyword_index, passage_vectors, second_vectors, tokenizer_name
from qa.indexing.report import BuildReport, Progress
from qa.passages import Passage, make_passages
from qa.search.keyword import KEYWORDS_FILE, KeywordIndex
from qa.search.sections import Sections
from qa.store.base import Build, check_files
from qa.store.factory import store_for
from qa.store.folder import build_lock, last_build, load_passages, make_manifest, write_index
from qa.store.local import choose_vector_index


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
        last = last_build(config.index_dir)  # its manifest, read once for the whole build
        previous = last.manifest if last is not None else None
        changes = compare_sources(
            (previous or {}).get("sources", {}), hashes, (previous or {}).get("problems", {})
        )
        reader = reader_fingerprint(config)
        old = _previous_passages(last)
        # Files unchanged since the previous build, read by the same code and settings: their passages
        # are taken from it unread (a one-file edit of a large corpus reads one file, not all of them).
        unread = _passages_of(old, previous, unchanged_sources(previous, hashes, reader))
        documents, problems = read_corpus(
            config.corpus_dir, [path for path in paths if source_name(path, config.corpus_dir) not in unread],
            progress=lambda done, total: progress("reading", done, total), max_bytes=config.max_file_bytes, ocr=ocr,
        )
        # Unreadable files that the previous build indexed keep their earlier version (see the module note).
        kept = _passages_of(old, previous, {problem.source for problem in problems})
        passages = _passages_in_order(
            paths, config.corpus_dir, documents, {**unread, **kept}, config.max_passage_chars, config.max_unit_chars
        )
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
        converting = lambda done, total: progress("cache", done, total)  # noqa: E731  (a cache of format 1, once)
        with EmbeddingCache(cache_file, embedder.cache_name, float16=[SecondEncoder.name], progress=converting) as cache:
            vectors, embedded, reused, vectors_by = passage_vectors(
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
                vector_index=choose_vector_index(len(passages), config),
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
            manifest["keyword_tokens"] = tokenizer_name(config.keyword_tokenizer)
            # BM25 beside the vectors (qa/search/keyword.py): unchanged passages keep the previous build's counts.
            timed = time.perf_counter()
            texts = [passage.keyword_text() for passage in passages]  # what the keyword index reads
            old_texts = [passage.keyword_text() for passage in old] if old is not None else None
            keywords = keyword_index(texts, config.keyword_tokenizer, _previous_keywords(last, old_texts, manifest), progress)
            timings["keywords"], timed = time.perf_counter() - timed, time.perf_counter()
            second_encoder = CachedSecond(cache, threads=config.threads)  # one encoder for passages and background questions
            second = second_vectors(passages, second_encoder, progress)  # qa/embeddings/second_encoder.py
            timings["second"], timed = time.perf_counter() - timed, time.perf_counter()
            # qa/indexing/background.py: the previous build's, while few passages changed since it was measured
            measured, changed = background(
                passages, texts, vectors, keywords, second, second_encoder, embedder, config, cache, last, old_texts, progress
            )
            manifest["background"] = {"passages_changed": changed}
            timings["background"], timed = time.perf_counter() - timed, time.perf_counter()
            folder = write_index(
                config.index_dir, manifest, passages, vectors,
                store=store_for(config),  # local FAISS files or Milvus (qa/store/factory.py), updated from the previous build
                previous=last,
                # The keyword index with the sections' (qa/search/sections.py), as the retriever reads them.
                extra_files={KEYWORDS_FILE: lambda path: keywords.save(path, Sections(passages).groups), BACKGROUND_FILE: measured.write,
                             SECOND_FILE: lambda path: _save_array(path, second)},
                progress=progress,
            )
            timings["writing"] = time.perf_counter() - timed
            cache.forget_unused()  # only after a successful build: a failed one must not cost the cache
            ocr.keep([hashes[source] for source in unread])  # their scans are read again after a change of reader
            ocr.forget_unused()
            notes += [note for note in (cache.converted, cache.problem) if note]
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


def _previous_passages(last: Build | None) -> list[Passage] | None:
    """The passages of the build in use, which a build may keep; None if there is none it can trust."""
    if last is None:
        return None
    try:
        return load_passages(last)
    except (IndexMissingError, IndexCorruptError, IndexMismatchError):
        return None  # nothing trustworthy to keep: every file is read, unreadable ones reported as skipped


def _previous_keywords(last: Build | None, old: list[str] | None, manifest: dict) -> tuple[list[str], KeywordIndex] | None:
    """The keyword texts of the previous build's passages (`old`) and its keyword index, when its tokens
    are made as this build's are (`manifest`'s "keyword_tokens"), for `keyword_index` to take unchanged
    passages' counts from; None when there is none, or it cannot be trusted (everything is tokenized)."""
    if last is None or old is None or last.manifest.get("keyword_tokens") != manifest["keyword_tokens"]:
        return None
    try:
        check_files(last.folder, last.manifest, names=(KEYWORDS_FILE,))
        return old, KeywordIndex.load(last.folder / KEYWORDS_FILE, rows=len(old))
    except IndexCorruptError:
        return None


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


def _passages_in_order(
    paths: list[Path], corpus_dir: Path, documents: list[Document], kept: dict[str, list[Passage]], max_chars: int,
    max_unit_chars: int,
) -> list[Passage]:
    """All passages, numbered from 0 in the corpus's file order; `kept`: passages of files not read now
    (unchanged, or unreadable and kept in their earlier version), in their place."""
    by_source = {document.source: document for document in documents}
    passages: list[Passage] = []
    for path in paths:
        source = source_name(path, corpus_dir)
        if source in by_source:
            passages.extend(make_passages([by_source[source]], max_chars, len(passages), max_unit_chars))
        elif source in kept:
            first = len(passages)  # not inside the generator: extend() grows the list as it reads
            passages.extend(_numbered(p, first + n) for n, p in enumerate(kept[source]))
    return passages


def _numbered(passage: Passage, number: int) -> Passage:
    """`passage` as passage `number`: itself when it has that number already (passages are immutable),
    else a copy of its fields as they are (`dataclasses.replace` runs `__init__` again: a second for the
    100,000 passages of a rebuild whose edit shifted the numbers of the files after it)."""
    if passage.id == number:
        return passage
    copy = object.__new__(Passage)
    copy.__dict__.update(vars(passage), id=number)
    return copy


def _save_array(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as file:  # np.save(path) would add ".npy" to a name without it
        np.save(file, np.ascontiguousarray(array), allow_pickle=False)
