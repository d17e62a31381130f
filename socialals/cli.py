"""The ``socialals`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

import numpy as np
import pandas as pd


def _planted(n_users=1000, n_items=600, k=6, density=0.05, n_links=4000, seed=0):
    """Small planted problem where friends share taste (used by ``demo``)."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 20, n_users)
    centres = rng.normal(size=(20, k))
    U = 0.8 * centres[groups] + 0.6 * rng.normal(size=(n_users, k))
    V = rng.normal(size=(n_items, k)) / np.sqrt(k)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    r = np.clip(np.round(3.5 + (U[u] * V[i]).sum(1) + 0.5 * rng.normal(size=len(u))), 1, 5)
    a = rng.integers(0, n_users, n_links)
    b = np.array([rng.choice(np.flatnonzero(groups == groups[x])) for x in a])
    keep = a != b
    social = pd.DataFrame({"user": a[keep], "friend": b[keep]}).drop_duplicates()
    return pd.DataFrame({"user": u, "item": i, "rating": r}), social


def _demo(args) -> int:
    from . import ALS, RegularizedALS, SocialALS

    ratings, social = _planted(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    test_mask = rng.random(len(ratings)) < 0.2
    train, test = ratings[~test_mask], ratings[test_mask]
    models = {
        "ALS": ALS(factors=args.factors, iterations=args.iterations, random_state=args.seed),
        "RegularizedALS": RegularizedALS(factors=args.factors, reg=1.0, biases=True, iterations=args.iterations, random_state=args.seed),
        "SocialALS": SocialALS(factors=args.factors, reg=1.0, alpha=2.0, biases=True, iterations=args.iterations, random_state=args.seed),
    }
    print(f"planted data: {len(train)} training and {len(test)} test ratings, {len(social)} social links")
    print(f"{'model':<16}{'first loss':>14}{'last loss':>14}{'test RMSE':>11}{'seconds':>9}")
    import warnings

    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(train, social)
        secs = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = model.predict(test)
        rmse = float(np.sqrt(np.mean((pred - test["rating"].to_numpy()) ** 2)))
        h = model.loss_history_
        print(f"{name:<16}{h[0]:>14.1f}{h[-1]:>14.1f}{rmse:>11.4f}{secs:>9.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="socialals", description="ALS with social regularisation.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="fit the three ALS classes on generated data and print losses and RMSE")
    d.add_argument("--factors", type=int, default=8)
    d.add_argument("--iterations", type=int, default=15)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
