"""A question as retrieval read it: its vectors and keyword concepts, computed once per answer.

Retrieval embeds the question and analyses its keywords; its hits and the answer carry the result, so
that the page's highlighter (qa/page/highlight.py) reuses them instead of embedding and tokenizing
the question again.
"""

from dataclasses import dataclass

import numpy as np

from qa.search.keyword import KeywordIndex, same_concepts


@dataclass(frozen=True, eq=False)
class Question:
    """One question as searched. `text` is in the corpus's script, `written` as the user wrote it (what the
    model reads of it); they differ when the question was converted (qa.text.in_script)."""

    text: str
    written: str
    vector: np.ndarray  # compared with the passages: `text` embedded, averaged with `written` embedded when they differ
    written_vector: np.ndarray  # `written` embedded alone
    tokenizer: str  # the keyword tokenizer of `concepts`
    concepts: list[tuple[str, ...]]  # the keyword concepts of `text` (qa.search.keyword.question_concepts)

    def written_concepts(self, tokenizer: str) -> list[tuple[str, ...]] | None:
        """The keyword concepts of `written` by `tokenizer`: `concepts` when they are the same, else None
        (the caller analyses `written` itself)."""
        if tokenizer == self.tokenizer and same_concepts(self.text, self.written):
            return self.concepts
        return None


def read_questions(questions: list[str], written: list[str], embedder, keywords: KeywordIndex) -> list[Question]:
    """Embed and analyse `questions` (in the corpus's script), `written[i]` being question i as written.

    A question converted to the corpus's script is embedded both ways and the two vectors averaged: on the
    seed's traditional-script questions that found the right case first more often than either alone
    (scripts/fit_relevance.py's data). `embedder`: anything with `embed_questions(texts)`."""
    changed = [i for i, (a, b) in enumerate(zip(questions, written)) if a != b]
    # One call for both forms: the encoder runs them as one batch, 16 ms for a pair against 21 ms in two runs.
    everything = embedder.embed_questions(questions + [written[i] for i in changed])
    vectors, again = everything[: len(questions)], everything[len(questions) :]
    written_vectors = vectors.copy()
    if changed:
        written_vectors[changed] = again
        both = vectors[changed] + again
        vectors[changed] = both / np.linalg.norm(both, axis=1, keepdims=True)
    return [
        Question(text, asked, vector, written_vector, keywords.tokenizer, keywords.analyse(text))
        for text, asked, vector, written_vector in zip(questions, written, vectors, written_vectors)
    ]
