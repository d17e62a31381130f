"""The ``socialals`` command line, run in-process through ``main``."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import socialals
from socialals import cli
from socialals._defaults import DEFAULTS, defaults_for

from conftest import require_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-users", "120", "--n-items", "60"]
FAST = ["--folds", "2", "--factors", "3", "--iterations", "3"]
COLUMNS = ["model", "rmse", "rmse_std", "mae", "mae_std", "cold_start_rmse", "cold_start_rmse_std",
           "ndcg_at_10", "ndcg_at_10_std", "fit_seconds", "fit_seconds_std"]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("SOCIALALS_DEBUG", raising=False)


def _fails(capsys, argv, *fragments, status=2):
    """Run ``main(argv)``, expect ``status`` (2: usage or input error) and a one-line error."""
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("socialals: error: "), err
    assert err.count("\n") == 1, err  # exactly one line
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.fixture
def small_csv(tmp_path):
    ratings, social = socialals.make_social_ratings(n_users=120, n_items=60, random_state=3)
    rpath, spath = tmp_path / "ratings.csv", tmp_path / "social.csv"
    ratings.to_csv(rpath, index=False)
    social[["user", "friend"]].to_csv(spath, index=False)
    return rpath, spath, ratings, social


# ---------------------------------------------------------------------------- compare
def test_compare_writes_the_six_columns(capsys, tmp_path):
    out = tmp_path / "table.csv"
    assert cli.main(["compare", *TINY, *FAST, "--output", str(out)]) == 0
    stdout = capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS
    assert table["model"].tolist() == list(cli.available_models())
    numbers = table[COLUMNS[1:]].to_numpy(dtype=float)
    assert np.isfinite(numbers).all()
    assert (table["mae"] <= table["rmse"] + 1e-12).all()  # MAE never exceeds RMSE
    assert table["ndcg_at_10"].between(0, 1).all() and (table["fit_seconds"] > 0).all()
    for name in table["model"]:
        assert name in stdout
    assert "2-fold cross-validation" in stdout and "120 users" in stdout


def test_compare_subset_and_aliases(capsys, tmp_path):
    out = tmp_path / "t.csv"
    assert cli.main(["compare", *TINY, *FAST, "--models", "socialals", "ALS", "--output", str(out)]) == 0
    assert pd.read_csv(out)["model"].tolist() == ["SocialALS", "ALS"]


def test_compare_uses_the_tuned_defaults(capsys, monkeypatch):
    seen = {}
    real = cli.make_model

    def spy(name, data_key, **kwargs):
        model = real(name, data_key, **kwargs)
        seen[name] = model.get_params()
        return model

    monkeypatch.setattr(cli, "make_model", spy)
    assert cli.main(["compare", *TINY, "--folds", "2", "--factors", "4", "--models", "SocialALS", "--seed", "7"]) == 0
    expected = defaults_for("synthetic", "SocialALS")
    assert expected  # the synthetic entry has tuned settings
    for key, value in expected.items():
        assert seen["SocialALS"][key] == value, key
    assert seen["SocialALS"]["factors"] == 4 and seen["SocialALS"]["random_state"] == 7


def test_compare_on_a_ratings_file_with_social_file(capsys, tmp_path, small_csv):
    rpath, spath, ratings, _ = small_csv
    out = tmp_path / "t.csv"
    argv = ["compare", "--data", str(rpath), "--social", str(spath), *FAST, "--models", "RegularizedALS", "SocialALS",
            "--output", str(out)]
    assert cli.main(argv) == 0
    assert f"{len(ratings):,} ratings" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert len(table) == 2 and np.isfinite(table[COLUMNS[1:]].to_numpy(float)).all()


def test_compare_errors(capsys, tmp_path, small_csv):
    rpath, spath, _, _ = small_csv
    _fails(capsys, ["compare", *TINY, "--models", "SVD"], "unknown model 'SVD'")
    _fails(capsys, ["compare", "--data", str(tmp_path / "nothing.csv")], "nothing.csv", "neither a known data set")
    _fails(capsys, ["compare", "--data", "synthetic", "--social", str(spath)], "--social applies only")
    _fails(capsys, ["compare", *TINY, "--folds", "1"], "--folds must be at least 2")
    _fails(capsys, ["compare", *TINY, "--output", str(tmp_path / "no" / "t.csv")], "does not exist")
    _fails(capsys, ["compare", *TINY, "--defaults", "imdb"], "--defaults must be one of")
    bad = tmp_path / "bad.csv"
    bad.write_text("user,product,stars\n1,2,3\n")
    _fails(capsys, ["compare", "--data", str(bad)], "bad.csv, line 1", "missing item, rating")
    other = tmp_path / "ml.csv"
    other.write_text("userId,movieId,rating\n1,2,3\n")
    _fails(capsys, ["compare", "--data", str(other)], "ml.csv, line 1", "missing user, item")
    (tmp_path / "folder").mkdir()
    _fails(capsys, ["compare", "--data", str(tmp_path / "folder")], "neither FilmTrust files")


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["compare", "--folds", "two"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        cli.main([])


# ---------------------------------------------------------------------------- fit / recommend
def test_fit_then_recommend(capsys, tmp_path):
    path = tmp_path / "model.npz"
    argv = ["fit", "--data", "synthetic", *TINY, "--model", "SocialALS", "--param", "reg=0.3",
            "--param", "similarity=none", "--factors", "4", "--out", str(path)]
    assert cli.main(argv) == 0
    assert str(path) in capsys.readouterr().out
    model = socialals.load(path)
    assert type(model).__name__ == "SocialALS"
    expected = {**defaults_for("synthetic", "SocialALS"), "reg": 0.3, "similarity": None, "factors": 4}
    for key, value in expected.items():
        assert model.get_params()[key] == value, key

    user = int(model.users_[5])
    assert cli.main(["recommend", "--model", str(path), "--user", str(user), "-n", "4"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f"user {user}" in out[0]
    listed = [int(line.split()[1]) for line in out[2:]]
    assert listed == model.recommend(user, n=4)["item"].tolist()
    seen = set(model._seen[5].indices)
    assert not {model.items_.get_loc(i) for i in listed} & seen  # rated items left out

    assert cli.main(["recommend", "--model", str(path), "--user", str(user), "-n", "3", "--include-seen"]) == 0
    listed = [int(line.split()[1]) for line in capsys.readouterr().out.splitlines()[2:]]
    assert listed == model.recommend(user, n=3, exclude_seen=False)["item"].tolist()


def test_fit_and_recommend_string_users(capsys, tmp_path):
    csv = tmp_path / "r.csv"
    pd.DataFrame({"user": ["ann", "ann", "bob", "bob", "cy"], "item": ["x", "y", "x", "z", "y"],
                  "rating": [5, 3, 4, 2, 1]}).to_csv(csv, index=False)
    path = tmp_path / "m.npz"
    assert cli.main(["fit", "--data", str(csv), "--model", "RegularizedALS", "--out", str(path)]) == 0
    capsys.readouterr()
    assert cli.main(["recommend", "--model", str(path), "--user", "ann", "-n", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[2:]] == ["z"]  # the one item ann has not rated
    _fails(capsys, ["recommend", "--model", str(path), "--user", "dan"], "unknown user 'dan'")


def test_fit_errors(capsys, tmp_path):
    out = str(tmp_path / "m.npz")
    base = ["fit", "--data", "synthetic", *TINY, "--out", out]
    _fails(capsys, [*base, "--model", "SocialALS", "--param", "bogus=1"], "unknown parameter(s) ['bogus']")
    _fails(capsys, [*base, "--model", "SocialALS", "--param", "reg=-1"], "'reg'", ">= 0")
    _fails(capsys, [*base, "--model", "SocialALS", "--param", "reg"], "key=value")
    _fails(capsys, ["fit", "--data", "synthetic", "--model", "ALS", "--out", str(tmp_path / "x" / "m.npz")], "does not exist")
    assert not Path(out).exists()


def test_recommend_errors(capsys, tmp_path):
    path = tmp_path / "m.npz"
    assert cli.main(["fit", "--data", "synthetic", *TINY, "--model", "ALS", "--param", "iterations=2", "--out", str(path)]) == 0
    capsys.readouterr()
    _fails(capsys, ["recommend", "--model", str(path), "--user", "100000"], "unknown user '100000'")
    _fails(capsys, ["recommend", "--model", str(path), "--user", "abc"], "users are integers")
    _fails(capsys, ["recommend", "--model", str(path), "--user", "1", "-n", "0"], "-n must be at least 1")
    _fails(capsys, ["recommend", "--model", str(tmp_path / "missing.npz"), "--user", "1"], "missing.npz", "does not exist")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a model")
    _fails(capsys, ["recommend", "--model", str(junk), "--user", "1"], "junk.npz")


def test_python_dash_m(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "socialals", "recommend", "--model", str(tmp_path / "no.npz"),
                           "--user", "1"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "no.npz" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "socialals", "--help"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "compare" in done.stdout


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'socialals = "socialals.cli:main"' in text


def test_every_defaults_entry_is_valid():
    models = cli.available_models()
    for data, table in DEFAULTS.items():
        for name, params in table.items():
            if name in models:
                cli.make_model(name, data)  # raises on an unknown or invalid setting


# ---------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_compare_on_filmtrust(capsys, tmp_path):
    folder = require_dataset("filmtrust")
    out = tmp_path / "ft.csv"
    argv = ["compare", "--data", str(folder), "--defaults", "filmtrust", "--folds", "2", "--iterations", "5",
            "--models", "RegularizedALS", "SocialALS", "--output", str(out)]
    assert cli.main(argv) == 0
    assert "35,494 ratings" in capsys.readouterr().out
    table = pd.read_csv(out).set_index("model")
    assert table.loc["SocialALS", "rmse"] < 1.0
    assert table.loc["RegularizedALS", "rmse"] < 1.0
