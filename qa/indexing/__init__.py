"""Building the index, by job: what changed since the last build (changes), the vectors and keyword
tokens through the embedding cache or Ray (embedding), the relevance background (background), the build
transaction itself (pipeline: `build_index`), what it reports (report) and the corpus watcher (watch)."""
