"""What changed since the last build: corpus files, settings, and the code that reads the files.

The sha256 of every source file is compared with the hashes recorded in the manifest (`SourceHashes`
reads again only files whose size or time changed), and the model and chunking settings with the ones
the manifest records. A file whose content and reader are the same as at the last build gives the
same passages: `unchanged_sources` names those, which a rebuild takes from the last build unread.
"""

import hashlib
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path

from qa.config import Config
from qa.documents.corpus import Problem, SourceHashes
from qa.documents.ocr import ocr_settings
from qa.embeddings.second_encoder import SECOND_FILE
from qa.store.folder import last_build

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
    build = last_build(config.index_dir)
    return changes_since(build.manifest if build is not None else None, config, hashes)


def changes_since(manifest: dict | None, config: Config, hashes: SourceHashes | None = None) -> CorpusChanges:
    """What changed in `config`'s corpus folder and settings since the build `manifest` describes (all
    added if None); `hashes` as for `corpus_changes`."""
    manifest = manifest or {}
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


# What decides a file's passages besides its bytes: this code (the whole reading subpackage, and the
# passage and text rules), the parsers' versions and the settings.
_READER_CODE = ("documents", "passages.py", "text.py")
_READER_LIBRARIES = ("pypdf", "python-docx", "lxml", "pdfplumber", "openpyxl", "python-pptx", "rapidocr-onnxruntime",
                     "pypdfium2", "opencc")


def reader_fingerprint(config: Config) -> str:
    """A hash of everything besides a file's bytes that decides its passages under `config`: the reading
    code, the parsers' versions, the chunking, the file size limit and the OCR settings."""
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


def unchanged_sources(previous: dict | None, hashes: dict[str, str], reader: str) -> set[str]:
    """The sources of `hashes` with the content the build `previous` (its manifest) read without trouble,
    when it read them with the same `reader` (`reader_fingerprint`): reading them again would give the
    same passages."""
    if previous is None or previous.get("reader") != reader:
        return set()
    indexed, troubled = previous.get("sources", {}), previous.get("problems", {})
    return {source for source, digest in hashes.items() if indexed.get(source) == digest and source not in troubled}
