"""Compiled builders of a fit's data: label codes, the rating matrix both ways, and W.

Each builder gives exactly what its plain reference gives (``pandas.factorize`` and
scipy's coordinate conversions in :mod:`socialals.data` and :mod:`socialals.social`, used
when the ``compiled`` switch is off), with less memory on the way:

* **Integer labels** spanning a range not much wider than the data are coded through a
  table over that range: 32-bit codes in two passes, no 64-bit codes and no hash table.
* **The CSR pair** ``R`` (users x items) and ``Rᵀ`` is built by counting sorts straight
  from the 32-bit codes: first by item (each item's ratings in input order), then by user
  reading the items in order (so each user's row comes out sorted by item, and repeats
  of a pair sit side by side in input order), then ``Rᵀ`` from ``R``. The builder carries
  each rating's input position, not its value, until the rows are final, and frees the
  codes after the first pass, so no step holds more than the finished pair: 8 bytes a
  rating of indices and positions, then ``4 + 4`` bytes a rating each way (``4 + 8`` for
  ratings float32 cannot hold: :func:`fits_float32`).
* **W = (S + Sᵀ)/2** is scattered straight into its rows (both directions of each link),
  each row sorted and merged in place, and the arrays shrunk to the merged size.

Repeated (user, item) pairs are merged into their mean exactly as the reference does (a
float64 sum in input order divided by the count), so the data and every fit are the same
bit for bit either way.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

from ._config import njit

__all__ = ["int_label_codes", "rating_pair", "symmetric_weights"]

# a label table may cover this many more slots than there are labels (4 bytes each)
_SPARE_SLOTS = 1 << 16


# ---------------------------------------------------------------------------- labels
@njit()
def _int_codes(values, lo, rank, codes):  # pragma: no cover - compiled
    """``rank[v - lo]``: the rank of label v among the labels present (-1: absent); codes."""
    for v in values:
        rank[v - lo] = 1
    n = 0
    for j in range(len(rank)):
        if rank[j]:
            rank[j] = n
            n += 1
        else:
            rank[j] = -1
    for e in range(len(values)):
        codes[e] = rank[values[e] - lo]


def int_label_codes(values: np.ndarray):
    """32-bit codes and sorted unique labels of integer ``values`` (what
    ``pandas.factorize(values, sort=True)`` gives), or None when the labels are not plain
    integers or spread over a range much wider than the data."""
    if not isinstance(values, np.ndarray) or values.dtype.kind not in "iu" or len(values) == 0:
        return None
    if values.dtype.kind == "u" and values.dtype.itemsize == 8:
        return None
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if span > len(values) + _SPARE_SLOTS or span >= 2**31 - 1:
        return None
    rank, codes = np.zeros(span, np.int32), np.empty(len(values), np.int32)  # allocated here: traced like the rest
    _int_codes(values, lo, rank, codes)
    return codes, (np.flatnonzero(rank >= 0) + lo).astype(values.dtype)


# ---------------------------------------------------------------------------- exact sums
@njit()
def _exponent_sums(values, shift0, hi, lo):  # pragma: no cover - compiled
    for v in values:
        x = np.float64(v)
        if x != 0:
            mant, expo = math.frexp(x)
            sig = np.int64(mant * 9007199254740992.0)  # 2**53: exact
            s = expo - 53 + shift0
            hi[s] += sig >> 26
            lo[s] += sig & 67108863  # 2**26 - 1: sig = hi * 2**26 + lo


def exponent_sums(values: np.ndarray, shift0: int):
    """Per shift ``s = exponent - 53 + shift0``, the sums of the high and low 26-bit halves
    of the 53-bit integer significands of the finite ``values`` (int64 arrays indexed by s)."""
    hi, lo = np.zeros(2200, np.int64), np.zeros(2200, np.int64)
    _exponent_sums(np.ravel(values), shift0, hi, lo)
    return hi, lo


# ---------------------------------------------------------------------------- the CSR pair
@njit()
def _count(keys, n):  # pragma: no cover - compiled
    counts = np.zeros(n, np.int64)
    for key in keys:
        counts[key] += 1
    return counts


@njit()
def _bucket(rows, cols, indptr, ind_out, pos_out):  # pragma: no cover - compiled
    """Entries ``(rows[e], cols[e])`` into the rows of the transpose (stable): column c's
    slice of ``ind_out`` lists its rows, ``pos_out`` their input positions."""
    nxt = indptr[:-1].copy()
    for e in range(len(rows)):
        c = cols[e]
        q = nxt[c]
        ind_out[q] = rows[e]
        pos_out[q] = e
        nxt[c] = q + 1


@njit()
def _transpose(indptr, ind, payload, indptr_out, ind_out, payload_out):  # pragma: no cover - compiled
    """CSR -> CSR of the transpose, carrying ``payload``; reading the rows in order makes
    the output rows sorted."""
    nxt = indptr_out[:-1].copy()
    for r in range(len(indptr) - 1):
        for q in range(indptr[r], indptr[r + 1]):
            c = ind[q]
            p = nxt[c]
            ind_out[p] = r
            payload_out[p] = payload[q]
            nxt[c] = p + 1


@njit()
def _gather(values, pos, out):  # pragma: no cover - compiled
    for p in range(len(pos)):
        out[p] = values[pos[p]]


@njit()
def _distinct_counts(indptr, ind):  # pragma: no cover - compiled
    """Per row, the number of distinct indices (rows sorted, repeats side by side)."""
    counts = np.zeros(len(indptr) - 1, np.int64)
    for r in range(len(indptr) - 1):
        for q in range(indptr[r], indptr[r + 1]):
            if q == indptr[r] or ind[q] != ind[q - 1]:
                counts[r] += 1
    return counts


@njit()
def _merge_repeats(indptr, ind, pos, values, indptr_out, ind_out, data_out):  # pragma: no cover - compiled
    """Each run of a repeated index becomes one entry, the mean of its values (float64
    sum in input order over the count); returns (pairs repeated, extra rows, of them
    with differing values)."""
    n_repeated = n_extra = n_differ = 0
    for r in range(len(indptr) - 1):
        w = indptr_out[r]
        q = indptr[r]
        while q < indptr[r + 1]:
            end = q + 1
            while end < indptr[r + 1] and ind[end] == ind[q]:
                end += 1
            s = 0.0
            differ = False
            for p in range(q, end):
                s += np.float64(values[pos[p]])
                if values[pos[p]] != values[pos[q]]:
                    differ = True
            ind_out[w] = ind[q]
            data_out[w] = s / np.float64(end - q)
            if end - q > 1:
                n_repeated += 1
                n_extra += end - q - 1
                if differ:
                    n_differ += 1
            w += 1
            q = end
    return n_repeated, n_extra, n_differ


def _indptr(counts: np.ndarray, index) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=index)
    np.cumsum(counts, out=out[1:])
    return out


def fits_float32(values: np.ndarray, chunk: int = 1 << 20) -> bool:
    """Whether float32 holds every one of ``values`` exactly (a chunk at a time: a few MB)."""
    if values.dtype == np.float32:
        return True
    with np.errstate(over="ignore"):  # beyond float32's range: inf, which differs
        for lo in range(0, len(values), chunk):
            part = values[lo : lo + chunk]
            if not np.array_equal(part.astype(np.float32), part):
                return False
    return True


def _compile_pair(users, items, values, index, dtypes) -> None:
    """Run every kernel of :func:`rating_pair` once on one or two entries of the same types
    (each of ``dtypes`` for the matrices' values)."""
    ptr, ind, pos, one = np.array([0, 2], index), np.zeros(2, index), np.zeros(2, index), np.array([0, 1], index)
    _count(np.zeros(1, items.dtype), 1)
    _count(ind, 1)
    _bucket(np.zeros(1, users.dtype), np.zeros(1, items.dtype), one, ind[:1], pos[:1])
    _transpose(ptr, ind, pos, ptr.copy(), ind.copy(), pos.copy())
    _distinct_counts(ptr, ind)
    for dtype in dtypes:
        data = np.empty(2, dtype)
        _transpose(ptr, ind, data, ptr.copy(), ind.copy(), data.copy())
        _gather(values[:1], pos, data)
        _merge_repeats(ptr, ind, pos, values[:1], one, ind.copy(), data)


def rating_pair(codes: list, values: np.ndarray, n_users: int, n_items: int, dtype, compact: bool = False):
    """``(R, Rt, merged)``: the ratings as CSR (users x items) and its transpose, sorted
    rows, indices of the reference's width; ``merged`` is None or the counts (pairs
    repeated, extra rows, of them with differing ratings) of the merge. ``compact``: the
    values are float32 numbers, stored as float32 unless a merged mean is not
    (:func:`socialals.data.stored_dtype`).

    ``codes`` is a list ``[user_codes, item_codes]`` that the builder empties: it frees the
    codes as soon as it no longer needs them.
    """
    users, items = codes
    nnz = len(values)
    index = np.int32 if max(n_users, n_items, nnz) < 2**31 - 1 else np.int64
    store = np.dtype(np.float32) if compact else np.dtype(dtype)
    _compile_pair(users, items, values, index, {store, np.dtype(dtype)})  # fails here, codes intact
    codes.clear()
    # by item, in input order: item rows list (user, input position)
    t_indptr = _indptr(_count(items, n_items), index)
    u_counts = _count(users, n_users)
    t_ind, t_pos = np.empty(nnz, index), np.empty(nnz, index)
    _bucket(users, items, t_indptr, t_ind, t_pos)
    del users, items
    # by user, items in order: user rows list (item, input position), repeats side by side
    indptr = _indptr(u_counts, index)
    ind, pos = np.empty(nnz, index), np.empty(nnz, index)
    _transpose(t_indptr, t_ind, t_pos, indptr, ind, pos)
    del t_ind, t_pos
    distinct = _distinct_counts(indptr, ind)
    merged = None
    if int(distinct.sum()) == nnz:
        data = np.empty(nnz, store)
        _gather(values, pos, data)
    else:
        out_indptr = _indptr(distinct, index)
        out_ind, data = np.empty(out_indptr[-1], index), np.empty(out_indptr[-1], dtype)
        merged = _merge_repeats(indptr, ind, pos, values, out_indptr, out_ind, data)
        indptr, ind = out_indptr, out_ind
        if compact and fits_float32(data):  # means of float32 numbers often are not
            data = data.astype(np.float32)
        t_indptr = _indptr(_count(ind, n_items), index)
    del pos
    R = sp.csr_matrix((data, ind, indptr), shape=(n_users, n_items))
    t_ind, t_data = np.empty(len(ind), index), np.empty(len(ind), data.dtype)
    _transpose(indptr, ind, data, t_indptr, t_ind, t_data)
    Rt = sp.csr_matrix((t_data, t_ind, t_indptr), shape=(n_items, n_users))
    R.has_canonical_format = Rt.has_canonical_format = True
    return R, Rt, merged


# ---------------------------------------------------------------------------- W
@njit()
def _fill_weights(src, dst, weight, indptr, cols, vals):  # pragma: no cover - compiled
    """Both halves of every link into the rows; each row sorted, the halves of a link
    given both ways added, zeros dropped, rows packed to the front. Rewrites ``indptr``
    and returns the number of entries kept."""
    nxt = indptr[:-1].copy()
    for e in range(len(src)):
        half = np.float64(weight[e]) * 0.5
        a, b = src[e], dst[e]
        cols[nxt[a]] = b
        vals[nxt[a]] = half
        nxt[a] += 1
        cols[nxt[b]] = a
        vals[nxt[b]] = half
        nxt[b] += 1
    w = 0
    for r in range(len(indptr) - 1):
        lo, hi = indptr[r], indptr[r + 1]
        order = np.argsort(cols[lo:hi], kind="mergesort")
        c = cols[lo:hi][order]
        v = vals[lo:hi][order]
        indptr[r] = w
        q = 0
        while q < len(c):
            s = v[q]
            end = q + 1
            while end < len(c) and c[end] == c[q]:
                s += v[end]
                end += 1
            if s != 0:
                cols[w] = c[q]
                vals[w] = s
                w += 1
            q = end
    indptr[len(indptr) - 1] = w
    return w


def _shrink(a: np.ndarray, n: int) -> np.ndarray:
    """``a[:n]`` without keeping the rest: in place where numpy can resize, else a copy."""
    if len(a) == n:
        return a
    try:
        a.resize(n, refcheck=False)
        return a
    except ValueError:  # pragma: no cover - an array that does not own its memory
        return a[:n].copy()


def symmetric_weights(n_users: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray):
    """``W = (S + Sᵀ)/2`` of the links (CSR, 32-bit indices, sorted rows, no zeros), or
    None when its entries would need 64-bit indices (the reference handles those)."""
    if 2 * len(src) >= 2**31 - 1 or n_users >= 2**31 - 1:
        return None
    if len(src) and min(src.min(), dst.min()) < 0 or len(src) and max(src.max(), dst.max()) >= n_users:
        return None  # the reference names the problem
    indptr = _indptr(_count(src, n_users) + _count(dst, n_users), np.int32)
    cols, vals = np.empty(2 * len(src), np.int32), np.empty(2 * len(src), np.float64)
    nnz = _fill_weights(src, dst, weight, indptr, cols, vals)
    W = sp.csr_matrix((_shrink(vals, nnz), _shrink(cols, nnz), indptr), shape=(n_users, n_users))
    W.has_canonical_format = True
    return W
