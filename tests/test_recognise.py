"""A local copy of a known data set is recognised by its files' content (not their names),
gets that data set's tuned defaults, and the command line says which settings it used."""

from __future__ import annotations

import hashlib
import shutil
import warnings

import pooch
import pytest

import socialals
from socialals import cli, datasets
from socialals._defaults import DEFAULTS
from socialals.datasets import KnownFile, identify_files
from socialals.exceptions import DataWarning
from socialals.io import load_data

from conftest import SHARED_DATASETS, require_dataset

RATINGS = "1 1 2.0\n1 2 3.5\n2 1 4.0\n2 3 1.5\n3 2 3.0\n"
TRUST = "1 2 1\n2 3 1\n"


def _known(*paths):
    """The KNOWN_FILES entry of these files, computed independently of the library (hashlib)."""
    return tuple(KnownFile(p.name, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths)


@pytest.fixture
def tiny_release(tmp_path, monkeypatch):
    """A tiny FilmTrust-layout folder registered as the published FilmTrust files."""
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "ratings.txt").write_text(RATINGS)
    (folder / "trust.txt").write_text(TRUST)
    monkeypatch.setitem(datasets.KNOWN_FILES, "filmtrust", _known(folder / "ratings.txt", folder / "trust.txt"))
    return folder


def _load(path, social=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_data(str(path), None if social is None else str(social), explain=True)


def test_a_renamed_copy_is_recognised_and_a_changed_copy_is_not(tiny_release, tmp_path):
    copy = tmp_path / "mydata"
    shutil.copytree(tiny_release, copy)
    _, _, key, why = _load(copy)
    assert key == "filmtrust"
    digest = hashlib.sha256(RATINGS.encode()).hexdigest()
    assert why.startswith("recognised by content: ratings.txt sha256 " + digest[:12]), why
    # the same bytes under other file names, as a ratings file and a social file
    (tmp_path / "r.csv").write_text(RATINGS)
    (tmp_path / "s.csv").write_text(TRUST)
    assert identify_files(tmp_path / "r.csv", tmp_path / "s.csv").name == "filmtrust"
    # one changed line of the same length (so the size check alone cannot tell)
    changed = tmp_path / "changed"
    shutil.copytree(tiny_release, changed)
    (changed / "ratings.txt").write_text(RATINGS.replace("2 3 1.5", "2 3 2.5"))
    assert (changed / "ratings.txt").stat().st_size == (tiny_release / "ratings.txt").stat().st_size
    assert _load(changed)[2:] == ("generic", "data not recognised")
    # a changed trust file, or none at all, is not FilmTrust either
    (changed / "ratings.txt").write_text(RATINGS)
    (changed / "trust.txt").write_text(TRUST + "3 1 1\n")
    assert _load(changed)[2:] == ("generic", "data not recognised")
    assert identify_files(copy / "ratings.txt", None) is None


def test_files_of_another_size_are_not_hashed(tiny_release, tmp_path, monkeypatch):
    (tmp_path / "big.txt").write_text(RATINGS * 3)
    calls = []
    monkeypatch.setattr(pooch, "file_hash", lambda path, *a, **k: calls.append(path) or "0" * 64)
    assert identify_files(tmp_path / "big.txt", tiny_release / "trust.txt") is None
    assert calls == []


def test_files_are_hashed_once_however_many_known_sets_share_their_sizes(tiny_release, monkeypatch):
    same_sizes = tuple(KnownFile(k.name, k.size, "f" * 64) for k in datasets.KNOWN_FILES["filmtrust"])
    monkeypatch.setattr(datasets, "KNOWN_FILES", {"lookalike": same_sizes, **datasets.KNOWN_FILES})  # tried first
    calls = []
    real = pooch.file_hash
    monkeypatch.setattr(pooch, "file_hash", lambda path, *a, **k: calls.append(path) or real(path, *a, **k))
    assert identify_files(tiny_release / "ratings.txt", tiny_release / "trust.txt").name == "filmtrust"
    assert sorted(calls) == sorted(str(tiny_release / f) for f in ("ratings.txt", "trust.txt"))


def test_the_reasons_of_the_other_kinds_of_data(tiny_release, tmp_path, monkeypatch):
    assert load_data("synthetic", n_users=30, n_items=20, explain=True)[2:] == (
        "synthetic", "the built-in synthetic data")
    assert len(load_data("synthetic", n_users=30, n_items=20)) == 3  # unchanged without explain
    # a folder called like a data set keeps that data set's settings, and says why
    other = tmp_path / "elsewhere" / "filmtrust"
    shutil.copytree(tiny_release, other)
    (other / "trust.txt").write_text(TRUST + "3 1 1\n")
    monkeypatch.chdir(other.parent)
    key, why = _load("filmtrust")[2:]
    assert key == "filmtrust" and "called 'filmtrust'" in why and "not the published ones" in why


def test_the_command_line_says_which_settings_it_used(tiny_release, tmp_path, capsys):
    copy = tmp_path / "mydata"
    shutil.copytree(tiny_release, copy)
    out = tmp_path / "m.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert cli.main(["fit", "--data", str(copy), "--model", "RegularizedALS", "--out", str(out),
                         "--factors", "2", "--iterations", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "settings: filmtrust (recognised by content: ratings.txt sha256 " in stdout, stdout
    model = socialals.load(out)
    for name, value in DEFAULTS["filmtrust"]["RegularizedALS"].items():
        if name != "iterations":
            assert model.get_params()[name] == value, name
    (copy / "ratings.txt").write_text(RATINGS.replace("3 2 3.0", "3 2 2.0"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert cli.main(["fit", "--data", str(copy), "--model", "RegularizedALS", "--out", str(out),
                         "--factors", "2", "--iterations", "2"]) == 0
        assert "settings: generic (data not recognised)" in capsys.readouterr().out
        assert cli.main(["fit", "--data", str(copy), "--model", "RegularizedALS", "--out", str(out),
                         "--factors", "2", "--iterations", "2", "--defaults", "ciao"]) == 0
        assert "settings: ciao (chosen by --defaults)" in capsys.readouterr().out
    generic = DEFAULTS["generic"]["RegularizedALS"]
    assert socialals.load(out).get_params()["reg"] == DEFAULTS["ciao"]["RegularizedALS"]["reg"] != generic["reg"]


def _published(name):
    """The real data set's folder, when it holds the published files KNOWN_FILES records."""
    folder = require_dataset(name)
    if folder != SHARED_DATASETS / name:
        pytest.skip(f"{name} comes from the download cache ({folder}), not the copy KNOWN_FILES was measured on")
    return folder


@pytest.mark.parametrize("name", ["filmtrust", "ciao"])
def test_a_renamed_copy_of_the_real_data_gets_its_tuned_settings(name, tmp_path, capsys):
    copy = tmp_path / "x" / "mydata"
    shutil.copytree(_published(name), copy)
    key, why = _load(copy)[2:]
    assert key == name and why.startswith("recognised by content: "), why
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        assert cli.main(["compare", "--data", str(copy), "--models", "RegularizedALS", "--folds", "2",
                         "--iterations", "1", "--metrics", "rmse"]) == 0
    stdout = capsys.readouterr().out
    assert f"settings: {name} (recognised by content: " in stdout, stdout
    assert f"hyperparameters: {name} rating defaults" in stdout


def test_a_copy_of_real_filmtrust_with_one_changed_line_is_generic(tmp_path):
    copy = tmp_path / "mydata"
    shutil.copytree(_published("filmtrust"), copy)
    lines = (copy / "ratings.txt").read_text().splitlines(keepends=True)
    user, item, rating = lines[10].split()
    lines[10] = f"{user} {item} {0.5 if float(rating) != 0.5 else 1.0}\n"
    (copy / "ratings.txt").write_text("".join(lines))
    assert _load(copy)[2:] == ("generic", "data not recognised")
