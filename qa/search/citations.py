"""What a hit cites: the passage that matched, grown by its best neighbours in its unit.

A unit is an article, item or 问/答 pair of the document's structure (qa/passages.py), or the text of a
section outside them: a citation never joins two articles.

A hit cites more than the passage that matched when its section is long: the best neighbouring
passages join it up to `max_citation_share` of the section (at least `max_passage_chars`, at most
`max_citation_chars`). A short case is then cited by the sentences that answer, a long article
paragraph by a wider window that more often holds the answer next to the sentence that matched the
question. The measured effect of the settings is in scripts/compare_retrieval.py's output.
"""

import dataclasses

import numpy as np

from qa.config import Config
from qa.passages import Passage
from qa.search.sections import Sections, unit_groups


class Citations:
    """Grows the best passages of a ranking into the citations of hits (`windows`, `span`)."""

    def __init__(self, passages: list[Passage], sections: Sections, config: Config):
        self.passages, self.sections, self.config = passages, sections, config
        self.units = unit_groups(passages)

    def windows(self, best_first, scores, k: int) -> list[list[int]]:
        """[first, last, anchor] of each of the k best citations, best first: passages in the order
        `best_first` gives (`scores[i]`: passage i's score), each grown into a window unless a better
        one covers it already."""
        groups = self.sections.groups
        windows: list[list[int]] = []
        covered = np.zeros(len(self.passages), dtype=bool)
        for i in best_first:
            if len(windows) == k:
                break
            if covered[i]:
                continue  # already cited inside a better passage's window
            first, last = self._window(int(i), scores, covered)
            covered[first : last + 1] = True
            touching = next((w for w in windows if self._touching(w, first, last)), None)
            joined = touching and (min(touching[0], first), max(touching[1], last))
            if joined and self.passages[joined[1]].end - self.passages[joined[0]].start <= self._budget(groups[first]):
                # A neighbour of a better hit is one citation with it, not a second touching card,
                # while the joined citation stays within the section's citation budget.
                touching[0], touching[1] = joined
                continue
            windows.append([first, last, int(i)])
        return windows

    def span(self, first: int, last: int, anchor: int) -> Passage:
        """One passage spanning passages first..last (its id is the anchor's, the passage that matched)."""
        if first == last:
            return self.passages[first]
        parts = [self.passages[first].text]
        for before, after in zip(self.passages[first:last], self.passages[first + 1 : last + 1]):
            # Passages are stored trimmed; only the length of the whitespace between them is known.
            gap = after.start - before.end
            parts.append(" " * gap if before.text[-1:].isascii() and after.text[:1].isascii() else "\n" * gap)
            parts.append(after.text)
        head = self.passages[first]
        return dataclasses.replace(head, id=self.passages[anchor].id, end=self.passages[last].end, text="".join(parts))

    def _touching(self, window: list[int], first: int, last: int) -> bool:
        """Whether passages [first, last] adjoin `window` in the same unit."""
        return self.units[window[2]] == self.units[first] and (window[1] + 1 == first or last + 1 == window[0])

    def _window(self, anchor: int, scores, covered: np.ndarray) -> tuple[int, int]:
        """The passages [first, last] to cite around `anchor`: its neighbours in its unit, best first,
        join while the window stays within the section's budget (`_budget`)."""
        unit = self.units[anchor]
        budget = self._budget(self.sections.groups[anchor])
        first = last = anchor
        while True:
            candidates = [
                i
                for i in (first - 1, last + 1)
                if 0 <= i < len(self.passages) and self.units[i] == unit and not covered[i]
                and self.passages[max(last, i)].end - self.passages[min(first, i)].start <= budget
            ]
            if not candidates:
                return first, last
            chosen = max(candidates, key=lambda i: scores[i])
            first, last = min(first, chosen), max(last, chosen)

    def _budget(self, group: int) -> float:
        """The most characters one citation from section `group` may span."""
        config = self.config
        section_chars = self.passages[self.sections.last[group]].end - self.passages[self.sections.first[group]].start
        return min(config.max_citation_chars, max(config.max_passage_chars, config.max_citation_share * section_chars))
