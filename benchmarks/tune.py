"""Choose the per-data-set default hyperparameters of ``socialals compare`` / ``fit``.

Protocol (validation inside training data only; the test fold is never seen):

1. Cut the data into the same 5 shuffled folds as ``benchmarks/bench_social.py``
   (``KFold(5, shuffle=True, random_state=0)``) and keep only the *training* part of
   fold 0 (80 % of the ratings). The social graph is used whole (it holds no ratings).
2. Run :class:`socialals.GridSearch` on that training part with ``--cv``-fold
   cross-validation (default 3), scoring RMSE, 10 factors, 15 iterations.
3. Stage 1 searches the regularisation (``reg``, ``weighted_reg``, ``biases``; ``alpha``
   and ``similarity`` for SocialALS); stage 2 then searches ``iterations`` (5 to 40) for
   the stage-1 winner and keeps the fewest iterations whose validation RMSE is within
   ``--iter-tol`` (0.001) of the best, since fit time grows with iterations.
   The factorization machine (``FM_GRID``: ``solver`` als/sgd, ``reg``, ``reg_scaling``,
   ``social_features``; SGD at its default ``learning_rate`` 0.03 and ``batch_size``) is
   searched in one stage: each candidate is fitted once per fold with 25 iterations and a
   callback records the validation RMSE after every iteration, which equals refitting
   with 5, 10, 15, 20 and 25 iterations (same seed; checked against ``evaluate``). The best
   (candidate, iterations) wins, again with the fewest iterations within ``--iter-tol``.
4. Print every candidate's validation RMSE and the chosen settings as a Python dict,
   ready to paste into ``socialals/_defaults.py``.
5. With several data sets, also pick ``generic`` settings for data without a tuned
   entry: per model, the stage-1 candidate whose validation RMSE is on average the
   closest (relatively) to each data set's best.

Usage::

    python benchmarks/tune.py                         # synthetic, filmtrust and ciao
    python benchmarks/tune.py --data filmtrust --cv 3 --jobs 2
    python benchmarks/tune.py --models FactorizationMachine   # the FM only

Runtime on 2 cores (measured): synthetic ~1 min, FilmTrust ~1 min, Ciao ~8 min; the FM
grid alone (``--models FactorizationMachine``) 14 s, 8 s and 6.7 min (the Ciao ALS fits
with social features take ~70 s each), 7.1 min in all on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import pprint
import sys
import time
import warnings
from pathlib import Path

# Loky workers inherit the environment: silence the expected DataWarnings (duplicate
# ratings repaired by the loaders, fallback predictions for unknown test users) there too.
os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import socialals  # noqa: E402
from socialals import ALS, GridSearch, KFold, RegularizedALS, SocialALS  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
FACTORS = 10
ITERATIONS = 15
SEED = 0
ITERATION_GRID = [5, 10, 15, 25, 40]


def load(name: str):
    """Ratings and social frame of data set ``name``."""
    if name == "synthetic":
        return socialals.make_social_ratings(random_state=0)
    if name == "filmtrust":
        return socialals.load_filmtrust(SHARED / "filmtrust")
    if name == "ciao":
        return socialals.load_ciao(SHARED / "ciao")
    raise ValueError(f"unknown data set {name!r}")


def training_part(ratings: pd.DataFrame) -> pd.DataFrame:
    """The training rows of fold 0 of bench_social.py's 5-fold split."""
    train_idx, _ = next(KFold(n_splits=5, shuffle=True, random_state=SEED).split(ratings))
    return ratings.iloc[train_idx]


def stage1_grids():
    """(template model, grid) per ALS model class for the first stage."""
    base = {"factors": FACTORS, "iterations": ITERATIONS, "random_state": SEED, "n_jobs": 1}
    grids = {
        # Unregularised ALS has one knob: stopping early.
        "ALS": (ALS(**base), {"iterations": [1, 2, 3, 5, 10, 15]}),
        "RegularizedALS": (
            RegularizedALS(**base),
            [
                {"weighted_reg": [True], "reg": [0.05, 0.1, 0.2, 0.5, 1.0], "biases": [False, True]},
                {"weighted_reg": [False], "reg": [1.0, 3.0, 5.0, 10.0, 20.0, 40.0], "biases": [False, True]},
            ],
        ),
        "SocialALS": (
            SocialALS(**base),
            [
                {
                    "biases": [True],
                    "weighted_reg": [True],
                    "reg": [0.1, 0.2, 0.5],
                    "alpha": [0.3, 1.0, 3.0, 10.0],
                    "similarity": [None, "pcc"],
                },
                {
                    "biases": [True],
                    "weighted_reg": [False],
                    "reg": [1.5, 3.0, 5.0, 10.0, 20.0],
                    "alpha": [1.0, 3.0, 10.0, 30.0, 100.0],
                    "similarity": [None, "pcc"],
                },
            ],
        ),
    }
    return grids


# ---------------------------------------------------------------- factorization machine
#: FM candidates (the same on every data set, so that ``generic`` can compare them).
#: Social features multiply the design's non-zeros (about 8x on Ciao) and ALS's cost per
#: sweep far more (about 30x on Ciao, measured), so the social ALS candidates are few.
FM_GRID = [
    {"solver": ["als"], "reg_scaling": ["frequency"], "reg": [0.1, 0.3], "social_features": [True, False]},
    {"solver": ["als"], "reg_scaling": ["frequency"], "reg": [0.03, 1.0], "social_features": [False]},
    {"solver": ["als"], "reg_scaling": ["none"], "reg": [3.0, 10.0, 30.0], "social_features": [False]},
    {"solver": ["sgd"], "reg_scaling": ["frequency"], "reg": [0.01, 0.03, 0.1, 0.3, 1.0], "social_features": [True, False]},
]
#: iteration counts (sweeps / epochs) read off the validation curve of every fit
FM_ITERATIONS = [5, 10, 15, 20, 25]


def _fm_candidates():
    from itertools import product

    out = []
    for block in FM_GRID:
        keys = list(block)
        out += [dict(zip(keys, values)) for values in product(*(block[k] for k in keys))]
    return out


def _fm_curve(params, train, valid, social, n_iter):
    """Validation RMSE after every iteration of one FM fit (read by a callback)."""
    from socialals import FactorizationMachine
    from socialals.metrics import rmse

    warnings.simplefilter("ignore", UserWarning)
    curve = []
    pairs, truth = valid[["user", "item"]], valid["rating"].to_numpy(float)

    def record(model, it, loss):
        curve.append(rmse(truth, np.asarray(model.predict(pairs), dtype=float)))

    model = FactorizationMachine(factors=FACTORS, iterations=n_iter, random_state=SEED, callback=record, **params)
    started = time.perf_counter()
    model.fit(train, social)
    return np.asarray(curve), time.perf_counter() - started


def tune_fm(data, train, social, cv, jobs, iter_tol, stage1):
    """Grid search of the factorization machine.

    Every candidate is fitted once per validation fold with ``max(FM_ITERATIONS)``
    iterations; a callback records the validation RMSE after every iteration. A fit
    with fewer iterations is exactly the first iterations of a longer one (same seed,
    ``tol=0``), so this equals refitting at every count of ``FM_ITERATIONS``, at the cost
    of one fit. The candidate with the lowest validation RMSE at any of those counts
    wins; its iterations are the fewest within ``iter_tol`` of its best.
    """
    from joblib import Parallel, delayed

    candidates = _fm_candidates()
    folds = list(KFold(n_splits=cv, shuffle=True, random_state=SEED).split(train))
    n_iter = max(FM_ITERATIONS)
    # the costly fits first (ALS with social features), for a better load balance
    order = sorted(range(len(candidates)), key=lambda c: (not candidates[c]["social_features"],
                                                          candidates[c]["solver"] != "als"))
    tasks = [(c, j) for c in order for j in range(len(folds))]
    started = time.perf_counter()
    outputs = Parallel(n_jobs=jobs)(
        delayed(_fm_curve)(candidates[c], train.iloc[folds[j][0]], train.iloc[folds[j][1]], social, n_iter)
        for c, j in tasks
    )
    seconds = time.perf_counter() - started
    curves = np.full((len(candidates), len(folds), n_iter), np.nan)
    fit_s = np.zeros((len(candidates), len(folds)))
    for (c, j), (curve, secs) in zip(tasks, outputs):
        curves[c, j, : len(curve)] = curve
        fit_s[c, j] = secs
    mean = curves.mean(axis=1)  # candidates x iterations
    rows = []
    for c, params in enumerate(candidates):
        row = {f"param_{k}": v for k, v in params.items()}
        row.update({f"rmse@{t}": mean[c, t - 1] for t in FM_ITERATIONS})
        row["fit_s"] = fit_s[c].mean()
        row["params"] = params
        rows.append(row)
    table = pd.DataFrame(rows)
    at = [f"rmse@{t}" for t in FM_ITERATIONS]
    table["best"] = table[at].min(axis=1)
    print(f"\n--- FactorizationMachine: {len(candidates)} candidates x {len(folds)} folds, one fit of {n_iter} "
          f"iterations each, in {seconds:.0f} s (validation RMSE after 5..{n_iter} iterations; fit_s per fit)")
    print(table.drop(columns=["params"]).to_string(float_format=lambda x: f"{x:.4f}"))
    win = int(table["best"].idxmin())
    scores = table.loc[win, at].astype(float)
    good = [t for t, v in zip(FM_ITERATIONS, scores) if v <= scores.min() + iter_tol]
    best = {**candidates[win], "iterations": min(good)}
    score = float(scores[f"rmse@{min(good)}"])
    # for ``generic``: every candidate at ITERATIONS, like the stage-1 tables of the ALS models
    stage1.setdefault("FactorizationMachine", {})[data] = pd.DataFrame(
        {"mean_score": table[f"rmse@{ITERATIONS}"], "params": table["params"]})
    print(f"chosen for FactorizationMachine: {best}  (validation RMSE {score:.4f})")
    return best


def search(template, grid, train, social, cv, jobs):
    started = time.perf_counter()
    gs = GridSearch(template, grid, cv=cv, random_state=SEED, n_jobs=jobs, refit=False, scoring="rmse")
    gs.fit(train, social)
    return gs, time.perf_counter() - started


def show(name, gs, seconds):
    table = gs.results_
    cols = [c for c in table.columns if c.startswith("param_")] + ["mean_score", "std_score", "rank_score"]
    print(f"\n--- {name}: {len(table)} candidates x {gs.n_splits_} folds in {seconds:.0f} s (validation RMSE)")
    print(table[cols].to_string(float_format=lambda x: f"{x:.4f}"))


def tune(data: str, cv: int, jobs: int, only=None, iter_tol: float = 0.001, stage1=None) -> dict:
    ratings, social = load(data)
    train = training_part(ratings)
    print(f"\n===== {data}: tuning on {len(train):,} of {len(ratings):,} ratings (training part of fold 0), {cv}-fold CV")
    chosen = {}
    for name, (template, grid) in stage1_grids().items():
        if only and name not in only:
            continue
        gs, secs = search(template, grid, train, social, cv, jobs)
        show(f"{name} stage 1", gs, secs)
        if stage1 is not None:
            stage1.setdefault(name, {})[data] = gs.results_
        best = dict(gs.best_params_)
        if name != "ALS" and "iterations" in template.get_params():
            # Stage 2 re-fits the winner with other iteration counts (15 is among them,
            # on the same folds, so the stage-1 score is one of the candidates). Fits cost
            # time in proportion to iterations, so take the fewest iterations whose
            # validation RMSE is within ``iter_tol`` of the best.
            stage2 = type(template)(**{**template.get_params(), **best})
            gs2, secs2 = search(stage2, {"iterations": ITERATION_GRID}, train, social, cv, jobs)
            show(f"{name} stage 2", gs2, secs2)
            table = gs2.results_
            good = table[table["mean_score"] <= gs2.best_score_ + iter_tol]
            pick = good.loc[good["param_iterations"].idxmin()]
            best["iterations"] = int(pick["param_iterations"])
            score = float(pick["mean_score"])
        else:
            score = gs.best_score_
        chosen[name] = best
        print(f"chosen for {name}: {best}  (validation RMSE {score:.4f})")
    if hasattr(socialals, "FactorizationMachine") and (not only or "FactorizationMachine" in only):
        chosen["FactorizationMachine"] = tune_fm(data, train, social, cv, jobs, iter_tol, stage1)
    return chosen


def generic(stage1: dict) -> dict:
    """Settings for untuned data: per model, the stage-1 candidate (at 15 iterations)
    with the smallest mean relative excess of validation RMSE over each data set's best."""
    chosen = {}
    print("\n===== generic settings (smallest mean relative RMSE excess over the tuned data sets)")
    for name, by_data in stage1.items():
        excess = None
        for table in by_data.values():
            rel = table["mean_score"] / table["mean_score"].min() - 1.0
            excess = rel if excess is None else excess + rel
        excess = excess / len(by_data)
        best = int(excess.idxmin())
        params = dict(next(iter(by_data.values())).loc[best, "params"])
        if name != "ALS":
            params["iterations"] = ITERATIONS  # FM: its scores were read at ITERATIONS too
        chosen[name] = params
        print(f"{name}: {params}  (mean relative excess {excess[best]:.2%}; "
              + ", ".join(f"{d} {t.loc[best, 'mean_score']:.4f}" for d, t in by_data.items()) + ")")
    return chosen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["synthetic", "filmtrust", "ciao"],
                        choices=["synthetic", "filmtrust", "ciao"])
    parser.add_argument("--models", nargs="+", default=None, help="only these model classes")
    parser.add_argument("--cv", type=int, default=3, help="folds of the validation CV inside the training part")
    parser.add_argument("--jobs", type=int, default=2, help="parallel fits")
    parser.add_argument("--iter-tol", type=float, default=0.001,
                        help="take the fewest iterations within this validation RMSE of the best")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", UserWarning)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    results, stage1 = {}, {}
    for data in args.data:
        results[data] = tune(data, args.cv, args.jobs, args.models, args.iter_tol, stage1)
    if len(args.data) > 1:
        results["generic"] = generic(stage1)
    print("\n===== chosen settings (paste into socialals/_defaults.py)")
    pprint.pprint(results, sort_dicts=False, width=100)


if __name__ == "__main__":
    main()
