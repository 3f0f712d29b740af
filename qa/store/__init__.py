"""Where a build's passages and vectors are kept: the interface every store answers (base), the local FAISS
store (local) and Milvus (milvus), the store by name (factory), and the build folder with its manifest (folder)."""
