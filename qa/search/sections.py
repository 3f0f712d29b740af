"""Where each section's passages lie: consecutive passages of one source and heading form a section.

Retrieval scores sections as well as passages, chooses candidates by section and grows citations within
one; all of them read the same layout, computed once per index.
"""

import numpy as np

from qa.passages import Passage


def section_groups(passages: list[Passage]) -> np.ndarray:
    """Group number of each passage: consecutive passages of one source and section share one."""
    return _runs([(p.source, p.section) for p in passages])


def unit_groups(passages: list[Passage]) -> np.ndarray:
    """Unit number of each passage: consecutive passages of one section under one label and path (the parts
    of one article, or a section's text outside articles and items) share one."""
    return _runs([(p.source, p.section, p.label, p.path) for p in passages])


def _runs(keys: list[tuple]) -> np.ndarray:
    """Run number of each key: consecutive equal keys share one, numbered from 0."""
    starts = np.fromiter((i > 0 and keys[i] != keys[i - 1] for i in range(len(keys))), dtype=np.int64, count=len(keys))
    return np.cumsum(starts)


class Sections:
    """The sections of a list of passages: `groups[i]` is passage i's section, and section g spans passages
    `first[g]`..`last[g]` (a section's passages are consecutive)."""

    def __init__(self, passages: list[Passage]):
        self.groups = section_groups(passages)
        count = len(self.groups) and self.groups[-1] + 1
        self.first = np.searchsorted(self.groups, np.arange(count), side="left")
        self.last = np.searchsorted(self.groups, np.arange(count), side="right") - 1

    def __len__(self) -> int:
        return len(self.first)

    def sizes(self, sections: np.ndarray) -> np.ndarray:
        """How many passages each of `sections` holds."""
        return self.last[sections] - self.first[sections] + 1

    def members(self, sections: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The passages of `sections` (sorted section numbers), in passage order, and where each section's run starts."""
        sizes = self.sizes(sections)
        starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
        members = np.repeat(self.first[sections] - starts, sizes) + np.arange(int(sizes.sum()))
        return members, starts
