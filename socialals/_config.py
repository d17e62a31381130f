"""Library-wide switches, and numba compilation that never makes ``import`` fail.

``compiled``
    Use the compiled (numba) kernels. Off, every model runs its plain numpy reference:
    slower, the same maths, the oracle the tests hold the kernels to. A kernel that fails
    to compile turns itself off with one warning (see :func:`compiled_or_reference`).

``schedule``
    ``"prange"`` (default) or ``"blocks"``: how a fit without an explicit joblib backend
    runs a half-step's rows on ``n_jobs`` threads, on numba's own threads or as
    cost-balanced blocks of rows scheduled by joblib threads (:mod:`socialals._blocks`).
    Results are bit-identical either way. On a quiet 2-core machine prange is the faster
    (the blocks took 1.5-2.2x its time per iteration on MovieLens-shaped data,
    ``benchmarks/results/bench_versions.txt``); on a machine loaded by other processes the
    blocks did better (``benchmarks/results/bench_versions_blocks*.txt``). Under another
    joblib backend (``joblib.parallel_config(backend="loky")``, ``"dask"``) the blocks
    always run on that backend.

``n_blocks``
    ``None`` (default: 4 per thread or worker thread) or an int: blocks per half-step on
    the block routes. Only balances the work; results never depend on it.

Set them for a block of code with :func:`config_context`, or for the process with
:func:`set_config`::

    >>> import socialals
    >>> with socialals.config_context(compiled=False):
    ...     socialals.get_config()["compiled"]
    False

Numba's on-disk cache
    Kernels are compiled on first use and cached next to the package (or under
    ``NUMBA_CACHE_DIR`` when that variable is set). Where no cache folder is writable (a
    read-only install for a user without a home), the kernels are compiled in memory on
    every run instead, with one note on stderr; set ``NUMBA_CACHE_DIR`` to a writable
    folder to keep the cache.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings

__all__ = ["get_config", "set_config", "config_context", "njit", "numba_available"]

_lock = threading.Lock()
_config = {"compiled": True, "schedule": "prange", "n_blocks": None}
_failed: set[str] = set()  # kernels that failed to compile: they stay on the reference


def get_config() -> dict:
    """The current switches as a dict (a copy)."""
    with _lock:
        return dict(_config)


_UNSET = object()


def set_config(*, compiled: bool | None = None, schedule: str | None = None, n_blocks=_UNSET) -> None:
    """Set switches for the whole process; ``None`` leaves ``compiled`` and ``schedule`` as
    they are (``n_blocks=None`` restores its default)."""
    if compiled is not None and not isinstance(compiled, bool):
        raise ValueError(f"The 'compiled' setting must be a bool; got {compiled!r}.")
    if schedule is not None and schedule not in ("prange", "blocks"):
        raise ValueError(f"The 'schedule' setting must be 'prange' or 'blocks'; got {schedule!r}.")
    if n_blocks is not _UNSET and n_blocks is not None and (
            isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1):
        raise ValueError(f"The 'n_blocks' setting must be None or an int >= 1; got {n_blocks!r}.")
    with _lock:
        if compiled is not None:
            _config["compiled"] = compiled
        if schedule is not None:
            _config["schedule"] = schedule
        if n_blocks is not _UNSET:
            _config["n_blocks"] = n_blocks


@contextlib.contextmanager
def config_context(*, compiled: bool | None = None, schedule: str | None = None, n_blocks=_UNSET):
    """Set switches inside a ``with`` block and restore them afterwards."""
    old = get_config()
    set_config(compiled=compiled, schedule=schedule, n_blocks=n_blocks)
    try:
        yield
    finally:
        set_config(**old)


try:  # numba is a dependency; a broken install must still leave the reference path usable
    import numba as _numba

    numba_available = not _numba.config.DISABLE_JIT
except Exception:  # pragma: no cover - depends on the install
    _numba = None
    numba_available = False

_cache_note_given = False


def njit(**options):
    """``numba.njit(cache=True, **options)``, falling back to an uncached compile (with one
    note on stderr) where numba finds no writable cache folder."""

    def decorate(fn):
        global _cache_note_given
        if _numba is None:  # pragma: no cover
            return fn
        try:
            return _numba.njit(cache=True, **options)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if not _cache_note_given:
                _cache_note_given = True
                print(
                    f"socialals: numba cannot cache compiled kernels here ({exc}); they are compiled "
                    "on every run. Set NUMBA_CACHE_DIR to a writable folder to keep them.",
                    file=sys.stderr,
                )
            return _numba.njit(cache=False, **options)(fn)

    return decorate


def compiled_or_reference(name: str, compiled, reference):
    """Run ``compiled()``; if it fails to *compile*, warn once for ``name`` and from then on
    return ``reference()`` for it. Errors raised while running are not swallowed.

    Returns the result of whichever ran. ``compiled`` is skipped when the ``compiled``
    switch is off, numba is unavailable, or the kernel failed before.
    """
    if not (numba_available and get_config()["compiled"]) or name in _failed:
        return reference()
    try:
        return compiled()
    except Exception as exc:
        if not _is_compile_error(exc):
            raise
        with _lock:
            first = name not in _failed
            _failed.add(name)
        if first:
            warnings.warn(
                f"socialals: the compiled kernel {name!r} failed to compile ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); using the plain numpy reference "
                "instead (slower, same results up to rounding).",
                RuntimeWarning,
                stacklevel=3,
            )
        return reference()


def _is_compile_error(exc: BaseException) -> bool:
    if _numba is None:  # pragma: no cover
        return False
    errors = getattr(_numba.core, "errors", None)
    kinds = tuple(
        k for k in (getattr(errors, "TypingError", None), getattr(errors, "LoweringError", None),
                    getattr(errors, "NumbaError", None), getattr(errors, "UnsupportedError", None)) if k
    )
    return isinstance(exc, kinds) or isinstance(exc, _ForcedCompileFailure)


class _ForcedCompileFailure(RuntimeError):
    """Raised by tests (through :func:`_force_compile_failure`) to stand for a failed compile."""


def _forget_failures() -> None:
    """Tests: clear the record of kernels that failed to compile."""
    with _lock:
        _failed.clear()


_blas = {"controller": None, "modules": None, "others": -1}


def one_blas_thread():
    """Limit BLAS to one thread until ``.restore_original_limits()`` (or the end of a
    ``with`` block): a threadpoolctl limiter, as ``threadpool_limits(limits=1,
    user_api="blas")`` returns, through one controller kept for the process.

    Building a controller scans every loaded library (about 10 ms, and some hundreds of KB
    of short-lived Python objects); a fit, a fold-in, ``recommend`` and every block task
    on a worker process limit BLAS, so they share one controller. It is built again when
    modules other than numba's have been imported since, as one of them may have loaded
    another BLAS (numba's own imports load none: the first parallel kernel loads its
    threading layer, an OpenMP runtime, which a BLAS limit does not touch).
    """
    modules = (len(sys.modules), next(reversed(sys.modules)))  # changes with every import (dicts keep order)
    controller = _blas["controller"]
    if controller is None or _blas["modules"] != modules:
        others = sum(1 for name in list(sys.modules) if not name.startswith("numba"))
        if controller is None or _blas["others"] != others:
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController()
        _blas.update(controller=controller, modules=modules, others=others)
    return controller.limit(limits=1, user_api="blas")
