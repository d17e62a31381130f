"""A half-step's blocks on a Dask cluster (``joblib.parallel_config(backend="dask")``).

joblib's own dask backend ships a task's arguments with every call; a fit calls the
half-step ``2 x iterations`` times, so the blocks go to ``dask.distributed`` directly,
through the client joblib's backend holds:

* once per fit, each block's slices of the rating matrix (row pointers, columns, targets,
  regulariser rows) are scattered to one worker and kept there (``cache``, a dict the fit
  owns; released when the fit ends). Arrays that change every half-step (the social pull
  ``extra``; targets that include biases or the missing-data term) are sent again, sliced
  by block, each half-step;
* once per half-step, the fixed factors ``Y`` are broadcast to every worker;
* each block is one task (:func:`socialals._blocks.solve_block`, the serial compiled
  kernel) that returns its rows; the client writes them into the factors.

A worker lost mid-fit loses the blocks it held: they are scattered again from the client
and the half-step is resubmitted (at most twice); past that the fit ends with a
``RuntimeError`` naming the cause. A row's result does not depend on where it runs, so a
survived loss gives the same factors. Results equal the local fit's on workers with the
same CPU features (the SIMD tiles follow the host CPU, see :mod:`socialals._simd`).

Ratings from a ``dask.dataframe.DataFrame`` (:func:`cluster_dataset`) never come to the
client. The frame's partitions are computed on the workers and stay there; each is
checked there (the client gets counts and the first bad rows, and raises the pandas
route's error), sends back its distinct labels (the client orders them as
:func:`socialals.data.factorize_labels` would the whole column) and is encoded there
against the broadcast labels. The encoded rows are cut into user blocks and item blocks
(the blocks of the half-steps) and each block's CSR rows are built on a worker by
:func:`socialals.data._rating_matrix`, the pandas route's own function, from its pieces in
the frame's row order, so duplicates merge into the same means. The client receives
per-row counts (its ``indptr``), each block's exact rating sum (the global mean, see
:func:`socialals.data.exact_sum`) and duplicate counts. The blocks stay on the workers for
the whole fit: a half-step sends each block's regulariser rows once per fit, its social
pull and the broadcast factors (and the other side's biases) once per half-step, and the
block's task forms its targets from its own ratings (the model's ``_rating_targets``).
Blocks that Dask computed (not scattered) are recomputed by Dask if a worker is lost.

A Dask frame of social links takes the pandas route's two steps apart: each partition is
checked and coded on its worker against the rated users (:func:`socialals.data._link_chunk`,
the checks in the pandas route's order), and the client joins the chunks
(:func:`socialals.data._join_links`: the frame's first defect raised with counts over all
partitions, the users known only through the graph appended in the whole frame's order,
self-links and repeated links dropped with the same counted warning). What comes back is
two 32-bit codes and a weight a link (16 bytes), the labels of graph-only users and the
first bad rows of a defect, never the label columns. A pandas frame of links is the same
two steps on one chunk. The links' similarities (``similarity="vss"/"pcc"``) are computed
on the workers from the rating blocks.

What the client holds: the users' and items' labels, the row pointers, the factors and
their companions (the rows coming back, regulariser rows, the social pull), and ``W``, the
social weight matrix the user half-step's pull reads (12 bytes a stored entry, about 24 a
link; the join passes through about 110 bytes a link, ``benchmarks/bench_links.py``).
Lifting that would take the solved rows left on the workers that solved them, each block
fetching the factor rows its ratings touch, ``W`` cut into the user blocks' rows on the
workers with the pull summed there, and the links' duplicate check done there after a
shuffle by source user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _blocks
from ._config import get_config
from .data import Dataset, exact_mean
from ._linalg import check_finite

__all__ = ["solve_on_cluster", "require_distributed", "is_dask_frame", "cluster_dataset", "solve_held", "ClusterRows",
           "on_ratings"]

_RETRIES = 2
# Set to a list to record, per half-step, the bytes Dask's scheduler reports for what was
# sent (blocks, extra, the broadcast factors times their replicas) and returned
# (benchmarks/bench_scale.py). None: no extra round trips to the scheduler.
METRICS = None
_STATIC = ("indptr", "indices", "targets", "diag", "sse_targets")


def require_distributed():
    """``dask.distributed``, or an ImportError naming the extra to install."""
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "Fitting on a Dask cluster needs dask.distributed: pip install 'socialals[dask]' "
            "(or pip install 'dask[distributed]'), then start a dask.distributed.Client."
        ) from exc
    return distributed


def _check_client(client):
    status = getattr(client, "status", "running")
    if status != "running":
        raise RuntimeError(
            f"The Dask client joblib's 'dask' backend holds is {status!r}, not running: start a "
            "dask.distributed.Client (and its cluster) before fitting inside "
            "joblib.parallel_config(backend='dask')."
        )


def _slices(system, name, bounds):
    a = getattr(system, name)
    if a is None:
        return [None] * (len(bounds) - 1)
    ip = system.indptr
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if name == "indptr":
            out.append(np.asarray(ip[lo : hi + 1]) - ip[lo])
        elif name in ("diag", "extra"):
            out.append(np.ascontiguousarray(a[lo:hi]))
        elif name == "sse_targets":
            out.append(np.ascontiguousarray(a[:, ip[lo] : ip[hi]]))
        else:
            out.append(np.ascontiguousarray(a[ip[lo] : ip[hi]]))
    return out


def _remote(indptr, indices, targets, diag, sse_targets, extra, Y, gram, rhs, scale, want_sse, compiled):
    from ._blocks import solve_block
    from ._linalg import RowSystem

    system = RowSystem(indptr, indices, targets, Y, diag=diag, extra=extra, gram=gram, rhs=rhs, scale=scale,
                       sse_targets=sse_targets)
    return solve_block(system, want_sse, compiled)


def _is_lost(exc, distributed) -> bool:
    from concurrent.futures import CancelledError

    kinds = [CancelledError, OSError, TimeoutError]
    for mod, name in (("distributed.scheduler", "KilledWorker"), ("distributed.comm.core", "CommClosedError"),
                      ("distributed.client", "FutureCancelledError")):
        kind = getattr(__import__(mod, fromlist=[name]), name, None)
        if kind is not None:
            kinds.append(kind)
    return isinstance(exc, tuple(kinds))


def _shipped(client, fresh, extra, Y, results):
    """Bytes (the scheduler's ``nbytes`` times the replicas ``who_has`` lists) of the blocks
    scattered in this half-step, its social pull, broadcast factors and returned rows."""
    def total(futures):
        futures = [f for f in futures if hasattr(f, "key")]
        if not futures:
            return 0
        sizes = client.nbytes([f.key for f in futures], summary=False)
        where = client.who_has(futures)
        return int(sum(sizes.get(f.key, 0) * max(1, len(where.get(f.key, ()))) for f in futures))

    return {"blocks": total(fresh), "extra": total(extra), "broadcast": total([Y]), "results": total(results),
            "n_workers": len(client.nthreads())}


def _remote_held(block, fn, args, diag, extra, Y, gram, rhs, scale, want_sse, compiled):
    """A worker-held block's rows: its targets from its own ratings (``fn``), then the solve."""
    targets, sse_targets = fn(block, *args)
    return _remote(block.indptr, block.indices, targets, diag, sse_targets, extra, Y, gram, rhs, scale, want_sse,
                   compiled)


def solve_on_cluster(client, system, X, sse, cache, n_blocks):
    """Solve every row of ``system`` on ``client``'s workers into ``X`` (and ``sse``).
    A system whose ratings are held by the workers (``targets`` a :class:`Recipe`) is
    solved on its own blocks; any other is cut into blocks whose slices are scattered."""
    distributed = require_distributed()
    _check_client(client)
    cache = {} if cache is None else cache
    recipe = system.targets if isinstance(system.targets, Recipe) else None
    kk = system.Y.shape[1]
    if recipe is not None:
        bounds, static = recipe.rows.bounds, ("diag",)
    else:
        workers = sum(client.nthreads().values()) or 1
        key = ("bounds", id(system.indptr), kk)
        entry = cache.get(key)
        if entry is None or entry[0] is not system.indptr:
            bounds = _blocks.cost_blocks(np.diff(system.indptr), kk, n_blocks(workers))
            cache[key] = entry = (system.indptr, bounds)
        bounds, static = entry[1], _STATIC
    compiled = bool(get_config()["compiled"])
    want_sse = sse is not None
    last = None
    for attempt in range(_RETRIES + 1):
        try:
            parts, fresh = {}, []
            for name in static:  # scattered once per fit while the array stays the same object
                a = getattr(system, name)
                ckey = ("static", name, id(a), id(system.indptr))
                held = cache.get(ckey)
                if held is None or held[0] is not a:
                    sl = _slices(system, name, bounds)
                    futures = client.scatter(sl, hash=False) if a is not None else sl
                    held = cache[ckey] = (a, futures)
                    fresh.extend(futures)
                parts[name] = held[1]
            extra = _slices(system, "extra", bounds)
            if system.extra is not None:
                extra = client.scatter(extra, hash=False)
            Y = client.scatter(np.ascontiguousarray(system.Y), broadcast=True, hash=False)
            shared = (Y, system.gram, system.rhs, float(system.scale), want_sse, compiled)
            if recipe is not None:  # the other side's biases and the like: broadcast once
                args = tuple(client.scatter(a, broadcast=True, hash=False) if isinstance(a, np.ndarray) else a
                             for a in recipe.args)
                futures = [client.submit(_remote_held, recipe.rows.blocks[b], recipe.fn, args, parts["diag"][b],
                                         extra[b], *shared, pure=False) for b in range(len(bounds) - 1)]
            else:
                futures = [
                    client.submit(_remote, parts["indptr"][b], parts["indices"][b], parts["targets"][b],
                                  parts["diag"][b], parts["sse_targets"][b], extra[b], *shared, pure=False)
                    for b in range(len(bounds) - 1)
                ]
            results = client.gather(futures)
            if METRICS is not None:
                METRICS.append(_shipped(client, fresh, extra, Y, futures))
            break
        except Exception as exc:  # a lost worker: scatter its blocks again
            if not _is_lost(exc, distributed):
                raise
            last = exc
            for ckey in [c for c in cache if c[0] == "static"]:
                del cache[ckey]
    else:
        raise RuntimeError(
            f"The Dask cluster lost the workers holding this fit's blocks {_RETRIES + 1} times in one "
            f"half-step ({type(last).__name__}: {last}); the fit stopped without changing the model. "
            "Check the workers' memory limits and logs."
        ) from last
    for lo, hi, (Xb, sb) in zip(bounds[:-1], bounds[1:], results):
        X[lo:hi] = Xb
        if want_sse:
            sse[lo:hi] = sb
    return X


def solve_held(system, order=None, *, want_sse=False, n_jobs=None, cache=None):
    """:func:`socialals._linalg.solve_rows` for a system whose ratings the workers hold
    (a Dask frame's fit): every row on the cluster, whatever the route or the ``compiled``
    switch (the workers honour it); ``order`` and ``n_jobs`` do not apply."""
    import scipy.sparse as sp

    recipe = system.targets
    rows = recipe.rows
    X = np.empty((rows.shape[0], system.Y.shape[1]), dtype=system.Y.dtype)
    sse = None
    if want_sse:  # how many residual targets: the recipe on no rows
        _, goals = recipe.fn(sp.csr_matrix((0, rows.shape[1]), dtype=rows.dtype), *recipe.args)
        sse = np.zeros((rows.shape[0], 1 if goals is None else len(goals)))
    with np.errstate(all="ignore"):
        solve_on_cluster(rows.client, system, X, sse, cache, None)
    check_finite(X, " on the Dask cluster")
    return X, sse


# ---------------------------------------------------------------------------- Dask frames
def is_dask_frame(obj) -> bool:
    """Whether ``obj`` is a ``dask.dataframe.DataFrame`` (without importing dask)."""
    return type(obj).__module__.startswith("dask.") and hasattr(obj, "to_delayed") and hasattr(obj, "npartitions")


def frame_client():
    """The client a Dask-frame fit runs on: the one of joblib's active ``dask`` backend, else
    ``dask.distributed``'s default client; a clear error when there is none."""
    distributed = require_distributed()
    from joblib import parallel as _joblib_parallel

    backend, _ = _joblib_parallel.get_active_backend()
    client = getattr(backend, "client", None) if type(backend).__module__.startswith("joblib._dask") else None
    if client is None:
        try:
            client = distributed.default_client()
        except ValueError:
            raise RuntimeError(
                "Fitting from a Dask DataFrame needs a running dask.distributed.Client: start one before "
                "fit (Client() for a local cluster, Client('scheduler-address:8786') for a running one)."
            ) from None
    _check_client(client)
    return client


def _scan(part, c):
    """A partition's first defect (:func:`socialals.data._first_defect`, the pandas route's
    checks and order) or, when sound, its distinct labels in first-seen order."""
    import pandas as pd

    from .data import _first_defect

    _, defect = _first_defect(part, (c.user, c.item), c.rating)
    out = {"n": len(part), "defect": defect}
    if defect is None:
        out.update({col: pd.unique(part[col].to_numpy()) for col in (c.user, c.item)})
    return out


def _require_rows(n, name):
    if n == 0:
        raise ValueError(f"'{name}' is empty; at least one row is needed.")


def _scan_links(part, users, c):
    """A partition of links checked and coded on its worker (:func:`socialals.data._link_chunk`):
    integer codes, weights and the labels of users the ratings do not know go back."""
    from .data import _link_chunk

    return _link_chunk(part, users, c).shipped()


def _cluster_links(client, social, users, held_users, c):
    """``(src, dst, weight, users)`` of a Dask frame of links, as the pandas route's
    :func:`socialals.data._social_edges` gives them: each partition is checked and coded
    against the rated users (``held_users``, on the workers) where it lies, and the client
    joins the chunks (:func:`socialals.data._join_links`)."""
    from .data import _join_links, _require_columns

    _require_columns(social.columns, "social", [c.user, c.friend], optional=(c.weight,))
    parts = client.compute(social.to_delayed())
    chunks = client.gather([client.submit(_scan_links, p, held_users, c, pure=False) for p in parts])
    del parts
    _require_rows(sum(ch.n for ch in chunks), "social")
    return _join_links(chunks, users)


def _encode(part, users, items, c):
    from .data import _check_numeric

    u = users.get_indexer(part[c.user].to_numpy())
    i = items.get_indexer(part[c.item].to_numpy())
    return u.astype(np.int64), i.astype(np.int64), _check_numeric(part, c.rating, "ratings")


def _row_counts(enc, n_users, n_items):
    return np.bincount(enc[0], minlength=n_users), np.bincount(enc[1], minlength=n_items)


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


def _tree_sum(client, futures):
    """Sum futures of tuples of arrays pairwise on the workers; one result comes back."""
    while len(futures) > 1:
        futures = [client.submit(_add, futures[j], futures[j + 1]) if j + 1 < len(futures) else futures[j]
                   for j in range(0, len(futures), 2)]
    return client.gather(futures[0])


def _split(enc, user_bounds, item_bounds):
    """The partition's rows cut into the user blocks and the item blocks, each piece in the
    frame's row order: ``{("user", b): (rows, columns, values), ("item", b): ...}``."""
    u, i, v = enc
    out = {}
    for side, rows, cols, bounds in (("user", u, i, user_bounds), ("item", i, u, item_bounds)):
        block = np.searchsorted(bounds, rows, side="right") - 1
        order = np.argsort(block, kind="stable")
        starts = np.searchsorted(block[order], np.arange(len(bounds)))
        for b in range(len(bounds) - 1):
            take = order[starts[b] : starts[b + 1]]
            out[side, b] = (rows[take] - bounds[b], cols[take], v[take])
    return out


def _same(x):
    return x


def _pick(pieces, key):
    return pieces[key]


def _assemble(lo, hi, n_cols, dtype, *pieces):
    """Rows ``lo:hi`` as CSR (the pandas route's :func:`socialals.data._rating_matrix`, values
    in 4 bytes where float32 holds them exactly) and their counts, exact rating sum and
    duplicate counts."""
    from .data import _rating_matrix, exact_sum, stored_dtype

    rows = np.concatenate([p[0] for p in pieces])
    cols = np.concatenate([p[1] for p in pieces])
    vals = np.concatenate([p[2] for p in pieces])
    stats = []
    compact = stored_dtype(vals, dtype) != dtype
    M = _rating_matrix(rows, cols, vals, hi - lo, n_cols, np.dtype(dtype), stats=stats, compact=compact)
    return M, (np.diff(M.indptr), exact_sum(M.data), stats[0] if stats else (0, 0, 0))


def _first(pair):
    return pair[0]


def _second(pair):
    return pair[1]


class _OnWorkers:
    """What a cluster-held matrix gives for its per-rating arrays on the client."""

    def __repr__(self):
        return "<held on the Dask workers>"


ON_WORKERS = _OnWorkers()


class Recipe:
    """``fn(block, *args)`` -> ``(targets, sse_targets)``, evaluated on each worker for its
    block (the targets of a half-step whose ratings stay on the workers)."""

    def __init__(self, rows, fn, args):
        self.rows, self.fn, self.args = rows, fn, args


class ClusterRows:
    """One orientation of the ratings as CSR row blocks on the workers: block ``b`` holds
    rows ``bounds[b]:bounds[b + 1]`` (local row numbers, global column numbers). The client
    holds the row pointers only."""

    indices = ON_WORKERS
    data = ON_WORKERS

    def __init__(self, client, blocks, bounds, indptr, n_cols, dtype):
        self.client, self.blocks, self.bounds, self.indptr = client, blocks, bounds, indptr
        self.shape, self.dtype = (len(indptr) - 1, n_cols), np.dtype(dtype)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def on_workers(self, fn, *args):
        """``fn(M, *args)``'s ``(targets, sse_targets)`` for a system, computed per block on the workers."""
        return Recipe(self, fn, args), None


def _block_similarity(kind, src, dst, A, B=None):
    """The similarities of edges from rows ``src`` of block ``A`` to rows ``dst`` of block
    ``B`` (``A`` itself when None): the local function on just those rows (a row's
    similarity terms depend on that row only)."""
    import scipy.sparse as sp

    from .social import edge_similarity

    if B is None:
        return edge_similarity(A, src, dst, kind)
    return edge_similarity(sp.vstack([A, B], format="csr"), src, dst + A.shape[0], kind)


def cluster_dataset(ratings, social, *, columns, include_social_users, dtype):
    """A :class:`socialals.data.Dataset` of a Dask frame of ratings whose rating matrices
    stay on the workers as :class:`ClusterRows` (see the module notes)."""
    from .data import (_duplicates_message, _raise_first_defect, _require_columns, _social_edges, _warn,
                       factorize_labels)

    c = columns
    _require_columns(ratings.columns, "ratings", [c.user, c.item, c.rating])
    client = frame_client()
    distributed = require_distributed()
    parts = client.compute(ratings.to_delayed())  # pandas partitions, kept on the workers
    scans = client.gather([client.submit(_scan, p, c, pure=False) for p in parts])
    _require_rows(sum(s["n"] for s in scans), "ratings")
    _raise_first_defect([s["defect"] for s in scans], "ratings")
    _, users = factorize_labels(np.concatenate([s[c.user] for s in scans]))
    _, items = factorize_labels(np.concatenate([s[c.item] for s in scans]))
    del scans
    n_rated = len(users)
    # computed keys (not scattered data): Dask can recompute a lost block from its lineage.
    # The rated users code the ratings as the extended vocabulary would (they come first).
    labels = [client.submit(_same, users, pure=False), client.submit(_same, items, pure=False)]
    src = dst = w = None
    if include_social_users and social is not None:
        if is_dask_frame(social):  # coded on the workers; the codes come to the client
            src, dst, w, users = _cluster_links(client, social, users, labels[0], c)
        else:
            src, dst, w, users = _social_edges(social, users, c)
    n_users, n_items = len(users), len(items)

    encoded = [client.submit(_encode, p, labels[0], labels[1], c, pure=False) for p in parts]
    del parts
    user_counts, item_counts = _tree_sum(client, [client.submit(_row_counts, e, n_users, n_items, pure=False)
                                                  for e in encoded])
    workers = sum(client.nthreads().values()) or 1
    n_blocks = _blocks._n_blocks(workers)
    bounds = {"user": _blocks.cost_blocks(user_counts, 16, n_blocks),
              "item": _blocks.cost_blocks(item_counts, 16, n_blocks)}
    splits = [client.submit(_split, e, bounds["user"], bounds["item"], pure=False) for e in encoded]
    del encoded
    sides = {}
    for side, n_cols in (("user", n_items), ("item", n_users)):
        b = bounds[side]
        built = [client.submit(_assemble, int(b[j]), int(b[j + 1]), n_cols, np.dtype(dtype).str,
                               *[client.submit(_pick, s, (side, j), pure=False) for s in splits], pure=False)
                 for j in range(len(b) - 1)]
        info = client.gather([client.submit(_second, f, pure=False) for f in built])
        blocks = [client.submit(_first, f, pure=False) for f in built]
        distributed.wait(blocks)
        indptr = np.zeros(b[-1] + 1, dtype=np.int64)
        np.cumsum(np.concatenate([i[0] for i in info]), out=indptr[1:])
        sides[side] = (ClusterRows(client, blocks, b, indptr, n_cols, dtype), info)
        del built
    del splits
    user_info = sides["user"][1]
    dups = np.sum([i[2] for i in user_info], axis=0)
    if dups[0]:
        _warn(_duplicates_message("ratings", *(int(x) for x in dups)), None)
    R, Rt = sides["user"][0], sides["item"][0]
    return ClusterDataset(
        users=users, items=items, R=R, Rt=Rt, n_rated_users=n_rated, columns=c,
        social_src=src, social_dst=dst, social_weight=w,
        total=sum(i[1] for i in user_info),
    )


@dataclass
class ClusterDataset(Dataset):
    """A :class:`~socialals.data.Dataset` whose ``R`` and ``Rt`` are :class:`ClusterRows`;
    ``total`` is the exact sum of the ratings (:func:`socialals.data.exact_sum`)."""

    total: int = 0

    @property
    def nnz(self) -> int:
        return self.R.nnz

    def mean_rating(self) -> float:
        return exact_mean(self.total, self.nnz)

    def edge_similarity(self, kind: str, n_threads: int = 1) -> np.ndarray:
        """Each edge's similarity, from the rating blocks of its two ends (one task per pair
        of blocks; blocks move between workers, never to the client). ``n_threads`` is the
        local route's; each task runs on one."""
        R, src, dst = self.R, self.social_src, self.social_dst
        out = np.empty(len(src))
        bs = np.searchsorted(R.bounds, src, side="right") - 1
        bd = np.searchsorted(R.bounds, dst, side="right") - 1
        tasks = []
        for a, b in (np.unique(np.stack([bs, bd], axis=1), axis=0) if len(src) else ()):
            at = np.flatnonzero((bs == a) & (bd == b))
            other = () if a == b else (R.blocks[b],)
            tasks.append((at, R.client.submit(_block_similarity, kind, src[at] - R.bounds[a], dst[at] - R.bounds[b],
                                              R.blocks[a], *other, pure=False)))
        for (at, _), sims in zip(tasks, R.client.gather([t for _, t in tasks])):
            out[at] = sims
        return out


def on_ratings(M, fn, *args):
    """``fn(M, *args)`` where ``M``'s ratings are: here, or, for a Dask frame's fit, per
    block on the workers that hold them (:meth:`ClusterRows.on_workers`)."""
    return M.on_workers(fn, *args) if isinstance(M, ClusterRows) else fn(M, *args)
