"""Top-n selection per row of a dense score block, with exclusions and candidate filters.

One routine serves :meth:`~socialals.base.BaseRecommender.recommend` and the
``similar_*`` methods: given a block of scores (one row per query, one column per item),
keep for every row the ``n`` best columns that are

* in the candidate list (all columns when there is none) and not banned for all rows,
* not in the row's own exclusion list (a CSR row: the user's training items, or the
  query item itself), and
* finite (a NaN or infinite score is never recommended),

ordered best first, **ties broken by the smaller column index**. The order is a strict
total order on (score, column), so the answer is unique: it does not depend on the
algorithm, the batch a row was scored in, or the number of threads.

Two implementations give the same answer (the tests hold them to each other):

* the compiled kernel: one pass over a row with a binary min-heap of the ``n`` best so far
  (the root is the worst kept: lowest score, then highest column). Columns arrive in
  increasing order, so a score equal to the root's can never beat it and most columns
  cost one comparison. No arithmetic is done on the scores, so they come out bit for
  bit; the kernel releases the GIL so callers can run blocks on several threads;
* the plain numpy reference (``socialals.config_context(compiled=False)``): masks the
  excluded columns, finds every row's n-th best score with ``np.partition``, keeps the
  columns above it and fills the remaining places with the lowest-index columns that tie
  with it, then sorts them.

Indices in the exclusion lists that fall outside ``[0, n_columns)`` (and CSR pointers
outside the index array) are ignored rather than read out of bounds: model files are
untrusted input.
"""

from __future__ import annotations

import numpy as np

from ._config import compiled_or_reference, njit, numba_available

__all__ = ["select_topn", "select_topn_reference"]


def select_topn(scores, n, rows, excl_indptr, excl_indices, candidates=None, banned=None):
    """The ``n`` best allowed columns of every row of ``scores``.

    Parameters
    ----------
    scores : ndarray, shape (m, n_columns), float32 or float64
    n : int >= 1
    rows : int ndarray, shape (m,)
        Row ``r`` of ``scores`` excludes the columns of CSR row ``rows[r]`` of
        (``excl_indptr``, ``excl_indices``).
    excl_indptr, excl_indices : int ndarrays
        A CSR pattern of excluded columns (``excl_indptr = [0, 0]`` with ``rows`` all 0
        excludes nothing). Column order within a row does not matter.
    candidates : int ndarray or None
        Sorted, unique columns that may be returned; ``None`` allows every column.
    banned : int ndarray or None
        Columns no row may return (the same for every row; cheaper than a candidate list
        of all other columns).

    Returns
    -------
    index : int64 ndarray, shape (m, n_eff)
        Columns, best first (``n_eff = min(n, number of candidate columns)``).
    value : ndarray, shape (m, n_eff), dtype of ``scores``
        Their scores, copied exactly.
    count : int64 ndarray, shape (m,)
        How many places of each row are filled (fewer than ``n_eff`` when too few columns
        are allowed); the places after ``count[r]`` hold -1 and 0.
    """
    scores = np.ascontiguousarray(scores)
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    excl_indptr = _int_array(excl_indptr)
    excl_indices = _int_array(excl_indices)
    use_cand = candidates is not None
    cand = _int_array(candidates) if use_cand else np.zeros(0, dtype=np.int64)
    n_cols = scores.shape[1]
    if use_cand and len(cand) and (cand[0] < 0 or cand[-1] >= n_cols or np.any(np.diff(cand) <= 0)):
        raise ValueError("select_topn: 'candidates' must be sorted, unique columns of 'scores'.")
    banned = np.zeros(0, dtype=np.int64) if banned is None else _int_array(banned)
    if len(banned) and (banned.min() < 0 or banned.max() >= n_cols):
        raise ValueError("select_topn: 'banned' must hold columns of 'scores'.")
    if len(banned) and use_cand:  # fold them into the candidate list
        cand = np.setdiff1d(cand, banned)
        banned = np.zeros(0, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() > len(excl_indptr) - 2):
        raise ValueError("select_topn: 'rows' must index rows of the exclusion CSR.")
    n_eff = int(min(int(n), len(cand) if use_cand else n_cols))
    m = scores.shape[0]
    index = np.full((m, n_eff), -1, dtype=np.int64)
    value = np.zeros((m, n_eff), dtype=scores.dtype)
    count = np.zeros(m, dtype=np.int64)
    if m == 0 or n_eff == 0:
        return index, value, count

    def compiled():
        _select_rows(scores, n_eff, rows, excl_indptr, excl_indices, cand, use_cand, banned, index, value, count)
        return index, value, count

    def reference():
        return select_topn_reference(scores, n_eff, rows, excl_indptr, excl_indices, cand if use_cand else None,
                                     banned)

    return compiled_or_reference("topn", compiled, reference)


def _int_array(a):
    a = np.ascontiguousarray(a)
    return a if a.dtype in (np.int32, np.int64) else a.astype(np.int64)


def _allowed_mask(scores, rows, excl_indptr, excl_indices, candidates, banned):
    m, n_cols = scores.shape
    allowed = np.isfinite(scores)
    if candidates is not None:
        keep = np.zeros(n_cols, dtype=bool)
        keep[candidates] = True
        allowed &= keep
    if banned is not None and len(banned):
        allowed[:, banned] = False
    lo = np.clip(excl_indptr[rows], 0, len(excl_indices))
    hi = np.clip(excl_indptr[rows + 1], 0, len(excl_indices))
    lengths = np.maximum(hi - lo, 0)
    if lengths.sum():
        r = np.repeat(np.arange(m), lengths)
        pos = np.repeat(lo - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        c = excl_indices[pos]
        ok = (c >= 0) & (c < n_cols)
        allowed[r[ok], c[ok]] = False
    return allowed


def select_topn_reference(scores, n, rows, excl_indptr, excl_indices, candidates=None, banned=None):
    """:func:`select_topn` in plain numpy (the oracle of the compiled kernel)."""
    scores = np.asarray(scores)
    m, n_cols = scores.shape
    if candidates is not None and banned is not None and len(banned):
        candidates, banned = np.setdiff1d(candidates, banned), None
    n_eff = int(min(int(n), n_cols if candidates is None else len(candidates)))
    index = np.full((m, n_eff), -1, dtype=np.int64)
    value = np.zeros((m, n_eff), dtype=scores.dtype)
    count = np.zeros(m, dtype=np.int64)
    if m == 0 or n_eff == 0:
        return index, value, count
    allowed = _allowed_mask(scores, np.asarray(rows, dtype=np.int64), np.asarray(excl_indptr),
                            np.asarray(excl_indices), candidates, banned)
    work = np.where(allowed, scores, -np.inf)
    # the n_eff-th largest value of every row, then: everything above it, and the
    # lowest-index columns equal to it until the row has n_eff places
    kth = np.partition(work, n_cols - n_eff, axis=1)[:, n_cols - n_eff][:, None]
    above = work > kth
    tie = work == kth
    room = n_eff - above.sum(axis=1, keepdims=True)
    chosen = above | (tie & (np.cumsum(tie, axis=1) <= room))
    chosen &= allowed
    count[:] = chosen.sum(axis=1)
    r, c = np.nonzero(chosen)  # row-major: each row's columns ascending
    v = scores[r, c]
    order = np.lexsort((c, -v.astype(np.float64), r))  # per row: best first, ties by column
    r, c, v = r[order], c[order], v[order]
    place = np.arange(len(r)) - np.repeat(np.cumsum(count) - count, count)
    index[r, place] = c
    value[r, place] = v
    return index, value, count


if numba_available:

    @njit(nogil=True)
    def _sift_down(hv, hi, size, pos):
        # the heap's root is its *worst* entry: lowest value, then highest index
        v, j = hv[pos], hi[pos]
        while True:
            child = 2 * pos + 1
            if child >= size:
                break
            other = child + 1
            if other < size and (hv[other] < hv[child] or (hv[other] == hv[child] and hi[other] > hi[child])):
                child = other
            if hv[child] < v or (hv[child] == v and hi[child] > j):
                hv[pos], hi[pos] = hv[child], hi[child]
                pos = child
            else:
                break
        hv[pos], hi[pos] = v, j

    @njit(nogil=True)
    def _sift_up(hv, hi, pos):
        v, j = hv[pos], hi[pos]
        while pos > 0:
            parent = (pos - 1) // 2
            if v < hv[parent] or (v == hv[parent] and j > hi[parent]):
                hv[pos], hi[pos] = hv[parent], hi[parent]
                pos = parent
            else:
                break
        hv[pos], hi[pos] = v, j

    @njit(nogil=True)
    def _offer(hv, hi, size, n, v, j):
        """Offer column ``j`` (larger than every column offered before) with score ``v``;
        returns the new heap size."""
        if size < n:
            hv[size], hi[size] = v, j
            _sift_up(hv, hi, size)
            return size + 1
        if v > hv[0]:  # a tie with the root loses: j is the larger column
            hv[0], hi[0] = v, j
            _sift_down(hv, hi, size, 0)
        return size

    @njit(nogil=True)
    def _select_rows(scores, n, rows, excl_indptr, excl_indices, cand, use_cand, banned, index, value, count):
        m, n_cols = scores.shape
        n_excl = excl_indices.shape[0]
        blocked = np.zeros(n_cols, dtype=np.int32)  # how many reasons exclude a column
        for q in range(banned.shape[0]):
            blocked[banned[q]] += 1
        hv = np.empty(n, dtype=scores.dtype)
        hi = np.empty(n, dtype=np.int64)
        for r in range(m):
            row = rows[r]
            lo = min(max(excl_indptr[row], 0), n_excl)
            hi_ = min(max(excl_indptr[row + 1], lo), n_excl)
            for p in range(lo, hi_):
                c = excl_indices[p]
                if 0 <= c < n_cols:
                    blocked[c] += 1
            s = scores[r]
            size = 0
            if use_cand:
                for q in range(cand.shape[0]):
                    j = cand[q]
                    v = s[j]
                    if blocked[j] > 0 or not np.isfinite(v):
                        continue
                    if size == n and not v > hv[0]:
                        continue
                    size = _offer(hv, hi, size, n, v, j)
            else:
                for j in range(n_cols):
                    v = s[j]
                    if size == n and not v > hv[0]:  # the common case: one comparison
                        continue
                    if blocked[j] > 0 or not np.isfinite(v):
                        continue
                    size = _offer(hv, hi, size, n, v, j)
            count[r] = size
            # pop the worst into the last free place: best first
            for t in range(size - 1, -1, -1):
                value[r, t] = hv[0]
                index[r, t] = hi[0]
                hv[0], hi[0] = hv[t], hi[t]
                _sift_down(hv, hi, t, 0)
            for p in range(lo, hi_):
                c = excl_indices[p]
                if 0 <= c < n_cols:
                    blocked[c] -= 1

else:  # pragma: no cover - numba missing: compiled_or_reference never calls it

    def _select_rows(*args):
        raise RuntimeError("numba is not available")
