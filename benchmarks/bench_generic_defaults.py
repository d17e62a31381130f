"""Choose the ``generic`` rating settings by leave-one-data-set-out, and check the rule.

``generic`` (``socialals/_defaults.py``) is what data without a tuned row get: a user's
own files, Epinions, MovieLens. Whether it is any good on *new* data can only be judged
on data it was not chosen on, so this script plays "new data" with each of the tuned sets
in turn:

1. **Candidates.** RegularizedALS: each tuned set's row, the old generic row and a small
   grid around them (``REG_CANDIDATES``). SocialALS: each tuned set's social row, the old
   generic social row, and every RegularizedALS candidate with a social term added
   (``alpha`` x ``similarity``). Every candidate is scored after 5, 10, 15 and 25
   iterations of one fit per fold (a callback reads the validation RMSE; a fit with fewer
   iterations is the first iterations of a longer one), so ``iterations`` is chosen too.
2. **Scores for choosing** (computed once): 3-fold CV (``KFold(3, shuffle=True,
   random_state=0)``) on each of synthetic, FilmTrust and Ciao, 10 factors, seed 0;
   validation RMSE on all test ratings and on the cold-start users (test users with 1-4
   training ratings: the ``cold_start`` group of :func:`socialals.evaluate`, the
   ``cold_start_rmse`` of ``socialals compare``).
3. **Choice from a set of data sets** (:func:`choose`): RegularizedALS: the (candidate,
   iterations) with the smallest mean relative RMSE (RMSE / the set's best candidate)
   over those sets, at the fewest iterations within ``ITER_TOL`` (0.001) of its best. SocialALS: the same, among the candidates that keep *the rule* on
   every one of those sets (validation RMSE and cold-start RMSE no higher than the chosen
   RegularizedALS's); if none does, the chosen RegularizedALS setting with ``alpha`` 0
   (the safe form: the social term off).
4. **Leave one out**: for each left-out set, choose from the other two and evaluate on the
   left-out set by 5-fold CV (``cross_validate(cv=5, random_state=0)``, exactly the
   folds and metrics of ``socialals compare --folds 5``), beside the global-mean baseline
   and that set's tuned rows. The rule holds on a set when generic SocialALS's RMSE and
   cold-start RMSE are no higher than generic RegularizedALS's.
5. **Shipped rows**: chosen from all three sets the same way, then checked by 5-fold CV
   on each set. When no social candidate kept the rule in-sample, the social variant of
   the chosen RegularizedALS setting that came closest is tried instead, and whenever the
   rule fails on some set ``alpha`` is lowered step by step (``FALLBACK_ALPHAS``, down to
   0, the social term off) until it holds everywhere; every step is printed.

``--task ranking`` does the same for the top-N rows (``RANKING_DEFAULTS``) with NDCG@10
and cold-start NDCG@10 of :func:`cross_validate` (higher is better; candidates
``ranking_candidates()``, 15 iterations, the baseline ``Popularity``). Note that SocialALS
also ranks the users known only through the graph, so its all-user NDCG is taken over more
(and harder) users than RegularizedALS's, and that with the missing-data term ``alpha=0``
is not RegularizedALS (those users are fitted to the unobserved target).

Usage::

    nice python benchmarks/bench_generic_defaults.py            # ~25 min on a shared 2-core machine
    nice python benchmarks/bench_generic_defaults.py --reuse    # reuse the saved choosing scores
    nice python benchmarks/bench_generic_defaults.py --task ranking   # ~24 min

Writes the choosing scores to ``benchmarks/results/generic_defaults_scores.csv``
(``..._ranking.csv``) and prints the tables (the runs' output is kept in
``benchmarks/results/bench_generic_defaults.txt`` and ``bench_generic_defaults_ranking.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")  # loky workers too

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import socialals  # noqa: E402
from socialals import KFold, cross_validate  # noqa: E402
from socialals._defaults import DEFAULTS, RANKING_DEFAULTS  # noqa: E402
from socialals.model_selection import cold_start_groups  # noqa: E402

SHARED = Path(os.environ.get("SOCIALALS_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
SCORES = ROOT / "benchmarks" / "results" / "generic_defaults_scores.csv"
DATA = ("synthetic", "filmtrust", "ciao")
FACTORS = 10
SEED = 0
CHOOSE_FOLDS = 3
TABLE_FOLDS = 5
CHECKPOINTS = (5, 10, 15, 25)
ITER_TOL = 0.001  # as benchmarks/tune.py's --iter-tol, on the mean relative score
FALLBACK_ALPHAS = (10.0, 5.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.0)

_TECH = ("iterations",)


def _strip(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in _TECH}


#: RegularizedALS candidates (iterations come from the curves): the tuned rows, the old
#: generic row and a small grid around them.
REG_CANDIDATES = [
    {"biases": True, "weighted_reg": True, "reg": 0.05},
    {"biases": True, "weighted_reg": True, "reg": 0.1},   # synthetic's row, old generic
    {"biases": True, "weighted_reg": True, "reg": 0.2},
    {"biases": True, "weighted_reg": True, "reg": 0.5},   # ciao's row
    {"biases": True, "weighted_reg": True, "reg": 1.0},
    {"biases": True, "weighted_reg": False, "reg": 5.0},
    {"biases": True, "weighted_reg": False, "reg": 10.0},
    {"biases": True, "weighted_reg": False, "reg": 13.0, "bias_reg": 4.0},  # filmtrust's row
    {"biases": True, "weighted_reg": False, "reg": 13.0},
]

#: Every RegularizedALS candidate is also a SocialALS base (the social term added), so the
#: chosen RegularizedALS setting always has social variants that differ from it only there.
SOCIAL_BASES = REG_CANDIDATES
SOCIAL_ALPHAS = (0.3, 1.0, 3.0, 10.0)
SOCIAL_SIMILARITIES = (None, "pcc")


def social_candidates() -> list:
    rows = [_strip(DEFAULTS[d]["SocialALS"]) for d in (*DATA, "generic")]
    for base in SOCIAL_BASES:
        for alpha in SOCIAL_ALPHAS:
            for sim in SOCIAL_SIMILARITIES:
                rows.append({**base, "alpha": alpha, "similarity": sim})
    return _unique(rows)


def reg_candidates() -> list:
    return _unique([_strip(DEFAULTS[d]["RegularizedALS"]) for d in (*DATA, "generic")] + REG_CANDIDATES)


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def _unique(rows: list) -> list:
    seen, out = set(), []
    for row in rows:
        if _key(row) not in seen:
            seen.add(_key(row))
            out.append(row)
    return out


def load(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", socialals.DataWarning)
        if name == "synthetic":
            return socialals.make_social_ratings(random_state=0)
        if name == "filmtrust":
            return socialals.load_filmtrust(SHARED / "filmtrust")
        return socialals.load_ciao(SHARED / "ciao")


# ------------------------------------------------------------------ choosing scores
def _rmse(err: np.ndarray) -> float:
    return float(np.sqrt(np.mean(err ** 2))) if len(err) else float("nan")


def _curve(model_name, params, train, valid, social):
    """Validation (RMSE, cold-start RMSE) after each of CHECKPOINTS iterations of one fit."""
    warnings.simplefilter("ignore", UserWarning)
    pairs, truth = valid[["user", "item"]], valid["rating"].to_numpy(float)
    cold = (cold_start_groups(train, valid, social) == "cold").to_numpy()
    out = {}

    def record(model, it, loss):
        if it + 1 in CHECKPOINTS:
            err = np.asarray(model.predict(pairs), dtype=float) - truth
            out[it + 1] = (_rmse(err), _rmse(err[cold]))

    cls = getattr(socialals, model_name)
    model = cls(factors=FACTORS, iterations=max(CHECKPOINTS), random_state=SEED, n_jobs=1, callback=record, **params)
    model.fit(train, social)
    return out


#: Per task: the metric, its cold-start twin, whether lower is better, the 5-fold table's
#: baseline, and ``evaluate``'s column names.
TASKS = {
    "rating": {"metric": "rmse", "cold": "cold_rmse", "lower": True, "baseline": "global mean",
               "columns": ("rmse", "cold_start_rmse")},
    "ranking": {"metric": "ndcg", "cold": "cold_ndcg", "lower": False, "baseline": "Popularity",
                "columns": ("ndcg_at_10", "cold_start_ndcg_at_10")},
}

#: Ranking candidates (``--task ranking``): the missing-data settings every tuned ranking
#: row shares (``_RANKING_BASE``), reg from the tuned rows, alpha from bench_ranking's grid.
RANKING_BASE = {"unobserved_weight": 0.1, "unobserved_rating": -1.0}
RANKING_REGS = (5.0, 10.0, 20.0)
RANKING_ALPHAS = (1.0, 5.0, 20.0)
RANKING_ITERATIONS = 15


def ranking_candidates() -> list:
    regs = [("RegularizedALS", {"reg": reg, **RANKING_BASE}) for reg in RANKING_REGS]
    return regs + [("SocialALS", {**p, "alpha": a}) for _, p in regs for a in RANKING_ALPHAS]


def choosing_scores(data: str, jobs: int, task: str = "rating") -> pd.DataFrame:
    """Mean validation scores (all users, cold-start users) of every candidate.

    Rating: RMSE at every checkpoint of one fit per fold. Ranking: NDCG@10 by
    :func:`cross_validate` (``ranking=True``) at ``RANKING_ITERATIONS``.
    """
    from joblib import Parallel, delayed

    ratings, social = load(data)
    started = time.perf_counter()
    rows = []
    if task == "ranking":
        cands = ranking_candidates()
        for model, params in cands:
            est = getattr(socialals, model)(factors=FACTORS, random_state=SEED, n_jobs=1,
                                            iterations=RANKING_ITERATIONS, **params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                cv = cross_validate(est, ratings, social, cv=CHOOSE_FOLDS, random_state=SEED, n_jobs=jobs,
                                    ranking=True, k=10)
            rows.append({"data": data, "model": model, "params": _key(params), "iterations": RANKING_ITERATIONS,
                         "ndcg": cv.loc["mean", "ndcg_at_10"], "cold_ndcg": cv.loc["mean", "cold_start_ndcg_at_10"]})
        print(f"  {data}: {len(cands)} candidates x {CHOOSE_FOLDS} folds in {time.perf_counter() - started:.0f} s",
              flush=True)
        return pd.DataFrame(rows)
    folds = list(KFold(n_splits=CHOOSE_FOLDS, shuffle=True, random_state=SEED).split(ratings))
    cands = [("RegularizedALS", p) for p in reg_candidates()] + [("SocialALS", p) for p in social_candidates()]
    outs = Parallel(n_jobs=jobs)(
        delayed(_curve)(m, p, ratings.iloc[tr], ratings.iloc[va], social) for m, p in cands for tr, va in folds
    )
    for c, (model, params) in enumerate(cands):
        per_fold = outs[c * len(folds):(c + 1) * len(folds)]
        for t in CHECKPOINTS:
            rows.append({"data": data, "model": model, "params": _key(params), "iterations": t,
                         "rmse": np.mean([f[t][0] for f in per_fold]),
                         "cold_rmse": np.mean([f[t][1] for f in per_fold])})
    print(f"  {data}: {len(cands)} candidates x {len(folds)} folds in {time.perf_counter() - started:.0f} s",
          flush=True)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ choice
def _no_worse(social, reg, lower: bool):
    return social <= reg if lower else social >= reg


def _fewest_iterations(mean: pd.DataFrame) -> pd.Series:
    """The best row of ``mean`` by mean relative score, at the fewest iterations whose
    mean relative score is within ``ITER_TOL`` of it (fit time grows with iterations)."""
    best = mean.sort_values(["rel", "iterations"]).iloc[0]
    same = mean[(mean["params"] == best["params"]) & (mean["rel"] <= best["rel"] + ITER_TOL)]
    return same.sort_values("iterations").iloc[0]


def choose(scores: pd.DataFrame, sets, task: str = "rating") -> dict:
    """Generic RegularizedALS and SocialALS settings chosen from the data sets ``sets``.

    The relative score of a (candidate, iterations) on a set is its score over the set's
    best candidate of its class (inverted when higher is better, so 1 is best and larger
    is worse); the choice minimises its mean over ``sets``.
    """
    metric, cold, lower = TASKS[task]["metric"], TASKS[task]["cold"], TASKS[task]["lower"]
    part = scores[scores["data"].isin(sets)].copy()
    by = part.groupby(["data", "model"])[metric]
    part["rel"] = part[metric] / by.transform("min") if lower else by.transform("max") / part[metric]
    mean = part.groupby(["model", "params", "iterations"])[["rel"]].mean().reset_index()
    reg = _fewest_iterations(mean[mean["model"] == "RegularizedALS"])
    reg_scores = part[(part["model"] == "RegularizedALS") & (part["params"] == reg["params"])
                      & (part["iterations"] == reg["iterations"])].set_index("data")
    social = part[part["model"] == "SocialALS"].merge(
        reg_scores[[metric, cold]].add_suffix("_reg"), left_on="data", right_index=True)
    social["keeps"] = (_no_worse(social[metric], social[f"{metric}_reg"], lower)
                       & _no_worse(social[cold], social[f"{cold}_reg"], lower))
    keeps = social.groupby(["params", "iterations"])["keeps"].all()
    ok = mean[(mean["model"] == "SocialALS")
              & np.array([bool(keeps.get((p, t), False)) for p, t in zip(mean["params"], mean["iterations"])])]
    reg_params = {**json.loads(reg["params"]), "iterations": int(reg["iterations"])}
    out = {"RegularizedALS": reg_params, "reg_rel": float(reg["rel"]), "n_keep": len(ok)}
    if len(ok):
        best = _fewest_iterations(ok)
        out["SocialALS"] = {**json.loads(best["params"]), "iterations": int(best["iterations"])}
        out["social_rel"] = float(best["rel"])
        out["social_how"] = f"best mean relative {metric} among the candidates keeping the rule in-sample"
    else:
        out["SocialALS"] = {**reg_params, "alpha": 0.0}
        out["social_how"] = "no candidate kept the rule in-sample: safe form (alpha 0)"
        # the social variant of the chosen base that came closest to keeping the rule: the
        # start of the shipped rows' fallback (smaller alphas, checked by 5-fold CV)
        base = json.loads(reg["params"])
        sign = 1 if lower else -1  # worst = the largest loss against RegularizedALS, all or cold-start
        social["worst"] = np.maximum(sign * (social[metric] - social[f"{metric}_reg"]),
                                     sign * (social[cold] - social[f"{cold}_reg"]))
        on_base = social[[{k: v for k, v in json.loads(p).items() if k not in ("alpha", "similarity")} == base
                          for p in social["params"]]]
        on_base = on_base[on_base["iterations"] == reg["iterations"]]
        if len(on_base):
            worst = on_base.groupby("params")["worst"].max().sort_values()
            out["nearest"] = {**json.loads(worst.index[0]), "iterations": int(reg["iterations"])}
            out["nearest_worst"] = float(worst.iloc[0])
    return out


# ------------------------------------------------------------------ 5-fold table
def five_fold(data: str, model_name: str, params: dict, cache: dict, task: str = "rating") -> tuple:
    """(score, cold-start score) by 5-fold CV, the folds and metrics of ``socialals compare``."""
    key = (task, data, model_name, _key(params))
    if key not in cache:
        ratings, social = load(data)
        if model_name == "global mean":
            errs, cold_errs = [], []
            for tr, te in KFold(n_splits=TABLE_FOLDS, shuffle=True, random_state=SEED).split(ratings):
                train, test = ratings.iloc[tr], ratings.iloc[te]
                err = train["rating"].mean() - test["rating"].to_numpy(float)
                cold = (cold_start_groups(train, test, social) == "cold").to_numpy()
                errs.append(_rmse(err))
                cold_errs.append(_rmse(err[cold]))
            cache[key] = (float(np.mean(errs)), float(np.mean(cold_errs)))
        else:
            cls = getattr(socialals, model_name)
            extra = {"factors": FACTORS, "random_state": SEED, "n_jobs": 1} if model_name != "Popularity" else {}
            model = cls(**extra, **params)
            ranking = task == "ranking"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                cv = cross_validate(model, ratings, social, cv=TABLE_FOLDS, random_state=SEED, ranking=ranking,
                                    **({"k": 10} if ranking else {}))
            all_col, cold_col = TASKS[task]["columns"]
            cache[key] = (float(cv.loc["mean", all_col]), float(cv.loc["mean", cold_col]))
    return cache[key]


def _holds(reg: tuple, soc: tuple, task: str = "rating") -> bool:
    lower = TASKS[task]["lower"]
    return bool(_no_worse(soc[0], reg[0], lower) and _no_worse(soc[1], reg[1], lower))


def _fmt(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def table_for(data: str, chosen: dict, cache: dict, label: str, task: str = "rating") -> list:
    tuned = DEFAULTS if task == "rating" else RANKING_DEFAULTS
    base = TASKS[task]["baseline"]
    rows = [(base, {}, base),
            ("tuned RegularizedALS", tuned[data]["RegularizedALS"], "RegularizedALS"),
            ("tuned SocialALS", tuned[data]["SocialALS"], "SocialALS"),
            ("old generic RegularizedALS", tuned["generic"]["RegularizedALS"], "RegularizedALS"),
            ("old generic SocialALS", tuned["generic"]["SocialALS"], "SocialALS"),
            (f"{label} RegularizedALS", chosen["RegularizedALS"], "RegularizedALS"),
            (f"{label} SocialALS", chosen["SocialALS"], "SocialALS")]
    metric, cold = TASKS[task]["metric"], TASKS[task]["cold"]
    out = []
    for name, params, model in rows:
        score, cold_score = five_fold(data, model, params, cache, task)
        out.append({"data": data, "row": name, metric: score, cold: cold_score, "params": _fmt(params)})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=list(TASKS), default="rating")
    parser.add_argument("--jobs", type=int, default=2, help="parallel fits while computing the choosing scores")
    parser.add_argument("--reuse", action="store_true", help="read the saved choosing scores")
    args = parser.parse_args(argv)
    task = args.task
    metric, cold_name = TASKS[task]["metric"], TASKS[task]["cold"]
    scores_path = SCORES if task == "rating" else SCORES.with_name(SCORES.stem + "_ranking.csv")
    warnings.simplefilter("ignore", UserWarning)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 120)
    started = time.perf_counter()
    if task == "rating":
        print(f"choosing scores: {CHOOSE_FOLDS}-fold CV, {FACTORS} factors, seed {SEED}; "
              f"{len(reg_candidates())} RegularizedALS and {len(social_candidates())} SocialALS candidates, "
              f"each read after {', '.join(map(str, CHECKPOINTS))} iterations", flush=True)
    else:
        print(f"choosing scores (ranking, NDCG@10): {CHOOSE_FOLDS}-fold CV, {FACTORS} factors, seed {SEED}; "
              f"candidates {[_fmt(p) for _, p in ranking_candidates()]}, {RANKING_ITERATIONS} iterations",
              flush=True)
    if args.reuse:
        scores = pd.read_csv(scores_path)
    else:
        scores = pd.concat([choosing_scores(d, args.jobs, task) for d in DATA], ignore_index=True)
        scores_path.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(scores_path, index=False, float_format="%.6f")
        print(f"  wrote {scores_path.relative_to(ROOT) if scores_path.is_relative_to(ROOT) else scores_path}")

    def fmt(x):
        return f"{x:.4f}"

    cache: dict = {}
    rows, verdicts = [], []
    print(f"\n===== {task}: leave one data set out: chosen on the other two ({CHOOSE_FOLDS}-fold CV), "
          f"evaluated on the left-out set ({TABLE_FOLDS}-fold CV, the folds of `socialals compare`)")
    for left in DATA:
        sets = [d for d in DATA if d != left]
        chosen = choose(scores, sets, task)
        print(f"\nleft out {left}; chosen on {' + '.join(sets)}:")
        print(f"  RegularizedALS {chosen['RegularizedALS']} (mean relative {metric} {chosen['reg_rel']:.4f})")
        print(f"  SocialALS      {chosen['SocialALS']} ({chosen['social_how']}; {chosen['n_keep']} "
              "(candidate, iterations) pairs kept the rule)")
        part = table_for(left, chosen, cache, "LOO generic", task)
        rows += part
        reg, soc = (part[-2][metric], part[-2][cold_name]), (part[-1][metric], part[-1][cold_name])
        verdicts.append((left, reg, soc, _holds(reg, soc, task)))
        print(pd.DataFrame(part).drop(columns="data").to_string(index=False, float_format=fmt), flush=True)

    print(f"\n===== the rule on each left-out set (generic SocialALS no worse than generic RegularizedALS, "
          f"{metric} on all users and on cold-start users)")
    for left, reg, soc, ok in verdicts:
        print(f"  {left:<10} {metric} {soc[0]:.4f} vs {reg[0]:.4f} ({soc[0] - reg[0]:+.4f}), cold-start "
              f"{soc[1]:.4f} vs {reg[1]:.4f} ({soc[1] - reg[1]:+.4f}): {'holds' if ok else 'FAILS'}")

    shipped = choose(scores, list(DATA), task)
    print(f"\n===== {task}: shipped generic rows: chosen on all of {', '.join(DATA)}")
    print(f"  RegularizedALS {shipped['RegularizedALS']} (mean relative {metric} {shipped['reg_rel']:.4f})")
    print(f"  SocialALS      {shipped['SocialALS']} ({shipped['social_how']})")
    social = dict(shipped["SocialALS"])
    if "nearest" in shipped:
        social = dict(shipped["nearest"])
        print(f"  closest to keeping the rule in-sample: {social} (worst loss {shipped['nearest_worst']:+.4f}); "
              "trying it and smaller alphas by 5-fold CV")
    for alpha in (None, *FALLBACK_ALPHAS):
        if alpha is not None:
            if alpha >= social["alpha"]:
                continue
            social = {**social, "alpha": alpha}
            if alpha == 0 and "similarity" in social:
                social["similarity"] = None  # no social term, so no link similarities to compute
            print(f"  fallback: alpha lowered to {alpha}")
        checks = []
        for data in DATA:
            reg = five_fold(data, "RegularizedALS", shipped["RegularizedALS"], cache, task)
            soc = five_fold(data, "SocialALS", social, cache, task)
            checks.append((data, reg, soc, _holds(reg, soc, task)))
        for data, reg, soc, ok in checks:
            print(f"  {data:<10} 5-fold {metric} {soc[0]:.4f} vs {reg[0]:.4f} ({soc[0] - reg[0]:+.4f}), cold-start "
                  f"{soc[1]:.4f} vs {reg[1]:.4f} ({soc[1] - reg[1]:+.4f}): {'holds' if ok else 'FAILS'}")
        if all(ok for *_, ok in checks):
            break
    shipped["SocialALS"] = social
    final = []
    for data in DATA:
        final += table_for(data, shipped, cache, "new generic", task)
    print(f"\n===== {task}: 5-fold table of the shipped rows on each set (in-sample: these sets chose them)")
    print(pd.DataFrame(final).to_string(index=False, float_format=fmt))
    print(f"\n===== shipped generic {task} rows (socialals/_defaults.py)")
    print(f"  RegularizedALS: {shipped['RegularizedALS']}")
    print(f"  SocialALS: {shipped['SocialALS']}")
    print(f"\n({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
