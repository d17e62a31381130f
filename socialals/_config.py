"""Library-wide switches, and numba compilation that never makes ``import`` fail.

``compiled``
    Use the compiled (numba) kernels. Off, every model runs its plain numpy reference:
    slower, the same maths, the oracle the tests hold the kernels to. A kernel that fails
    to compile turns itself off with one warning (see :func:`compiled_or_reference`).

Set it for a block of code with :func:`config_context`, or for the process with
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
_config = {"compiled": True}
_failed: set[str] = set()  # kernels that failed to compile: they stay on the reference


def get_config() -> dict:
    """The current switches as a dict (a copy)."""
    with _lock:
        return dict(_config)


def set_config(*, compiled: bool | None = None) -> None:
    """Set switches for the whole process; ``None`` leaves a switch as it is."""
    if compiled is not None:
        if not isinstance(compiled, bool):
            raise ValueError(f"The 'compiled' setting must be a bool; got {compiled!r}.")
        with _lock:
            _config["compiled"] = compiled


@contextlib.contextmanager
def config_context(*, compiled: bool | None = None):
    """Set switches inside a ``with`` block and restore them afterwards."""
    old = get_config()
    set_config(compiled=compiled)
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
