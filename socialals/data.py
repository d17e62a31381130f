"""From user DataFrames to indexed sparse matrices.

Everything a model learns from passes through :func:`build_dataset` once: columns are
checked, labels are mapped to contiguous indices (kept as :class:`pandas.Index` so the
caller's labels come back out), duplicates are merged and the social graph is cleaned.
The caller's DataFrames are never modified.

Policies (documented once, here):

* **Duplicate (user, item) pairs** are merged into one rating, their mean, with a
  :class:`~socialals.exceptions.DataWarning` that counts the merged pairs and how many
  of them disagreed.
* **Social self-loops** and **duplicate directed edges** are dropped (the first
  occurrence of a duplicate is kept) with a ``DataWarning`` that counts them.
* **Users who appear only in the social graph** are added after the rated users when the
  model asks for them (``include_social_users=True``, as :class:`~socialals.SocialALS`
  does); other models ignore the social frame.
* **Sparse input** (:func:`ratings_from_sparse`, :func:`social_from_sparse`): a
  ``scipy.sparse`` matrix is read as the long table of its stored entries and then takes
  exactly the DataFrame route, so both give identical data. Its stored entries are the
  data: a user or item whose row or column stores nothing does not exist (as with a
  frame), duplicate COO entries are summed (scipy's meaning of the matrix), and a
  **stored zero is an error** — a sparse matrix cannot tell a rating of 0 from an entry
  left behind by arithmetic; drop them with ``eliminate_zeros()`` or pass a DataFrame
  where 0 is a real rating. Rows and columns are labelled by ``user_labels`` and
  ``item_labels`` (default ``0..n-1``).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import _build
from ._config import compiled_or_reference
from .exceptions import DataWarning

__all__ = ["Columns", "Dataset", "build_dataset", "clean_social", "factorize_labels", "merge_duplicate_ratings", "ratings_from_sparse",
           "social_from_sparse"]


@dataclass(frozen=True)
class Columns:
    """Column names of the rating and social frames."""

    user: str = "user"
    item: str = "item"
    rating: str = "rating"
    friend: str = "friend"
    weight: str = "weight"


@dataclass
class Dataset:
    """Ratings (and optionally a social graph) in index space.

    Attributes
    ----------
    users, items : pandas.Index
        Labels in factor-row order. With ``include_social_users`` the users who only
        appear in the social graph come after the ``n_rated_users`` rated ones.
    R : scipy.sparse.csr_matrix, shape (n_users, n_items)
        The ratings, one stored value per observed pair (duplicates merged).
    Rt : scipy.sparse.csr_matrix, shape (n_items, n_users)
        ``R`` transposed, in CSR form (the item half-step reads it row-wise).
    social_src, social_dst, social_weight : ndarray or None
        The directed social edges in user-index space after cleaning.
    """

    users: pd.Index
    items: pd.Index
    R: sp.csr_matrix
    Rt: sp.csr_matrix
    n_rated_users: int
    columns: Columns
    social_src: Optional[np.ndarray] = None
    social_dst: Optional[np.ndarray] = None
    social_weight: Optional[np.ndarray] = None

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def nnz(self) -> int:
        return int(self.R.nnz)

    @property
    def has_social(self) -> bool:
        return self.social_src is not None

    def mean_rating(self) -> float:
        """The mean of the stored ratings, correctly rounded (an exact sum, so a sum of
        blocks gives the same bits: see :func:`exact_sum`)."""
        return exact_mean(exact_sum(self.R.data), self.nnz)

    def edge_similarity(self, kind: str, n_threads: int = 1) -> np.ndarray:
        """The similarity ``kind`` of each cleaned social edge (:func:`socialals.social.edge_similarity`)."""
        from .social import edge_similarity

        return edge_similarity(self.R, self.social_src, self.social_dst, kind, n_threads)

    def social_matrix(self) -> sp.csr_matrix:
        """The directed weight matrix ``S`` (n_users x n_users) of the cleaned edges."""
        if not self.has_social:
            return sp.csr_matrix((self.n_users, self.n_users))
        return sp.csr_matrix(
            (self.social_weight, (self.social_src, self.social_dst)),
            shape=(self.n_users, self.n_users),
        )


_EXACT_SHIFT = 1074 + 53  # a float is sig * 2**(e - 53) with e >= -1073: every shift e - 53 + 1127 is >= 1


def exact_sum(values: np.ndarray) -> int:
    """The exact sum of finite float ``values``, as an integer multiple of ``2**-1127``.

    Each value is an integer significand times a power of two; the significands are
    summed exactly per exponent (in two 26-bit halves, int64). Sums of blocks add up to
    the sum of the whole, whatever the blocks: the client's reduction of a Dask fit's
    blocks equals the local fit's number. Compiled, one pass without temporaries
    (:func:`socialals._build.exponent_sums`); the reference below holds several
    full-size arrays (an exact sum is one number, so both give the same).
    """
    def compiled():
        hi, lo = _build.exponent_sums(values, _EXACT_SHIFT)
        return sum(((int(hi[s]) << 26) + int(lo[s])) << s for s in np.flatnonzero(hi | lo).tolist())

    return compiled_or_reference("exact_sum", compiled, lambda: _exact_sum(values))


def _exact_sum(values: np.ndarray) -> int:
    """The reference of :func:`exact_sum`."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[x != 0]
    if not len(x):
        return 0
    mant, expo = np.frexp(x)
    sig = (mant * 2.0**53).astype(np.int64)  # exact: |mant| in [0.5, 1)
    shift = expo.astype(np.int64) - 53 + _EXACT_SHIFT
    total = 0
    for s in np.unique(shift):
        part = sig[shift == s]
        hi, lo = part >> 26, part & ((1 << 26) - 1)  # floor halves: part = hi * 2**26 + lo
        total += ((int(hi.sum()) << 26) + int(lo.sum())) << int(s)
    return total


def exact_mean(total: int, n: int) -> float:
    """``total`` (from :func:`exact_sum`) over ``n``, correctly rounded."""
    return float(total / (n << _EXACT_SHIFT)) if n else float("nan")


def _preview(frame: pd.DataFrame, mask: np.ndarray, n: int = 5) -> str:
    rows = frame.loc[np.asarray(mask)].head(n)
    return rows.to_string(max_cols=10)


def _require_frame(frame, name: str, required: list[str], optional: tuple = (), allow_empty: bool = False) -> None:
    if not isinstance(frame, pd.DataFrame):
        kind = f"{type(frame).__module__}.{type(frame).__name__}"
        raise TypeError(f"'{name}' must be a pandas DataFrame; got {kind}.")
    _require_columns(frame.columns, name, required, optional)
    if len(frame) == 0 and not allow_empty:
        raise ValueError(f"'{name}' is empty; at least one row is needed.")


def _require_columns(columns, name: str, required: list[str], optional: tuple = ()) -> None:
    """The required columns are there, each once (a pandas or a Dask frame's columns)."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(
            f"'{name}' is missing column(s) {missing}; it has columns {list(columns)}. "
            "Rename them or pass the column names to fit()."
        )
    if not isinstance(columns, pd.Index):
        columns = pd.Index(columns)
    if columns.is_unique:  # cached by pandas: no comparison per column in the common case
        return
    for col in list(required) + [c for c in optional if c in columns]:
        count = int((columns == col).sum())
        if count > 1:
            raise ValueError(
                f"'{name}' has {count} columns named {col!r}; keep one (e.g. drop or rename the others)."
            )


def _check_labels(frame: pd.DataFrame, col: str, name: str) -> np.ndarray:
    bad = _missing_labels(frame, col)
    if bad.any():
        raise _column_error("labels", col, name, None, int(bad.sum()), _preview(frame, bad))
    return frame[col].to_numpy()


def _missing_labels(frame: pd.DataFrame, col: str) -> np.ndarray:
    column = frame[col]
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":  # numpy integers hold no missing value
        return np.zeros(0, dtype=bool)
    return column.isna().to_numpy()


_NUMBER_KINDS = ("integer", "floating", "mixed-integer-float")


def _check_numeric(frame: pd.DataFrame, col: str, name: str, nonnegative: bool = False) -> np.ndarray:
    """The column as float64 (float32 when it is float32); only int and float columns (or objects holding only int and
    float values) count as numbers. Booleans, complex numbers, dates, durations, categories
    and strings — even strings of digits — are refused rather than converted."""
    values, problem, bad = _numeric_values(frame, col, nonnegative)
    if problem is not None:
        count = int(bad.sum())
        raise _column_error(problem, col, name, frame[col].dtype, count, _preview(frame, bad) if count else "")
    return values


def _numeric_values(frame: pd.DataFrame, col: str, nonnegative: bool = False):
    """``(values, problem, bad rows)``: ``problem`` is None, ``"type"``, ``"finite"`` or
    ``"negative"`` (the first one found; :func:`_column_error` words it)."""
    raw = frame[col]
    dtype = raw.dtype
    numeric = (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
    )
    if not numeric and dtype == object:
        numeric = pd.api.types.infer_dtype(raw, skipna=True) in _NUMBER_KINDS
        if numeric:
            raw = pd.to_numeric(raw)
    if not numeric:
        bad = ~raw.map(
            lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        ).to_numpy(dtype=bool) & raw.notna().to_numpy()
        return None, "type", bad
    # a float32 column stays float32 (exact either way; half the transient memory)
    keep = np.float32 if dtype == np.float32 else np.float64
    if isinstance(dtype, np.dtype) and dtype == keep:  # no copy (pandas < 2 copies whenever na_value is given)
        values = raw.to_numpy().view()
        values.flags.writeable = False  # the caller's column: read only
    else:
        values = raw.to_numpy(dtype=keep, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        return None, "finite", bad
    if nonnegative and (values < 0).any():
        return None, "negative", values < 0
    return values, None, None


def _column_error(problem: str, col: str, name: str, dtype, count: int, preview: str) -> ValueError:
    """The error for ``count`` bad rows of column ``col`` of frame ``name``, with a preview
    of the first ones (one wording for pandas frames and Dask frames alike)."""
    if problem == "labels":
        return ValueError(f"Column '{col}' of '{name}' has {count} missing label(s); first rows:\n" + preview)
    if problem == "type":
        detail = f" ({count} non-numeric value(s)); first rows:\n" + preview if count else "."
        return ValueError(
            f"Column '{col}' of '{name}' must be numeric (int or float); got dtype {dtype}{detail} "
            "Booleans, complex numbers, dates, durations and text are not converted; convert the column "
            "yourself (e.g. with pandas.to_numeric) if its values are numbers."
        )
    if problem == "finite":
        return ValueError(f"Column '{col}' of '{name}' has {count} NaN or infinite value(s); first rows:\n" + preview)
    return ValueError(f"Column '{col}' of '{name}' must be >= 0; {count} negative value(s); first rows:\n" + preview)


def factorize_labels(values: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Map labels to 0..n-1, sorted when the labels are mutually comparable."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:  # mixed, incomparable labels: keep first-seen order
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64, copy=False), pd.Index(uniques)


def build_dataset(
    ratings,
    social=None,
    *,
    columns: Columns = Columns(),
    include_social_users: bool = False,
    user_labels=None,
    item_labels=None,
    dtype=np.float64,
    on_cluster: bool = False,
) -> Dataset:
    """Validate ``ratings`` (and ``social``) and index them.

    Parameters
    ----------
    ratings : DataFrame or scipy.sparse matrix
        Columns ``columns.user``, ``columns.item``, ``columns.rating``; or a sparse
        (n_users, n_items) matrix of ratings (see :func:`ratings_from_sparse`).
    social : DataFrame or scipy.sparse matrix, optional
        Columns ``columns.user``, ``columns.friend`` and optionally ``columns.weight``
        (1 where absent); or a square sparse matrix of link weights between the users
        labelled ``user_labels`` (see :func:`social_from_sparse`). Ignored unless
        ``include_social_users`` is true.
    columns : Columns
        Column names.
    include_social_users : bool
        Keep the social graph and add its users who have no rating.
    user_labels, item_labels : array-like, optional
        Labels of the rows (users) and columns (items) of a sparse ``ratings``;
        ``user_labels`` also labels the rows and columns of a sparse ``social``.
        Default ``0..n-1``. Only for sparse input.
    dtype : float32 or float64
        The model's dtype. A float32 model stores its ratings as float32 (ratings that
        float32 cannot hold exactly lose their last bits); a float64 model too when float32
        holds every rating exactly, else as float64 (see :func:`_rating_matrices`).
    on_cluster : bool
        Accept a ``dask.dataframe.DataFrame`` of ratings: its matrices are built and kept
        on the Dask workers (:func:`socialals._dask.cluster_dataset`), with the same
        labels, checks and repairs as here.

    Returns
    -------
    Dataset
    """
    c = columns
    from ._dask import cluster_dataset, is_dask_frame

    if is_dask_frame(ratings) and user_labels is None and item_labels is None:
        if not on_cluster:
            raise TypeError("'ratings' is a Dask DataFrame, which only the ALS models (ALS, RegularizedALS, "
                            "SocialALS) fit from; pass this model a pandas DataFrame (e.g. .compute()).")
        return cluster_dataset(ratings, social, columns=c, include_social_users=include_social_users, dtype=dtype)
    if is_dask_frame(social) and include_social_users:  # links only: W is built on this machine anyway
        social = social.compute()
    ratings_sparse, social_sparse = sp.issparse(ratings), sp.issparse(social)
    if item_labels is not None and not ratings_sparse:
        raise ValueError("'item_labels' labels the columns of a sparse ratings matrix; 'ratings' is not sparse.")
    if user_labels is not None and not (ratings_sparse or social_sparse):
        raise ValueError("'user_labels' labels the rows of a sparse ratings or social matrix; neither is sparse.")
    if ratings_sparse:
        if social_sparse and social.shape != (ratings.shape[0], ratings.shape[0]):
            raise ValueError(
                f"A sparse 'social' matrix must be (n_users, n_users) = {(ratings.shape[0],) * 2}, the rows of the "
                f"sparse ratings; got shape {social.shape}."
            )
        ratings = ratings_from_sparse(ratings, user_labels, item_labels, columns=c)
    if social_sparse and include_social_users:
        social = social_from_sparse(social, user_labels, columns=c)
    _require_frame(ratings, "ratings", [c.user, c.item, c.rating])
    users_raw = _check_labels(ratings, c.user, "ratings")
    items_raw = _check_labels(ratings, c.item, "ratings")
    values = _check_numeric(ratings, c.rating, "ratings")

    u_codes, users = _label_codes(users_raw)  # 32-bit codes, one column at a time
    i_codes, items = _label_codes(items_raw)
    n_rated = len(users)

    src = dst = w = None
    if include_social_users and social is not None:
        src, dst, w, users = _social_edges(social, users, c)

    codes = [u_codes, i_codes]
    del u_codes, i_codes  # the builder frees the codes as soon as it has sorted them
    R, Rt = _rating_matrices(codes, values, len(users), len(items), np.dtype(dtype))
    return Dataset(
        users=users,
        items=items,
        R=R,
        Rt=Rt,
        n_rated_users=n_rated,
        columns=c,
        social_src=src,
        social_dst=dst,
        social_weight=w,
    )


def _narrow(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.int32) if len(codes) and codes.max() < 2**31 - 1 else codes


def _label_codes(values: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """:func:`factorize_labels` with the codes in 32 bits where they fit; integer labels of a
    compact range are coded without 64-bit codes (see :mod:`socialals._build`)."""
    fast = compiled_or_reference("label_codes", lambda: _build.int_label_codes(values), lambda: None)
    if fast is not None:
        return fast[0], pd.Index(fast[1])
    codes, uniques = factorize_labels(values)
    return _narrow(codes), uniques


def stored_dtype(values: np.ndarray, dtype) -> np.dtype:
    """The dtype a model of ``dtype`` stores the ratings ``values`` in: float32 for a
    float32 model, and for a float64 model when float32 holds every value exactly
    (:func:`_rating_matrices`); float64 otherwise."""
    exact = np.dtype(dtype) == np.float32 or _build.fits_float32(np.asarray(values))
    return np.dtype(np.float32 if exact else np.float64)


def _rating_matrices(codes: list, values, n_users, n_items, dtype) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """CSR of the ratings and of their transpose (sorted indices, 32-bit where they fit);
    duplicate (user, item) pairs merged into their mean with a counted warning.

    ``codes`` is the list ``[user_codes, item_codes]``, emptied here so that the codes are
    freed once sorted. Compiled, the pair is built by counting sorts that never hold more
    than the finished pair (:mod:`socialals._build`); the reference is
    :func:`_rating_matrix` and a transpose (the same data, bit for bit).

    Float64 ratings that float32 holds exactly (whole and half stars, and most real data)
    are stored as float32, as Spark's ALS stores every rating: the same numbers in half the
    bytes. Everything that computes with them reads them into float64 (the half-step's
    targets, sums and means), so no result changes by a bit.
    """
    compact = stored_dtype(values, dtype) != dtype

    def reference():
        u_codes, i_codes = codes
        codes.clear()
        stats = []
        R = _rating_matrix(u_codes, i_codes, values, n_users, n_items, dtype, stats=stats, compact=compact)
        Rt = R.T.tocsr()
        Rt.sort_indices()
        return R, Rt, stats[0] if stats else None

    R, Rt, merged = compiled_or_reference(
        "rating_matrix", lambda: _build.rating_pair(codes, values, n_users, n_items, dtype, compact), reference)
    if merged is not None and merged[0]:
        _warn(_duplicates_message("ratings", *merged), stacklevel=3)
    return R, Rt


def _rating_matrix(u_codes, i_codes, values, n_users, n_items, dtype, stats=None, compact=False) -> sp.csr_matrix:
    """CSR of the ratings (sorted indices, 32-bit where they fit); duplicate (user, item)
    pairs merged into their mean with a counted warning (or, given a list ``stats``, the
    counts appended to it: a Dask worker's block, whose counts the client adds up).

    Built by scipy's coordinate-to-CSR conversion on 32-bit codes, so the transient memory
    is a few bytes a rating; only data with duplicates take the sorted-key route that
    merges them. ``compact``: ``values`` are float32 numbers, stored as float32 unless a
    merged mean is not (see :func:`_rating_matrices`).
    """
    index = np.int32 if max(n_users, n_items, len(values)) < 2**31 - 1 else np.int64
    rows, cols = u_codes.astype(index, copy=False), i_codes.astype(index, copy=False)
    R = sp.csr_matrix((values.astype(np.float32 if compact else dtype, copy=False), (rows, cols)),
                      shape=(n_users, n_items))
    R.sum_duplicates()  # sorts the indices; sums duplicates, which are rare: redone below
    if R.nnz == len(values):
        return R
    key = rows.astype(np.int64) * n_items + cols
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    first = np.ones(len(key_sorted), dtype=bool)
    first[1:] = key_sorted[1:] != key_sorted[:-1]
    vals = _merge_groups(np.cumsum(first) - 1, values[order], "ratings", stacklevel=4, stats=stats)
    key_u = key_sorted[first]
    vals = vals.astype(dtype)
    if compact and _build.fits_float32(vals):
        vals = vals.astype(np.float32)
    R = sp.csr_matrix((vals, ((key_u // n_items).astype(index), (key_u % n_items).astype(index))),
                      shape=(n_users, n_items))
    R.sum_duplicates()
    return R


def _label_kind(labels: pd.Index) -> str:
    """'number', 'string' or pandas' inferred kind of a label list (for type mismatches)."""
    kind = pd.api.types.infer_dtype(labels, skipna=True)
    return {"integer": "number", "floating": "number", "mixed-integer-float": "number"}.get(kind, kind)


def _social_edges(social: pd.DataFrame, users: pd.Index, c: Columns):
    """The links of ``social`` in user-index space, cleaned, and ``users`` extended with the
    users known only through them: the frame as one chunk (:func:`_link_chunk`) and its
    join (:func:`_join_links`), the two steps a Dask frame of links takes partition by
    partition (:mod:`socialals._dask`), so both routes give the same data, errors and
    warnings."""
    _require_frame(social, "social", [c.user, c.friend], optional=(c.weight,), allow_empty=True)
    if len(social) == 0:
        warnings.warn("social has no rows: the model is fitted without links (as with social=None).", DataWarning,
                      stacklevel=4)
        return None, None, None, users
    return _join_links([_link_chunk(social, users, c)], users)


_PROBLEMS = ("labels", "type", "finite", "negative")


@dataclass
class _LinkChunk:
    """One chunk of links, checked and coded against the known users (:func:`_link_chunk`).

    ``defect`` is the chunk's first defect in the order the checks run, ``(rank, problem,
    column, count, first bad rows, dtype)``, and then nothing else is filled in. Otherwise
    ``src`` and ``dst`` are the codes of the two ends, ``-1 - j`` for the ``j``-th label of
    ``new``: the labels the vocabulary lacks, those of the user column in first-seen order
    (the first ``n_new_user``) and then those of the friend column. ``kinds`` holds labels
    whose :func:`_label_kind` is the chunk's: all of them, or once :meth:`shipped`, one of
    each type.
    """

    n: int
    defect: Optional[tuple] = None
    src: Optional[np.ndarray] = None
    dst: Optional[np.ndarray] = None
    weight: Optional[np.ndarray] = None
    new: Optional[pd.Index] = None
    n_new_user: int = 0
    kinds: Optional[pd.Index] = None

    def shipped(self) -> "_LinkChunk":
        """What a Dask worker sends the client: the codes in 32 bits where they fit, the
        weights, the unknown labels and a few labels for the kind; no label column."""
        if self.defect is not None:  # counts and the first bad rows
            return self
        return _LinkChunk(self.n, None, _narrow(self.src), _narrow(self.dst), self.weight, self.new,
                          self.n_new_user, _kind_sample(self.kinds))


def _kind_sample(labels: pd.Index) -> pd.Index:
    """A few of ``labels`` whose :func:`_label_kind`, alone or appended to other chunks'
    samples in order, is that of all the labels: pandas infers the kind from the type of
    the first label and the set of types, so the first label of each type in first-seen
    order (one label of a typed, non-object Index)."""
    if labels.dtype != object or not len(labels):
        return labels[:1]
    values = np.asarray(labels)
    types, _ = pd.factorize(np.frompyfunc(type, 1, 1)(values), sort=False)
    _, first = np.unique(types, return_index=True)
    return pd.Index(values[np.sort(first)], dtype=object)


def _first_defect(frame: pd.DataFrame, labels: tuple, value: str, nonnegative: bool = False):
    """``(values, defect)``: a chunk's label columns checked for missing labels, then its
    column ``value`` (if there) as :func:`_check_numeric` would, in that order; ``defect``
    is the first problem found, ``(rank, problem, column, count, first bad rows, dtype)``
    (:func:`_raise_first_defect` words it), else None. ``values`` is ``value`` as numbers,
    or None when it is absent or not sound."""
    def defect(rank, problem, col, bad, dtype=None):
        rows = frame.loc[np.asarray(bad)].head(5)
        return None, ((rank, _PROBLEMS.index(problem)), problem, col, int(bad.sum()), rows, dtype)

    for rank, col in enumerate(labels):
        bad = _missing_labels(frame, col)
        if bad.any():
            return defect(rank, "labels", col, bad)
    if value not in frame.columns:
        return None, None
    values, problem, bad = _numeric_values(frame, value, nonnegative)
    if problem is not None:
        return defect(len(labels), problem, value, bad, frame[value].dtype)
    return values, None


def _link_chunk(frame: pd.DataFrame, users: pd.Index, c: Columns) -> _LinkChunk:
    """Check one chunk of links (a whole frame or a Dask partition, possibly empty) with the
    pandas route's checks in its order, stopping at the first defect, and code its labels
    against ``users`` (see :class:`_LinkChunk`)."""
    n = len(frame)
    w, defect = _first_defect(frame, (c.user, c.friend), c.weight, nonnegative=True)
    if defect is not None:
        return _LinkChunk(n, defect)
    if w is None:
        w = np.ones(n, dtype=np.float64)
    a = frame[c.user].to_numpy()
    both = pd.Index(np.concatenate([a, frame[c.friend].to_numpy()]))
    codes = users.get_indexer(both).astype(np.int64, copy=False)
    m = len(a)
    ends = (np.flatnonzero(codes[:m] < 0), m + np.flatnonzero(codes[m:] < 0))
    (ca, new_user), (cb, new_friend) = (pd.factorize(both[at], sort=False) for at in ends)
    codes[ends[0]] = -1 - ca
    codes[ends[1]] = -1 - len(new_user) - cb
    return _LinkChunk(n, None, codes[:m], codes[m:], w, new_user.append(new_friend), len(new_user), both)


def _raise_first_defect(defects: list, name: str) -> None:
    """Raise the first defect of a frame given as chunks, from each chunk's first defect (or
    None), as the checks of the whole frame would: a chunk whose first defect comes later
    has none of the earlier kind, so the counts of the chunks reporting the earliest add up
    to the frame's, and their first bad rows, in order, begin with the frame's."""
    found = [d for d in defects if d is not None]
    if not found:
        return
    first = min(found, key=lambda d: d[0])
    same = [d for d in found if d[0] == first[0]]
    heads = [d[4] for d in same if len(d[4])]
    preview = pd.concat(heads).head(5).to_string(max_cols=10) if heads else ""
    raise _column_error(first[1], first[2], name, first[5], sum(d[3] for d in same), preview)


def _join_links(chunks: list, users: pd.Index):
    """The links of ``chunks`` (:func:`_link_chunk`, a frame's chunks in order) as
    ``(src, dst, weight, users)``. The frame's first defect is raised; the users known only
    through the links are appended to ``users`` in the order the whole frame gives them
    (sorted when comparable, else first seen in the user column, then in the friend
    column); self-links and repeated links (the first kept) are dropped with a warning
    that counts them. A single chunk's 64-bit codes are resolved in place."""
    _raise_first_defect([ch.defect for ch in chunks], "social")
    pieces = [p for p in [ch.new[: ch.n_new_user] for ch in chunks] + [ch.new[ch.n_new_user :] for ch in chunks]
              if len(p)]
    extra = pieces[0].append(pieces[1:]).unique() if pieces else pd.Index([])
    n_rated = len(users)
    if len(extra):
        samples = [ch.kinds for ch in chunks if len(ch.kinds)]  # the pandas route's: all its labels, not copied
        kinds = samples[0] if len(samples) == 1 else samples[0].append(samples[1:])
        rated_kind, social_kind = _label_kind(users), _label_kind(kinds)
        if rated_kind != social_kind:
            known = np.unique(np.concatenate([ch.src for ch in chunks] + [ch.dst for ch in chunks]))
            shown = [repr(v) for v in extra[:3]]
            _warn(
                f"social: its user labels are {social_kind}s but the rating users are {rated_kind}s, so "
                f"{len(extra)} of {int((known >= 0).sum()) + len(extra)} social user(s) match no rated user and "
                f"become new users (e.g. {', '.join(shown)}). If they name the same people, give both frames "
                "one label type (e.g. .astype(str) on both).",
                None,
            )
        _, extra = factorize_labels(np.asarray(extra))
        users = users.append(extra)

    lookups = [n_rated + extra.get_indexer(ch.new) if len(ch.new) else None for ch in chunks]

    def joined(name):  # one int64 array, the unknown labels' codes resolved
        if len(chunks) == 1:
            out = np.asarray(getattr(chunks[0], name), dtype=np.int64)
        else:
            out = np.concatenate([getattr(ch, name) for ch in chunks], dtype=np.int64)
        ends = np.cumsum([0] + [ch.n for ch in chunks])
        for lo, hi, lookup in zip(ends[:-1], ends[1:], lookups):
            part = out[lo:hi]
            unknown = part < 0
            if lookup is not None and unknown.any():
                part[unknown] = lookup[-1 - part[unknown]]
        return out

    src, dst = joined("src"), joined("dst")
    w = chunks[0].weight if len(chunks) == 1 else np.concatenate([ch.weight for ch in chunks])
    keep = _edges_to_keep(src * len(users) + dst, src == dst, "social", stacklevel=None)
    return _narrow(src[keep]), _narrow(dst[keep]), w[keep], users


# ---------------------------------------------------------------------------- sparse input
def _sparse_entries(matrix, name: str) -> sp.coo_matrix:
    """The stored entries of ``matrix`` (a copy; duplicates summed), checked."""
    if getattr(matrix, "ndim", 2) != 2:
        raise ValueError(f"'{name}' must be a 2-D sparse matrix; got {matrix.ndim} dimension(s).")
    dt = matrix.dtype
    if dt == np.bool_ or not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise ValueError(f"'{name}' must hold integer or float values; got dtype {dt}.")
    m = sp.csr_matrix(matrix, dtype=np.float64, copy=True)  # never touch the caller's matrix
    m.sum_duplicates()
    zeros = m.data == 0
    if zeros.any():
        coo = m.tocoo()
        where = ", ".join(f"({r}, {c})" for r, c in zip(coo.row[zeros][:3], coo.col[zeros][:3]))
        raise ValueError(
            f"'{name}' stores {int(zeros.sum())} explicit zero(s) (row, column: {where}). A sparse matrix cannot "
            "tell a value of 0 from an entry left behind by arithmetic, so stored zeros are not accepted: drop them "
            "with .eliminate_zeros(), or pass a DataFrame if 0 is a real value."
        )
    return m.tocoo()


def _axis_labels(labels, n: int, param: str) -> np.ndarray:
    if labels is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(labels, (str, bytes)) or np.ndim(labels) != 1:
        raise ValueError(f"'{param}' must be a 1-D array of labels; got {type(labels).__name__}.")
    index = pd.Index(labels)
    if len(index) != n:
        raise ValueError(f"'{param}' has {len(index)} label(s) but the matrix has {n} along that axis.")
    if index.hasnans:
        raise ValueError(f"'{param}' has {int(index.isna().sum())} missing label(s).")
    if not index.is_unique:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"'{param}' has duplicate label(s) {dup}; every row and column needs its own label.")
    return index.to_numpy()


def ratings_from_sparse(R, user_labels=None, item_labels=None, *, columns: Columns = Columns()) -> pd.DataFrame:
    """The long rating table of a sparse (n_users, n_items) matrix.

    Parameters
    ----------
    R : scipy.sparse matrix or array
        Rows are users, columns items, stored values ratings. Duplicate COO entries are
        summed; a stored zero raises ``ValueError`` (see the module notes).
    user_labels, item_labels : array-like, optional
        Unique labels of the rows and columns (default ``0..n-1``).
    columns : Columns
        Names of the frame's columns.

    Returns
    -------
    DataFrame with columns ``user, item, rating``, one row per stored entry.
    """
    coo = _sparse_entries(R, "ratings")
    users = _axis_labels(user_labels, R.shape[0], "user_labels")
    items = _axis_labels(item_labels, R.shape[1], "item_labels")
    return pd.DataFrame({columns.user: users[coo.row], columns.item: items[coo.col], columns.rating: coo.data})


def social_from_sparse(S, user_labels=None, *, columns: Columns = Columns()) -> pd.DataFrame:
    """The long link table of a square sparse matrix of link weights.

    Entry ``(a, b)`` is a directed link from user ``user_labels[a]`` to
    ``user_labels[b]`` with that weight (>= 0, checked downstream). Duplicate COO
    entries are summed; a stored zero raises ``ValueError``.

    Returns
    -------
    DataFrame with columns ``user, friend, weight``.
    """
    if getattr(S, "ndim", 2) == 2 and S.shape[0] != S.shape[1]:
        raise ValueError(f"A sparse 'social' matrix must be square (users x users); got shape {S.shape}.")
    coo = _sparse_entries(S, "social")
    users = _axis_labels(user_labels, S.shape[0], "user_labels")
    return pd.DataFrame({columns.user: users[coo.row], columns.friend: users[coo.col], columns.weight: coo.data})


# ---------------------------------------------------------------------------- repair policy
# The duplicate and self-loop policy lives here once: build_dataset applies it in index
# space at fit time, and the loaders (socialals.datasets, socialals.io) apply it to frames
# when data are read, so cross-validation never splits one (user, item) pair across folds.


def _merge_groups(group: np.ndarray, values: np.ndarray, source: str, stacklevel, stats=None) -> np.ndarray:
    """Mean rating of each group ``0..g-1`` (``group`` sorted or not); warn with counts
    (or append them to the list ``stats``)."""
    sums = np.bincount(group, weights=values)
    counts = np.bincount(group)
    mins = np.full(len(sums), np.inf)
    maxs = np.full(len(sums), -np.inf)
    np.minimum.at(mins, group, values)
    np.maximum.at(maxs, group, values)
    dup = counts > 1
    found = (int(dup.sum()), int((counts - 1).sum()), int((maxs[dup] > mins[dup]).sum()))
    if stats is not None:
        stats.append(found)
    elif found[0]:
        _warn(_duplicates_message(source, *found), stacklevel)
    return sums / counts


def _duplicates_message(source: str, pairs: int, extra: int, differing: int) -> str:
    return (f"{source}: {pairs} duplicate (user, item) pair(s) ({extra} extra row(s)) merged into their mean "
            f"rating; {differing} of them had different ratings.")


def _edges_to_keep(key: np.ndarray, loops: np.ndarray, source: str, stacklevel) -> np.ndarray:
    """Mask of edges kept: self-loops dropped, then repeats of a key (the first kept)."""
    keep = ~loops
    dup = pd.Index(key).duplicated(keep="first")
    n_dup = int((dup & keep).sum())
    n_loops = int(loops.sum())
    keep &= ~dup
    if n_loops or n_dup:
        _warn(
            f"{source}: dropped {n_loops} self-loop(s) and {n_dup} duplicate edge(s) "
            f"(kept the first of each duplicate); {int(keep.sum())} edge(s) remain.",
            stacklevel,
        )
    return keep


_PACKAGE_DIR = __file__.rsplit("data.py", 1)[0]


def _warn(message: str, stacklevel) -> None:
    """DataWarning from a repair helper; ``stacklevel`` counts from the helper's caller, and
    ``None`` attributes the warning to the first caller outside socialals."""
    if stacklevel is None:
        frame, stacklevel = sys._getframe(1), 2
        while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            frame, stacklevel = frame.f_back, stacklevel + 1
    else:
        stacklevel += 2  # as if warned by the function that called the helper
    warnings.warn(message, DataWarning, stacklevel=stacklevel)


def _pair_codes(first: pd.Series, second: pd.Series):
    """Codes ``0..g-1`` of the (first, second) pairs in order of first occurrence, and ``g``."""
    a, _ = pd.factorize(first, sort=False)
    b, b_uniques = pd.factorize(second, sort=False)
    codes, uniques = pd.factorize(a.astype(np.int64) * max(len(b_uniques), 1) + b, sort=False)
    return codes, len(uniques)


def merge_duplicate_ratings(ratings: pd.DataFrame, *, columns: Columns = Columns(), source: str = "ratings") -> pd.DataFrame:
    """Return ``ratings`` with each repeated (user, item) pair merged into its mean rating.

    The same policy :func:`build_dataset` applies at fit time, for loaders that read
    data once and split it later (a pair must not land in two cross-validation folds).
    Rows keep the order of each pair's first occurrence; other columns are dropped from
    merged rows only in the sense that the first row's values are kept. The input is
    not modified.

    Parameters
    ----------
    ratings : DataFrame
        Columns ``columns.user``, ``columns.item`` and a numeric ``columns.rating``.
    columns : Columns
        Column names.
    source : str
        Name used at the start of the warning (a data set or file name).

    Returns
    -------
    DataFrame
        A new frame, index ``0..n-1``.

    Warns
    -----
    DataWarning
        When pairs were merged, counting them and how many disagreed.

    Examples
    --------
    >>> import pandas as pd, warnings
    >>> df = pd.DataFrame({"user": [1, 1, 2], "item": [5, 5, 5], "rating": [3.0, 4.0, 2.0]})
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     merge_duplicate_ratings(df)
       user  item  rating
    0     1     5     3.5
    1     2     5     2.0
    """
    c = columns
    group, n_groups = _pair_codes(ratings[c.user], ratings[c.item])
    if n_groups == len(ratings):
        return ratings.reset_index(drop=True)
    values = pd.to_numeric(ratings[c.rating]).to_numpy(dtype=np.float64)
    means = _merge_groups(group, values, source, None)
    first = ~pd.Index(group).duplicated(keep="first")
    out = ratings.loc[first].reset_index(drop=True)
    out[c.rating] = means.astype(ratings[c.rating].dtype if ratings[c.rating].dtype.kind == "f" else np.float64)
    return out


def clean_social(social: pd.DataFrame, *, columns: Columns = Columns(), source: str = "social") -> pd.DataFrame:
    """Return ``social`` without self-loops and repeated directed edges (the first kept).

    The same policy :func:`build_dataset` applies at fit time. The input is not modified.

    Parameters
    ----------
    social : DataFrame
        Columns ``columns.user`` and ``columns.friend`` (others are carried along).
    columns : Columns
        Column names.
    source : str
        Name used at the start of the warning.

    Returns
    -------
    DataFrame
        A new frame, index ``0..n-1``.

    Warns
    -----
    DataWarning
        When edges were dropped, counting self-loops and duplicates.

    Examples
    --------
    >>> import pandas as pd, warnings
    >>> s = pd.DataFrame({"user": [1, 1, 2, 1], "friend": [1, 2, 1, 2]})
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     clean_social(s)
       user  friend
    0     1       2
    1     2       1
    """
    c = columns
    key, _ = _pair_codes(social[c.user], social[c.friend])
    loops = (social[c.user].to_numpy() == social[c.friend].to_numpy()) if len(social) else np.zeros(0, bool)
    keep = _edges_to_keep(key, loops, source, None)
    return social.loc[keep].reset_index(drop=True)
