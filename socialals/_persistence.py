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

Loading looks the class name up in an allow-list of socialals model classes (no name
is ever imported from the file), rebuilds the model from its parameters and restores
the attributes. Anything unexpected — not a zip archive, a truncated or corrupted
file, missing or malformed metadata, another format or a newer format version, an
unknown class — raises :class:`ValueError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

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

    The factorization machine is included when :mod:`socialals.fm` is importable.
    """
    from .als import ALS, RegularizedALS, SocialALS
    from .baselines import Popularity

    classes = {cls.__name__: cls for cls in (ALS, RegularizedALS, SocialALS, Popularity)}
    try:
        from .fm import FactorizationMachine
    except ImportError:
        pass
    else:
        classes[FactorizationMachine.__name__] = FactorizationMachine
    return classes


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
    arrays: dict = {}
    attributes = {name: _encode(name, value, arrays) for name, value in _saved_attributes(model).items()}
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
    # Write next to the target, then rename: a crash never leaves a half-written model.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "xb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return path


# ---------------------------------------------------------------------------- loading
class _Bad(Exception):
    """Internal: the file is not a valid model file (message says why)."""


def _read_archive(path: Path) -> dict:
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise _Bad("it is a single .npy array, not an .npz archive")
        with archive:
            return {name: archive[name] for name in archive.files}
    except _Bad:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        # Pickled (object) arrays, truncated or corrupted members, non-zip files.
        raise _Bad(f"it could not be read as a NumPy .npz archive ({type(exc).__name__}: {exc})") from exc


def _read_meta(arrays: dict) -> dict:
    if _META_KEY not in arrays:
        raise _Bad(f"it has no {_META_KEY!r} entry, so it is not a socialals model file")
    raw = arrays[_META_KEY]
    if raw.shape != () or raw.dtype.kind != "U":
        raise _Bad(f"its {_META_KEY!r} entry is not a JSON string")
    try:
        meta = json.loads(str(raw[()]))
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


def _decode(name: str, spec: Any, arrays: dict):
    if not isinstance(spec, dict) or "kind" not in spec:
        raise _Bad(f"the metadata of attribute {name!r} is malformed")
    kind = spec["kind"]
    key = _PREFIX + name
    if kind == "none":
        return None
    if kind in ("scalar", "json"):
        return spec.get("value")
    if kind == "columns":
        try:
            return Columns(**spec["value"])
        except (TypeError, KeyError) as exc:
            raise _Bad(f"the column names of {name!r} are malformed ({exc})") from exc
    if kind == "npscalar":
        return _array(arrays, key)[()]
    if kind == "array":
        return _array(arrays, key)
    if kind == "index":
        labels = _array(arrays, key)
        if spec.get("labels") == "str":
            labels = labels.astype(object)
        try:
            return pd.Index(labels, dtype=spec.get("dtype"), name=spec.get("name"))
        except (TypeError, ValueError):
            return pd.Index(labels, name=spec.get("name"))
    if kind == "sparse":
        parts = [_array(arrays, f"{key}/{part}") for part in _SPARSE_PARTS]
        try:
            shape = tuple(int(n) for n in spec["shape"])
            build = sp.csr_array if spec.get("container") == "array" else sp.csr_matrix
            matrix = build(tuple(parts), shape=shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise _Bad(f"the sparse matrix {name!r} is malformed ({exc})") from exc
        if spec.get("has_sorted_indices"):
            matrix.has_sorted_indices = True
        return matrix
    raise _Bad(f"attribute {name!r} has unknown kind {kind!r}")


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
        private = set(_ALWAYS_PRIVATE) | set(getattr(cls, "_saved_private_attributes", ()))
        for name in meta["attributes"]:
            public = name.endswith("_") and not name.startswith("_") and name.isidentifier()
            if not (public or name in private):
                raise _Bad(f"it names an attribute {name!r} that is not a learned attribute of {cls_name}")
        restored = {name: _decode(name, spec, arrays) for name, spec in meta["attributes"].items()}
        if "users_" not in restored or "_seen" not in restored:
            raise _Bad("it does not hold a fitted model (users_ or _seen is missing)")
        seen, users, items = restored["_seen"], restored["users_"], restored.get("items_")
        if not sp.issparse(seen) or items is None or seen.shape != (len(users), len(items)):
            raise _Bad("its training matrix does not match its user and item labels")
    except _Bad as exc:
        raise ValueError(f"Cannot load a socialals model from {str(path)!r}: {exc}.") from None
    if expected is not None and not isinstance(model, expected):
        raise ValueError(
            f"{str(path)!r} holds a {cls_name} model, not a {expected.__name__}; "
            "load it with socialals.load() instead."
        )
    for name, value in restored.items():
        setattr(model, name, value)
    after_load = getattr(model, "_after_load", None)
    if callable(after_load):  # rebuild derived caches (e.g. the FM's scoring parts)
        after_load()
    return model


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
