"""Search: a question read once (question), keywords and BM25 (keyword, bilingual), sections, dense +
keyword fusion (fusion), candidates at scale (candidates), the cited passage (citations), and the hybrid
retriever (retrieval)."""
