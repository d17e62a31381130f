"""Accuracy on the real social data sets next to the published LibRec numbers.

For FilmTrust and Ciao (read from ``../shared/datasets/``), every model of the command
line (ALS, RegularizedALS, SocialALS and the FactorizationMachine) runs 5-fold
cross-validation (``KFold(5, shuffle=True, random_state=0)``) at 10 factors with the tuned
defaults of ``socialals/_defaults.py`` (chosen by ``benchmarks/tune.py`` on validation data
inside the training part of fold 0). Reported, as means over the folds:

* ``rmse``, ``mae`` -- all test ratings;
* ``cold_rmse``, ``cold_mae`` -- test ratings of users with 1-4 training ratings (the
  ``cold_start`` group of :func:`socialals.evaluate`);
* ``lt5_rmse``, ``lt5_mae`` -- test ratings of users with fewer than 5 training ratings,
  *including* users with none (they get the fallback prediction, or their friends' taste
  for SocialALS);

next to the 5-fold RMSE at 10 factors that Guo, Zhang and Yorke-Smith report for LibRec's
implementations (TrustSVD, AAAI 2015, Table 2).

Usage::

    python benchmarks/bench_social.py                  # both data sets, ~30 s on 2 cores (measured)
    python benchmarks/bench_social.py --data filmtrust --folds 5

Writes ``benchmarks/results/social_results.csv`` (one row per data set and model, ours
and the published ones).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import socialals  # noqa: E402
from socialals import cli  # noqa: E402
from socialals.model_selection import cross_validate  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "benchmarks" / "results" / "social_results.csv"
FACTORS = 10
SEED = 0

#: TrustSVD (AAAI 2015) Table 2: 5-fold RMSE at 10 factors, LibRec implementations.
PUBLISHED = {
    "filmtrust": {"PMF": 0.968, "BiasedMF": 0.802, "SoRec": 0.831, "SoReg": 0.875, "SocialMF": 0.844,
                  "TrustMF": 0.819, "SVD++": 0.802, "TrustSVD": 0.787},
    "ciao": {"PMF": 1.078, "SoRec": 1.010, "SoReg": 1.076, "SocialMF": 0.976, "TrustMF": 1.014,
             "SVD++": 1.001, "TrustSVD": 0.956},
}

COLUMNS = ["dataset", "source", "model", "rmse", "rmse_std", "mae", "cold_rmse", "cold_mae", "lt5_rmse",
           "lt5_mae", "n_cold_test", "n_lt5_test", "fit_seconds", "params"]


def load(name):
    if name == "filmtrust":
        return socialals.load_filmtrust(SHARED / "filmtrust")
    return socialals.load_ciao(SHARED / "ciao")


def _pooled(folds: pd.DataFrame, groups, metric: str):
    """Per fold: the RMSE or MAE of the union of ``groups`` (from the group metrics)."""
    n = sum(folds[f"n_{g}"].to_numpy(float) for g in groups)
    if metric == "rmse":
        total = sum(np.nan_to_num(folds[f"{g}_rmse"].to_numpy(float) ** 2) * folds[f"n_{g}"] for g in groups)
        return np.sqrt(total / n), n
    total = sum(np.nan_to_num(folds[f"{g}_mae"].to_numpy(float)) * folds[f"n_{g}"] for g in groups)
    return total / n, n


def run(data: str, folds: int) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", socialals.DataWarning)
        ratings, social = load(data)
    print(f"\n{data}: {len(ratings):,} ratings, {ratings['user'].nunique():,} users, "
          f"{ratings['item'].nunique():,} items, {len(social):,} trust links; {folds}-fold CV, {FACTORS} factors",
          flush=True)
    rows = []
    for name in cli.available_models():
        model = cli.make_model(name, data, factors=FACTORS, seed=SEED)
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", socialals.DataWarning)
            scores = cross_validate(model, ratings, social, cv=folds, random_state=SEED, ranking=False)
        per_fold = scores.drop(index=["mean", "std"])
        groups = ["cold_start", "social_only", "unknown"]
        lt5_rmse, n_lt5 = _pooled(per_fold, groups, "rmse")
        lt5_mae, _ = _pooled(per_fold, groups, "mae")
        mean = scores.loc["mean"]
        params = {k: v for k, v in model.get_params().items() if k not in cli._TECHNICAL}
        row = {
            "dataset": data, "source": "socialals", "model": name,
            "rmse": mean["rmse"], "rmse_std": scores.loc["std", "rmse"], "mae": mean["mae"],
            "cold_rmse": mean["cold_start_rmse"], "cold_mae": mean["cold_start_mae"],
            "lt5_rmse": float(np.mean(lt5_rmse)), "lt5_mae": float(np.mean(lt5_mae)),
            "n_cold_test": mean["n_cold_start"], "n_lt5_test": float(np.mean(n_lt5)),
            "fit_seconds": mean["fit_seconds"], "params": json.dumps(params),
        }
        rows.append(row)
        print(f"  {name:<22} rmse {row['rmse']:.4f}  mae {row['mae']:.4f}  cold rmse {row['cold_rmse']:.4f}  "
              f"({time.perf_counter() - started:.0f} s)  {params}", flush=True)
    for name, value in PUBLISHED[data].items():
        rows.append({"dataset": data, "source": "LibRec (TrustSVD, AAAI 2015, Table 2)", "model": name,
                     "rmse": value})
    return rows


def show(table: pd.DataFrame) -> None:
    for data, part in table.groupby("dataset", sort=False):
        ours = part[part["source"] == "socialals"]
        ref = part[part["source"] != "socialals"]
        print(f"\n=== {data}: 5-fold RMSE/MAE, 10 factors (cold = test users with 1-4 training ratings; "
              "<5 = fewer than 5, including none)")
        cols = ["model", "rmse", "rmse_std", "mae", "cold_rmse", "cold_mae", "lt5_rmse", "lt5_mae", "fit_seconds"]
        print(ours[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        print("published (LibRec, TrustSVD AAAI 2015 Table 2), RMSE: "
              + ", ".join(f"{m} {v:.3f}" for m, v in zip(ref["model"], ref["rmse"])))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["filmtrust", "ciao"], choices=["filmtrust", "ciao"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    rows = []
    for data in args.data:
        rows += run(data, args.folds)
    table = pd.DataFrame(rows, columns=COLUMNS)
    show(table)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.4f")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
