"""The social graph: similarities of linked users and the symmetric weight matrix W.

Ma et al. (WSDM 2011) weight each social link (i, f) by the similarity of the two users'
tastes, computed on the items both rated:

* VSS (vector space / cosine):
  ``sim(i, f) = sum_j r_ij r_fj / (sqrt(sum_j r_ij^2) sqrt(sum_j r_fj^2))``, over j in I(i) ∩ I(f).
* PCC (Pearson), mapped to [0, 1] by ``(x + 1) / 2``:
  ``x = sum_j (r_ij - rbar_i)(r_fj - rbar_f) / (sqrt(sum_j (r_ij - rbar_i)^2) sqrt(sum_j (r_fj - rbar_f)^2))``,
  over the co-rated items j, where ``rbar_i`` is the mean of all of user i's ratings.

**A pair with no co-rated item** (or, for PCC, with zero variance on the co-rated items)
carries no evidence either way; it gets ``0.5``, the value PCC's mapping gives to zero
correlation, for both measures. Links are therefore never silently removed, and users
with friends but no ratings keep their links.

The model uses ``W = (S + S^T) / 2`` of the directed similarities ``S``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import _build, _kernels
from ._config import compiled_or_reference, njit

if _kernels.numba_available:
    from numba import prange

__all__ = ["NO_EVIDENCE_SIMILARITY", "edge_similarity", "symmetric_weights", "neighbour_sums", "sq_distances"]

NO_EVIDENCE_SIMILARITY = 0.5


def edge_similarity(R: sp.csr_matrix, src: np.ndarray, dst: np.ndarray, kind: str, n_threads: int = 1) -> np.ndarray:
    """Similarity of each edge ``(src[e], dst[e])`` from the rating matrix ``R``.

    Parameters
    ----------
    R : csr_matrix (n_users, n_items)
        Ratings; a stored entry means "rated" (explicit zeros count as rated).
    src, dst : int arrays
        Edge endpoints in user-index space.
    kind : {"vss", "pcc"}
    n_threads : int
        Threads of the compiled route (the result never depends on it).

    Returns
    -------
    ndarray of float64 in [0, 1]
    """
    if kind not in ("vss", "pcc"):
        raise ValueError(f"similarity must be None, 'vss' or 'pcc'; got {kind!r}.")
    R = sp.csr_matrix(R)
    counts = np.diff(R.indptr)
    means = np.zeros(R.shape[0])  # what each user's ratings are centred on: 0 (VSS) or their mean (PCC)
    if kind == "pcc":
        sums = np.bincount(np.repeat(np.arange(R.shape[0]), counts), weights=R.data.astype(np.float64, copy=False),
                           minlength=R.shape[0])
        means = np.divide(sums, counts, out=means, where=counts > 0)
    # per link over the co-rated items: Σ x_s x_d, Σ x_s², Σ x_d², their number (x: centred ratings)
    num, ns, nd, co = compiled_or_reference(
        "link_similarity", lambda: _co_rated_sums_compiled(R, src, dst, means, n_threads),
        lambda: _co_rated_sums(R, src, dst, means))
    denom = np.sqrt(ns) * np.sqrt(nd)
    ok = (co > 0) & (denom > 0)
    x = np.divide(num, denom, out=np.zeros_like(num), where=ok)
    x = np.clip(x, -1.0, 1.0)
    sim = (x + 1.0) / 2.0 if kind == "pcc" else np.clip(x, 0.0, 1.0)
    return np.where(ok, sim, NO_EVIDENCE_SIMILARITY)


def _co_rated_sums(R, src, dst, means):
    """The reference: ``(num, ns, nd, co)`` of each link by scipy products of the linked
    users' rows (sums in item order)."""
    counts = np.diff(R.indptr)
    values = R.data.astype(np.float64) - np.repeat(means, counts)

    def like_r(data):  # R's pattern (indices shared, not copied) with other values
        return sp.csr_matrix((data, R.indices, R.indptr), shape=R.shape)

    X, X2, B = like_r(values), like_r(values * values), like_r(np.ones(len(values)))
    num, ns, nd, co = (np.empty(len(src)) for _ in range(4))
    # the rows of the linked users are gathered a bounded slice of links at a time (each
    # link's sums are its own, so the slices change nothing)
    reach = np.cumsum(counts[src] + counts[dst])
    for lo, hi in _slices(reach, max(1 << 18, R.nnz // 16)):
        s, d = src[lo:hi], dst[lo:hi]
        num[lo:hi] = np.asarray(X[s].multiply(X[d]).sum(axis=1)).ravel()
        ns[lo:hi] = np.asarray(X2[s].multiply(B[d]).sum(axis=1)).ravel()
        nd[lo:hi] = np.asarray(X2[d].multiply(B[s]).sum(axis=1)).ravel()
        co[lo:hi] = np.asarray(B[s].multiply(B[d]).sum(axis=1)).ravel()
    return num, ns, nd, co


@njit(parallel=True, error_model="numpy")
def _co_rated_kernel(indptr, indices, data, means, src, dst, out):  # pragma: no cover - compiled
    """Each link's sums by merging the two users' sorted rows: no copy of the ratings, the
    same additions in the same (item) order as the reference (no fastmath; the compiler may
    still fuse a multiply-add, so they agree to rounding)."""
    for e in prange(len(src)):
        s, d = src[e], dst[e]
        p, p_end, q, q_end = indptr[s], indptr[s + 1], indptr[d], indptr[d + 1]
        num = ns = nd = co = 0.0
        while p < p_end and q < q_end:
            a, b = indices[p], indices[q]
            if a < b:
                p += 1
            elif b < a:
                q += 1
            else:
                xs = np.float64(data[p]) - means[s]
                xd = np.float64(data[q]) - means[d]
                num += xs * xd
                ns += xs * xs
                nd += xd * xd
                co += 1.0
                p += 1
                q += 1
        out[0, e] = num
        out[1, e] = ns
        out[2, e] = nd
        out[3, e] = co


def _co_rated_sums_compiled(R, src, dst, means, n_threads):
    if not R.has_canonical_format:  # the merge needs sorted rows without repeats
        R = R.copy()
        R.sum_duplicates()
    out = np.empty((4, len(src)))
    with _kernels._parallel_region(n_threads):
        _co_rated_kernel(_kernels._index(R.indptr), _kernels._index(R.indices), R.data, means,
                         _kernels._index(np.asarray(src)), _kernels._index(np.asarray(dst)), out)
    return out


def _slices(reach: np.ndarray, size: int):
    """``(lo, hi)`` ranges of links whose cumulative row lengths ``reach`` grow by about ``size``."""
    cuts = np.searchsorted(reach, np.arange(size, reach[-1] if len(reach) else 0, size), side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [len(reach)]]))
    return zip(bounds[:-1], bounds[1:])


def symmetric_weights(n_users: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> sp.csr_matrix:
    """``W = (S + S^T) / 2`` as CSR with sorted indices and no explicit zeros.

    Compiled, both halves of every link are scattered straight into W's rows, which are
    then sorted and merged in place (:func:`socialals._build.symmetric_weights`): W's own
    bytes and no coordinate copy. The reference is one coordinate-to-CSR conversion of
    both directions (the halves of a link given both ways add up), with 32-bit indices
    where they fit. The two agree bit for bit on links without repeats (a fit's links).
    """
    W = compiled_or_reference("social_weights", lambda: _build.symmetric_weights(n_users, src, dst, weight),
                              lambda: None)
    return W if W is not None else _symmetric_weights(n_users, src, dst, weight)


def _symmetric_weights(n_users, src, dst, weight) -> sp.csr_matrix:
    n = len(src)
    data = np.empty(2 * n)
    data[:n] = weight
    data[n:] = weight
    data *= 0.5
    index = np.int32 if n_users < 2**31 - 1 else np.int64
    rows, cols = np.empty(2 * n, index), np.empty(2 * n, index)
    rows[:n], rows[n:], cols[:n], cols[n:] = src, dst, dst, src
    W = sp.csr_matrix((data, (rows, cols)), shape=(n_users, n_users))
    del data, rows, cols
    W.sum_duplicates()
    W.eliminate_zeros()
    return W


# The compiled products of W with the factors (SocialALS's right-hand side and term; the
# numpy references are in socialals.als, beside their use).
@njit(parallel=True, fastmath=True, error_model="numpy")
def _neighbour_sums(indptr, indices, weights, U, scale, out):  # pragma: no cover - compiled
    k = U.shape[1]
    for r in prange(len(indptr) - 1):
        acc = np.zeros(k)
        for p in range(indptr[r], indptr[r + 1]):
            f = indices[p]
            for a in range(k):
                acc[a] += weights[p] * np.float64(U[f, a])
        for a in range(k):
            out[r, a] = scale * acc[a]


@njit(parallel=True, fastmath=True, error_model="numpy")
def _sq_distances(indptr, indices, weights, U, out):  # pragma: no cover - compiled
    for r in prange(len(indptr) - 1):
        acc = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            f = indices[p]
            d2 = 0.0
            for a in range(U.shape[1]):
                d = np.float64(U[r, a]) - np.float64(U[f, a])
                d2 += d * d
            acc += weights[p] * d2
        out[r] = acc


def neighbour_sums(W, U, scale, out, n_threads):
    """``out[r, :k] = scale * sum_f W[r, f] U[f]`` (float64 sums per row, in CSR order)."""
    with _kernels._parallel_region(n_threads):
        _neighbour_sums(_kernels._index(W.indptr), _kernels._index(W.indices), W.data.astype(np.float64, copy=False),
                        np.ascontiguousarray(U), float(scale), out)
    return out


def sq_distances(W, U, n_threads):
    """Per row ``r`` of the CSR ``W``: ``sum_f W[r, f] ||U[r] - U[f]||^2`` (float64)."""
    out = np.empty(W.shape[0])
    with _kernels._parallel_region(n_threads):
        _sq_distances(_kernels._index(W.indptr), _kernels._index(W.indices), W.data.astype(np.float64, copy=False),
                      np.ascontiguousarray(U), out)
    return out
