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
   For data sets with an entry in ``FINE_GRIDS`` (FilmTrust), RegularizedALS and
   SocialALS are searched the same way instead of by stages 1 and 2: a finer grid that
   adds ``bias_reg`` and ``similarity="vss"``, every candidate scored after 5, 10, 15, 20,
   25, 30 and 40 iterations of one fit per fold.
4. Print every candidate's validation RMSE and the chosen settings as a Python dict,
   ready to paste into ``socialals/_defaults.py``.
5. With several data sets, also pick ``generic`` settings for data without a tuned
   entry: per model, the stage-1 candidate whose validation RMSE is on average the
   closest (relatively) to each data set's best. (The shipped generic RegularizedALS and
   SocialALS rows come from ``benchmarks/bench_generic_defaults.py`` instead, which also
   requires SocialALS to be no worse than RegularizedALS on every set.)

Usage::

    python benchmarks/tune.py                         # synthetic, filmtrust and ciao
    python benchmarks/tune.py --data filmtrust --cv 3 --jobs 2
    python benchmarks/tune.py --models FactorizationMachine   # the FM only
    python benchmarks/tune.py --data filmtrust                # FilmTrust (finer ALS grids)

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


# ---------------------------------------------------------------- finer ALS grids
#: Iteration counts read off the validation curves of the finer grids below.
ALS_CURVE_ITERATIONS = [5, 10, 15, 20, 25, 30, 40]

#: Finer grids, for the data sets listed, replacing stage 1 and stage 2 for those models:
#: every candidate is fitted once per validation fold and scored after 5..40 iterations
#: (see :func:`tune_curves`), so ``iterations`` is searched jointly with the rest.
#: They add ``bias_reg`` (the biases' own regularisation; None = ``reg``) and VSS.
#: RegularizedALS gets every (reg, bias_reg, weighted_reg) setting that SocialALS gets and
#: more (a finer reg grid), so the comparison does not favour the social model.
#: ``biases=False`` is left out: it lost at every ``reg`` in every earlier table.
FINE_GRIDS = {
    "filmtrust": {
        "RegularizedALS": [
            {"biases": [True], "weighted_reg": [False],
             "reg": [3.0, 5.0, 7.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 20.0, 30.0],
             "bias_reg": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, None]},
            {"biases": [True], "weighted_reg": [True], "reg": [0.05, 0.1, 0.2, 0.5, 1.0],
             "bias_reg": [0.1, 0.3, None]},
        ],
        "SocialALS": [
            # wide
            {"biases": [True], "weighted_reg": [False], "reg": [7.0, 10.0, 13.0, 16.0],
             "bias_reg": [2.0, 3.0, 5.0, 8.0, None], "alpha": [1.0, 3.0, 10.0, 30.0],
             "similarity": [None, "vss", "pcc"]},
            # finer around the best of the wide block (validation runs of the grid without
            # this block chose reg 13, bias_reg 5, alpha 1; with bias_reg 4-6 here, reg 12,
            # bias_reg 4 on the block's edge, so bias_reg 3 was added)
            {"biases": [True], "weighted_reg": [False], "reg": [11.0, 12.0, 13.0, 14.0, 15.0],
             "bias_reg": [3.0, 4.0, 5.0, 6.0], "alpha": [0.3, 1.0, 3.0], "similarity": [None, "pcc"]},
            {"biases": [True], "weighted_reg": [True], "reg": [0.1, 0.2, 0.5],
             "bias_reg": [0.3, None], "alpha": [1.0, 3.0, 10.0], "similarity": [None, "pcc"]},
        ],
    },
}


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


def _curve(model_name, params, train, valid, social, n_iter):
    """Validation RMSE after every iteration of one fit of ``model_name`` (read by a callback)."""
    from socialals.metrics import rmse

    warnings.simplefilter("ignore", UserWarning)
    curve = []
    pairs, truth = valid[["user", "item"]], valid["rating"].to_numpy(float)

    def record(model, it, loss):
        curve.append(rmse(truth, np.asarray(model.predict(pairs), dtype=float)))

    cls = getattr(socialals, model_name)
    extra = {"n_jobs": 1} if "n_jobs" in cls().get_params() else {}
    model = cls(factors=FACTORS, iterations=n_iter, random_state=SEED, callback=record, **extra, **params)
    started = time.perf_counter()
    model.fit(train, social)
    return np.asarray(curve), time.perf_counter() - started


def _expand(grid):
    """The candidate dicts of a grid (a dict of lists, or a list of them), without repeats."""
    from itertools import product

    out, seen = [], set()
    for block in grid if isinstance(grid, list) else [grid]:
        keys = list(block)
        for values in product(*(block[k] for k in keys)):
            candidate = dict(zip(keys, values))
            key = repr(sorted(candidate.items(), key=str))
            if key not in seen:
                seen.add(key)
                out.append(candidate)
    return out


def tune_curves(name, candidates, checkpoints, data, train, social, cv, jobs, iter_tol, stage1):
    """Grid search in which the number of iterations is read off validation curves.

    Every candidate is fitted once per validation fold with ``max(checkpoints)``
    iterations; a callback records the validation RMSE after every iteration. A fit
    with fewer iterations is exactly the first iterations of a longer one (same seed,
    ``tol=0``), so this equals refitting at every count of ``checkpoints``, at the cost
    of one fit. The candidate with the lowest validation RMSE at any of those counts
    wins; its iterations are the fewest within ``iter_tol`` of its best.
    """
    from joblib import Parallel, delayed

    folds = list(KFold(n_splits=cv, shuffle=True, random_state=SEED).split(train))
    n_iter = max(checkpoints)
    # the costly fits first (FM: ALS with social features), for a better load balance
    order = sorted(range(len(candidates)), key=lambda c: (not candidates[c].get("social_features", False),
                                                          candidates[c].get("solver", "als") != "als"))
    tasks = [(c, j) for c in order for j in range(len(folds))]
    started = time.perf_counter()
    outputs = Parallel(n_jobs=jobs)(
        delayed(_curve)(name, candidates[c], train.iloc[folds[j][0]], train.iloc[folds[j][1]], social, n_iter)
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
        row.update({f"rmse@{t}": mean[c, t - 1] for t in checkpoints})
        row["fit_s"] = fit_s[c].mean()
        row["params"] = params
        rows.append(row)
    table = pd.DataFrame(rows)
    at = [f"rmse@{t}" for t in checkpoints]
    table["best"] = table[at].min(axis=1)
    print(f"\n--- {name}: {len(candidates)} candidates x {len(folds)} folds, one fit of {n_iter} "
          f"iterations each, in {seconds:.0f} s (validation RMSE after {checkpoints[0]}..{n_iter} iterations; "
          "fit_s per fit)")
    print(table.drop(columns=["params"]).to_string(float_format=lambda x: f"{x:.4f}"))
    win = int(table["best"].idxmin())
    scores = table.loc[win, at].astype(float)
    good = [t for t, v in zip(checkpoints, scores) if v <= scores.min() + iter_tol]
    best = {**candidates[win], "iterations": min(good)}
    score = float(scores[f"rmse@{min(good)}"])
    top = table.nsmallest(5, "best")
    print("five best: " + "; ".join(f"{p} {b:.4f}" for p, b in zip(top["params"], top["best"])))
    if stage1 is not None and ITERATIONS in checkpoints:
        # for ``generic``: every candidate at ITERATIONS, like the stage-1 tables
        stage1.setdefault(name, {})[data] = pd.DataFrame(
            {"mean_score": table[f"rmse@{ITERATIONS}"], "params": table["params"]})
    print(f"chosen for {name}: {best}  (validation RMSE {score:.4f})")
    return best


def tune_fm(data, train, social, cv, jobs, iter_tol, stage1):
    """Grid search of the factorization machine (see :func:`tune_curves`)."""
    return tune_curves("FactorizationMachine", _expand(FM_GRID), FM_ITERATIONS, data, train, social, cv, jobs,
                       iter_tol, stage1)


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
    fine = FINE_GRIDS.get(data, {})
    for name, (template, grid) in stage1_grids().items():
        if only and name not in only:
            continue
        if name in fine:
            chosen[name] = tune_curves(name, _expand(fine[name]), ALS_CURVE_ITERATIONS, data, train, social, cv,
                                       jobs, iter_tol, stage1)
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
        # candidates are matched by their parameters (the finer grids differ per data set);
        # only candidates searched on every data set compete
        scores, params_of = {}, {}
        for d, table in by_data.items():
            keys = [repr(sorted(p.items(), key=str)) for p in table["params"]]
            scores[d] = pd.Series(table["mean_score"].to_numpy(float), index=keys)
            params_of.update(zip(keys, table["params"]))
        common = sorted(set.intersection(*(set(v.index) for v in scores.values())))
        if not common:
            print(f"{name}: no candidate was searched on every data set; nothing chosen")
            continue
        excess = sum(v[common] / v.min() - 1.0 for v in scores.values()) / len(scores)
        best = excess.idxmin()
        params = dict(params_of[best])
        if name != "ALS":
            params["iterations"] = ITERATIONS  # curve-tuned models: scores read at ITERATIONS too
        chosen[name] = params
        print(f"{name}: {params}  (mean relative excess {excess[best]:.2%}; "
              + ", ".join(f"{d} {v[best]:.4f}" for d, v in scores.items()) + ")")
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
