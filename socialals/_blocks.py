"""Blocks of rows as the unit of work of a half-step, scheduled by joblib (or on a Dask cluster).

A half-step's rows are cut into contiguous blocks of about equal estimated cost
(:func:`cost_blocks`); each block is one task that runs the compiled
kernel serially, without the GIL (:func:`socialals._kernels.solve_serial`), on its rows.
Every row's arithmetic depends only on its own data, so the factors are bit-identical for
any number of jobs, any block size and any backend.

Where the blocks run follows joblib's active backend (``joblib.parallel_config``):

* threads (the default, and ``backend="threading"``): the blocks share the half-step's
  arrays and write their rows in place; ``n_jobs`` threads;
* another joblib backend (``"loky"``, ``"multiprocessing"``, a registered one): each task
  receives its block's slices and returns its rows;
* ``"dask"`` with a ``dask.distributed.Client``: the blocks' rating slices are scattered
  to the workers once per fit and reused by every later half-step; the factors a
  half-step needs are broadcast once per half-step (``client.scatter(broadcast=True)``).
  Lost workers are survived by scattering the lost blocks again (at most twice per
  half-step); past that the fit stops with a :class:`RuntimeError`, never with wrong
  factors.

With threads (no explicit backend, or ``"threading"``), ``socialals.config_context(
schedule="prange")`` runs numba's own ``prange`` kernel over the whole half-step instead
of joblib blocks (the same factors).
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from joblib import parallel as _joblib_parallel

from . import _kernels
from ._config import compiled_or_reference, config_context, get_config, one_blas_thread

__all__ = ["active_route", "cost_blocks", "solve_blocks", "block_system", "solve_block"]

BLOCKS_PER_JOB = 4  # blocks per thread or worker thread: slack for a noisy machine


def active_route(n_jobs) -> tuple:
    """``(route, backend)``: ``"prange"``, ``"threads"``, ``"joblib"`` or ``"dask"``."""
    backend, _ = _joblib_parallel.get_active_backend(prefer="threads")
    if type(backend).__module__.startswith("joblib._dask"):
        return "dask", backend
    if isinstance(backend, (_joblib_parallel.ThreadingBackend, _joblib_parallel.SequentialBackend)):
        return ("prange" if get_config()["schedule"] == "prange" else "threads"), backend
    return "joblib", backend


def cost_blocks(counts: np.ndarray, k: int, n_blocks: int) -> np.ndarray:
    """Cut rows ``0 .. len(counts)`` into at most ``n_blocks`` contiguous ranges of about
    equal :func:`~socialals._kernels.row_cost`: the returned ``bounds`` (ascending, from 0 to ``len(counts)``)
    give block ``b`` as rows ``bounds[b]:bounds[b + 1]``. Empty ranges are dropped.
    Contiguous rows are contiguous slices of the CSR arrays, so a block ships as slices.
    Only balances the work; results never depend on it."""
    n = len(counts)
    n_blocks = max(1, min(int(n_blocks), n))
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    cum = np.cumsum(_kernels.row_cost(counts, k))
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, n_blocks) / n_blocks, side="left") + 1
    return np.unique(np.concatenate([[0], np.minimum(cuts, n), [n]])).astype(np.int64)


def _n_blocks(n_workers: int) -> int:
    chosen = get_config()["n_blocks"]
    return int(chosen) if chosen is not None else BLOCKS_PER_JOB * max(1, int(n_workers))


def block_system(system, lo: int, hi: int):
    """Rows ``lo:hi`` of ``system`` as a system of their own (CSR slices, row slices; the
    shared ``Y``, ``gram``, ``rhs`` by reference)."""
    from ._linalg import RowSystem

    s0, s1 = int(system.indptr[lo]), int(system.indptr[hi])
    return RowSystem(
        indptr=np.asarray(system.indptr[lo : hi + 1]) - s0,
        indices=system.indices[s0:s1],
        targets=system.targets[s0:s1],
        Y=system.Y,
        diag=None if system.diag is None else system.diag[lo:hi],
        extra=None if system.extra is None else system.extra[lo:hi],
        gram=system.gram,
        rhs=system.rhs,
        scale=system.scale,
        sse_targets=None if system.sse_targets is None else system.sse_targets[:, s0:s1],
    )


def solve_block(system, want_sse: bool, compiled: bool = True):
    """Every row of a (block) system: ``(X, sse)``, near-singular rows by the reference.
    Runs anywhere (a thread, a process, a Dask worker), with one BLAS thread."""
    from ._linalg import solve_reference

    n, kk = system.n_rows, system.Y.shape[1]
    X = np.empty((n, kk), dtype=system.Y.dtype)
    sse = np.zeros((n, len(system.residual_targets()))) if want_sse else None

    def kernel():
        ok = np.ones(n, dtype=bool)
        _kernels.solve_serial(system, np.arange(n), X, sse, ok)
        if not ok.all():
            solve_reference(system, np.flatnonzero(~ok), X, sse)

    with one_blas_thread(), config_context(compiled=compiled), \
            np.errstate(all="ignore"):
        compiled_or_reference("als_half_step", kernel, lambda: solve_reference(system, None, X, sse))
    return X, sse


def solve_blocks(system, X, sse, n_jobs, route, backend, cache=None):
    """Solve every row of ``system`` into ``X`` (and ``sse``) by blocks on ``route``;
    returns the mask of rows the caller must still give to the reference (none here:
    blocks settle their near-singular rows themselves, except on the threads route)."""
    counts = np.diff(system.indptr)
    k = system.Y.shape[1]
    if route == "threads":
        from joblib import effective_n_jobs

        workers = effective_n_jobs(n_jobs)
        bounds = cost_blocks(counts, k, _n_blocks(workers))
        ok = np.ones(system.n_rows, dtype=bool)
        arguments = _kernels._arguments(system, system.n_rows, k)
        rows = np.arange(system.n_rows, dtype=np.int64)
        Parallel(n_jobs=workers, prefer="threads")(
            delayed(_kernels.solve_serial)(system, rows[lo:hi], X, sse, ok, arguments)
            for lo, hi in zip(bounds[:-1], bounds[1:])
        )
        return ok
    if route == "dask":
        from ._dask import solve_on_cluster

        solve_on_cluster(backend.client, system, X, sse, cache, _n_blocks)
        return np.ones(system.n_rows, dtype=bool)
    # any other joblib backend: slices out, rows back
    workers = backend.effective_n_jobs(n_jobs) if hasattr(backend, "effective_n_jobs") else 1
    bounds = cost_blocks(counts, k, _n_blocks(workers))
    compiled = bool(get_config()["compiled"])
    pairs = list(zip(bounds[:-1], bounds[1:]))
    results = Parallel(n_jobs=n_jobs)(
        delayed(solve_block)(block_system(system, lo, hi), sse is not None, compiled) for lo, hi in pairs
    )
    for (lo, hi), (Xb, sb) in zip(pairs, results):
        X[lo:hi] = Xb
        if sse is not None:
            sse[lo:hi] = sb
    return np.ones(system.n_rows, dtype=bool)
