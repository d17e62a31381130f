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
    assert table["model"].tolist() == [n for n in cli._TASK_MODELS["rating"] if n in cli.available_models()]
    numbers = table[COLUMNS[1:]].to_numpy(dtype=float)
    assert np.isfinite(numbers).all()
    assert (table["mae"] <= table["rmse"] + 1e-12).all()  # MAE never exceeds RMSE
    assert table["ndcg_at_10"].between(0, 1).all() and (table["fit_seconds"] > 0).all()
    for name in table["model"]:
        assert name in stdout
    assert "2-fold cross-validation" in stdout and "120 users" in stdout


def test_compare_task_ranking_has_popularity_and_the_ranking_columns(capsys, tmp_path):
    out = tmp_path / "ranking.csv"
    assert cli.main(["compare", *TINY, *FAST, "--task", "ranking", "--output", str(out)]) == 0
    stdout = capsys.readouterr().out
    table = pd.read_csv(out)
    means = ["ndcg_at_10", "recall_at_10", "cold_start_ndcg_at_10", "fit_seconds"]
    assert list(table.columns) == ["model"] + [x for c in means for x in (c, c + "_std")]
    assert table["model"].tolist() == ["Popularity", "RegularizedALS", "SocialALS"]
    assert table["ndcg_at_10"].between(0, 1).all() and table["recall_at_10"].between(0, 1).all()
    assert "ranking defaults" in stdout and "unobserved_weight=0.1" in stdout
    # the ranking settings are the stored ones, beside the rating ones
    assert defaults_for("synthetic", "SocialALS", "ranking")["unobserved_weight"] > 0
    assert defaults_for("synthetic", "SocialALS", "rating").get("unobserved_weight", 0.0) == 0.0


def test_fit_task_ranking_saves_the_ranking_model(capsys, tmp_path):
    out = tmp_path / "m.npz"
    assert cli.main(["fit", *TINY, "--data", "synthetic", "--model", "SocialALS", "--task", "ranking",
                     "--factors", "3", "--out", str(out)]) == 0
    model = socialals.load(out)
    assert model.unobserved_weight == defaults_for("synthetic", "SocialALS", "ranking")["unobserved_weight"]
    assert cli.main(["fit", *TINY, "--data", "synthetic", "--model", "Popularity", "--task", "ranking",
                     "--out", str(tmp_path / "p.npz")]) == 0
    with pytest.raises(SystemExit) as info:  # argparse names the choices
        cli.main(["fit", *TINY, "--data", "synthetic", "--model", "SocialALS", "--task", "top-n", "--out", str(out)])
    assert info.value.code == 2 and "--task" in capsys.readouterr().err


@pytest.fixture
def made_params(monkeypatch):
    """The parameters of every model the command line makes, by model name."""
    seen = {}
    real = cli.make_model

    def spy(name, data_key, **kwargs):
        model = real(name, data_key, **kwargs)
        seen[name] = model.get_params()
        return model

    monkeypatch.setattr(cli, "make_model", spy)
    return seen


def test_compare_subset_and_aliases(capsys, tmp_path):
    out = tmp_path / "t.csv"
    assert cli.main(["compare", *TINY, *FAST, "--models", "socialals", "ALS", "--output", str(out)]) == 0
    assert pd.read_csv(out)["model"].tolist() == ["SocialALS", "ALS"]


def test_compare_uses_the_tuned_defaults(capsys, made_params):
    seen = made_params
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


# ---------------------------------------------------------------------------- surface consistency
def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"socialals {socialals.__version__}"


def test_fit_and_compare_share_options_and_defaults(capsys):
    parser = cli.build_parser()
    fit = parser.parse_args(["fit", "--data", "x", "--model", "ALS", "--out", "m.npz"])
    comp = parser.parse_args(["compare"])
    assert fit.factors == comp.factors == cli.DEFAULT_FACTORS == 10
    assert fit.iterations is None and comp.iterations is None and fit.param == comp.param == []
    with pytest.raises(SystemExit):
        parser.parse_args(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "seed of the model's initialisation" in text and "folds" not in text


@pytest.mark.filterwarnings("ignore:predict:UserWarning")
def test_compare_std_columns_match_cross_validate(tmp_path):
    from socialals.model_selection import cross_validate

    out = tmp_path / "t.csv"
    assert cli.main(["compare", *TINY, *FAST, "--models", "RegularizedALS", "--output", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    ratings, social = socialals.make_social_ratings(n_users=120, n_items=60, random_state=0)
    model = cli.make_model("RegularizedALS", "synthetic", factors=3, seed=0, iterations=3)
    scores = cross_validate(model, ratings, social, cv=2, random_state=0, k=10)
    for metric in ("rmse", "mae", "cold_start_rmse", "ndcg_at_10"):
        assert row[metric] == pytest.approx(scores.loc["mean", metric], rel=1e-12)
        assert row[metric + "_std"] == pytest.approx(scores.loc["std", metric], rel=1e-12)
    assert row["rmse_std"] > 0


def test_compare_metrics_option_skips_ranking(capsys, tmp_path, monkeypatch):
    import socialals.model_selection as ms

    calls = []
    real = ms.evaluate

    def spy(*args, **kwargs):
        calls.append(kwargs.get("ranking"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ms, "evaluate", spy)
    out = tmp_path / "t.csv"
    assert cli.main(["compare", *TINY, *FAST, "--models", "ALS", "--metrics", "rmse", "mae", "--output", str(out)]) == 0
    assert list(pd.read_csv(out).columns) == ["model", "rmse", "rmse_std", "mae", "mae_std", "fit_seconds",
                                              "fit_seconds_std"]
    assert calls == [False, False]
    _fails(capsys, ["compare", *TINY, "--metrics", "auc"], "--metrics", "'auc'")


def test_compare_param_reaches_the_models_that_have_it(capsys, made_params):
    seen = made_params
    argv = ["compare", *TINY, *FAST, "--models", "ALS", "SocialALS", "--param", "alpha=0.5", "--param", "factors=2"]
    assert cli.main(argv) == 0
    assert seen["SocialALS"]["alpha"] == 0.5 and seen["SocialALS"]["factors"] == 2
    assert seen["ALS"]["factors"] == 2 and "alpha" not in seen["ALS"]
    _fails(capsys, ["compare", *TINY, "--models", "ALS", "--param", "alpha=1"], "no model", "['alpha']")


def test_fit_iterations_option(capsys, tmp_path):
    path = tmp_path / "m.npz"
    assert cli.main(["fit", *TINY, "--data", "synthetic", "--model", "RegularizedALS", "--iterations", "2",
                     "--out", str(path)]) == 0
    model = socialals.load(path)
    assert model.get_params()["iterations"] == 2 and model.get_params()["factors"] == 10
    assert len(model.loss_history_) == 2


def test_compare_progress_with_verbose(capsys):
    assert cli.main(["compare", *TINY, *FAST, "--models", "ALS", "SocialALS", "-v"]) == 0
    err = capsys.readouterr().err
    for name in ("ALS", "SocialALS"):
        for fold in (1, 2):
            assert f"socialals: {name} fold {fold}/2: rmse " in err


def test_compare_footnotes(capsys, tmp_path):
    # Every user rates every item: no cold-start user in any fold, and no social graph.
    users, items = np.meshgrid(np.arange(12), np.arange(24), indexing="ij")
    rng = np.random.default_rng(0)
    dense = pd.DataFrame({"user": users.ravel(), "item": items.ravel(),
                          "rating": rng.integers(1, 6, users.size).astype(float)})
    path = tmp_path / "dense.csv"
    dense.to_csv(path, index=False)
    assert cli.main(["compare", "--data", str(path), *FAST, "--models", "ALS", "SocialALS"]) == 0
    out = capsys.readouterr().out
    assert out.count("no social graph: SocialALS is RegularizedALS here") == 1
    assert "cold_start_rmse is nan: no test user had 1-4 training ratings" in out
    assert "ALS is plain, unregularised ALS" in out
    assert "include compiling the numba kernels" in out
    assert "mean ± standard deviation over the folds" in out


def test_repair_warnings_print_once_per_compare(capsys, tmp_path):
    rpath = tmp_path / "r.csv"
    spath = tmp_path / "s.csv"
    ratings, social = socialals.make_social_ratings(n_users=120, n_items=60, random_state=3)
    pd.concat([ratings, ratings.head(5)]).to_csv(rpath, index=False)
    loops = pd.DataFrame({"user": [1, 2], "friend": [1, 2], "weight": [1.0, 1.0]})
    pd.concat([social, loops]).to_csv(spath, index=False)
    assert cli.main(["compare", "--data", str(rpath), "--social", str(spath), *FAST]) == 0
    err = capsys.readouterr().err
    assert err.count("duplicate (user, item) pair(s)") == 1, err
    assert err.count("self-loop(s)") == 1, err


def test_malformed_files_on_the_command_line(capsys, tmp_path, small_csv):
    rpath, _, _, _ = small_csv
    header = tmp_path / "h.csv"
    header.write_text("uid,iid,stars\n1,2,4\n2,3,5\n")
    _fails(capsys, ["compare", "--data", str(header)], "h.csv, line 1", "looks like a header")
    text = tmp_path / "t.csv"
    text.write_text("user,item,rating\n1,2,good\n")
    _fails(capsys, ["fit", "--data", str(text), "--model", "ALS", "--out", str(tmp_path / "m.npz")],
           "t.csv, line 2, column 3 ('rating')", "not a number")
    semi = tmp_path / "semi.txt"
    semi.write_text("user;item;rating\n1;2;4\n2;3;5\n2;2;1\n")
    assert cli.main(["fit", "--data", str(semi), "--model", "ALS", "--iterations", "1",
                     "--out", str(tmp_path / "s.npz")]) == 0
    capsys.readouterr()
    social = tmp_path / "friends.csv"
    social.write_text("source,target\n1,2\n")
    _fails(capsys, ["compare", "--data", str(rpath), "--social", str(social)], "friends.csv, line 1",
           "looks like a header (source, target)")
    small = tmp_path / "small.csv"
    small.write_text("1,2,3\n2,3,4\n")
    _fails(capsys, ["compare", "--data", str(small), "--folds", "5"], "--folds 5 needs at least 5 ratings")


def test_diverging_fit_is_one_line_naming_the_remedy(capsys, tmp_path):
    if "FactorizationMachine" not in cli.available_models():
        pytest.skip("the factorization machine is not installed")
    err = _fails(capsys, ["fit", *TINY, "--data", "synthetic", "--model", "FM", "--param", "solver=sgd",
                          "--param", "learning_rate=1e6", "--out", str(tmp_path / "m.npz")],
                 "diverged", "learning_rate", status=1)
    assert not (tmp_path / "m.npz").exists(), err


def test_output_paths_are_checked_before_any_work(capsys, tmp_path):
    missing_data = str(tmp_path / "no-such-ratings.csv")  # reading it would fail: the path check comes first
    (tmp_path / "folder.npz").mkdir()
    _fails(capsys, ["fit", "--data", missing_data, "--model", "ALS", "--out", str(tmp_path / "folder.npz")],
           "is a folder")
    _fails(capsys, ["compare", "--data", missing_data, "--output", str(tmp_path)], "is a folder")
    if Path("/proc/self").is_dir():  # a read-only file system, read-only even for root
        _fails(capsys, ["fit", "--data", missing_data, "--model", "ALS", "--out", "/proc/m.npz"], "not writable")
        _fails(capsys, ["compare", "--data", missing_data, "--output", "/proc/t.csv"], "not writable")


def test_unexpected_errors_are_one_line_too(capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("something\ninternal")

    monkeypatch.setattr(cli, "load_data", boom)
    _fails(capsys, ["compare"], "RuntimeError: something internal", "SOCIALALS_DEBUG=1", status=1)


def test_compare_progress_bar_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    fake = Terminal()
    monkeypatch.setattr(sys, "stderr", fake)
    assert cli.main(["compare", *TINY, *FAST, "--models", "RegularizedALS"]) == 0
    text = fake.getvalue()
    assert "RegularizedALS fold 2/2" in text and "2/2" in text


# ---------------------------------------------------------------------------- tune
TUNE = ["--factors", "3", "--trials", "3", "--folds", "2", "--max-iterations", "6"]


@pytest.fixture
def params_file(capsys, tmp_path):
    pytest.importorskip("optuna", reason="socialals tune needs the 'tune' extra (Optuna)")
    out = tmp_path / "params.json"
    assert cli.main(["tune", "--data", "synthetic", *TINY, *TUNE, "--model", "SocialALS", "RegularizedALS",
                     "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "best" in captured.err  # progress: the best score so far
    return out


def test_tune_file_round_trips_into_fit_and_compare(capsys, tmp_path, params_file):
    from socialals.tune import read_params

    chosen = read_params(params_file)
    assert set(chosen) == {"SocialALS", "RegularizedALS"} and chosen["SocialALS"]["factors"] == 3
    model_path = tmp_path / "m.npz"
    assert cli.main(["fit", "--data", "synthetic", *TINY, "--model", "SocialALS", "--params", str(params_file),
                     "--out", str(model_path)]) == 0
    fitted = socialals.load(model_path)
    assert {k: fitted.get_params()[k] for k in chosen["SocialALS"]} == chosen["SocialALS"]
    # --param still overrides the file
    assert cli.main(["fit", "--data", "synthetic", *TINY, "--model", "SocialALS", "--params", str(params_file),
                     "--param", "alpha=0.5", "--out", str(model_path)]) == 0
    assert socialals.load(model_path).alpha == 0.5
    capsys.readouterr()
    assert cli.main(["compare", *TINY, "--folds", "2", "--models", "RegularizedALS", "SocialALS", "--metrics", "rmse",
                     "--params", str(params_file)]) == 0
    out = capsys.readouterr().out
    assert f"hyperparameters: {params_file} for " in out
    assert f"reg={chosen['SocialALS']['reg']!r}" in out


def test_params_file_errors_exit_2(capsys, tmp_path, params_file):
    _fails(capsys, ["fit", "--data", "synthetic", *TINY, "--model", "ALS", "--params", str(params_file),
                    "--out", str(tmp_path / "m.npz")], "holds settings for ['RegularizedALS', 'SocialALS'], not for ALS")
    _fails(capsys, ["compare", *TINY, "--models", "SocialALS", "--params", str(params_file)],
           "holds settings for ['RegularizedALS']", "which compare --models does not run")
    doc = params_file.read_text().replace('"alpha"', '"alfa"')
    (tmp_path / "bad.json").write_text(doc)
    _fails(capsys, ["fit", "--data", "synthetic", *TINY, "--model", "SocialALS", "--params", str(tmp_path / "bad.json"),
                    "--out", str(tmp_path / "m.npz")], "unknown parameter(s) ['alfa'] for SocialALS", "bad.json")
    _fails(capsys, ["fit", "--data", "synthetic", *TINY, "--model", "SocialALS", "--params", str(tmp_path / "no.json"),
                    "--out", str(tmp_path / "m.npz")], "no.json", "does not exist")


def test_tune_errors_exit_2(capsys, tmp_path):
    pytest.importorskip("optuna", reason="socialals tune needs the 'tune' extra (Optuna)")
    out = str(tmp_path / "p.json")
    base = ["tune", "--data", "synthetic", *TINY, "--model", "SocialALS", "--output", out]
    _fails(capsys, [*base, "--budget", "0.000001"], "budget of 1e-06 s is too small for one trial of SocialALS")
    _fails(capsys, [*base, "--grid", "regg=1,2"], "--grid: unknown parameter(s) ['regg']")
    _fails(capsys, [*base, "--grid", "reg=a:b"], "--grid 'reg=a:b'")
    _fails(capsys, [*base, "--grid", "iterations=5,10"], "'iterations' cannot be searched")
    _fails(capsys, [*base, "--param", "alfa=1"], "--param: no model of ['SocialALS'] has the parameter(s) ['alfa']")
    _fails(capsys, [*base, "--budget", "-1"], "--budget must be")
    _fails(capsys, ["compare", *TINY, "--budget", "5"], "--budget and --trials need --tune")
    _fails(capsys, ["compare", *TINY, "--tune", "--params", out], "give --tune", "or --params")
    _fails(capsys, ["compare", *TINY, "--tune", "--iterations", "5"], "give --max-iterations instead of --iterations")
    assert not (tmp_path / "p.json").exists()


def test_tune_without_optuna_names_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    _fails(capsys, ["tune", "--data", "synthetic", *TINY, "--model", "SocialALS", "--output", str(tmp_path / "p.json")],
           "pip install 'socialals[tune]'")


def test_compare_tune_reports_the_settings_of_every_fold(capsys):
    pytest.importorskip("optuna", reason="compare --tune needs the 'tune' extra (Optuna)")
    assert cli.main(["compare", *TINY, "--folds", "2", "--factors", "3", "--tune", "--trials", "2", "--inner-folds", "2",
                     "--max-iterations", "5", "--models", "ALS", "SocialALS", "--metrics", "rmse"]) == 0
    out = capsys.readouterr().out
    assert "tuned inside each training fold" in out
    for model in ("ALS", "SocialALS"):
        for fold in (1, 2):
            assert f"{model:<22} fold {fold}: " in out
