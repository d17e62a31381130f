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
"""

from __future__ import annotations

import numpy as np

from . import _blocks
from ._config import get_config

__all__ = ["solve_on_cluster", "require_distributed"]

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


def solve_on_cluster(client, system, X, sse, cache, n_blocks):
    """Solve every row of ``system`` on ``client``'s workers into ``X`` (and ``sse``)."""
    distributed = require_distributed()
    _check_client(client)
    cache = {} if cache is None else cache
    kk = system.Y.shape[1]
    workers = sum(client.nthreads().values()) or 1
    key = ("bounds", id(system.indptr), kk)
    entry = cache.get(key)
    if entry is None or entry[0] is not system.indptr:
        bounds = _blocks.cost_blocks(np.diff(system.indptr), kk, n_blocks(workers))
        cache[key] = entry = (system.indptr, bounds)
    bounds = entry[1]
    compiled = bool(get_config()["compiled"])
    want_sse = sse is not None
    last = None
    for attempt in range(_RETRIES + 1):
        try:
            parts, fresh = {}, []
            for name in _STATIC:  # scattered once per fit while the array stays the same object
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
            futures = [
                client.submit(_remote, parts["indptr"][b], parts["indices"][b], parts["targets"][b],
                              parts["diag"][b], parts["sse_targets"][b], extra[b], Y, system.gram, system.rhs,
                              float(system.scale), want_sse, compiled, pure=False)
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
