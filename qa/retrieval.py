"""Find the passages nearest a question: dense retrieval over the FAISS index."""

from dataclasses import dataclass

from .embeddings import Embedder
from .index import Index
from .passages import Passage


@dataclass(frozen=True)
class Hit:
    passage: Passage
    similarity: float  # cosine similarity of question and passage embeddings, -1..1


class DenseRetriever:
    """Embeds the question with the index's model and searches the vectors."""

    def __init__(self, index: Index, embedder: Embedder):
        self.index = index
        self.embedder = embedder

    def search(self, question: str, k: int) -> list[Hit]:
        return self.search_many([question], k)[0]

    def search_many(self, questions: list[str], k: int) -> list[list[Hit]]:
        vectors = self.embedder.embed_questions(questions)
        return [
            [Hit(self.index.passages[i], score) for i, score in row]
            for row in self.index.search(vectors, k)
        ]
