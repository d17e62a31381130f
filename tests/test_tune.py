"""socialals.tune: the search finds good settings, alpha=0 is in the space, the same seed gives
the same choices, params files round-trip, bad input is a ValueError, and nested tuning sees
only the training rows of each outer fold."""

from __future__ import annotations

import importlib
import json
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("optuna", reason="socialals.tune needs the 'tune' extra (Optuna)")

from socialals import GridSearch, RegularizedALS, make_social_ratings  # noqa: E402
from socialals.base import BaseRecommender  # noqa: E402

tune_module = importlib.import_module("socialals.tune")  # `socialals.tune` is the function
tune = tune_module.tune


@pytest.fixture(scope="module")
def data():
    ratings, social = make_social_ratings(n_users=150, n_items=80, random_state=0)
    return ratings, social


FAST = dict(cv=2, max_iterations=12, verbose=False, random_state=0)


@pytest.mark.filterwarnings("ignore:predict")
def test_tune_finds_the_good_region_and_reports_the_refit_score(data):
    """The chosen reg is in the region a brute-force grid finds best, and its validation
    score is what refitting it with the chosen iterations gives (the curve is exact)."""
    ratings, _ = data
    # without biases the validation RMSE has a sharp minimum in reg (1.53 at reg 2, 1.79 at
    # 0.74 and 5.5, 3.2 at 0.1, 3.7 at 300)
    space = {"weighted_reg": False, "biases": False}
    result = tune("RegularizedALS", ratings, n_trials=12, space={**space, "reg": (0.1, 300.0)}, start=[], **FAST)
    # brute force on the same folds (KFold(2, random_state=0))
    grid = GridSearch(RegularizedALS(n_jobs=1, random_state=0, **space),
                      {"reg": list(np.geomspace(0.1, 300.0, 9)), "iterations": [3, 6, 12]},
                      cv=2, random_state=0, refit=False).fit(ratings)
    per_reg = grid.results_.groupby("param_reg")["mean_score"].min()
    best = per_reg.min()
    assert result.score <= best + 0.01, (result.score, best)
    good = per_reg[per_reg <= 1.2 * best].index
    assert len(good) <= 3  # a region, not the whole range
    assert good.min() <= result.params["reg"] <= good.max(), (result.params, per_reg)
    # the reported score is the refitted one: the same candidate through GridSearch
    chosen = {k: v for k, v in result.params.items() if k in ("reg", "iterations")}
    again = GridSearch(RegularizedALS(n_jobs=1, random_state=0, **space), {k: [v] for k, v in chosen.items()},
                       cv=2, random_state=0, refit=False).fit(ratings)
    assert again.best_score_ == pytest.approx(result.score, rel=1e-9, abs=1e-12)


def test_alpha_zero_is_in_the_space_and_socialals_never_loses_on_validation(data):
    ratings, social = data
    # sampled (no enqueued start): alpha=0 turns up among the trials
    result = tune("SocialALS", ratings, social, n_trials=10, start=[], **FAST)
    assert (result.trials["alpha"] == 0).any() and (result.trials["alpha"] > 0).any()
    assert result.trials.loc[result.trials["alpha"] == 0, "similarity"].isna().all()
    # tuned together, SocialALS starts from RegularizedALS's winner with alpha=0
    both = tune_module.tune_models(["SocialALS", "RegularizedALS"], ratings, social, n_trials=6, **FAST)
    assert both["SocialALS"].score <= both["RegularizedALS"].score
    first = both["SocialALS"].trials.iloc[0]
    assert first["alpha"] == 0 and first["reg"] == both["RegularizedALS"].params["reg"]
    assert first["score"] == pytest.approx(both["RegularizedALS"].score, abs=1e-12)


def test_same_seed_same_choices_other_seed_other_trials(data):
    ratings, social = data
    a = tune("SocialALS", ratings, social, n_trials=6, **FAST)
    b = tune("SocialALS", ratings, social, n_trials=6, **FAST)
    assert a.params == b.params and a.score == b.score
    cols = ["state", "score", "iterations", "reg", "alpha", "bias_reg", "weighted_reg"]
    pd.testing.assert_frame_equal(a.trials[cols], b.trials[cols])
    c = tune("SocialALS", ratings, social, n_trials=6, **{**FAST, "random_state": 1})
    assert not a.trials[cols].equals(c.trials[cols])


def test_ranking_task_searches_the_missing_data_weights(data):
    ratings, social = data
    result = tune("SocialALS", ratings, social, task="ranking", n_trials=3, cv=2, max_iterations=10, verbose=False)
    assert result.metric == "ndcg_at_10" and 0 < result.score <= 1
    assert 0.01 <= result.params["unobserved_weight"] <= 1.0
    assert result.params["iterations"] in (5, 10)  # scored every 5 sweeps


def test_budget_stops_the_search_and_a_too_small_budget_is_an_error(data, capsys):
    ratings, social = data
    with pytest.raises(ValueError, match=r"budget of 1e-06 s is too small for one trial of SocialALS"):
        tune("SocialALS", ratings, social, budget=1e-6, **FAST)
    result = tune("SocialALS", ratings, social, budget=1.0, **{**FAST, "verbose": True})
    assert len(result.trials) >= 1 and result.params["iterations"] >= 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and all("best" in line or "complete" not in line for line in lines)


@pytest.mark.parametrize("kwargs, match", [
    ({"space": {"regg": [1.0]}}, r"unknown parameter 'regg' in the search space of SocialALS"),
    ({"space": {"iterations": [5]}}, r"'iterations' cannot be searched"),
    ({"space": {"reg": (3.0, 1.0)}}, r"range of 'reg'"),
    ({"start": [{"alfa": 1.0}]}, r"unknown parameter\(s\) \['alfa'\] in a start setting"),
    ({"budget": 0}, r"'budget' parameter of tune"),
    ({"n_trials": 0}, r"'n_trials' parameter of tune"),
    ({"task": "rank"}, r"'task' parameter of tune"),
    ({"cv": 1}, r"'cv' parameter of tune"),
])
def test_bad_options_raise_value_errors(data, kwargs, match):
    ratings, social = data
    with pytest.raises(ValueError, match=match):
        tune("SocialALS", ratings, social, **{**FAST, **kwargs})


def test_missing_optuna_names_the_extra(data, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"socialals\[tune\]"):
        tune("SocialALS", *data, n_trials=1)


def test_params_file_round_trip(data, tmp_path):
    ratings, social = data
    result = tune("SocialALS", ratings, social, n_trials=3, **FAST)
    path = result.save(tmp_path / "p.json")
    assert tune_module.read_params(path) == {"SocialALS": result.params}
    assert tune_module.read_params(path, model="SocialALS") == result.params
    model = result.estimator(random_state=0).fit(ratings, social)
    assert {k: model.get_params()[k] for k in result.params} == result.params
    with pytest.raises(ValueError, match=r"holds settings for \['SocialALS'\], not for RegularizedALS"):
        tune_module.read_params(path, model="RegularizedALS")
    doc = json.loads(path.read_text())
    doc["models"]["SocialALS"]["params"]["alfa"] = 1.0
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['alfa'\] for SocialALS"):
        tune_module.read_params(tmp_path / "bad.json")
    (tmp_path / "nojson.json").write_text("{")
    with pytest.raises(ValueError, match=r"is not JSON"):
        tune_module.read_params(tmp_path / "nojson.json")
    doc["models"]["SocialALS"]["params"] = {"alpha": -1.0}
    (tmp_path / "value.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"'alpha' parameter of SocialALS"):
        tune_module.read_params(tmp_path / "value.json")


def _leaked(seen_index, test_index) -> int:
    """How many test rows a tuning run saw."""
    return len(pd.Index(seen_index).intersection(pd.Index(test_index)))


def test_nested_tuning_sees_only_the_outer_training_rows(data, monkeypatch):
    from socialals import cli

    ratings, social = data
    ratings = ratings.set_index(pd.RangeIndex(1000, 1000 + len(ratings)))  # labels, not positions
    given, fitted = [], []
    real_tune, real_fit = tune_module.tune, BaseRecommender.fit

    active = []

    def recording_tune(model, frame, *args, **kwargs):
        given.append(frame.index)
        fitted.append([])
        active.append(True)
        try:
            return real_tune(model, frame, *args, **kwargs)
        finally:
            active.pop()

    def recording_fit(self, frame, *args, **kwargs):
        if active:  # a fit made by the tuning (not compare's own fit of the outer fold)
            fitted[-1].append(frame.index)
        return real_fit(self, frame, *args, **kwargs)

    monkeypatch.setattr(tune_module, "tune", recording_tune)
    monkeypatch.setattr(BaseRecommender, "fit", recording_fit)
    names = ["RegularizedALS", "SocialALS"]
    tuner = tune_module.NestedTuner(names, social, n_trials=2, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = cli.compare(ratings, social, names, "generic", folds=3, seed=0, metrics=("rmse",), tuner=tuner)
    splits = cli._fold_splits(ratings, 3, 0)
    assert len(given) == len(names) * len(splits)
    for (name, fold), seen, fits in zip(tuner.results, given, fitted):
        train, test = ratings.index[splits[fold - 1][0]], ratings.index[splits[fold - 1][1]]
        assert _leaked(seen, test) == 0 and seen.equals(train), (name, fold)
        assert fits and all(_leaked(f, test) == 0 and f.isin(train).all() for f in fits)
        assert all(len(f) < len(train) for f in fits)  # validation fits: a part of the training rows
    # the check itself can fail: a tuner given every rating has seen the test fold
    assert _leaked(ratings.index, ratings.index[splits[0][1]]) == len(splits[0][1])
    assert table.loc[table["model"] == "SocialALS", "rmse"].item() > 0
    assert len(tuner.table()) == 6 and set(tuner.table()["fold"]) == {1, 2, 3}


def test_auto_validation_is_three_folds_below_100k_ratings_then_one_holdout():
    small = tune_module._splits(pd.DataFrame(index=range(99_999)), "auto", None, 0)
    large = tune_module._splits(pd.DataFrame(index=range(100_000)), "auto", None, 0)
    assert len(small) == 3 and sum(len(te) for _, te in small) == 99_999
    assert len(large) == 1 and len(large[0][1]) == 20_000 and len(large[0][0]) == 80_000
    assert not set(large[0][0]) & set(large[0][1])
