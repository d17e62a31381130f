"""Real rating data sets with a social (trust) graph: loaders and a verified download cache.

Every loader returns ``(ratings, social)``:

``ratings``
    :class:`pandas.DataFrame` with columns ``user`` (int64), ``item`` (int64) and
    ``rating`` (float64), one row per (user, item) pair.
``social``
    :class:`pandas.DataFrame` with columns ``user`` (int64), ``friend`` (int64) and
    ``weight`` (float64), one row per directed edge "``user`` trusts ``friend``";
    ``None`` for data sets without a social graph (MovieLens).

Repair policy
-------------
Ratings outside the data set's documented scale (for example Ciao's 0 ratings on a 1-5
scale) are **dropped** here, with a :class:`~socialals.exceptions.DataWarning` that
counts them. The rest is the library's one policy, applied when the data are read
(:func:`socialals.data.merge_duplicate_ratings` and :func:`socialals.data.clean_social`,
the same code the models run at fit time): repeated (user, item) pairs are **averaged**
into one row, trust self-loops and repeated trust edges are **dropped**, each counted by
one warning that starts with the data set's name.

Users who appear only in the trust graph (they have no rating) are **kept**: social
models can still place them through their friends. Ids are kept as they are in the
files (they are not contiguous); nothing is re-indexed.

Downloads
---------
With ``path=None`` a loader downloads the official archive with :mod:`pooch` into the
cache folder given by :func:`get_data_home` (``$SOCIALALS_DATA`` if set, else
``~/socialals_data``), checks its SHA-256 and that it is an intact zip, extracts it
(:class:`pooch.Unzip`) and reads it; later calls read the cache without any network
access. See :func:`fetch` for the checksum policy.

The synthetic generator lives in :mod:`socialals.synthetic`; it is re-exported here as
:func:`make_social_ratings`.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.io

from .data import clean_social, merge_duplicate_ratings
from .exceptions import DataWarning
from .synthetic import make_social_ratings

__all__ = [
    "ChecksumError",
    "DownloadError",
    "Identification",
    "KNOWN_FILES",
    "KnownFile",
    "REGISTRY",
    "RemoteArchive",
    "fetch",
    "get_data_home",
    "identify_files",
    "load_ciao",
    "load_epinions",
    "load_filmtrust",
    "load_movielens_100k",
    "load_movielens_1m",
    "make_downloader",
    "make_social_ratings",
]

PathLike = Union[str, "os.PathLike[str]"]

_RATING_COLUMNS = ("user", "item", "rating")
_SOCIAL_COLUMNS = ("user", "friend", "weight")


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class DownloadError(OSError):
    """A download failed: HTTP or network error, truncated transfer or corrupt archive.

    The partial file has been deleted when this is raised; nothing was loaded.
    """


class ChecksumError(DownloadError, ValueError):
    """A downloaded file's SHA-256 differs from the expected one.

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

    Examples
    --------
    >>> from socialals.datasets import REGISTRY
    >>> REGISTRY["movielens-100k"].filename
    'ml-100k.zip'
    """

    url: str
    filename: str
    sha256: Optional[str] = None


#: Official archives by data set name. The MovieLens hashes are the values published in
#: TensorFlow Datasets' checksum list for these exact URLs; no trusted SHA-256 is
#: published for FilmTrust, Ciao or Epinions, so those are ``None`` (trust on first
#: use, see :func:`fetch`). Tests and mirrors may monkeypatch entries.
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
    ),
    "movielens-1m": RemoteArchive(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        filename="ml-1m.zip",
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    ),
}


@dataclass(frozen=True)
class KnownFile:
    """One file of a published data set release, recognised by its content.

    Parameters
    ----------
    name : str
        The file's name in the release (``ratings.txt``).
    size : int
        Its size in bytes (files of another size are not hashed at all).
    sha256 : str
        Its SHA-256 (lower-case hex).
    """

    name: str
    size: int
    sha256: str


#: The files of the published releases, by data set: the ratings file and the trust file,
#: in that order. A local copy whose two files have these contents *is* that data set,
#: whatever its folder or files are called, so its tuned defaults apply
#: (:func:`identify_files`). Measured on the copies the defaults were tuned on (the
#: project's ``shared/datasets``). Only data sets with tuned defaults are listed.
KNOWN_FILES = {
    "filmtrust": (
        KnownFile("ratings.txt", 376445, "241167424e24d588e8871d68641e94ead98d5b3a4f0db01ef3181a74ad35e7a1"),
        KnownFile("trust.txt", 19611, "64573a033add72b988a0fb140fdbc0ad3464cb9821f940007aff6fda44b09603"),
    ),
    "ciao": (
        KnownFile("rating.mat", 1084296, "aa793568686285a93286ba9e56954fcce347370ad2e58c785760362ab12d2c2c"),
        KnownFile("trustnetwork.mat", 204371, "0a8963ed22e6b534ce8d14e478f54ce0af6f5a3440a67ed5a35e62486580ce3a"),
    ),
}


@dataclass(frozen=True)
class Identification:
    """A local copy of a published data set, recognised by :func:`identify_files`.

    ``name`` is the data set's key (``"filmtrust"``); ``digests`` pairs each file read
    (as named in the release) with its SHA-256.
    """

    name: str
    digests: Tuple[Tuple[str, str], ...]

    def describe(self, digits: int = 12) -> str:
        """``"ratings.txt sha256 241167424e24..., trust.txt sha256 64573a033add..."``."""
        return ", ".join(f"{name} sha256 {digest[:digits]}..." for name, digest in self.digests)


def identify_files(ratings: PathLike, social: Optional[PathLike]) -> Optional[Identification]:
    """Which published data set a ratings file and a trust file are, by their content.

    A file is hashed only when its size is that of a known file, and then read once
    (:func:`pooch.file_hash`); both files must match the same data set of
    :data:`KNOWN_FILES`. Names do not matter: a renamed copy is recognised, a copy with
    one changed byte is not.

    Parameters
    ----------
    ratings, social : str or path-like
        The ratings file and the trust file (``social=None`` recognises nothing: every
        known data set has a trust graph).

    Returns
    -------
    Identification or None
        None when the files are not those of a known release (or cannot be read).

    Examples
    --------
    >>> from socialals.datasets import identify_files
    >>> found = identify_files("copy/ratings.txt", "copy/trust.txt")  # doctest: +SKIP
    >>> found.name  # doctest: +SKIP
    'filmtrust'
    """
    if social is None:
        return None
    paths = (Path(ratings), Path(social))
    try:
        sizes = [path.stat().st_size for path in paths]
    except OSError:
        return None
    import pooch

    found = None  # the files' digests, read once, only when some known data set has their sizes
    for name, known in KNOWN_FILES.items():
        if [k.size for k in known] != sizes:
            continue
        if found is None:
            try:
                found = [pooch.file_hash(str(path)) for path in paths]
            except OSError:
                return None
        if found == [k.sha256 for k in known]:
            return Identification(name, tuple((k.name, d) for k, d in zip(known, found)))
    return None


# ---------------------------------------------------------------------------
# Cache folder and downloads (pooch)
# ---------------------------------------------------------------------------


def get_data_home(data_home: Optional[PathLike] = None) -> Path:
    """Return the folder where downloaded data sets are cached.

    The folder is not created here; it is created by the first download.

    Parameters
    ----------
    data_home : str or path-like, optional
        Explicit folder. When omitted, ``$SOCIALALS_DATA`` is used if set, else
        ``~/socialals_data``.

    Returns
    -------
    pathlib.Path
        The absolute cache folder.

    Examples
    --------
    >>> from socialals.datasets import get_data_home
    >>> get_data_home("/tmp/somewhere").as_posix()
    '/tmp/somewhere'
    """
    if data_home is None:
        data_home = os.environ.get("SOCIALALS_DATA") or os.path.join("~", "socialals_data")
    return Path(data_home).expanduser().resolve()


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _read_record(record: Path) -> Optional[str]:
    if not record.is_file():
        return None
    text = record.read_text(encoding="ascii", errors="replace").split()
    return text[0].lower() if text else None


def _zip_problem(path) -> Optional[str]:
    """Describe why ``path`` is not an intact zip archive, or return None if it is."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        return f"it is not a readable zip archive ({exc})"
    if bad_member is not None:
        return f"member {bad_member!r} fails its CRC check"
    return None


class _CorruptArchive(Exception):
    pass


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _show_progress(progress: bool) -> bool:
    if not (progress and _stderr_is_tty()):
        return False
    try:
        import tqdm  # noqa: F401  (the bar is drawn by tqdm)
    except ImportError:
        return False
    return True


def make_downloader(timeout: float = 60.0, progress: bool = False):
    """The downloader :func:`fetch` hands to :func:`pooch.retrieve`: HTTP(S) with a total deadline.

    It follows pooch's downloader protocol ``(url, output_file, pooch)``. pooch's own
    :class:`pooch.HTTPDownloader` bounds each socket read (``requests``' timeout), so a
    server that trickles a byte now and then could hold the caller for ever; this one
    bounds the whole transfer: ``timeout`` seconds for connecting and every byte, checked
    between single socket reads (``read1``), each read waiting at most the time left.
    It also checks the byte count against ``Content-Length`` and rejects a ``.zip`` that
    fails its CRC check, before pooch moves the file into the cache (on any error pooch
    deletes its temporary file).

    Parameters
    ----------
    timeout : float
        Seconds the whole download may take.
    progress : bool
        Draw a tqdm progress bar on standard error.
    """
    import socket
    import urllib.error
    import urllib.request

    def download(url, output_file, pooch_instance=None):
        deadline = time.monotonic() + timeout

        def too_slow(received: int) -> DownloadError:
            return DownloadError(
                f"Download of {url} did not finish within timeout={timeout:g} s ({received:,} bytes "
                "received); nothing was kept. Pass a larger timeout for a slow connection."
            )

        request = urllib.request.Request(url, headers={"User-Agent": "socialals-datasets"})
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"Could not download {url}: HTTP {exc.code} {exc.reason}.") from None
        except (TimeoutError, socket.timeout):
            raise too_slow(0) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DownloadError(f"Could not download {url}: {getattr(exc, 'reason', exc)}.") from None
        with response:
            header = response.headers.get("Content-Length")
            announced = int(header) if header is not None and header.strip().isdigit() else None
            read = getattr(response, "read1", response.read)
            sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=announced, unit="B", unit_scale=True, unit_divisor=1024, leave=True,
                           desc=os.path.basename(str(url)))
            received = 0
            try:
                with open(output_file, "wb") as handle:
                    while True:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise too_slow(received)
                        if sock is not None and hasattr(sock, "settimeout"):
                            sock.settimeout(remaining)
                        try:
                            block = read(1 << 16)
                        except (TimeoutError, socket.timeout):
                            raise too_slow(received) from None
                        except OSError as exc:  # includes http.client.IncompleteRead's parents
                            raise DownloadError(
                                f"Download of {url} was interrupted after {received:,} bytes ({exc}); "
                                "nothing was kept."
                            ) from None
                        if not block:
                            break
                        handle.write(block)
                        received += len(block)
                        if bar is not None:
                            bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
        if announced is not None and received != announced:
            raise DownloadError(
                f"Download of {url} is incomplete: the server announced {announced:,} bytes "
                f"(Content-Length) but sent {received:,}; nothing was kept."
            )
        if str(url).lower().split("?")[0].endswith(".zip"):
            problem = _zip_problem(output_file)
            if problem is not None:
                raise _CorruptArchive(problem)

    return download


def _filename_from_url(url: str) -> str:
    import urllib.parse

    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ValueError(f"Cannot derive a file name from the URL {url!r}; pass filename=.")
    return name


def fetch(
    url: str,
    sha256: Optional[str] = None,
    *,
    dest_dir: Optional[PathLike] = None,
    filename: Optional[str] = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` into the cache once (with :func:`pooch.retrieve`), verify it, return its path.

    pooch streams the file (through :func:`make_downloader`, whose ``timeout`` bounds the
    whole transfer) to a temporary name in the cache folder and moves it into place only
    when its SHA-256 matches the expected one; a ``.zip`` must also pass
    :meth:`zipfile.ZipFile.testzip`. On any failure nothing is left behind and
    :class:`DownloadError` (an :class:`OSError`) or :class:`ChecksumError` (also a
    :class:`ValueError`) is raised naming the URL. If the cached copy already matches
    the expected hash, no request is made.

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
        Address to download (``http`` or ``https``).
    sha256 : str, optional
        Expected SHA-256 as hex; ``None`` for trust on first use.
    dest_dir : str or path-like, optional
        Folder to store the file in; defaults to :func:`get_data_home`.
    filename : str, optional
        Local file name; defaults to the last component of the URL path.
    progress : bool, default=True
        Show a tqdm progress bar on standard error when it is a terminal and tqdm is
        installed.
    timeout : float, default=60.0
        Seconds the whole download may take (connecting and every byte); a slower
        transfer is stopped with :class:`DownloadError` (see :func:`make_downloader`).

    Returns
    -------
    pathlib.Path
        Path of the verified file.

    Raises
    ------
    DownloadError
        HTTP or network error, truncated transfer, or corrupt zip archive.
    ChecksumError
        SHA-256 mismatch.

    Examples
    --------
    >>> from socialals.datasets import fetch
    >>> path = fetch("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    ...              "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229")  # doctest: +SKIP
    """
    import pooch

    home = get_data_home(dest_dir)
    target = home / (filename or _filename_from_url(url))
    record = _record_path(target)
    if sha256 is not None:
        expected, origin = sha256.strip().lower(), "given"
    else:
        expected, origin = _read_record(record), f"recorded at first download in {record}"
        if expected is None and target.is_file():
            # A file put there by hand before any record existed: accept it once if intact.
            if target.suffix.lower() != ".zip" or _zip_problem(target) is None:
                record.write_text(f"{pooch.file_hash(str(target))}  {url}\n", encoding="ascii")
                return target
            target.unlink()

    existed = home.exists()
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # pooch's INFO lines advise on pooch.retrieve's own arguments
    try:
        pooch.retrieve(
            url,
            known_hash=None if expected is None else f"sha256:{expected}",
            fname=target.name,
            path=home,
            downloader=make_downloader(timeout, _show_progress(progress)),
        )
    except _CorruptArchive as exc:
        raise DownloadError(f"The archive downloaded from {url} is corrupt: {exc}; it was deleted.") from None
    except ValueError as exc:  # pooch's hash check
        if target.exists() and expected is not None and pooch.file_hash(str(target)) != expected:
            target.unlink()
        raise ChecksumError(
            f"Checksum mismatch for {url}: expected SHA-256 {expected} ({origin}). {exc}"
        ) from None
    finally:
        logger.setLevel(level)
        if not existed and home.is_dir() and not any(home.iterdir()):
            home.rmdir()  # leave no empty cache folder behind a failed first download
    if expected is None:
        record.write_text(f"{pooch.file_hash(str(target))}  {url}\n", encoding="ascii")
    return target


def _download_dataset(
    name: str,
    *,
    data_home: Optional[PathLike],
    url: Optional[str],
    sha256: Optional[str],
    progress: bool,
    timeout: float,
) -> Path:
    """Fetch and extract (:class:`pooch.Unzip`) the archive of ``name``; return the folder."""
    import pooch

    spec = REGISTRY[name]
    # A mirror given by ``url`` must serve the same bytes as the official address.
    archive = fetch(
        url or spec.url,
        sha256 if sha256 is not None else spec.sha256,
        dest_dir=data_home,
        filename=spec.filename,
        progress=progress,
        timeout=timeout,
    )
    # Unzip re-extracts when a member is missing from the folder; a changed archive
    # (a new download) is extracted afresh because its digest is kept in a marker.
    folder = archive.parent / name
    marker = folder / ".socialals-extracted"
    digest = _read_record(_record_path(archive)) or pooch.file_hash(str(archive))
    fresh = marker.is_file() and marker.read_text(encoding="ascii").strip() == digest
    pooch.Unzip(extract_dir=name)(str(archive), "fetch" if fresh else "download", None)
    marker.write_text(digest + "\n", encoding="ascii")
    return folder


def _resolve_folder(path: Optional[PathLike], name: str, **download_options) -> Path:
    """``path`` itself, or the extracted download of data set ``name`` when it is None."""
    if path is None:
        return _download_dataset(name, **download_options)
    return Path(path).expanduser()


# ---------------------------------------------------------------------------
# Parsing and repair
# ---------------------------------------------------------------------------


def _warn(message: str) -> None:
    """Emit a DataWarning attributed to the first caller outside socialals."""
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is the caller of _warn, i.e. ``frame``
    package = os.path.dirname(__file__)
    while frame is not None and frame.f_code.co_filename.startswith(package):
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
    """Drop out-of-scale ratings, then average duplicated pairs (data.merge_duplicate_ratings)."""
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
    frame = merge_duplicate_ratings(frame, source=dataset)
    frame = frame.reset_index(drop=True)
    return frame.astype({"user": np.int64, "item": np.int64, "rating": np.float64})[list(_RATING_COLUMNS)]


def _clean_social(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Drop trust self-loops, then repeated edges (the library's policy, data.clean_social)."""
    frame = clean_social(frame, source=dataset)
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
    """Read Jiliang Tang's ``rating.mat`` / ``trustnetwork.mat`` layout (Ciao, Epinions).

    ``dataset`` names the data in errors and warnings (the folder's name for a folder
    that is neither Ciao nor Epinions)."""
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
    return _read_filmtrust(_locate(root, ("ratings.txt", "trust.txt"), "FilmTrust"), "FilmTrust")


def _read_filmtrust(folder: Path, dataset: str) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Read the FilmTrust layout (``ratings.txt``, ``trust.txt``); ``dataset`` names it in messages."""
    ratings_path, trust_path = folder / "ratings.txt", folder / "trust.txt"
    raw = _read_text_table(ratings_path, r"\s+", (0, 1, 2), _RATING_COLUMNS, dataset)
    ratings = _ratings_frame(raw["user"], raw["item"], raw["rating"], ratings_path, dataset)
    try:
        trust = pd.read_csv(trust_path, sep=r"\s+", header=None)
    except pd.errors.EmptyDataError:
        trust = pd.DataFrame({0: [], 1: []})
    if trust.shape[1] < 2:
        raise ValueError(f"{dataset}: {str(trust_path)!r} must have 'trustor trustee [value]' rows.")
    weights = trust[2].to_numpy(dtype=np.float64) if trust.shape[1] > 2 else None
    social = _social_frame(trust[0], trust[1], weights, trust_path, dataset)
    return _clean_ratings(ratings, (0.5, 4.0), dataset), _clean_social(social, dataset)


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
