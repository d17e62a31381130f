"""Saving fitted models to ``.npz`` files and loading them back without running code.

File layout
-----------
One uncompressed NumPy ``.npz`` archive written with :func:`numpy.savez` and read with
``allow_pickle=False``:

``__socialals__``
    A 0-d unicode array holding a JSON document::

        {"format": "socialals-model", "format_version": 1,
         "class": "SocialALS", "socialals_version": "0.1.0",
         "params": {...get_params(), non-JSON values as null...},
         "columns": {"user": "user", "item": "item", ...},
         "attributes": {"<name>": {"kind": ..., ...}, ...}}

``attr/<name>`` (and ``attr/<name>/<part>`` for sparse matrices)
    The arrays of the learned attributes.

Every public learned attribute (a name ending in ``_`` that does not start with ``_``) is
saved, whatever the model, as one of these *kinds*:

=========  ===========================================================================
kind       stored as
=========  ===========================================================================
none       nothing (the value is ``None``)
scalar     the JSON value (Python ``bool``, ``int``, ``float``, ``str``)
npscalar   a 0-d array (NumPy scalars keep their dtype)
array      the array itself (numeric, bool or unicode; object arrays are refused)
index      a :class:`pandas.Index` of integer, float or string labels: the label array
           and the index dtype and name in the JSON
sparse     a SciPy sparse matrix or array: CSR ``data``, ``indices``, ``indptr`` and
           the shape
json       a list or dict that survives a JSON round trip unchanged
columns    the :class:`~socialals.data.Columns` of ``columns_``
=========  ===========================================================================

The private ``_seen`` matrix (the training items of every user, used by
``recommend(exclude_seen=True)``) is saved too, as are any private attributes a model
class lists in ``_saved_private_attributes``.

Loading looks the class name up in the registry of socialals model classes (no name
is ever imported from the file; see :mod:`socialals._registry`), rebuilds the model from
its parameters and restores the attributes.

Model files are untrusted input
-------------------------------
Nothing in a file is used before it is checked:

* only regular files are opened (a FIFO or a device is refused without blocking);
* every zip member's declared size is checked against a budget before anything is
  decompressed (all members together may expand to at most
  ``max(64 MiB, 32 x the file size)``; the writer stores members uncompressed, so a
  genuine file expands 1:1), and every ``.npy`` header must declare exactly the bytes its
  member holds, so a forged shape cannot make the reader allocate;
* arrays are plain numeric, bool or unicode (no objects, no records, no pickle);
* the parameters go through the model's own validation (as in ``fit``);
* every attribute is checked against the label lists and the parameters: factor shapes
  ``(n_users, factors)`` and ``(n_items, factors)`` and their dtype, finiteness, the
  index ranges and pointers of every sparse matrix, unique labels of a supported dtype,
  the factorization machine's feature layout, and that scores cannot overflow.

Anything unexpected — not a zip archive, a truncated or corrupted file, an oversized
member, missing or malformed metadata, another format or a newer format version, an
unknown class, an attribute that does not fit the model — raises one
:class:`ValueError` naming the file and the problem. :func:`save_model` runs the same
checks on the model before writing, so it never writes a file that cannot be loaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
import stat
import struct
import threading
import uuid
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._registry import model_classes as _registered_classes
from .data import Columns

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load", "load_model", "model_classes", "save_model"]

FORMAT_NAME = "socialals-model"
FORMAT_VERSION = 1

_META_KEY = "__socialals__"
_PREFIX = "attr/"
_ALWAYS_PRIVATE = ("_seen",)
_SPARSE_PARTS = ("data", "indices", "indptr")

PathLike = Union[str, "os.PathLike[str]"]


def model_classes() -> dict:
    """The allow-list of classes :func:`load_model` may build, by class name.

    These are the public model classes of the package, registered when they are
    defined (see :mod:`socialals._registry`); the factorization machine is among them
    when :mod:`socialals.fm` is importable.
    """
    return _registered_classes()


# ---------------------------------------------------------------------------- saving
_UNSTORABLE = object()


def _json_param(value: Any):
    """``value`` as a JSON-able object, or ``_UNSTORABLE``."""
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    try:
        if json.loads(json.dumps(value)) == value:
            return value
    except (TypeError, ValueError):
        pass
    return _UNSTORABLE


def _label_array(name: str, index: pd.Index) -> tuple[np.ndarray, str]:
    """The labels of ``index`` as a plain int, float or unicode array, and their kind."""
    values = index.to_numpy()
    if values.dtype.kind in "iu":
        return values, "int"
    if values.dtype.kind == "f":
        return values, "float"
    objects = list(values)
    if all(isinstance(v, str) for v in objects):
        labels = np.array(objects, dtype=str) if objects else np.zeros(0, dtype="<U1")
        if labels.tolist() != objects:  # NumPy strips trailing NUL characters
            raise TypeError(f"save: some labels of {name} end in NUL characters, which cannot be saved.")
        return labels, "str"
    if all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in objects):
        return np.array(objects, dtype=np.int64), "int"
    kinds = sorted({type(v).__name__ for v in objects})
    raise TypeError(
        f"save: the labels of {name} have types {kinds}; only all-integer, all-float or "
        "all-string labels can be saved. Relabel the data (e.g. map every id to str) and refit."
    )


def _encode(name: str, value: Any, arrays: dict) -> dict:
    """Describe attribute ``name`` in the metadata and put its arrays into ``arrays``."""
    key = _PREFIX + name
    if value is None:
        return {"kind": "none"}
    if isinstance(value, Columns):
        return {"kind": "columns", "value": dataclasses.asdict(value)}
    if isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic):
        return {"kind": "scalar", "value": value}
    if isinstance(value, np.generic):
        if value.dtype.kind == "O":
            raise TypeError(f"save: attribute {name} is a NumPy object scalar, which cannot be saved.")
        arrays[key] = np.asarray(value)
        return {"kind": "npscalar"}
    if isinstance(value, pd.Index):
        if isinstance(value, pd.MultiIndex):
            raise TypeError(f"save: attribute {name} is a MultiIndex, which cannot be saved.")
        labels, label_kind = _label_array(name, value)
        arrays[key] = labels
        dtype = str(value.dtype)
        return {"kind": "index", "labels": label_kind, "dtype": dtype, "name": _index_name(value)}
    if sp.issparse(value):
        csr = value.tocsr()
        for part in _SPARSE_PARTS:
            arrays[f"{key}/{part}"] = np.asarray(getattr(csr, part))
        return {
            "kind": "sparse",
            "shape": [int(n) for n in csr.shape],
            "container": "array" if isinstance(value, sp.sparray) else "matrix",
            "has_sorted_indices": bool(csr.has_sorted_indices),
        }
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OV":
            raise TypeError(
                f"save: attribute {name} is an array of dtype {value.dtype}; only numeric, bool "
                "and string arrays can be saved (object arrays would need pickle)."
            )
        arrays[key] = value
        return {"kind": "array"}
    if isinstance(value, (list, dict)):
        try:
            ok = json.loads(json.dumps(value)) == value
        except (TypeError, ValueError):
            ok = False
        if ok:
            return {"kind": "json", "value": value}
    raise TypeError(
        f"save: attribute {name} has type {type(value).__name__}, which the model file "
        "cannot hold (supported: None, bool, int, float, str, NumPy scalars and arrays, "
        "pandas.Index, SciPy sparse matrices, JSON-able lists and dicts)."
    )


def _index_name(index: pd.Index):
    name = index.name
    if name is None or isinstance(name, (str, bool, int, float)):
        return name
    return None


def _saved_attributes(model) -> dict:
    names = [n for n in vars(model) if n.endswith("_") and not n.startswith("_")]
    private = list(_ALWAYS_PRIVATE) + list(getattr(type(model), "_saved_private_attributes", ()))
    names += [n for n in dict.fromkeys(private) if hasattr(model, n)]
    return {n: getattr(model, n) for n in names}


def save_model(model, path: PathLike) -> Path:
    """Write the fitted ``model`` to ``path`` (see the module notes for the format).

    Parameters
    ----------
    model : BaseRecommender
        A fitted model of a class in :func:`model_classes`.
    path : str or path-like
        File to write, used exactly as given (no suffix is added); ``.npz`` is the
        conventional suffix. An existing file is replaced atomically.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    NotFittedError
        If the model is not fitted.
    TypeError
        If a learned attribute cannot be stored without pickle (e.g. mixed-type labels).
    ValueError
        If the model's class is not a socialals model class.

    Warns
    -----
    UserWarning
        For every parameter (such as a callback) that cannot be stored; it is saved as
        ``None``.
    """
    from . import __version__

    model._check_fitted()
    cls_name = type(model).__name__
    classes = model_classes()
    if classes.get(cls_name) is not type(model):
        raise ValueError(
            f"save: {cls_name} is not one of the socialals model classes {sorted(classes)}; "
            "only those can be saved and loaded."
        )
    params = {}
    for name, value in model.get_params().items():
        params[name] = _json_param(value)
        if params[name] is _UNSTORABLE:
            params[name] = None
            warnings.warn(
                f"save: the {name!r} parameter of {cls_name} ({type(value).__name__}) cannot be "
                f"stored in the model file; it is saved as None and the loaded model will have {name}=None.",
                UserWarning,
                stacklevel=3,
            )
    state = _saved_attributes(model)
    try:
        _check_state(model, state)
    except _Bad as exc:
        raise ValueError(
            f"save: the fitted state of this {cls_name} does not fit its parameters ({exc}); "
            "were parameters changed after fit? Refit before saving."
        ) from None
    arrays: dict = {}
    attributes = {name: _encode(name, value, arrays) for name, value in state.items()}
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "class": cls_name,
        "socialals_version": __version__,
        "params": params,
        "columns": attributes.get("columns_", {}).get("value"),
        "attributes": attributes,
    }
    arrays[_META_KEY] = np.array(json.dumps(meta))

    path = Path(os.fspath(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Cannot save the model to {str(path)!r}: folder {str(path.parent)!r} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(f"Cannot save the model to {str(path)!r}: it is a directory.")
    _remove_stale_parts(path)
    # Write next to the target, fsync, then rename: a crash never leaves a half-written
    # model under the target's name (a SIGKILL can leave the hidden .part file, which
    # the next save of the same target removes).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    with _ACTIVE_LOCK:
        _ACTIVE_PARTS.add(str(tmp))
    try:
        with open(tmp, "xb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_PARTS.discard(str(tmp))
    return path


# temporary files this process is writing right now (never "stale")
_ACTIVE_PARTS: set = set()
_ACTIVE_LOCK = threading.Lock()


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError, ValueError):
        return True  # exists (another user's) or cannot tell: keep the file
    return True


def _remove_stale_parts(path: Path) -> None:
    """Delete ``.part`` files of earlier saves to ``path`` whose writer no longer runs."""
    pattern = re.compile(r"\." + re.escape(path.name) + r"\.(\d+)\.[0-9a-f]{8}\.part")
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name)
        if match is None:
            continue
        with _ACTIVE_LOCK:
            active = str(candidate) in _ACTIVE_PARTS
        if active or (int(match.group(1)) != os.getpid() and _process_exists(int(match.group(1)))):
            continue
        try:
            if candidate.is_file() and not candidate.is_symlink():
                candidate.unlink()
        except OSError:
            pass


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- loading
class _Bad(Exception):
    """Internal: the file is not a valid model file (message says why)."""


# The writer stores members uncompressed, so a genuine file expands 1:1. Compressed
# members are accepted (a file re-packed by hand) up to this budget, checked on the
# declared sizes before anything is decompressed.
_MIN_BUDGET = 64 * 2**20
_EXPANSION = 32
_MAX_MEMBERS = 4096
_MAX_NPY_HEADER = 10_000
_ARRAY_KINDS = "biufU"  # bool, int, uint, float, unicode: never objects or records
_CHUNK = 2**20


def _budget(file_size: int) -> int:
    return max(_MIN_BUDGET, _EXPANSION * file_size)


def _open_regular(path: Path):
    """Open ``path`` for reading without blocking, refusing anything but a regular file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device or special file"
            raise _Bad(f"it is {kind}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_header(stream, name: str):
    version = np.lib.format.read_magic(stream)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise _Bad(f"its member {name!r} has .npy format version {version}, which model files do not use")
    try:
        return readers[version](stream, max_header_size=_MAX_NPY_HEADER)
    except TypeError:  # NumPy without max_header_size (its own limit applies)
        return readers[version](stream)


def _read_npy(stream, size: int, name: str) -> np.ndarray:
    """One ``.npy`` member of ``size`` bytes, checked before its data is allocated."""
    shape, fortran, dtype = _read_header(stream, name)
    if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise _Bad(f"its member {name!r} has dtype {dtype.str}; model files hold only numeric, bool and string arrays")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise _Bad(f"its member {name!r} declares an invalid shape {shape!r}")
    nbytes = math.prod(shape) * dtype.itemsize
    available = size - stream.tell()
    if nbytes != available:
        raise _Bad(
            f"its member {name!r} declares shape {shape} of {dtype.str} ({nbytes:,} bytes) "
            f"but holds {available:,} bytes"
        )
    flat = np.empty(math.prod(shape), dtype=dtype)
    view = memoryview(flat.view(np.uint8)) if nbytes else memoryview(b"")
    done = 0
    while done < nbytes:
        chunk = stream.read(min(_CHUNK, nbytes - done))
        if not chunk:
            raise _Bad(f"its member {name!r} ends after {done:,} of {nbytes:,} bytes")
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    if stream.read(1):  # also lets the zip reader verify the member's CRC
        raise _Bad(f"its member {name!r} is longer than declared")
    array = flat.reshape(shape[::-1]).T.copy(order="C") if fortran else flat.reshape(shape)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, struct.error,
                NotImplementedError, RuntimeError, OverflowError, SyntaxError)


def _read_archive(path: Path) -> dict:
    try:
        handle = _open_regular(path)
    except OSError as exc:
        raise _Bad(f"it could not be opened ({type(exc).__name__}: {exc})") from exc
    with handle:
        file_size = os.fstat(handle.fileno()).st_size
        if handle.read(6) == b"\x93NUMPY":
            raise _Bad("it is a single .npy array, not an .npz archive")
        handle.seek(0)
        try:
            archive = zipfile.ZipFile(handle)
        except _READ_ERRORS as exc:
            raise _Bad(f"it could not be read as a NumPy .npz archive ({type(exc).__name__}: {exc})") from exc
        with archive:
            members = archive.infolist()
            if len(members) > _MAX_MEMBERS:
                raise _Bad(f"it has {len(members):,} members, more than a model file ever holds ({_MAX_MEMBERS:,})")
            names = [m.filename for m in members]
            if len(set(names)) != len(names):
                raise _Bad("it names a member twice")
            expanded = sum(m.file_size for m in members)
            budget = _budget(file_size)
            if expanded > budget:
                raise _Bad(
                    f"its members would expand to {expanded:,} bytes, more than the {budget:,} bytes "
                    f"allowed for a file of {file_size:,} bytes"
                )
            arrays = {}
            for member in members:
                if not member.filename.endswith(".npy"):
                    raise _Bad(f"its member {member.filename!r} is not a .npy array")
                if member.flag_bits & 0x1:
                    raise _Bad(f"its member {member.filename!r} is encrypted")
                if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise _Bad(f"its member {member.filename!r} uses an unsupported compression")
                try:
                    with archive.open(member) as stream:
                        arrays[member.filename[:-4]] = _read_npy(stream, member.file_size, member.filename)
                except _READ_ERRORS as exc:
                    raise _Bad(
                        f"its member {member.filename!r} could not be read ({type(exc).__name__}: {exc})"
                    ) from exc
    return arrays


def _read_meta(arrays: dict) -> dict:
    if _META_KEY not in arrays:
        raise _Bad(f"it has no {_META_KEY!r} entry, so it is not a socialals model file")
    raw = arrays[_META_KEY]
    if raw.shape != () or raw.dtype.kind != "U":
        raise _Bad(f"its {_META_KEY!r} entry is not a JSON string")
    try:
        meta = json.loads(str(raw[()]))
    except RecursionError:
        raise _Bad("its metadata JSON is nested too deeply") from None
    except ValueError as exc:
        raise _Bad(f"its metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise _Bad(f"its metadata does not declare the {FORMAT_NAME!r} format")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Bad(f"its format version {version!r} is not an integer")
    if version != FORMAT_VERSION:
        newer = " (written by a newer socialals; upgrade to read it)" if version > FORMAT_VERSION else ""
        raise _Bad(f"it has format version {version}, but this socialals reads version {FORMAT_VERSION}{newer}")
    for key, kind in (("class", str), ("params", dict), ("attributes", dict)):
        if not isinstance(meta.get(key), kind):
            raise _Bad(f"its metadata field {key!r} is missing or not a {kind.__name__}")
    return meta


def _array(arrays: dict, key: str) -> np.ndarray:
    if key not in arrays:
        raise _Bad(f"the array {key!r} named in its metadata is missing")
    return arrays[key]


def _check_finite(name: str, values: np.ndarray) -> None:
    if values.dtype.kind == "f" and values.size and not np.isfinite(values).all():
        raise _Bad(f"attribute {name!r} holds {int((~np.isfinite(values)).sum())} NaN or infinite value(s)")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


_INT_DTYPES = {f"{p}int{b}" for p in ("", "u") for b in (8, 16, 32, 64)}


def _decode_index(name: str, spec: dict, labels: np.ndarray) -> pd.Index:
    kind, dtype, label_name = spec.get("labels"), spec.get("dtype"), spec.get("name")
    if labels.ndim != 1:
        raise _Bad(f"the labels of {name!r} are not a 1-D array")
    if not isinstance(dtype, str) or not (label_name is None or isinstance(label_name, (str, bool, int, float))):
        raise _Bad(f"the metadata of the labels {name!r} is malformed")
    if kind == "int":
        ok = labels.dtype.kind in "iu" and dtype in (labels.dtype.name, "object")
    elif kind == "float":
        ok = labels.dtype.kind == "f" and dtype in (labels.dtype.name, "object")
        if ok and not np.isfinite(labels).all():
            raise _Bad(f"the labels of {name!r} include NaN or infinite values")
    elif kind == "str":
        ok = labels.dtype.kind == "U" and (dtype in ("object", "str") or dtype.startswith("string"))
        labels = labels.astype(object)
    else:
        raise _Bad(f"the labels of {name!r} have an unknown kind {kind!r}")
    if not ok:
        raise _Bad(f"the labels of {name!r} ({labels.dtype}) do not match their declared type {kind!r} / dtype {dtype!r}")
    try:
        index = pd.Index(labels, dtype=dtype, name=label_name)
    except (TypeError, ValueError, ImportError):  # e.g. a string dtype this pandas lacks
        index = pd.Index(labels, name=label_name)
    if isinstance(index, pd.MultiIndex) or len(index) != len(labels):
        raise _Bad(f"the labels of {name!r} do not form a flat index")
    if not index.is_unique:
        dup = index[index.duplicated()].unique()[:3].tolist()
        raise _Bad(f"the labels of {name!r} are not unique (e.g. {dup})")
    return index


def _decode_sparse(name: str, spec: dict, arrays: dict, key: str):
    data, indices, indptr = (_array(arrays, f"{key}/{part}") for part in _SPARSE_PARTS)
    shape = spec.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_is_int(n) and 0 <= n < 2**62 for n in shape)):
        raise _Bad(f"the sparse matrix {name!r} has an invalid shape {shape!r}")
    n_rows, n_cols = shape
    if data.ndim != 1 or indices.ndim != 1 or indptr.ndim != 1:
        raise _Bad(f"the parts of the sparse matrix {name!r} are not 1-D arrays")
    if data.dtype.kind not in "biuf":
        raise _Bad(f"the sparse matrix {name!r} has non-numeric values ({data.dtype})")
    if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
        raise _Bad(f"the index arrays of the sparse matrix {name!r} are not integers ({indices.dtype}, {indptr.dtype})")
    if len(indptr) != n_rows + 1:
        raise _Bad(f"the sparse matrix {name!r} has {len(indptr)} row pointers for {n_rows} rows")
    if len(indices) != len(data):
        raise _Bad(f"the sparse matrix {name!r} has {len(indices)} column indices for {len(data)} values")
    ptr = indptr.astype(np.int64) if indptr.dtype != np.uint64 else None
    if ptr is None or (len(ptr) and (ptr[0] != 0 or ptr[-1] != len(data) or (np.diff(ptr) < 0).any())):
        raise _Bad(f"the row pointers of the sparse matrix {name!r} are not a valid CSR index (0 .. {len(data)}, non-decreasing)")
    if len(indices):
        lo, hi = indices.min(), indices.max()
        if lo < 0 or hi >= n_cols:
            raise _Bad(
                f"the sparse matrix {name!r} has column indices from {lo} to {hi}, outside 0 .. {n_cols - 1}"
            )
    _check_finite(name, data)
    # the ranges are checked, so the casts below cannot wrap around
    indices = indices if indices.dtype in (np.int32, np.int64) else indices.astype(np.int64)
    indptr = indptr if indptr.dtype in (np.int32, np.int64) else indptr.astype(np.int64)
    build = sp.csr_array if spec.get("container") == "array" else sp.csr_matrix
    try:
        return build((data, indices, indptr), shape=(n_rows, n_cols), copy=False)
    except (TypeError, ValueError) as exc:
        raise _Bad(f"the sparse matrix {name!r} is malformed ({exc})") from exc


def _decode(name: str, spec: Any, arrays: dict):
    if not isinstance(spec, dict) or "kind" not in spec:
        raise _Bad(f"the metadata of attribute {name!r} is malformed")
    kind = spec["kind"]
    key = _PREFIX + name
    if kind == "none":
        return None
    if kind == "scalar":
        value = spec.get("value")
        if not isinstance(value, (bool, int, float, str)):
            raise _Bad(f"attribute {name!r} is not a scalar")
        if isinstance(value, float) and not math.isfinite(value):
            raise _Bad(f"attribute {name!r} is {value}")
        return value
    if kind == "json":
        value = spec.get("value")
        if not isinstance(value, (list, dict)):
            raise _Bad(f"attribute {name!r} is not a list or dict")
        return value
    if kind == "columns":
        value = spec.get("value")
        fields = [f.name for f in dataclasses.fields(Columns)]
        if not (isinstance(value, dict) and sorted(value) == sorted(fields) and all(isinstance(v, str) for v in value.values())):
            raise _Bad(f"the column names of {name!r} are malformed")
        return Columns(**value)
    if kind == "npscalar":
        value = _array(arrays, key)
        if value.shape != ():
            raise _Bad(f"attribute {name!r} is not a scalar")
        _check_finite(name, value)
        return value[()]
    if kind == "array":
        value = _array(arrays, key)
        if name != "loss_history_":  # informative only; every array used in scoring is finite
            _check_finite(name, value)
        return value
    if kind == "index":
        return _decode_index(name, spec, _array(arrays, key))
    if kind == "sparse":
        return _decode_sparse(name, spec, arrays, key)
    raise _Bad(f"attribute {name!r} has unknown kind {kind!r}")


# ---------------------------------------------------------------------------- fitted state
def _need(state: dict, name: str):
    if name not in state or state[name] is None:
        raise _Bad(f"attribute {name!r} is missing")
    return state[name]


def _float_scalar(state: dict, name: str) -> float:
    value = _need(state, name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise _Bad(f"attribute {name!r} is not a number")
    if not math.isfinite(float(value)):
        raise _Bad(f"attribute {name!r} is {float(value)}")
    return float(value)


def _int_scalar(state: dict, name: str, low: int = 0) -> int:
    value = _need(state, name)
    if not _is_int(value) or value < low:
        raise _Bad(f"attribute {name!r} must be an int >= {low}; got {value!r}")
    return int(value)


def _dense(state: dict, name: str, shape: tuple, dtype=None, kinds: str = "f", required: bool = True):
    if not required and state.get(name) is None:
        return None
    value = _need(state, name)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds:
        raise _Bad(f"attribute {name!r} is not an array of the expected kind")
    if value.shape != shape:
        raise _Bad(f"attribute {name!r} has shape {value.shape}; the model needs {shape}")
    if dtype is not None and value.dtype != dtype:
        raise _Bad(f"attribute {name!r} has dtype {value.dtype}, not the model's dtype {np.dtype(dtype).name}")
    _check_finite(name, value)
    return value


def _sparse(state: dict, name: str, shape: tuple, required: bool = True):
    if not required and state.get(name) is None:
        return None
    value = _need(state, name)
    if not sp.issparse(value) or value.format != "csr":
        raise _Bad(f"attribute {name!r} is not a CSR sparse matrix")
    if value.shape != shape:
        raise _Bad(f"attribute {name!r} has shape {value.shape}; the model needs {shape}")
    return value


def _check_common(state: dict) -> tuple[int, int]:
    users, items = _need(state, "users_"), _need(state, "items_")
    if not isinstance(users, pd.Index) or not isinstance(items, pd.Index):
        raise _Bad("its user or item labels are not label lists")
    if not isinstance(_need(state, "columns_"), Columns):
        raise _Bad("attribute 'columns_' is missing or malformed")
    _float_scalar(state, "rating_mean_")
    n_users, n_items = len(users), len(items)
    if "_seen" not in state:
        raise _Bad("it does not hold a fitted model (the training matrix _seen is missing)")
    _sparse(state, "_seen", (n_users, n_items))
    return n_users, n_items


def _check_history(state: dict) -> None:
    n_iter = _int_scalar(state, "n_iter_")
    history = _need(state, "loss_history_")
    if not isinstance(history, np.ndarray) or history.ndim != 1 or history.dtype.kind != "f" or len(history) != n_iter:
        raise _Bad(f"attribute 'loss_history_' is not a float array of n_iter_ = {n_iter} values")


def _check_bound(name: str, bound: float, dtype) -> None:
    """Scores are sums of at most ``bound`` in magnitude: they must not overflow ``dtype``."""
    if not bound < float(np.finfo(dtype).max) / 4:
        raise _Bad(f"its {name} are too large to score without overflow in {np.dtype(dtype).name} (bound {bound:.3g})")


def _row_norm_max(F: np.ndarray) -> float:
    if F.size == 0:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(np.einsum("ij,ij->i", F, F, dtype=np.float64)).max())


def _check_matrix_factorization(model, state: dict) -> None:
    """The ALS family: user and item factors (and biases) of the model's size and dtype."""
    n_users, n_items = _check_common(state)
    dt, k = np.dtype(model.dtype), int(model.factors)
    U = _dense(state, "user_factors_", (n_users, k), dt)
    V = _dense(state, "item_factors_", (n_items, k), dt)
    _check_history(state)
    bound = _row_norm_max(U) * _row_norm_max(V)
    if getattr(model, "biases", False):
        bound += abs(_float_scalar(state, "global_mean_"))
        for name, n in (("user_bias_", n_users), ("item_bias_", n_items)):
            b = _dense(state, name, (n,), dt)
            bound += float(np.abs(b).max(initial=0.0))
    _check_bound("factors", bound, dt)
    W = _sparse(state, "social_weights_", (n_users, n_users), required=False)
    if W is not None and W.nnz and W.data.min() < 0:
        raise _Bad("attribute 'social_weights_' has negative weights")


def _check_factorization_machine(model, state: dict) -> None:
    """The factorization machine fitted on DataFrames: parameters and design layout."""
    n_users, n_items = _check_common(state)
    dt, k = np.dtype(model.dtype), int(model.factors)
    p = _int_scalar(state, "n_features_in_", 1)
    _float_scalar(state, "w0_")
    _dense(state, "w_", (p,), dt)
    _dense(state, "V_", (p, k), dt)
    _check_history(state)
    meta = _need(state, "_entity_meta")
    keys = ("n_users", "n_items", "u_start", "i_start")
    if not isinstance(meta, dict) or sorted(meta) != sorted(keys) or not all(_is_int(meta[key]) for key in keys):
        raise _Bad("attribute '_entity_meta' is malformed")
    if (meta["n_users"], meta["n_items"], meta["u_start"]) != (n_users, n_items, n_users + n_items):
        raise _Bad("the factorization machine's feature layout does not match its user and item labels")
    ZU = _sparse(state, "_entity_ZU", (n_users, _cols(state, "_entity_ZU")), required=False)
    ZI = _sparse(state, "_entity_ZI", (n_items, _cols(state, "_entity_ZI")), required=False)
    m_u = 0 if ZU is None else ZU.shape[1]
    m_i = 0 if ZI is None else ZI.shape[1]
    if meta["i_start"] != meta["u_start"] + m_u or meta["i_start"] + m_i != p:
        raise _Bad(f"the factorization machine's feature layout does not add up to its {p} features")
    blocks = state.get("feature_blocks_")
    if blocks is not None:
        if not isinstance(blocks, dict) or not all(
            isinstance(b, list) and len(b) == 2 and all(_is_int(x) for x in b) and 0 <= b[0] <= b[1] <= p
            for b in blocks.values()
        ):
            raise _Bad("attribute 'feature_blocks_' is malformed")
    groups = state.get("groups_")
    if groups is not None:
        _dense(state, "groups_", (p,), kinds="iu")
    if getattr(model, "loss", "squared") != "squared":
        _dense(state, "classes_", (2,), kinds="iu")


def _cols(state: dict, name: str) -> int:
    value = state.get(name)
    return value.shape[1] if sp.issparse(value) and value.ndim == 2 else -1


def _check_scoring_parts(model) -> None:
    """After ``_after_load``: the factorization machine's cached scoring parts are usable."""
    parts = getattr(model, "_parts", None)
    if parts is None:
        return
    a, PU, b, PI = (np.asarray(x, dtype=np.float64) for x in parts)
    if not all(np.isfinite(x).all() for x in (a, PU, b, PI)):
        raise _Bad("its factorization machine parameters overflow when combined (non-finite scores)")
    bound = abs(float(model.w0_)) + float(np.abs(a).max(initial=0.0)) + float(np.abs(b).max(initial=0.0))
    _check_bound("parameters", bound + _row_norm_max(PU) * _row_norm_max(PI), np.float64)


def _check_popularity(model, state: dict) -> None:
    """The popularity baseline: a count and a mean rating per item."""
    _, n_items = _check_common(state)
    counts = _dense(state, "item_counts_", (n_items,), kinds="iu")
    if counts.size and counts.min() < 0:
        raise _Bad("attribute 'item_counts_' has negative counts")
    _dense(state, "item_means_", (n_items,), kinds="f")


# What each model family's fitted state must look like (checked by save and load). A
# class is checked by the first entry found along its MRO, so subclasses inherit it.
_STATE_CHECKS = {
    "ALS": _check_matrix_factorization,
    "RegularizedALS": _check_matrix_factorization,
    "SocialALS": _check_matrix_factorization,
    "FactorizationMachine": _check_factorization_machine,
    "Popularity": _check_popularity,
}


def _state_check(cls):
    for klass in cls.__mro__:
        check = _STATE_CHECKS.get(klass.__name__)
        if check is not None and klass.__module__.startswith("socialals"):
            return check
    return None


def _check_state(model, state: dict) -> None:
    check = _state_check(type(model))
    if check is None:
        raise _Bad(f"socialals cannot check the fitted state of a {type(model).__name__}")
    with np.errstate(all="ignore"):
        check(model, state)


def load_model(path: PathLike, expected=None):
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or path-like
        The model file.
    expected : type, optional
        Require the loaded model to be an instance of this class.

    Returns
    -------
    BaseRecommender
        The fitted model; ``predict`` and ``recommend`` give the same results as the
        model that was saved.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid socialals model file, has another format version,
        names a class outside the allow-list, or (with ``expected``) holds another class.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(f"Model file {str(path)!r} does not exist.")
    if path.is_dir():
        raise ValueError(f"Cannot load a model from {str(path)!r}: it is a directory, not a model file.")
    try:
        model, cls_name = _load_checked(path)
    except _Bad as exc:
        raise ValueError(f"Cannot load a socialals model from {str(path)!r}: {exc}.") from None
    if expected is not None and not isinstance(model, expected):
        raise ValueError(
            f"{str(path)!r} holds a {cls_name} model, not a {expected.__name__}; "
            "load it with socialals.load() instead."
        )
    return model


# Unexpected content that slips past the explicit checks still ends as one ValueError.
_DECODE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError,
                  RecursionError, FloatingPointError, ZeroDivisionError)


def _load_checked(path: Path):
    arrays = _read_archive(path)
    meta = _read_meta(arrays)
    classes = model_classes()
    cls_name = meta["class"]
    if cls_name not in classes:
        raise _Bad(
            f"it holds a model of class {cls_name!r}, which is not one of the loadable "
            f"socialals classes {sorted(classes)}"
        )
    cls = classes[cls_name]
    try:
        model = cls(**meta["params"])
    except TypeError as exc:
        raise _Bad(f"its parameters do not fit {cls_name} ({exc})") from exc
    try:
        model._check_params()
    except (TypeError, ValueError) as exc:
        raise _Bad(f"its parameters are invalid: {exc}") from exc
    private = set(_ALWAYS_PRIVATE) | set(getattr(cls, "_saved_private_attributes", ()))
    for name in meta["attributes"]:
        public = name.endswith("_") and not name.startswith("_") and name.isidentifier()
        if not (public or name in private):
            raise _Bad(f"it names an attribute {name!r} that is not a learned attribute of {cls_name}")
    try:
        restored = {name: _decode(name, spec, arrays) for name, spec in meta["attributes"].items()}
        if "users_" not in restored or "_seen" not in restored:
            raise _Bad("it does not hold a fitted model (users_ or _seen is missing)")
        _check_state(model, restored)
        for name, value in restored.items():
            setattr(model, name, value)
        after_load = getattr(model, "_after_load", None)
        if callable(after_load):  # rebuild derived caches (e.g. the FM's scoring parts)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                after_load()
        _check_scoring_parts(model)
    except _DECODE_ERRORS as exc:
        raise _Bad(f"its content is inconsistent ({type(exc).__name__}: {exc})") from exc
    return model, cls_name


def load(path: PathLike):
    """Load a fitted socialals model saved with ``model.save(path)``.

    The file is read with ``allow_pickle=False`` and the model class is looked up in an
    allow-list of socialals classes, so loading never executes code from the file.

    Parameters
    ----------
    path : str or path-like
        A file written by :meth:`socialals.BaseRecommender.save`.

    Returns
    -------
    BaseRecommender
        The fitted model, predicting and recommending exactly as the saved one did.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a socialals model file (foreign, truncated or corrupted),
        has an unsupported format version or names an unknown class.

    Examples
    --------
    >>> import socialals
    >>> model.save("model.npz")  # doctest: +SKIP
    >>> socialals.load("model.npz").recommend(42, n=5)  # doctest: +SKIP
    """
    return load_model(path)
