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
    vector: np.ndarray  # `text` embedded: compared with the passages, and with their sentences by the highlighter
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

    Only the corpus's script is embedded. Averaging it with the question as written cost a converted question
    70% more encoding (a pair in one run: 14.5 against 8.6 ms) and bought nothing on the seed's held-out
    questions (2026-12-07, eval/: doc@1 0.981 both, passage@1 0.848 against 0.852, 128 answered against 123).
    `embedder`: anything with `embed_questions(texts)`."""
    vectors = embedder.embed_questions(questions)
    return [
        Question(text, asked, vector, keywords.tokenizer, keywords.analyse(text))
        for text, asked, vector in zip(questions, written, vectors)
    ]
