"""Tests for socialals.datasets: real-file parsers, the verified downloader, synthetic data."""

import doctest
import hashlib
import io
import re
import sys
import threading
import warnings
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

import socialals.datasets as ds
from socialals.datasets import (
    ChecksumError,
    DownloadError,
    RemoteArchive,
    fetch,
    get_data_home,
    load_ciao,
    load_epinions,
    load_filmtrust,
    load_movielens_100k,
    load_movielens_1m,
    make_social_ratings,
)
from socialals.exceptions import DataWarning

from conftest import require_dataset


def _data_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


def _load_recording(loader, *args, **kwargs):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = loader(*args, **kwargs)
    return result, _data_warnings(record)


def _check_frames(ratings, social):
    assert list(ratings.columns) == ["user", "item", "rating"]
    assert [str(t) for t in ratings.dtypes] == ["int64", "int64", "float64"]
    assert not ratings.duplicated(["user", "item"]).any()
    if social is not None:
        assert list(social.columns) == ["user", "friend", "weight"]
        assert [str(t) for t in social.dtypes] == ["int64", "int64", "float64"]
        assert not social.duplicated(["user", "friend"]).any()
        assert not (social["user"] == social["friend"]).any()


# ---------------------------------------------------------------------------
# Real files (shared/datasets)
# ---------------------------------------------------------------------------


def test_filmtrust_real_files():
    folder = require_dataset("filmtrust")
    raw = pd.read_csv(folder / "ratings.txt", sep=" ", header=None, names=["u", "i", "r"])
    assert len(raw) == 35_497  # the raw facts the loader's repairs are measured against
    (ratings, social), messages = _load_recording(load_filmtrust, folder)
    _check_frames(ratings, social)

    assert messages == [
        "FilmTrust: 3 duplicate (user, item) pair(s) (3 extra row(s)) merged into their mean rating; "
        "2 of them had different ratings."
    ]
    assert len(ratings) == 35_497 - 3
    assert ratings["user"].nunique() == 1_508
    assert ratings["item"].nunique() == 2_071
    assert ratings["rating"].between(0.5, 4.0).all()
    # User 308 rated items 207 (3.5, 3.0), 235 (4.0, 1.5) and 12 (4.0, 4.0) twice.
    pairs = ratings.set_index(["user", "item"])["rating"]
    assert pairs[(308, 207)] == pytest.approx(3.25)
    assert pairs[(308, 235)] == pytest.approx(2.75)
    assert pairs[(308, 12)] == pytest.approx(4.0)
    assert pairs[(1, 3)] == pytest.approx(3.5)  # an untouched row keeps its value

    assert len(social) == 1_853
    assert (social["weight"] == 1.0).all()
    trust_only = set(social["user"]) | set(social["friend"])
    trust_only -= set(ratings["user"])
    assert len(trust_only) == 134  # kept, not dropped
    assert max(trust_only) == 1_642


def test_ciao_real_files():
    folder = require_dataset("ciao")
    raw = scipy.io.loadmat(folder / "rating.mat")["rating"]
    assert raw.shape == (284_086, 5)
    raw_pairs = pd.DataFrame(raw[:, [0, 1]], columns=["u", "i"])
    assert raw_pairs.groupby(["u", "i"]).size().gt(1).sum() == 1_252
    assert (raw[:, 3] == 0).sum() == 34
    assert len(np.unique(raw[:, 1])) == 105_114

    (ratings, social), messages = _load_recording(load_ciao, folder)
    _check_frames(ratings, social)
    # Zeros go first (3 of them sat in repeated pairs), then the remaining repeats merge.
    assert messages == [
        "Ciao: dropped 34 rating rows outside the 1-5 scale (values: 0).",
        "Ciao: 1249 duplicate (user, item) pair(s) (1433 extra row(s)) merged into their mean rating; "
        "455 of them had different ratings.",
    ]
    assert len(ratings) == 284_086 - 34 - 1_433 == 282_619
    assert ratings["user"].nunique() == 7_375
    assert ratings["item"].nunique() == 105_096  # 18 items had only 0 ratings
    assert not (ratings["rating"] == 0).any()
    assert ratings["rating"].between(1, 5).all()

    # The most repeated pair: its row is the mean of its non-zero raw ratings.
    rated = raw[raw[:, 3] > 0]
    keys, counts = np.unique(rated[:, :2], axis=0, return_counts=True)
    user, item = keys[np.argmax(counts)]
    expected = rated[(rated[:, 0] == user) & (rated[:, 1] == item), 3].mean()
    assert counts.max() == 14
    assert ratings.set_index(["user", "item"])["rating"][(user, item)] == pytest.approx(expected)

    assert len(social) == 111_781
    assert (social["weight"] == 1.0).all()
    assert len(set(ratings["user"]) - set(social["user"]) - set(social["friend"])) == 58


# ---------------------------------------------------------------------------
# Parsers on small hand-made files
# ---------------------------------------------------------------------------

FILMTRUST_RATINGS = "1 10 3.5\n1 11 4\n2 10 0.5\n2 10 1.5\n3 12 4.5\n3 10 2\n3 11 0\n"
FILMTRUST_TRUST = "1 2 1\n2 1 1\n2 2 1\n1 2 1\n9 1 1\n"


def _write_filmtrust(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.txt").write_text(FILMTRUST_RATINGS)
    (folder / "trust.txt").write_text(FILMTRUST_TRUST)
    return folder


def _check_small_filmtrust(ratings, social, messages):
    _check_frames(ratings, social)
    assert messages == [
        "FilmTrust: dropped 2 rating rows outside the 0.5-4 scale (values: 0, 4.5).",
        "FilmTrust: 1 duplicate (user, item) pair(s) (1 extra row(s)) merged into their mean rating; "
        "1 of them had different ratings.",
        "FilmTrust: dropped 1 self-loop(s) and 1 duplicate edge(s) (kept the first of each duplicate); "
        "3 edge(s) remain.",
    ]
    assert ratings.values.tolist() == [[1, 10, 3.5], [1, 11, 4.0], [2, 10, 1.0], [3, 10, 2.0]]
    assert social[["user", "friend"]].values.tolist() == [[1, 2], [2, 1], [9, 1]]
    assert 9 not in set(ratings["user"])  # trust-only user kept in the graph


def test_filmtrust_repairs_counted(tmp_path):
    (ratings, social), messages = _load_recording(load_filmtrust, _write_filmtrust(tmp_path / "ft"))
    _check_small_filmtrust(ratings, social, messages)


def test_warning_points_at_the_caller(tmp_path):
    folder = _write_filmtrust(tmp_path / "ft")
    with pytest.warns(DataWarning) as record:
        load_filmtrust(folder)
    assert {Path(w.filename).name for w in record} == {Path(__file__).name}


def test_loader_searches_one_subfolder_level(tmp_path):
    _write_filmtrust(tmp_path / "archive" / "filmtrust")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ratings, social = load_filmtrust(tmp_path / "archive")
    assert len(ratings) == 4 and len(social) == 3
    _write_filmtrust(tmp_path / "deep" / "a" / "b")
    with pytest.raises(FileNotFoundError, match="ratings.txt"):
        load_filmtrust(tmp_path / "deep")


def test_missing_folder_and_files_are_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_ciao(missing)
    assert str(missing) in str(info.value) and "rating.mat" in str(info.value)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "ratings.txt").write_text("1 1 1\n")
    with pytest.raises(FileNotFoundError, match=r"'trust\.txt'"):
        load_filmtrust(tmp_path / "half")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        load_movielens_100k(tmp_path / "half" / "ratings.txt")


def test_non_integer_ids_are_reported(tmp_path):
    folder = _write_filmtrust(tmp_path / "ft")
    (folder / "ratings.txt").write_text("1 10 3\n1 x 4\n")
    with pytest.raises(ValueError, match=r"column 'item'.*rows \[1\]"):
        load_filmtrust(folder)


def _write_tang(folder: Path, rating_name="rating", trust_name="trustnetwork", extra=None):
    folder.mkdir(parents=True, exist_ok=True)
    rating = np.array(
        [
            # user, product, category, rating, helpfulness
            [1, 100, 7, 5, 3],
            [1, 101, 7, 0, 3],
            [2, 100, 7, 2, 4],
            [2, 100, 7, 3, 4],
            [3, 102, 8, 6, 1],
        ],
        dtype=np.int32,
    )
    trust = np.array([[1, 2], [2, 1], [3, 3], [4, 1], [4, 1]], dtype=np.uint16)
    contents = {rating_name: rating}
    if extra:
        contents.update(extra)
    scipy.io.savemat(folder / "rating.mat", contents)
    scipy.io.savemat(folder / "trustnetwork.mat", {trust_name: trust})
    return folder


def test_epinions_layout_with_unusual_variable_names(tmp_path):
    _write_tang(tmp_path / "epinions", rating_name="rating_data", trust_name="trust")
    (ratings, social), messages = _load_recording(load_epinions, tmp_path)
    _check_frames(ratings, social)
    assert messages == [
        "Epinions: dropped 2 rating rows outside the 1-5 scale (values: 0, 6).",
        "Epinions: 1 duplicate (user, item) pair(s) (1 extra row(s)) merged into their mean rating; "
        "1 of them had different ratings.",
        "Epinions: dropped 1 self-loop(s) and 1 duplicate edge(s) (kept the first of each duplicate); "
        "3 edge(s) remain.",
    ]
    assert ratings.values.tolist() == [[1, 100, 5.0], [2, 100, 2.5]]
    assert social[["user", "friend"]].values.tolist() == [[1, 2], [2, 1], [4, 1]]
    assert 4 not in set(ratings["user"])


def test_tang_layout_ambiguous_variables_rejected(tmp_path):
    folder = _write_tang(tmp_path / "ciao", rating_name="a", extra={"b": np.ones((2, 5))})
    with pytest.raises(ValueError, match=r"no variable 'rating'.*\['a', 'b'\]"):
        load_ciao(folder)
    scipy.io.savemat(folder / "rating.mat", {"rating": np.ones((3, 3))})
    with pytest.raises(ValueError, match=r"at least 4 columns; got shape \(3, 3\)"):
        load_ciao(folder)


def test_movielens_parsers(tmp_path):
    small = tmp_path / "ml-100k"
    small.mkdir()
    (small / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t242\t5\t881250950\n")
    (ratings, social), messages = _load_recording(load_movielens_100k, tmp_path)
    assert social is None
    _check_frames(ratings, None)
    assert ratings.values.tolist() == [[196, 242, 4.0], [186, 302, 3.0]]
    assert len(messages) == 1 and messages[0].startswith("MovieLens 100K: 1 duplicate (user, item) pair(s)")

    large = tmp_path / "ml-1m"
    large.mkdir()
    (large / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1357::6::978298709\n")
    (ratings, social), messages = _load_recording(load_movielens_1m, large)
    assert social is None
    _check_frames(ratings, None)
    assert ratings.values.tolist() == [[1, 1193, 5.0], [1, 661, 3.0]]
    assert messages == ["MovieLens 1M: dropped 1 rating rows outside the 1-5 scale (values: 6)."]


def test_clean_files_give_no_warning(tmp_path):
    folder = tmp_path / "ft"
    folder.mkdir()
    (folder / "ratings.txt").write_text("1 1 1\n1 2 2.5\n")
    (folder / "trust.txt").write_text("1 2 1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ratings, social = load_filmtrust(folder)
    assert len(ratings) == 2 and len(social) == 1
    (folder / "trust.txt").write_text("")
    ratings, social = load_filmtrust(folder)
    assert len(ratings) == 2 and len(social) == 0
    assert [str(t) for t in social.dtypes] == ["int64", "int64", "float64"]


# ---------------------------------------------------------------------------
# Downloader against a local HTTP server
# ---------------------------------------------------------------------------


class _LocalServer:
    """Serves ``files[path] = (body, mode)``; mode 'ok', 'truncate' or 'nolength-truncate'."""

    def __init__(self):
        self.files = {}
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                if self.path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                body, mode = server.files[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                if mode != "nolength-truncate":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if mode == "ok" else body[: len(body) // 2])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    srv = _LocalServer()
    yield srv
    srv.close()


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "cache"
    monkeypatch.setenv("SOCIALALS_DATA", str(home))
    return home


def _zip_bytes(files, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


FILMTRUST_ZIP = _zip_bytes(
    {"ratings.txt": FILMTRUST_RATINGS, "trust.txt": FILMTRUST_TRUST, "readme.txt": "x"}
)


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_load_and_cache(server, data_home):
    server.files["/filmtrust.zip"] = (FILMTRUST_ZIP, "ok")
    url = server.url + "/filmtrust.zip"
    (ratings, social), messages = _load_recording(load_filmtrust, url=url, progress=False)
    _check_small_filmtrust(ratings, social, messages)
    assert server.requests == ["/filmtrust.zip"]
    digest = hashlib.sha256(FILMTRUST_ZIP).hexdigest()
    # Trust on first use: the hash is recorded beside the archive.
    assert (data_home / "filmtrust.zip.sha256").read_text().split()[0] == digest
    assert (data_home / "filmtrust.zip").read_bytes() == FILMTRUST_ZIP
    assert (data_home / "filmtrust" / "ratings.txt").is_file()
    assert not list(data_home.glob("*.part"))

    (again, _), _ = _load_recording(load_filmtrust, url=url, progress=False)
    assert server.requests == ["/filmtrust.zip"]  # served from the cache
    pd.testing.assert_frame_equal(again, ratings)


def test_download_with_known_hash_via_registry(server, data_home, monkeypatch):
    body = _zip_bytes({"ml-100k/u.data": "1\t2\t3\t0\n"})
    server.files["/ml-100k.zip"] = (body, "ok")
    monkeypatch.setitem(
        ds.REGISTRY,
        "movielens-100k",
        RemoteArchive(server.url + "/ml-100k.zip", "ml-100k.zip", hashlib.sha256(body).hexdigest()),
    )
    ratings, social = load_movielens_100k(progress=False)
    assert ratings.values.tolist() == [[1, 2, 3.0]] and social is None
    assert server.requests == ["/ml-100k.zip"]


def test_truncated_download_is_deleted_and_not_loaded(server, data_home):
    server.files["/filmtrust.zip"] = (FILMTRUST_ZIP, "truncate")
    url = server.url + "/filmtrust.zip"
    with pytest.raises(DownloadError) as info:
        load_filmtrust(url=url, progress=False)
    message = str(info.value)
    assert url in message and "incomplete" in message
    assert f"{len(FILMTRUST_ZIP):,} bytes" in message and f"sent {len(FILMTRUST_ZIP) // 2:,}" in message
    assert isinstance(info.value, OSError)
    assert _leftovers(data_home) == []  # no temporary file, no archive, no empty cache folder
    assert not data_home.exists()


def test_truncation_without_content_length_fails_the_hash(server, data_home):
    server.files["/f.bin"] = (FILMTRUST_ZIP, "nolength-truncate")  # not .zip: no archive check
    digest = hashlib.sha256(FILMTRUST_ZIP).hexdigest()
    with pytest.raises(ChecksumError, match=rf"expected SHA-256 {digest} \(given\)"):
        fetch(server.url + "/f.bin", digest, progress=False)
    assert _leftovers(data_home) == []


def test_wrong_checksum_is_deleted_and_not_loaded(server, data_home):
    server.files["/filmtrust.zip"] = (FILMTRUST_ZIP, "ok")
    url = server.url + "/filmtrust.zip"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        load_filmtrust(url=url, sha256=wrong, progress=False)
    message = str(info.value)
    assert url in message and wrong in message and hashlib.sha256(FILMTRUST_ZIP).hexdigest() in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, OSError)
    assert _leftovers(data_home) == []


def test_http_error_is_reported(server, data_home):
    url = server.url + "/missing.zip"
    with pytest.raises(DownloadError, match=r"missing\.zip: HTTP 404"):
        fetch(url, progress=False)
    assert _leftovers(data_home) == []


def test_corrupt_zip_is_rejected(server, data_home):
    body = _zip_bytes({"ratings.txt": "payload-abcdef\n"}, compression=zipfile.ZIP_STORED)
    broken = body.replace(b"payload-abcdef", b"payload-abcdeX")
    assert broken != body
    server.files["/bad.zip"] = (broken, "ok")
    with pytest.raises(DownloadError, match=r"corrupt: member 'ratings.txt' fails its CRC check"):
        fetch(server.url + "/bad.zip", progress=False)
    assert _leftovers(data_home) == []


def test_trust_on_first_use_then_verify(server, data_home):
    server.files["/f.zip"] = (FILMTRUST_ZIP, "ok")
    url = server.url + "/f.zip"
    path = fetch(url, progress=False)
    assert path == data_home / "f.zip"
    recorded = (data_home / "f.zip.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(FILMTRUST_ZIP).hexdigest()

    # A damaged cached copy is fetched again and must match the recorded hash.
    path.write_bytes(b"damaged")
    assert fetch(url, progress=False).read_bytes() == FILMTRUST_ZIP
    assert len(server.requests) == 2

    # If the server now serves different bytes, the recorded hash rejects them.
    other = _zip_bytes({"ratings.txt": "1 1 1\n", "trust.txt": ""})
    server.files["/f.zip"] = (other, "ok")
    path.write_bytes(b"damaged again")
    with pytest.raises(ChecksumError, match="recorded at first download"):
        fetch(url, progress=False)
    assert not path.exists() and not list(data_home.glob("*.part"))


def test_hand_placed_archive_is_trusted_once_if_intact(server, data_home):
    server.files["/f.zip"] = (FILMTRUST_ZIP, "ok")
    url = server.url + "/f.zip"
    data_home.mkdir()
    (data_home / "f.zip").write_bytes(FILMTRUST_ZIP)
    assert fetch(url, progress=False) == data_home / "f.zip"
    assert server.requests == []  # used as it is, and its hash recorded
    assert (data_home / "f.zip.sha256").read_text().split()[0] == hashlib.sha256(FILMTRUST_ZIP).hexdigest()

    (data_home / "f.zip.sha256").unlink()
    (data_home / "f.zip").write_bytes(FILMTRUST_ZIP[:-10])  # not an intact zip: fetched again
    assert fetch(url, progress=False).read_bytes() == FILMTRUST_ZIP
    assert server.requests == ["/f.zip"]


def test_data_home_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("SOCIALALS_DATA", str(tmp_path / "env"))
    assert get_data_home() == (tmp_path / "env").resolve()
    assert not (tmp_path / "env").exists()  # created by the first download, not by asking
    assert get_data_home(tmp_path / "arg") == (tmp_path / "arg").resolve()
    monkeypatch.delenv("SOCIALALS_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_data_home() == (tmp_path / "home" / "socialals_data").resolve()


def test_progress_only_on_a_terminal(server, data_home, capsys, monkeypatch):
    server.files["/f.zip"] = (FILMTRUST_ZIP, "ok")
    fetch(server.url + "/f.zip", progress=True)  # stderr is captured, not a terminal
    assert capsys.readouterr().err == ""  # no bar, and none of pooch's log lines

    pytest.importorskip("tqdm")
    monkeypatch.setattr(ds, "_stderr_is_tty", lambda: True)
    fetch(server.url + "/f.zip", filename="g.zip", progress=True)
    assert "100%" in capsys.readouterr().err  # the tqdm bar
    fetch(server.url + "/f.zip", filename="h.zip", progress=False)
    assert capsys.readouterr().err == ""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm missing: no bar, no error
    fetch(server.url + "/f.zip", filename="i.zip", progress=True)
    assert capsys.readouterr().err == ""


def test_fetch_hands_its_timeout_to_the_downloader(server, data_home, monkeypatch):
    seen = {}
    real = ds.make_downloader

    def spy(timeout, progress):
        seen.update(timeout=timeout, progress=progress)
        return real(timeout, progress)

    monkeypatch.setattr(ds, "make_downloader", spy)
    server.files["/f.zip"] = (FILMTRUST_ZIP, "ok")
    fetch(server.url + "/f.zip", progress=False, timeout=7.5)
    assert seen == {"timeout": 7.5, "progress": False}


def test_registry_is_consistent():
    assert set(ds.REGISTRY) == {"filmtrust", "ciao", "epinions", "movielens-100k", "movielens-1m"}
    for spec in ds.REGISTRY.values():
        assert spec.url.startswith("https://") and spec.url.endswith("/" + spec.filename)
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)


# ---------------------------------------------------------------------------
# Synthetic generator
# ---------------------------------------------------------------------------


def test_synthetic_defaults_shape_and_scale():
    ratings, social = make_social_ratings(random_state=0)
    _check_frames(ratings, social)
    assert 30_000 <= len(ratings) <= 50_000
    assert ratings["user"].nunique() == 1_000
    assert ratings["user"].between(0, 999).all() and ratings["item"].between(0, 499).all()
    assert ratings["rating"].isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    assert ratings["rating"].nunique() == 5
    assert (social["weight"] == 1.0).all()
    assert 5 <= len(social) / 1_000 <= 15  # about n_friends=10 per user
    per_user = ratings.groupby("user").size()
    assert (per_user < 5).sum() == 200  # cold_start_fraction=0.2 of 1000
    assert per_user.min() >= 1
    # Long tail: the 10% most rated items take far more than 10% of ratings.
    per_item = ratings.groupby("item").size().sort_values(ascending=False)
    assert per_item.iloc[:50].sum() > 0.3 * len(ratings)


def test_synthetic_is_deterministic():
    first = make_social_ratings(n_users=300, n_items=120, random_state=7)
    second = make_social_ratings(n_users=300, n_items=120, random_state=7)
    other = make_social_ratings(n_users=300, n_items=120, random_state=8)
    for a, b in zip(first, second):
        pd.testing.assert_frame_equal(a, b)
    assert not first[0].equals(other[0])
    gen = make_social_ratings(n_users=300, n_items=120, random_state=np.random.default_rng(7))
    pd.testing.assert_frame_equal(gen[0], first[0])


def test_synthetic_custom_scale_and_step():
    ratings, _ = make_social_ratings(
        n_users=200, n_items=80, rating_scale=(0.5, 4.0), rating_step=0.5, random_state=1
    )
    assert ratings["rating"].between(0.5, 4.0).all()
    assert np.allclose(ratings["rating"] * 2, np.round(ratings["rating"] * 2))
    assert ratings["rating"].nunique() > 4
    continuous, _ = make_social_ratings(n_users=200, n_items=80, rating_step=None, random_state=1)
    assert continuous["rating"].between(1, 5).all()
    assert not np.allclose(continuous["rating"], np.round(continuous["rating"]))


def _mean_cosine(factors, a, b):
    x, y = factors[a], factors[b]
    return float(np.mean(np.sum(x * y, 1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)))


def test_synthetic_homophily():
    _, social, truth = make_social_ratings(homophily=0.8, return_truth=True, random_state=3)
    factors = truth["user_factors"]
    rng = np.random.default_rng(0)
    a, b = rng.integers(1_000, size=(2, 20_000))
    friends = _mean_cosine(factors, social["user"].to_numpy(), social["friend"].to_numpy())
    strangers = _mean_cosine(factors, a[a != b], b[a != b])
    assert friends > 0.5 and strangers < 0.2
    same = truth["community"][social["user"]] == truth["community"][social["friend"]]
    assert 0.75 < same.mean() < 0.9  # 0.8 drawn inside, plus ~1/10 of the random rest

    _, social0, truth0 = make_social_ratings(homophily=0.0, return_truth=True, random_state=3)
    neutral = _mean_cosine(truth0["user_factors"], social0["user"].to_numpy(), social0["friend"].to_numpy())
    assert abs(neutral) < 0.1


def test_synthetic_ratings_follow_the_true_model():
    ratings, _, truth = make_social_ratings(
        n_users=400, n_items=150, noise=0.0, rating_step=None, return_truth=True, random_state=5
    )
    u, i = ratings["user"].to_numpy(), ratings["item"].to_numpy()
    expected = (
        truth["global_mean"]
        + truth["user_bias"][u]
        + truth["item_bias"][i]
        + np.sum(truth["user_factors"][u] * truth["item_factors"][i], axis=1)
    )
    np.testing.assert_allclose(ratings["rating"], np.clip(expected, 1, 5))


def test_synthetic_social_only_users_and_cold_start():
    ratings, social, truth = make_social_ratings(
        n_users=300, n_items=100, social_only_users=25, return_truth=True, random_state=2
    )
    _check_frames(ratings, social)
    only = set(truth["social_only_users"].tolist())
    assert only == set(range(300, 325))
    assert not only & set(ratings["user"])
    assert only <= set(social["user"])  # each trusts at least one user
    cold = truth["cold_start_users"]
    assert len(cold) == 60
    per_user = ratings.groupby("user").size()
    assert per_user[cold].between(1, 4).all()
    assert (per_user.drop(cold) >= 5).all()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"homophily": 1.5}, "homophily"),
        ({"density": 0}, "density"),
        ({"n_users": 1}, "n_users"),
        ({"rating_scale": (5, 1)}, "rating_scale"),
        ({"cold_start_fraction": -0.1}, "cold_start_fraction"),
        ({"rating_step": 0}, "rating_step"),
        ({"social_only_users": 2.5}, "social_only_users"),
    ],
)
def test_synthetic_parameter_errors(kwargs, name):
    with pytest.raises(ValueError, match=rf"The '{name}' parameter of make_social_ratings must be"):
        make_social_ratings(**kwargs)


def test_docstring_examples_run():
    result = doctest.testmod(ds, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
