"""Reading rating and social files: delimited text files and data-set names.

:func:`read_table` reads one delimited text file (CSV, TSV, semicolon- or
space-separated, with or without a header line) into a DataFrame with the columns the
library expects, and reports malformed input by file, line and column.
:func:`load_data` turns a ``--data`` specification of the command line (a data-set
name, a folder, or a ratings file with an optional social file) into the ``(ratings,
social)`` frames the models take, with duplicates and self-loops repaired once, as the
loaders of :mod:`socialals.datasets` do.

Header lines
------------
A first line that names the columns (``user,item,rating``, in any case and order) is a
header. A first line whose value is not a number in a column where the second line has
one (``uid,iid,stars`` above ``1,2,4``) is an unrecognised header: :class:`InputError`
says so instead of reading it as data. Without a header the first columns are taken in
order.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ._defaults import DEFAULTS
from .data import clean_social, merge_duplicate_ratings

__all__ = ["DATASETS", "InputError", "load_data", "read_ratings", "read_social", "read_table"]

PathLike = Union[str, "os.PathLike[str]"]

#: Named data sets accepted by :func:`load_data` (besides paths).
DATASETS = ("synthetic", "filmtrust", "ciao", "epinions", "movielens-100k", "movielens-1m")

#: Columns that must hold numbers, by name.
_NUMERIC = ("rating", "weight")
_DELIMITERS = ("\t", ",", ";", "|")
_SNIFF_LINES = 50


class InputError(ValueError):
    """A data file or data specification is malformed; the message names the file, line and column."""


def _data_lines(path: Path, limit: int) -> List[Tuple[int, str]]:
    """The first ``limit`` non-blank lines as ``(line number, text)``."""
    out = []
    try:
        with open(path, encoding="utf-8", errors="strict", newline="") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.rstrip("\r\n")
                if text.strip():
                    out.append((number, text))
                    if len(out) >= limit:
                        break
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start}).") from None
    return out


def _split(text: str, sep: Optional[str]) -> List[str]:
    fields = text.split() if sep is None else next(csv.reader([text], delimiter=sep))
    return [f.strip() for f in fields]


def _detect_delimiter(path: Path, lines: List[Tuple[int, str]], n_required: int) -> Optional[str]:
    """The delimiter every sampled line holds equally often (tab, comma, semicolon, pipe), else None for whitespace."""
    for sep in _DELIMITERS:
        counts = {len(_split(text, sep)) for _, text in lines}
        if len(counts) == 1 and counts.pop() >= 2:
            return sep
    # Whitespace-separated, or a delimiter used unevenly: choose by the first line.
    first = lines[0][1]
    for sep in _DELIMITERS:
        if len(_split(first, sep)) >= n_required:
            return sep
    if len(first.split()) >= 2:
        return None
    raise InputError(
        f"{path}, line {lines[0][0]}: found one field ({first.strip()[:40]!r}); expected {n_required} columns "
        "separated by commas, tabs, semicolons or spaces."
    )


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_table(
    path: PathLike,
    required: Sequence[str],
    optional: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited text file whose columns are ``required`` (then ``optional``).

    The delimiter is detected (tab, comma, semicolon, pipe, or runs of whitespace), and
    so is a header line (see the module notes). With a header the columns are taken by
    name (case-insensitive); without one, the first columns in order. Label columns
    (``user``, ``item``, ``friend``) become int64 when every value is an integer and stay
    strings otherwise; ``rating`` and ``weight`` must be numbers.

    Parameters
    ----------
    path : str or path-like
    required, optional : sequence of str
        Column names to return.

    Returns
    -------
    DataFrame
        The required columns and the optional ones present, index ``0..n-1``.

    Raises
    ------
    InputError
        A missing or empty file, an unrecognised header, a row with too few fields, an
        empty or non-numeric value: the message names the file, the line and the column.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "r.txt"
    >>> _ = path.write_text("user;item;rating\\n1;10;4.5\\n2;10;3\\n")
    >>> read_table(path, ("user", "item", "rating"))
       user  item  rating
    0     1    10     4.5
    1     2    10     3.0
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file.")
    if not path.is_file():
        raise InputError(f"{path}: not a file.")
    required, optional = list(required), list(optional)
    names = required + optional
    lines = _data_lines(path, _SNIFF_LINES)
    if not lines:
        raise InputError(f"{path}: the file is empty; expected the columns {', '.join(required)}.")
    sep = _detect_delimiter(path, lines, len(required))
    first_no, first = lines[0]
    tokens = [t.strip("\"'").strip() for t in _split(first, sep)]
    lowered = [t.lower() for t in tokens]

    header = any(name in lowered for name in names)
    if not header:
        # A header we do not recognise: text where the data below hold numbers.
        numeric_cols = [i for i, n in enumerate(names[: len(tokens)]) if n in _NUMERIC]
        below = [_split(text, sep) for _, text in lines[1:3]]
        suspicious = any(not _is_number(tokens[i]) for i in numeric_cols) or any(
            i < len(tokens) and not _is_number(tokens[i]) and all(i < len(r) and _is_number(r[i]) for r in below)
            for i in range(len(tokens))
            if below
        )
        if suspicious:
            raise InputError(
                f"{path}, line {first_no}: looks like a header ({', '.join(tokens)}) but names none of the "
                f"expected columns {', '.join(required)}"
                + (f" (optionally {', '.join(optional)})" if optional else "")
                + "; rename the columns, or delete the line to read the first columns in order."
            )
    if header:
        missing = [c for c in required if c not in lowered]
        if missing:
            raise InputError(
                f"{path}, line {first_no}: the header names the columns {', '.join(tokens)}; "
                f"missing {', '.join(missing)} (expected {', '.join(required)}"
                + (f", optionally {', '.join(optional)}" if optional else "")
                + ")."
            )
        positions = {c: lowered.index(c) for c in names if c in lowered}
    else:
        n_fields = len(tokens)
        if n_fields < len(required):
            raise InputError(
                f"{path}, line {first_no}: {n_fields} field(s) and no header; expected the columns "
                f"{', '.join(required)}" + (f" (optionally {', '.join(optional)})" if optional else "") + "."
            )
        positions = {c: i for i, c in enumerate(names[:n_fields])}

    n_cols = max(max(positions.values()) + 1, len(tokens))
    try:
        raw = pd.read_csv(
            path,
            sep=r"\s+" if sep is None else sep,
            header=None,
            skiprows=first_no if header else first_no - 1,
            usecols=sorted(set(positions.values())),
            names=list(range(n_cols)),
            dtype=str,
            skip_blank_lines=False,
            keep_default_na=False,
            engine="python" if sep is None else "c",
            index_col=False,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: could not parse the file: {exc}") from None
    # Line numbers of the rows (blank lines were kept so that the index maps to lines).
    offset = first_no + 1 if header else first_no
    raw.index = np.arange(offset, offset + len(raw))
    raw = raw.fillna("")
    blank = (raw == "").all(axis=1)
    raw = raw.loc[~blank]
    if raw.empty:
        raise InputError(f"{path}: no data rows after the header line {first_no}.")

    out = {}
    for name, position in positions.items():
        values = raw[position].str.strip().str.strip("\"'")
        column = f"column {position + 1} ({name!r})"
        empty = values == ""
        if empty.any() and name in required:
            line = int(values.index[np.argmax(empty.to_numpy())])
            few = len(_split(_line_text(path, line), sep))
            detail = f"only {few} field(s)" if few <= position else f"{column} is empty"
            raise InputError(f"{path}, line {line}: {detail}; every row needs {', '.join(required)}.")
        if name in _NUMERIC:
            numbers = pd.to_numeric(values.where(~empty), errors="coerce")
            bad = numbers.isna() & ~empty
            if bad.any():
                line = int(values.index[np.argmax(bad.to_numpy())])
                raise InputError(
                    f"{path}, line {line}, {column}: {values[line]!r} is not a number "
                    f"({int(bad.sum()):,} such row(s))."
                )
            finite = np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=0.0))
            if not finite.all():
                line = int(values.index[np.argmin(finite)])
                raise InputError(f"{path}, line {line}, {column}: {values[line]!r} is not a finite number.")
            if name == "weight":
                numbers = numbers.fillna(1.0)
                negative = numbers < 0
                if negative.any():
                    line = int(values.index[np.argmax(negative.to_numpy())])
                    raise InputError(f"{path}, line {line}, {column}: weights must be >= 0; got {values[line]}.")
            out[name] = numbers.to_numpy(dtype=np.float64)
        else:
            out[name] = _labels(values)
    frame = pd.DataFrame(out, columns=[c for c in names if c in out])
    return frame.reset_index(drop=True)


def _line_text(path: Path, number: int) -> str:
    with open(path, encoding="utf-8", newline="") as handle:
        for i, line in enumerate(handle, start=1):
            if i == number:
                return line.rstrip("\r\n")
    return ""


def _labels(values: pd.Series) -> np.ndarray:
    """int64 when every label is an integer, else the strings."""
    if values.str.fullmatch(r"[+-]?\d{1,18}").all():
        return values.astype(np.int64).to_numpy()
    return values.to_numpy(dtype=object)


def read_ratings(path: PathLike) -> pd.DataFrame:
    """Read a ratings file (``user``, ``item``, ``rating``) and merge repeated pairs.

    :func:`read_table`, then :func:`socialals.data.merge_duplicate_ratings` (a
    :class:`~socialals.exceptions.DataWarning` names the file and counts the merges),
    so that a repeated pair cannot land in two cross-validation folds.
    """
    frame = read_table(path, ("user", "item", "rating"))
    return merge_duplicate_ratings(frame, source=Path(path).name)


def read_social(path: PathLike) -> pd.DataFrame:
    """Read a social file (``user``, ``friend``, optional ``weight``); drop self-loops and repeats.

    :func:`read_table`, then :func:`socialals.data.clean_social` (one warning naming
    the file and counting what was dropped).
    """
    frame = read_table(path, ("user", "friend"), ("weight",))
    return clean_social(frame, source=Path(path).name)


def _folder_layout(folder: Path) -> Optional[Tuple[str, Path]]:
    """``("filmtrust" | "tang", subfolder)`` for a folder in a known layout, else None."""
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
    for layout, files in (("filmtrust", ("ratings.txt", "trust.txt")), ("tang", ("rating.mat", "trustnetwork.mat"))):
        for candidate in candidates:
            if all((candidate / name).is_file() for name in files):
                return layout, candidate
    return None


_LABELS = {"filmtrust": "FilmTrust", "ciao": "Ciao", "epinions": "Epinions"}


def load_data(
    spec: str,
    social: Optional[PathLike] = None,
    data_home: Optional[PathLike] = None,
    *,
    n_users: Optional[int] = None,
    n_items: Optional[int] = None,
    explain: bool = False,
):
    """Ratings and social frames for a data specification (the command line's ``--data``).

    Parameters
    ----------
    spec : str
        ``synthetic`` (:func:`~socialals.make_social_ratings` with ``random_state=0``);
        a folder in FilmTrust layout (``ratings.txt``, ``trust.txt``) or Tang's layout
        (``rating.mat``, ``trustnetwork.mat``, as Ciao and Epinions), also when the
        folder is called like a data set (``epinions`` beside a folder ``epinions/``
        reads the folder); a named data set of :data:`DATASETS` (downloaded once into
        ``data_home``); or a delimited ratings file (see :func:`read_table`).
    social : str or path-like, optional
        Social file (``user, friend[, weight]``) for a ratings file.
    data_home : str or path-like, optional
        Download cache for named data sets (default ``$SOCIALALS_DATA`` or
        ``~/socialals_data``).
    n_users, n_items : int, optional
        Size of the synthetic data.
    explain : bool, default False
        Also return why ``key`` was chosen.

    Returns
    -------
    ratings : DataFrame
    social : DataFrame or None
    key : str
        The data set name whose tuned defaults apply (:mod:`socialals._defaults`), or
        ``"generic"``. Local files are recognised by their content
        (:func:`socialals.datasets.identify_files`): a copy of FilmTrust or Ciao in a
        folder of any name, or as a ratings file with ``social``, gets that data set's
        settings; a folder called like a data set gets that data set's settings too.
    reason : str
        Only with ``explain=True``: how ``key`` was chosen, e.g. ``"recognised by
        content: ratings.txt sha256 241167424e24..., trust.txt sha256 64573a033add..."`` or
        ``"data not recognised"``.

    Raises
    ------
    InputError
        An unknown name, a missing path, a folder in no known layout, a malformed file.

    Examples
    --------
    >>> ratings, social, key = load_data("synthetic", n_users=50, n_items=20)
    >>> key, list(social.columns)
    ('synthetic', ['user', 'friend', 'weight'])
    >>> load_data("synthetic", n_users=50, n_items=20, explain=True)[3]
    'the built-in synthetic data'
    """
    loaded = _load_data(spec, social, data_home, n_users, n_items)
    return loaded if explain else loaded[:3]


_NOT_RECOGNISED = "data not recognised"


def _by_content(found, fallback: str, why_fallback: str) -> Tuple[str, str]:
    """(key, reason) from :func:`~socialals.datasets.identify_files`'s answer."""
    if found is not None and found.name in DEFAULTS:
        return found.name, f"recognised by content: {found.describe()}"
    return fallback, why_fallback


def _load_data(spec, social, data_home, n_users, n_items):
    from . import datasets

    path = Path(spec).expanduser()
    if social is not None and (path.is_dir() or (spec in DATASETS and not path.is_file())):
        raise InputError("--social applies only when --data is a ratings file (CSV/TSV).")
    if spec == "synthetic" and not path.exists():
        sizes = {k: v for k, v in (("n_users", n_users), ("n_items", n_items)) if v is not None}
        ratings, graph = datasets.make_social_ratings(random_state=0, **sizes)
        return ratings, graph, "synthetic", "the built-in synthetic data"
    if path.is_dir():
        layout = _folder_layout(path)
        if layout is None:
            raise InputError(
                f"folder {spec!r} holds neither FilmTrust files (ratings.txt, trust.txt) nor "
                "Ciao/Epinions files (rating.mat, trustnetwork.mat)."
            )
        kind, folder = layout
        name = path.resolve().name
        label = _LABELS.get(name.lower(), name)
        if kind == "filmtrust":
            files = (folder / "ratings.txt", folder / "trust.txt")
            ratings, graph = datasets._read_filmtrust(folder, label)
        else:
            files = (folder / "rating.mat", folder / "trustnetwork.mat")
            ratings, graph = datasets._read_tang(folder, label)
        # A data-set name that is also a folder here reads the folder, with that data set's defaults.
        named = spec in DATASETS and spec in DEFAULTS
        fallback = (spec, f"the folder is called {spec!r}; its files are not the published ones") if named \
            else ("generic", _NOT_RECOGNISED)
        return (ratings, graph, *_by_content(datasets.identify_files(*files), *fallback))
    loaders = {
        "filmtrust": datasets.load_filmtrust,
        "ciao": datasets.load_ciao,
        "epinions": datasets.load_epinions,
        "movielens-100k": datasets.load_movielens_100k,
        "movielens-1m": datasets.load_movielens_1m,
    }
    if spec in loaders and not path.is_file():
        ratings, graph = loaders[spec](data_home=data_home)
        if spec in DEFAULTS:
            return ratings, graph, spec, f"the named data set {spec!r}"
        return ratings, graph, "generic", f"no tuned settings for {spec}"
    if path.is_file():
        ratings = read_ratings(path)
        graph = read_social(social) if social is not None else None
        return (ratings, graph, *_by_content(datasets.identify_files(path, social), "generic", _NOT_RECOGNISED))
    raise InputError(
        f"--data {spec!r} is neither a known data set ({', '.join(DATASETS)}) nor an existing file or folder."
    )
