"""Real and synthetic rating data with a social (trust) graph.

Every loader returns ``(ratings, social)``:

``ratings``
    :class:`pandas.DataFrame` with columns ``user`` (int64), ``item`` (int64) and
    ``rating`` (float64), one row per (user, item) pair.
``social``
    :class:`pandas.DataFrame` with columns ``user`` (int64), ``friend`` (int64) and
    ``weight`` (float64), one row per directed edge "``user`` trusts ``friend``";
    ``None`` for data sets without a social graph (MovieLens).

Repair policy (the same for every loader)
-----------------------------------------
Raw files are repaired in this order, and every repair that changes something is
reported by one :class:`~socialals.exceptions.DataWarning` whose message counts it:

1. ratings outside the data set's documented scale (for example Ciao's 0 ratings on
   a 1-5 scale) are **dropped**;
2. (user, item) pairs that occur more than once are **averaged** into one row (the
   mean may fall between the scale's steps, e.g. 3.25 on FilmTrust's half-star grid);
3. trust self-loops are **dropped**;
4. repeated trust edges are **dropped** (the first one is kept).

Users who appear only in the trust graph (they have no rating) are **kept**: social
models can still place them through their friends. Ids are kept as they are in the
files (they are not contiguous); nothing is re-indexed.

Downloads
---------
With ``path=None`` a loader downloads the official archive into the cache directory
given by :func:`get_data_home` (``$SOCIALALS_DATA`` if set, else ``~/socialals_data``),
checks it (size, SHA-256, zip CRCs), extracts it and reads it; later calls read the
cache without any network access. See :func:`fetch` for the checksum policy.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.io

from ._validation import check_random_state, invalid
from .exceptions import DataWarning

__all__ = [
    "ChecksumError",
    "DownloadError",
    "REGISTRY",
    "RemoteArchive",
    "fetch",
    "get_data_home",
    "load_ciao",
    "load_epinions",
    "load_filmtrust",
    "load_movielens_100k",
    "load_movielens_1m",
    "make_social_ratings",
]

PathLike = Union[str, "os.PathLike[str]"]

_RATING_COLUMNS = ("user", "item", "rating")
_SOCIAL_COLUMNS = ("user", "friend", "weight")
_CHUNK_BYTES = 1 << 16
_EXTRACTED_MARKER = ".socialals-extracted"


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class DownloadError(OSError):
    """A download failed: HTTP or network error, truncated transfer or corrupt archive.

    The partial file has been deleted when this is raised; nothing was loaded.
    """


class ChecksumError(DownloadError, ValueError):
    """A downloaded file's SHA-256 or size differs from the expected one.

    The file has been deleted when this is raised; nothing was loaded.
    """


# ---------------------------------------------------------------------------
# Registry of official archives
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteArchive:
    """Where a data set's official archive lives and how to check it.

    Parameters
    ----------
    url : str
        Official download address.
    filename : str
        Name of the archive in the cache directory.
    sha256 : str or None
        Known SHA-256 of the archive (lower-case hex), or ``None`` when no trusted
        value is known; then the hash of the first download is recorded and later
        loads are checked against that record (trust on first use).
    size : int or None
        Known size in bytes, checked together with ``sha256``.

    Examples
    --------
    >>> from socialals.datasets import REGISTRY
    >>> REGISTRY["movielens-100k"].filename
    'ml-100k.zip'
    """

    url: str
    filename: str
    sha256: Optional[str] = None
    size: Optional[int] = None


#: Official archives by data set name. The MovieLens hashes and sizes are the values
#: published in TensorFlow Datasets' checksum list for these exact URLs; no trusted
#: SHA-256 is published for FilmTrust, Ciao or Epinions, so those are ``None``
#: (trust on first use, see :func:`fetch`). Tests and mirrors may monkeypatch entries.
REGISTRY = {
    "filmtrust": RemoteArchive(
        url="https://guoguibing.github.io/librec/datasets/filmtrust.zip",
        filename="filmtrust.zip",
    ),
    "ciao": RemoteArchive(
        url="https://www.cse.msu.edu/~tangjili/datasetcode/ciao.zip",
        filename="ciao.zip",
    ),
    "epinions": RemoteArchive(
        url="https://www.cse.msu.edu/~tangjili/datasetcode/epinions.zip",
        filename="epinions.zip",
    ),
    "movielens-100k": RemoteArchive(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        filename="ml-100k.zip",
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        size=4924029,
    ),
    "movielens-1m": RemoteArchive(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        filename="ml-1m.zip",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        size=5917549,
    ),
}


# ---------------------------------------------------------------------------
# Cache directory and downloader
# ---------------------------------------------------------------------------


def get_data_home(data_home: Optional[PathLike] = None) -> Path:
    """Return (and create) the directory where downloaded data sets are cached.

    Parameters
    ----------
    data_home : str or path-like, optional
        Explicit directory. When omitted, ``$SOCIALALS_DATA`` is used if set, else
        ``~/socialals_data``.

    Returns
    -------
    pathlib.Path
        The absolute cache directory; it exists when this returns.

    Examples
    --------
    >>> import os, tempfile
    >>> from socialals.datasets import get_data_home
    >>> get_data_home(tempfile.gettempdir()).is_dir()
    True
    """
    if data_home is None:
        data_home = os.environ.get("SOCIALALS_DATA") or os.path.join("~", "socialals_data")
    home = Path(data_home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _read_record(record: Path) -> Optional[str]:
    if not record.is_file():
        return None
    text = record.read_text(encoding="ascii", errors="replace").split()
    return text[0].lower() if text else None


def _write_record(record: Path, digest: str, url: str) -> None:
    record.write_text(f"{digest}  {url}\n", encoding="ascii")


def _zip_problem(path: Path) -> Optional[str]:
    """Describe why ``path`` is not an intact zip archive, or return None if it is."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        return f"it is not a readable zip archive ({exc})"
    if bad_member is not None:
        return f"member {bad_member!r} fails its CRC check"
    return None


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class _TextProgress:
    """Plain one-line progress on a stream, used when tqdm is not installed."""

    def __init__(self, total: Optional[int], desc: str, stream, min_interval: float = 0.2):
        self.total = total
        self.desc = desc
        self.stream = stream
        self.done = 0
        self.min_interval = min_interval
        self._last = 0.0

    def _render(self) -> None:
        mib = self.done / 2**20
        if self.total:
            share = 100 * self.done / self.total
            line = f"\r{self.desc}: {mib:.1f}/{self.total / 2**20:.1f} MiB ({share:3.0f}%)"
        else:
            line = f"\r{self.desc}: {mib:.1f} MiB"
        self.stream.write(line)
        self.stream.flush()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.min_interval:
            self._last = now
            self._render()

    def close(self) -> None:
        self._render()
        self.stream.write("\n")
        self.stream.flush()


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def _progress_bar(total: Optional[int], desc: str, enabled: bool) -> Iterator:
    if not enabled:
        bar = _NoProgress()
    else:
        try:
            from tqdm import tqdm
        except ImportError:
            bar = _TextProgress(total, desc, sys.stderr)
        else:
            bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024)
    try:
        yield bar
    finally:
        bar.close()


def _filename_from_url(url: str) -> str:
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ValueError(f"Cannot derive a file name from the URL {url!r}; pass filename=.")
    return name


def _download(
    url: str,
    target: Path,
    expected_sha256: Optional[str],
    expected_size: Optional[int],
    *,
    progress: bool,
    timeout: float,
    hash_origin: str,
) -> str:
    """Stream ``url`` to ``target`` through a ``.part`` file; return the SHA-256."""
    # A unique temporary name, so that two processes filling one cache cannot mix bytes.
    handle, part_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    os.close(handle)
    part = Path(part_name)
    request = urllib.request.Request(url, headers={"User-Agent": "socialals-datasets"})
    # ``timeout`` bounds the whole download, not each read: a server that trickles a
    # byte now and then must not hold the caller for ever.
    deadline = time.monotonic() + timeout

    def too_slow(received: int) -> DownloadError:
        return DownloadError(
            f"Download of {url} did not finish within timeout={timeout:g} s ({received:,} bytes "
            "received); the partial file was deleted. Pass a larger timeout for a slow connection."
        )

    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"Could not download {url}: HTTP {exc.code} {exc.reason}.") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(f"Could not download {url}: {reason}.") from exc
        with response:
            header = response.headers.get("Content-Length")
            announced = int(header) if header is not None and header.strip().isdigit() else None
            digest = hashlib.sha256()
            received = 0
            enabled = progress and _stderr_is_tty()
            bar_total = announced or expected_size
            # read1: one socket read per call, so the deadline is checked between them;
            # each read waits at most the time left (best effort: urllib does not expose
            # the socket, and without it a silent server is still cut after ``timeout``).
            read = getattr(response, "read1", response.read)
            sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
            with open(part, "wb") as fh, _progress_bar(bar_total, target.name, enabled) as bar:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise too_slow(received)
                    if sock is not None and hasattr(sock, "settimeout"):
                        sock.settimeout(remaining)
                    try:
                        block = read(_CHUNK_BYTES)
                    except (TimeoutError, socket.timeout) as exc:
                        raise too_slow(received) from exc
                    except (http.client.IncompleteRead, OSError) as exc:
                        raise DownloadError(
                            f"Download of {url} was interrupted after {received:,} bytes ({exc}); "
                            "the partial file was deleted."
                        ) from exc
                    if not block:
                        break
                    fh.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
        if announced is not None and received != announced:
            raise DownloadError(
                f"Download of {url} is incomplete: the server announced {announced:,} bytes "
                f"(Content-Length) but sent {received:,}; the partial file was deleted."
            )
        if expected_size is not None and received != expected_size:
            raise ChecksumError(
                f"Download of {url} has the wrong size: expected {expected_size:,} bytes, "
                f"got {received:,}; the file was deleted."
            )
        actual = digest.hexdigest()
        if expected_sha256 is not None and actual != expected_sha256:
            raise ChecksumError(
                f"Checksum mismatch for {url}: expected SHA-256 {expected_sha256} ({hash_origin}), "
                f"got {actual}; the file was deleted and not loaded."
            )
        if target.suffix.lower() == ".zip":
            problem = _zip_problem(part)
            if problem is not None:
                raise DownloadError(
                    f"The archive downloaded from {url} is corrupt: {problem}; it was deleted."
                )
        os.replace(part, target)
        return actual
    finally:
        if part.exists():
            part.unlink()


def _fetch(
    url: str,
    sha256: Optional[str],
    *,
    dest_dir: Optional[PathLike],
    filename: Optional[str],
    size: Optional[int],
    progress: bool,
    timeout: float,
) -> Tuple[Path, str]:
    dest = get_data_home(dest_dir)
    target = dest / (filename or _filename_from_url(url))
    record = _record_path(target)
    if sha256 is not None:
        expected, origin = sha256.strip().lower(), "given"
    else:
        expected, origin = _read_record(record), f"recorded at first download in {record}"
        if expected is not None:
            size = None  # the record carries no size; the hash is the stronger check anyway

    if target.is_file():
        actual = _sha256_of(target)
        if expected is None:
            # A file put there by hand before any record existed: accept it once if intact.
            if target.suffix.lower() != ".zip" or _zip_problem(target) is None:
                _write_record(record, actual, url)
                return target, actual
        elif actual == expected:
            return target, actual
        # Corrupt or stale cached copy: fetch it again and check the new copy.
        target.unlink()

    actual = _download(
        url, target, expected, size, progress=progress, timeout=timeout, hash_origin=origin
    )
    _write_record(record, actual, url)
    return target, actual


def fetch(
    url: str,
    sha256: Optional[str] = None,
    *,
    dest_dir: Optional[PathLike] = None,
    filename: Optional[str] = None,
    size: Optional[int] = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` into the cache once, verify it and return its local path.

    The file is streamed to a temporary ``<name>.*.part`` file and only renamed to ``<name>`` once every
    check passed: the byte count equals the ``Content-Length`` the server announced
    (and ``size`` if given), the SHA-256 equals the expected one, and a ``.zip`` opens
    and passes :meth:`zipfile.ZipFile.testzip`. On any failure the partial file is
    deleted and :class:`DownloadError` (an :class:`OSError`) or :class:`ChecksumError`
    (also a :class:`ValueError`) is raised naming the URL and the expected and actual
    values. If the cached copy already matches the expected hash, no request is made.

    Checksum policy: the expected SHA-256 is ``sha256`` when given. Otherwise the hash
    recorded next to the file (``<name>.sha256``, written after every successful
    download) is used: the first download of a file whose hash nobody published is
    trusted and recorded, and every later use is checked against that record (trust
    on first use). A cached copy that no longer matches is downloaded again, and the
    new copy must match too. Delete the ``.sha256`` file to accept a legitimately
    changed upstream file.

    Parameters
    ----------
    url : str
        Address to download (``http``, ``https`` or ``file``).
    sha256 : str, optional
        Expected SHA-256 as hex; ``None`` for trust on first use.
    dest_dir : str or path-like, optional
        Directory to store the file in; defaults to :func:`get_data_home`.
    filename : str, optional
        Local file name; defaults to the last component of the URL path.
    size : int, optional
        Expected size in bytes (ignored when checking against a recorded hash).
    progress : bool, default=True
        Show a progress bar on standard error (tqdm when installed, else a plain
        line). It is never shown when standard error is not a terminal.
    timeout : float, default=60.0
        Seconds the whole download may take (connecting and every byte); a slower
        transfer is stopped with :class:`DownloadError`.

    Returns
    -------
    pathlib.Path
        Path of the verified file.

    Raises
    ------
    DownloadError
        HTTP or network error, truncated transfer, or corrupt zip archive.
    ChecksumError
        SHA-256 or size mismatch.

    Examples
    --------
    >>> from socialals.datasets import fetch
    >>> path = fetch("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    ...              "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229")  # doctest: +SKIP
    """
    path, _ = _fetch(
        url, sha256, dest_dir=dest_dir, filename=filename, size=size, progress=progress, timeout=timeout
    )
    return path


def _extract(archive: Path, digest: str, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` unless the marker says it already was."""
    marker = dest / _EXTRACTED_MARKER
    if marker.is_file() and marker.read_text(encoding="ascii").strip() == digest:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        # ZipFile.extractall drops absolute paths and ".." components, so members
        # cannot be written outside ``dest``.
        zf.extractall(dest)
    marker.write_text(digest + "\n", encoding="ascii")
    return dest


def _download_dataset(
    name: str,
    *,
    data_home: Optional[PathLike],
    url: Optional[str],
    sha256: Optional[str],
    progress: bool,
    timeout: float,
) -> Path:
    """Fetch and extract the archive of ``name``; return the extraction folder."""
    spec = REGISTRY[name]
    if sha256 is None:
        # A mirror given by ``url`` must serve the same bytes as the official address.
        sha256, size = spec.sha256, spec.size
    else:
        size = None
    home = get_data_home(data_home)
    archive, digest = _fetch(
        url or spec.url,
        sha256,
        dest_dir=home,
        filename=spec.filename,
        size=size,
        progress=progress,
        timeout=timeout,
    )
    return _extract(archive, digest, home / name)


def _resolve_folder(path: Optional[PathLike], name: str, **download_options) -> Path:
    """``path`` itself, or the extracted download of data set ``name`` when it is None."""
    if path is None:
        return _download_dataset(name, **download_options)
    return Path(path).expanduser()


# ---------------------------------------------------------------------------
# Parsing and repair
# ---------------------------------------------------------------------------


def _warn(message: str) -> None:
    """Emit a DataWarning attributed to the first caller outside this module."""
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is the caller of _warn, i.e. ``frame``
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
        level += 1
    warnings.warn(message, DataWarning, stacklevel=level)


def _locate(root: Path, required: Sequence[str], dataset: str) -> Path:
    """Return ``root`` or its first sub-folder (sorted by name) holding all ``required`` files."""
    wanted = ", ".join(repr(name) for name in required)
    if not root.exists():
        raise FileNotFoundError(
            f"{dataset}: the folder {str(root)!r} does not exist; expected a folder holding {wanted}."
        )
    if not root.is_dir():
        raise NotADirectoryError(
            f"{dataset}: {str(root)!r} is not a folder; expected a folder holding {wanted} "
            "(extract the archive first, or pass path=None to download it)."
        )
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    for folder in candidates:
        if all((folder / name).is_file() for name in required):
            return folder
    raise FileNotFoundError(
        f"{dataset}: could not find {wanted} in {str(root)!r} or in its immediate sub-folders."
    )


def _read_text_table(
    path: Path, sep: str, columns: Sequence[int], names: Sequence[str], dataset: str
) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=sep, header=None, usecols=list(columns), engine="c")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{dataset}: could not parse {str(path)!r}: {exc}") from exc
    frame.columns = list(names)
    return frame


def _as_ids(values, column: str, path: Path, dataset: str) -> np.ndarray:
    numeric = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numeric) | (numeric != np.round(numeric))
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"{dataset}: column {column!r} of {str(path)!r} must hold integer ids; "
            f"rows {rows} (0-based) do not."
        )
    return numeric.astype(np.int64)


def _ratings_frame(users, items, ratings, path: Path, dataset: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": _as_ids(users, "user", path, dataset),
            "item": _as_ids(items, "item", path, dataset),
            "rating": pd.to_numeric(pd.Series(ratings), errors="coerce").to_numpy(dtype=np.float64),
        }
    )


def _social_frame(users, friends, weights, path: Path, dataset: str) -> pd.DataFrame:
    users = _as_ids(users, "trustor", path, dataset)
    friends = _as_ids(friends, "trustee", path, dataset)
    if weights is None:
        weights = np.ones(len(users), dtype=np.float64)
    return pd.DataFrame(
        {"user": users, "friend": friends, "weight": np.asarray(weights, dtype=np.float64)}
    )


def _clean_ratings(frame: pd.DataFrame, scale: Tuple[float, float], dataset: str) -> pd.DataFrame:
    """Drop out-of-scale ratings, then average duplicated (user, item) pairs."""
    low, high = scale
    outside = ~frame["rating"].between(low, high)  # NaN counts as outside
    n_outside = int(outside.sum())
    if n_outside:
        seen = np.unique(frame.loc[outside, "rating"].to_numpy())
        shown = ", ".join(f"{v:g}" for v in seen[:5]) + (", ..." if len(seen) > 5 else "")
        _warn(
            f"{dataset}: dropped {n_outside:,} rating rows outside the {low:g}-{high:g} scale "
            f"(values: {shown})."
        )
        frame = frame.loc[~outside]
    repeated = frame.duplicated(["user", "item"], keep=False)
    if repeated.any():
        groups = frame.loc[repeated].groupby(["user", "item"], sort=False)["rating"]
        n_pairs = groups.ngroups
        n_surplus = int(repeated.sum()) - n_pairs
        n_disagree = int((groups.nunique() > 1).sum())
        frame = frame.groupby(["user", "item"], sort=False, as_index=False)["rating"].mean()
        _warn(
            f"{dataset}: {n_pairs:,} (user, item) pairs were rated more than once "
            f"({n_surplus:,} surplus rows, {n_disagree:,} pairs with differing ratings); "
            "each pair's ratings were averaged into one row."
        )
    frame = frame.reset_index(drop=True)
    return frame.astype({"user": np.int64, "item": np.int64, "rating": np.float64})[list(_RATING_COLUMNS)]


def _clean_social(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Drop trust self-loops, then repeated edges (keeping the first)."""
    loops = frame["user"].to_numpy() == frame["friend"].to_numpy()
    if loops.any():
        _warn(f"{dataset}: dropped {int(loops.sum()):,} trust self-loops (a user trusting themself).")
        frame = frame.loc[~loops]
    repeated = frame.duplicated(["user", "friend"], keep="first")
    if repeated.any():
        _warn(
            f"{dataset}: dropped {int(repeated.sum()):,} repeated trust edges "
            "(the first occurrence of each was kept)."
        )
        frame = frame.loc[~repeated]
    frame = frame.reset_index(drop=True)
    return frame.astype({"user": np.int64, "friend": np.int64, "weight": np.float64})[list(_SOCIAL_COLUMNS)]


def _load_mat_matrix(path: Path, preferred: str, min_columns: int, dataset: str) -> np.ndarray:
    """Read the 2-D matrix named ``preferred`` (or the file's only variable) from a .mat file."""
    try:
        contents = scipy.io.loadmat(path)
    except NotImplementedError as exc:  # MATLAB v7.3 files are HDF5
        raise ValueError(
            f"{dataset}: {str(path)!r} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read; "
            "re-save it in v7 format."
        ) from exc
    except (ValueError, TypeError, OSError) as exc:
        raise ValueError(f"{dataset}: could not read {str(path)!r} as a MATLAB file: {exc}") from exc
    variables = [key for key in contents if not key.startswith("__")]
    if preferred in contents:
        key = preferred
    elif len(variables) == 1:
        key = variables[0]
    else:
        raise ValueError(
            f"{dataset}: {str(path)!r} has no variable {preferred!r} and not exactly one variable "
            f"to fall back on; it holds {variables}."
        )
    matrix = np.asarray(contents[key])
    if matrix.ndim != 2 or matrix.shape[1] < min_columns:
        raise ValueError(
            f"{dataset}: variable {key!r} in {str(path)!r} must be a matrix with at least "
            f"{min_columns} columns; got shape {matrix.shape}."
        )
    return matrix


def _read_tang(folder: Path, dataset: str) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Read Jiliang Tang's ``rating.mat`` / ``trustnetwork.mat`` layout (Ciao, Epinions)."""
    rating_path, trust_path = folder / "rating.mat", folder / "trustnetwork.mat"
    rating = _load_mat_matrix(rating_path, "rating", 4, dataset)
    # columns: user, product, category, rating, helpfulness (, timestamp in later releases)
    ratings = _ratings_frame(rating[:, 0], rating[:, 1], rating[:, 3], rating_path, dataset)
    trust = _load_mat_matrix(trust_path, "trustnetwork", 2, dataset)
    social = _social_frame(trust[:, 0], trust[:, 1], None, trust_path, dataset)
    return _clean_ratings(ratings, (1.0, 5.0), dataset), _clean_social(social, dataset)


# ---------------------------------------------------------------------------
# Public loaders
# ---------------------------------------------------------------------------

_DOWNLOAD_PARAMETERS = """\
    data_home : str or path-like, optional
        Cache directory for ``path=None``; see :func:`get_data_home`.
    url : str, optional
        Download from this address instead of the official one (a mirror, or a test
        server). The registry's checksum still applies unless ``sha256`` is given.
    sha256 : str, optional
        Expected SHA-256 of the archive, overriding :data:`REGISTRY`.
    progress : bool, default=True
        Show a download progress bar when standard error is a terminal.
    timeout : float, default=60.0
        Seconds the whole download may take (connecting and every byte)."""


def _with_download_parameters(function):
    function.__doc__ = function.__doc__.replace("    {download_parameters}", _DOWNLOAD_PARAMETERS)
    return function


@_with_download_parameters
def load_filmtrust(
    path: Optional[PathLike] = None,
    *,
    data_home: Optional[PathLike] = None,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Load FilmTrust: movie ratings (0.5-4.0 in half steps) and a directed trust graph.

    Reads ``ratings.txt`` (``user item rating``) and ``trust.txt`` (``trustor trustee
    value``), both space-separated. Repairs follow the module's policy: out-of-scale
    ratings dropped, the 3 repeated (user, item) pairs of the official files averaged
    (2 of them disagree, so two ratings land between half steps), self-loops and
    repeated edges dropped. The 134 users who appear only in the trust graph are kept.

    Parameters
    ----------
    path : str or path-like, optional
        Folder holding ``ratings.txt`` and ``trust.txt`` (or holding a sub-folder that
        does). ``None`` downloads the official archive into the cache.
    {download_parameters}

    Returns
    -------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` (int64) and ``rating`` (float64).
    social : pandas.DataFrame
        Columns ``user``, ``friend`` (int64) and ``weight`` (float64, the file's trust
        value, 1.0 throughout the official files): ``user`` trusts ``friend``.

    Warns
    -----
    DataWarning
        Once per kind of repair, counting the rows it changed.

    Examples
    --------
    >>> from socialals.datasets import load_filmtrust
    >>> ratings, social = load_filmtrust()  # doctest: +SKIP
    >>> ratings["user"].nunique(), len(social)  # doctest: +SKIP
    (1508, 1853)
    """
    root = _resolve_folder(
        path, "filmtrust", data_home=data_home, url=url, sha256=sha256, progress=progress, timeout=timeout
    )
    folder = _locate(root, ("ratings.txt", "trust.txt"), "FilmTrust")
    ratings_path, trust_path = folder / "ratings.txt", folder / "trust.txt"
    raw = _read_text_table(ratings_path, r"\s+", (0, 1, 2), _RATING_COLUMNS, "FilmTrust")
    ratings = _ratings_frame(raw["user"], raw["item"], raw["rating"], ratings_path, "FilmTrust")
    try:
        trust = pd.read_csv(trust_path, sep=r"\s+", header=None)
    except pd.errors.EmptyDataError:
        trust = pd.DataFrame({0: [], 1: []})
    if trust.shape[1] < 2:
        raise ValueError(f"FilmTrust: {str(trust_path)!r} must have 'trustor trustee [value]' rows.")
    weights = trust[2].to_numpy(dtype=np.float64) if trust.shape[1] > 2 else None
    social = _social_frame(trust[0], trust[1], weights, trust_path, "FilmTrust")
    return _clean_ratings(ratings, (0.5, 4.0), "FilmTrust"), _clean_social(social, "FilmTrust")


@_with_download_parameters
def load_ciao(
    path: Optional[PathLike] = None,
    *,
    data_home: Optional[PathLike] = None,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Load Ciao (Tang et al.): product ratings on a 1-5 scale and a directed trust graph.

    Reads ``rating.mat`` (variable ``rating``: user, product, category, rating,
    helpfulness) and ``trustnetwork.mat`` (variable ``trustnetwork``: trustor,
    trustee) with :func:`scipy.io.loadmat`; if the expected variable name is absent
    the file's only variable is used. Category and helpfulness are not returned.
    Repairs follow the module's policy: the official files' 34 ratings of 0 are
    dropped first, then repeated (user, item) pairs are averaged. Trust-only users
    are kept.

    Parameters
    ----------
    path : str or path-like, optional
        Folder holding ``rating.mat`` and ``trustnetwork.mat`` (or a sub-folder that
        does, such as the archive's ``ciao/``). ``None`` downloads the archive.
    {download_parameters}

    Returns
    -------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` (int64) and ``rating`` (float64).
    social : pandas.DataFrame
        Columns ``user``, ``friend`` (int64) and ``weight`` (float64, all 1.0).

    Warns
    -----
    DataWarning
        Once per kind of repair, counting the rows it changed.

    Examples
    --------
    >>> from socialals.datasets import load_ciao
    >>> ratings, social = load_ciao("shared/datasets/ciao")  # doctest: +SKIP
    >>> bool((ratings["rating"] >= 1).all())  # doctest: +SKIP
    True
    """
    root = _resolve_folder(
        path, "ciao", data_home=data_home, url=url, sha256=sha256, progress=progress, timeout=timeout
    )
    return _read_tang(_locate(root, ("rating.mat", "trustnetwork.mat"), "Ciao"), "Ciao")


@_with_download_parameters
def load_epinions(
    path: Optional[PathLike] = None,
    *,
    data_home: Optional[PathLike] = None,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Load Epinions (Tang et al.): product ratings on a 1-5 scale and a trust graph.

    Same layout and policy as :func:`load_ciao`: ``rating.mat`` (user, product,
    category, rating, helpfulness; variable ``rating`` or the file's only variable)
    and ``trustnetwork.mat`` (trustor, trustee). This release is large (the source
    reports about 22 thousand users, 296 thousand items and 922 thousand ratings).

    Parameters
    ----------
    path : str or path-like, optional
        Folder holding ``rating.mat`` and ``trustnetwork.mat`` (or a sub-folder that
        does). ``None`` downloads the archive.
    {download_parameters}

    Returns
    -------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` (int64) and ``rating`` (float64).
    social : pandas.DataFrame
        Columns ``user``, ``friend`` (int64) and ``weight`` (float64, all 1.0).

    Warns
    -----
    DataWarning
        Once per kind of repair, counting the rows it changed.

    Examples
    --------
    >>> from socialals.datasets import load_epinions
    >>> ratings, social = load_epinions()  # doctest: +SKIP
    """
    root = _resolve_folder(
        path, "epinions", data_home=data_home, url=url, sha256=sha256, progress=progress, timeout=timeout
    )
    return _read_tang(_locate(root, ("rating.mat", "trustnetwork.mat"), "Epinions"), "Epinions")


@_with_download_parameters
def load_movielens_100k(
    path: Optional[PathLike] = None,
    *,
    data_home: Optional[PathLike] = None,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Tuple[pd.DataFrame, None]:
    """Load MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users.

    Reads ``u.data`` (tab-separated ``user item rating timestamp``); the timestamp is
    not returned. There is no social graph, so ``social`` is ``None``.

    Parameters
    ----------
    path : str or path-like, optional
        Folder holding ``u.data`` (or a sub-folder that does, such as ``ml-100k/``).
        ``None`` downloads the archive.
    {download_parameters}

    Returns
    -------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` (int64) and ``rating`` (float64).
    social : None

    Warns
    -----
    DataWarning
        Once per kind of repair, counting the rows it changed.

    Examples
    --------
    >>> from socialals.datasets import load_movielens_100k
    >>> ratings, social = load_movielens_100k()  # doctest: +SKIP
    >>> len(ratings), social  # doctest: +SKIP
    (100000, None)
    """
    root = _resolve_folder(
        path, "movielens-100k", data_home=data_home, url=url, sha256=sha256, progress=progress,
        timeout=timeout,
    )
    data_path = _locate(root, ("u.data",), "MovieLens 100K") / "u.data"
    raw = _read_text_table(data_path, "\t", (0, 1, 2), _RATING_COLUMNS, "MovieLens 100K")
    ratings = _ratings_frame(raw["user"], raw["item"], raw["rating"], data_path, "MovieLens 100K")
    return _clean_ratings(ratings, (1.0, 5.0), "MovieLens 100K"), None


@_with_download_parameters
def load_movielens_1m(
    path: Optional[PathLike] = None,
    *,
    data_home: Optional[PathLike] = None,
    url: Optional[str] = None,
    sha256: Optional[str] = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Tuple[pd.DataFrame, None]:
    """Load MovieLens 1M: 1,000,209 ratings (1-5) of 3,706 movies by 6,040 users.

    Reads ``ratings.dat`` (``user::item::rating::timestamp``); the timestamp is not
    returned. There is no social graph, so ``social`` is ``None``.

    Parameters
    ----------
    path : str or path-like, optional
        Folder holding ``ratings.dat`` (or a sub-folder that does, such as
        ``ml-1m/``). ``None`` downloads the archive.
    {download_parameters}

    Returns
    -------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` (int64) and ``rating`` (float64).
    social : None

    Warns
    -----
    DataWarning
        Once per kind of repair, counting the rows it changed.

    Examples
    --------
    >>> from socialals.datasets import load_movielens_1m
    >>> ratings, _ = load_movielens_1m()  # doctest: +SKIP
    >>> ratings["user"].nunique()  # doctest: +SKIP
    6040
    """
    root = _resolve_folder(
        path, "movielens-1m", data_home=data_home, url=url, sha256=sha256, progress=progress, timeout=timeout
    )
    data_path = _locate(root, ("ratings.dat",), "MovieLens 1M") / "ratings.dat"
    # Splitting "a::b::c::d" on single colons gives a, '', b, '', c, '', d: columns 0, 2
    # and 4 are user, item and rating, and the fast C parser can do it.
    raw = _read_text_table(data_path, ":", (0, 2, 4), _RATING_COLUMNS, "MovieLens 1M")
    ratings = _ratings_frame(raw["user"], raw["item"], raw["rating"], data_path, "MovieLens 1M")
    return _clean_ratings(ratings, (1.0, 5.0), "MovieLens 1M"), None


# ---------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------


def _check_param(name: str, value, ok: bool, requirement: str) -> None:
    if not ok:
        raise invalid(name, "make_social_ratings", requirement, value)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and bool(np.isfinite(value))


def make_social_ratings(
    n_users: int = 1000,
    n_items: int = 500,
    n_factors: int = 8,
    density: float = 0.08,
    n_friends: float = 10.0,
    homophily: float = 0.8,
    noise: float = 0.5,
    cold_start_fraction: float = 0.2,
    social_only_users: int = 0,
    rating_scale: Tuple[float, float] = (1, 5),
    rating_step: Optional[float] = 1.0,
    n_communities: int = 10,
    return_truth: bool = False,
    random_state=None,
):
    r"""Generate ratings and a trust graph in which friends share tastes.

    The generative model:

    * users belong to one of ``n_communities`` latent communities with centre
      :math:`c_k`; user factors are :math:`u = \sqrt{h}\, c_{k(u)} + \sqrt{1-h}\,
      e_u` with :math:`h` = ``homophily`` and private noise :math:`e_u`, so two users
      of one community have taste correlation :math:`h` and any user's factor
      variance does not depend on :math:`h`;
    * each user trusts a geometric number of others (mean ``n_friends``); each
      friend is drawn from the user's own community with probability :math:`h`, else
      uniformly from everyone. Edges are directed, without self-loops or repeats;
    * item popularity is Zipf-like (weight :math:`1/\mathrm{rank}`), and each user
      rates a popularity-weighted sample of distinct items. Rating counts are
      log-normal (at least 5), except for a ``cold_start_fraction`` of users who
      rate only 1 to 4 items;
    * a rating is :math:`\mu + b_u + b_i + u^\top v_i + \varepsilon` with
      :math:`\varepsilon \sim N(0, \mathrm{noise}^2)`, rounded to ``rating_step``
      from the bottom of the scale and clipped into ``rating_scale``. Popular items
      have slightly higher biases.

    The defaults (1,000 users, 500 items, about 40,000 ratings) generate in well under
    a second.

    Parameters
    ----------
    n_users : int, default=1000
        Users with at least one rating; their ids are ``0 .. n_users - 1``.
    n_items : int, default=500
        Items; ids ``0 .. n_items - 1`` (items in the far popularity tail may get no
        rating).
    n_factors : int, default=8
        Dimension of the true user and item factors.
    density : float, default=0.08
        Target fraction of the ``n_users x n_items`` matrix that is rated.
    n_friends : float, default=10.0
        Mean number of users each user trusts (some users trust no one).
    homophily : float, default=0.8
        In [0, 1]: the share of taste variance a user shares with their community,
        and the probability that a friend comes from the same community.
    noise : float, default=0.5
        Standard deviation of the rating noise, in rating units.
    cold_start_fraction : float, default=0.2
        Fraction of the ``n_users`` users who rate only 1-4 items.
    social_only_users : int, default=0
        Extra users (ids ``n_users ..``) who trust at least one user but rate nothing,
        like FilmTrust's 134 trust-only users. Zero by default so that plain and social
        models see the same users.
    rating_scale : tuple of two floats, default=(1, 5)
        Lowest and highest rating.
    rating_step : float or None, default=1.0
        Rating granularity (e.g. 0.5 for half stars); ``None`` keeps continuous values.
    n_communities : int, default=10
        Number of latent communities.
    return_truth : bool, default=False
        Also return a dict with the true parameters: ``user_factors`` (one row per
        user id, social-only users included), ``item_factors``, ``user_bias``,
        ``item_bias``, ``global_mean``, ``community``, ``cold_start_users`` and
        ``social_only_users``.
    random_state : None, int or numpy.random.Generator
        Seed; the same seed gives the same data.

    Returns
    -------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` (int64) and ``rating`` (float64), sorted by user then
        item, one row per pair.
    social : pandas.DataFrame
        Columns ``user``, ``friend`` (int64) and ``weight`` (float64, all 1.0).
    truth : dict
        Only when ``return_truth`` is true.

    Examples
    --------
    >>> from socialals.datasets import make_social_ratings
    >>> ratings, social = make_social_ratings(n_users=200, n_items=100, random_state=0)
    >>> list(ratings.columns), list(social.columns)
    (['user', 'item', 'rating'], ['user', 'friend', 'weight'])
    >>> bool(ratings["rating"].between(1, 5).all())
    True
    """
    _check_param("n_users", n_users, _is_int(n_users) and n_users >= 2, "an int >= 2")
    _check_param("n_items", n_items, _is_int(n_items) and n_items >= 5, "an int >= 5")
    _check_param("n_factors", n_factors, _is_int(n_factors) and n_factors >= 1, "an int >= 1")
    _check_param("density", density, _is_real(density) and 0 < density <= 1, "a float in (0, 1]")
    _check_param("n_friends", n_friends, _is_real(n_friends) and n_friends >= 0, "a float >= 0")
    _check_param("homophily", homophily, _is_real(homophily) and 0 <= homophily <= 1, "a float in [0, 1]")
    _check_param("noise", noise, _is_real(noise) and noise >= 0, "a float >= 0")
    _check_param(
        "cold_start_fraction",
        cold_start_fraction,
        _is_real(cold_start_fraction) and 0 <= cold_start_fraction <= 1,
        "a float in [0, 1]",
    )
    _check_param(
        "social_only_users",
        social_only_users,
        _is_int(social_only_users) and social_only_users >= 0,
        "an int >= 0",
    )
    scale_ok = (
        isinstance(rating_scale, (tuple, list))
        and len(rating_scale) == 2
        and all(_is_real(v) for v in rating_scale)
        and rating_scale[0] < rating_scale[1]
    )
    _check_param("rating_scale", rating_scale, scale_ok, "a pair (low, high) with low < high")
    _check_param(
        "rating_step",
        rating_step,
        rating_step is None or (_is_real(rating_step) and rating_step > 0),
        "None or a float > 0",
    )
    _check_param("n_communities", n_communities, _is_int(n_communities) and n_communities >= 1, "an int >= 1")

    rng = check_random_state(random_state, "make_social_ratings")
    low, high = float(rating_scale[0]), float(rating_scale[1])
    unit = (high - low) / 4.0  # effect sizes below are in "stars of a 1-5 scale"
    n_total = n_users + social_only_users

    # Tastes: community centre plus private noise, variance-preserving mix.
    signal_sd = 0.8 * unit  # standard deviation of u.v
    factor_sd = (signal_sd**2 / n_factors) ** 0.25
    community = rng.integers(n_communities, size=n_total)
    centres = rng.normal(0.0, factor_sd, size=(n_communities, n_factors))
    own = rng.normal(0.0, factor_sd, size=(n_total, n_factors))
    user_factors = np.sqrt(homophily) * centres[community] + np.sqrt(1.0 - homophily) * own
    item_factors = rng.normal(0.0, factor_sd, size=(n_items, n_factors))

    # Long-tailed popularity, and popular items rated a little higher.
    popularity = 1.0 / (rng.permutation(n_items) + 1.0)
    popularity /= popularity.sum()
    log_pop = np.log(popularity)
    item_bias = rng.normal(0.0, 0.3 * unit, size=n_items)
    item_bias += 0.15 * unit * (log_pop - log_pop.mean()) / log_pop.std()
    user_bias = rng.normal(0.0, 0.3 * unit, size=n_total)
    global_mean = low + 0.65 * (high - low)

    # How many items each rating user rates.
    n_cold = int(round(cold_start_fraction * n_users))
    cold_users = np.sort(rng.choice(n_users, size=n_cold, replace=False))
    counts = np.empty(n_users, dtype=np.int64)
    counts[cold_users] = rng.integers(1, 5, size=n_cold)
    warm = np.setdiff1d(np.arange(n_users), cold_users)
    if warm.size:
        target_warm = max(density * n_users * n_items - counts[cold_users].sum(), 5.0 * warm.size)
        spread = rng.lognormal(0.0, 0.7, size=warm.size)
        counts[warm] = np.rint(spread / spread.mean() * target_warm / warm.size).astype(np.int64)
        counts[warm] = np.clip(counts[warm], 5, n_items)

    # Popularity-weighted sampling without replacement (Gumbel top-k), in row blocks.
    users_out, items_out = [], []
    block = max(1, 2_000_000 // n_items)
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        keys = log_pop[None, :] + rng.gumbel(size=(stop - start, n_items))
        order = np.argsort(-keys, axis=1)
        take = np.arange(n_items)[None, :] < counts[start:stop, None]
        items_out.append(order[take])
        users_out.append(np.repeat(np.arange(start, stop), counts[start:stop]))
    users = np.concatenate(users_out)
    items = np.concatenate(items_out)

    values = (
        global_mean
        + user_bias[users]
        + item_bias[items]
        + np.einsum("ij,ij->i", user_factors[users], item_factors[items])
        + rng.normal(0.0, noise, size=users.size)
    )
    if rating_step is not None:
        values = low + rating_step * np.rint((values - low) / rating_step)
    values = np.clip(values, low, high)
    ratings = pd.DataFrame(
        {"user": users.astype(np.int64), "item": items.astype(np.int64), "rating": values.astype(np.float64)}
    ).sort_values(["user", "item"], ignore_index=True)

    # Trust graph with homophily.
    members = [np.flatnonzero(community == k) for k in range(n_communities)]
    degrees = rng.geometric(1.0 / (1.0 + n_friends), size=n_total) - 1
    degrees[n_users:] = np.maximum(degrees[n_users:], 1)
    degrees = np.minimum(degrees, n_total - 1)
    trustors, trustees = [], []
    for user in range(n_total):
        degree = int(degrees[user])
        if degree == 0:
            continue
        pool = members[community[user]]
        pool = pool[pool != user]
        n_inside = min(int(rng.binomial(degree, homophily)), pool.size)
        chosen = rng.choice(pool, size=n_inside, replace=False) if n_inside else np.empty(0, dtype=np.int64)
        n_rest = degree - n_inside
        if n_rest:
            extra = rng.choice(n_total, size=min(n_total, degree + 1), replace=False)
            extra = extra[(extra != user) & ~np.isin(extra, chosen)][:n_rest]
            chosen = np.concatenate([chosen, extra])
        trustors.append(np.full(chosen.size, user, dtype=np.int64))
        trustees.append(chosen.astype(np.int64))
    social = pd.DataFrame(
        {
            "user": np.concatenate(trustors) if trustors else np.empty(0, dtype=np.int64),
            "friend": np.concatenate(trustees) if trustees else np.empty(0, dtype=np.int64),
        }
    )
    social["weight"] = 1.0

    if not return_truth:
        return ratings, social
    truth = {
        "user_factors": user_factors,
        "item_factors": item_factors,
        "user_bias": user_bias,
        "item_bias": item_bias,
        "global_mean": global_mean,
        "community": community,
        "cold_start_users": cold_users,
        "social_only_users": np.arange(n_users, n_total),
    }
    return ratings, social, truth
