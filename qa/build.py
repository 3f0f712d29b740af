"""Build the index from the corpus: read documents, cut passages, embed them, write the index.

Also answers "what changed since the last build" by comparing the sha256 of every source file
with the hashes recorded in the manifest.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import Config
from .corpus import Problem, read_corpus, source_hashes
from .embeddings import Embedder
from .errors import CorpusError, IndexCorruptError, IndexMismatchError, IndexMissingError
from .index import build_lock, make_manifest, read_manifest, write_index
from .passages import make_passages

# progress(stage, done, total): stage is "reading", "embedding" or "writing".
Progress = Callable[[str, int, int], None]


@dataclass
class CorpusChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


@dataclass
class BuildReport:
    documents: int
    passages: int
    problems: list[Problem]
    changes: CorpusChanges
    seconds: float
    folder: str


def compare_sources(recorded: dict[str, str], current: dict[str, str]) -> CorpusChanges:
    """Sort sources into added / changed / removed / unchanged by their hashes."""
    return CorpusChanges(
        added=sorted(current.keys() - recorded.keys()),
        changed=sorted(s for s in current.keys() & recorded.keys() if current[s] != recorded[s]),
        removed=sorted(recorded.keys() - current.keys()),
        unchanged=sorted(s for s in current.keys() & recorded.keys() if current[s] == recorded[s]),
    )


def corpus_changes(config: Config, current: dict[str, str] | None = None) -> CorpusChanges:
    """What changed in the corpus folder since the current index was built (all added if none was)."""
    try:
        recorded = read_manifest(config.index_dir)["sources"]
    except (IndexMissingError, IndexCorruptError, IndexMismatchError):
        recorded = {}
    return compare_sources(recorded, source_hashes(config.corpus_dir) if current is None else current)


def build_index(config: Config, embedder: Embedder, progress: Progress | None = None) -> BuildReport:
    """Build a complete index of `config.corpus_dir` into `config.index_dir`, replacing the old one atomically.

    Files that cannot be read are reported in `problems` and left out; the build still fails with
    CorpusError when no document at all can be indexed, so an empty corpus never replaces a good index.
    """
    started = time.perf_counter()
    progress = progress or (lambda stage, done, total: None)
    with build_lock(config.index_dir):
        # Hashes are taken before reading, so a file edited during the build shows up as changed later.
        hashes = source_hashes(config.corpus_dir)
        changes = corpus_changes(config, hashes)
        documents, problems = read_corpus(config.corpus_dir)
        progress("reading", len(documents), len(documents) + len(problems))
        passages = make_passages(documents, config.max_passage_chars)
        if not passages:
            reasons = "; ".join(problem.reason for problem in problems) or "it holds no .md or .txt text"
            raise CorpusError(f"nothing to index in {config.corpus_dir}: {reasons}")
        vectors = embedder.embed_passages(
            [passage.embedding_text() for passage in passages],
            progress=lambda done, total: progress("embedding", done, total),
        )
        sources = {doc.source: hashes[doc.source] for doc in documents if doc.source in hashes}
        manifest = make_manifest(
            model=config.model,
            dimension=vectors.shape[1],
            chunking=config.chunking(),
            sources=sources,
            documents=len(documents),
            passages=len(passages),
        )
        progress("writing", 0, 1)
        folder = write_index(config.index_dir, manifest, passages, vectors)
        progress("writing", 1, 1)
    return BuildReport(
        documents=len(documents),
        passages=len(passages),
        problems=problems,
        changes=changes,
        seconds=time.perf_counter() - started,
        folder=str(folder),
    )
