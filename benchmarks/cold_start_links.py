"""How many cold-start test users can the social term reach at all?

For the same 5 folds as ``benchmarks/bench_social.py`` (``KFold(5, shuffle=True,
random_state=0)``), the cold-start test users (1-4 training ratings) are split into those
with at least one trust link (either direction) to a user who has training ratings --
the only ones whose factors the social term of :class:`socialals.SocialALS` can move --
and the rest, for whom SocialALS can only differ from RegularizedALS through its
hyperparameters and the item factors. Printed as means per fold, with the test RMSE of
each group for RegularizedALS and SocialALS at the defaults of ``socialals/_defaults.py``.

Also printed, from each fold's training ratings only: the correlation between a user's
rating level (mean of ``r - mu - item mean deviation``) and the mean level of the user's
friends, over users with at least 5 training ratings and a friend with at least 5 -- how
much a friend tells about the level at which a user rates, which is most of what a
cold-start prediction is.

This reports on the test folds; it chooses nothing (the defaults were chosen on
validation data by ``benchmarks/tune.py``).

Usage::

    python benchmarks/cold_start_links.py                 # both data sets
    python benchmarks/cold_start_links.py --data filmtrust
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import socialals  # noqa: E402
from socialals import KFold, cli  # noqa: E402

SHARED = ROOT.parent / "shared" / "datasets"
MODELS = ("RegularizedALS", "SocialALS")


def load(name):
    if name == "filmtrust":
        return socialals.load_filmtrust(SHARED / "filmtrust")
    return socialals.load_ciao(SHARED / "ciao")


def run(data: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", socialals.DataWarning)
        ratings, social = load(data)
    both = pd.concat([social[["user", "friend"]],
                      social[["friend", "user"]].set_axis(["user", "friend"], axis=1)], ignore_index=True)
    rows = []
    for fold, (tr, te) in enumerate(KFold(5, shuffle=True, random_state=0).split(ratings)):
        train, test = ratings.iloc[tr], ratings.iloc[te]
        counts = train.groupby("user").size()
        n_train = test["user"].map(counts).fillna(0)
        cold_test = test[(n_train >= 1) & (n_train < 5)]
        cold_users = pd.Index(cold_test["user"].unique())
        links = both[both["user"].isin(cold_users)]
        any_link = set(links["user"])
        reachable = set(links.loc[links["friend"].isin(counts.index), "user"])
        linked = cold_test["user"].isin(reachable).to_numpy()
        row = {"fold": fold, "cold_users": len(cold_users), "cold_test_ratings": len(cold_test),
               "users_with_a_link": len(any_link), "users_with_a_rated_friend": len(reachable),
               "test_ratings_of_those": int(linked.sum())}
        row["bias_corr_with_friends"] = _level_correlation(train, both, counts)
        truth = cold_test["rating"].to_numpy(float)
        for name in MODELS:
            model = cli.make_model(name, data, factors=10, seed=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", socialals.DataWarning)
                model.fit(train, social)
                pred = np.asarray(model.predict(cold_test[["user", "item"]]), float)
            err = (pred - truth) ** 2
            row[f"{name}_rmse_linked"] = float(np.sqrt(err[linked].mean()))
            row[f"{name}_rmse_unlinked"] = float(np.sqrt(err[~linked].mean()))
            row[f"{name}_rmse_cold"] = float(np.sqrt(err.mean()))
        rows.append(row)
    return pd.DataFrame(rows).set_index("fold").astype(float)


def _level_correlation(train, links, counts) -> float:
    mu = train["rating"].mean()
    item_dev = train.groupby("item")["rating"].mean() - mu
    level = (train["rating"] - mu - train["item"].map(item_dev)).groupby(train["user"]).mean()
    active = counts.index[counts >= 5]
    e = links[links["user"].isin(active) & links["friend"].isin(active)].drop_duplicates()
    friends = e.assign(level=e["friend"].map(level)).groupby("user")["level"].mean()
    return float(np.corrcoef(level[friends.index], friends)[0, 1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["filmtrust", "ciao"], choices=["filmtrust", "ciao"])
    args = parser.parse_args(argv)
    pd.set_option("display.width", 200)
    for data in args.data:
        table = run(data)
        table.loc["mean"] = table.mean()
        print(f"\n=== {data}: cold-start test users (1-4 training ratings) and their trust links, per fold")
        counts = ["cold_users", "cold_test_ratings", "users_with_a_link", "users_with_a_rated_friend",
                  "test_ratings_of_those"]
        print(table[counts].to_string(float_format=lambda x: f"{x:.1f}"))
        mean = table.loc["mean"]
        print(f"share of cold test ratings whose user has a rated friend: "
              f"{mean['test_ratings_of_those'] / mean['cold_test_ratings']:.1%}")
        print("correlation of a user's rating level with the friends' mean level (training data): "
              + ", ".join(f"{v:.3f}" for v in table["bias_corr_with_friends"].drop("mean"))
              + f" (mean {mean['bias_corr_with_friends']:.3f})")
        print("test RMSE on those ratings (linked) and on the others (unlinked), defaults of _defaults.py:")
        print(table[[c for c in table.columns if "_rmse_" in c]].to_string(float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
