"""What the index panel shows: the served index's facts, corpus changes since the build, and the rebuild's state.

Plain records, kept apart from the rebuild thread (qa/page/background_rebuild.py) so that the HTML
(qa/page/render.py) can read them without importing the build (qa/indexing/): the build's types appear
in annotations only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing them would load the stores, OCR and the encoders
    from qa.indexing.changes import CorpusChanges
    from qa.indexing.report import BuildReport


@dataclass(frozen=True)
class RebuildState:
    """A snapshot of the page's rebuild: running or not, the current stage, and the last outcome."""

    running: bool = False
    stage: str | None = None
    done: int = 0
    total: int = 0
    started: float | None = None
    stage_started: float | None = None
    finished: float | None = None
    report: BuildReport | None = None
    error: str | None = None


@dataclass
class IndexStatus:
    """What the index panel shows: the served index's facts, corpus changes, and the rebuild state."""

    documents: int | None = None
    passages: int | None = None
    model: str | None = None
    built_at: str | None = None
    remembered: int = 0  # labelled questions the served index remembers (`qa remember`, qa/search/memory.py)
    changes: CorpusChanges | None = None
    error: str | None = None
    rebuild: RebuildState = field(default_factory=RebuildState)
