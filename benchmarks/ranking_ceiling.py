"""How high can top-N go on FilmTrust? An OPTIMISTIC CEILING, chosen on the test folds.

**This script picks hyperparameters on the test fold. Its numbers are not results.** They
only bound what a validation-tuned run of ``benchmarks/bench_ranking.py`` (the honest,
nested protocol) could reach with the same model families: if a model's ceiling here is
below a target, no grid will get it there; if it is above, the grid and the validation
choice decide how much of it survives.

Protocol (the folds, relevance and candidate rules of ``bench_ranking.py``, imported from it):
5-fold CV over the rating rows (seed 0), relevance = every held-out rated item, top 10
excluding the user's training items, the users a model knows. Two ceilings per family:

* ``best single setting``: the one setting with the highest *mean test* NDCG@10 over the 5
  folds (what a perfect validation would pick once for all folds);
* ``oracle per fold``: each fold takes its own best setting on its own test fold (the
  most optimistic number).

Families:

* ``RegularizedALS`` with the missing-data term: stage A, a full grid of
  ``unobserved_weight`` w0 (0.001..1) x ``unobserved_rating`` r0 {-10, -5, -3, -1, 0, 0.5} x
  ``reg`` (1..200) x ``biases`` at 10 factors and 15 iterations, and a coarser one with
  ``weighted_reg`` (ALS-WR, reg 0.03..3, no biases);
  stage B, the best few stage-A settings with ``factors`` 5..100, ``iterations`` 15/30 and
  neighbouring ``reg`` values.
* ``SocialALS``: the best stage-B settings with ``alpha`` 0..50 and ``similarity``
  None/vss/pcc.
* Two references computed densely in numpy on the binarised training matrix (FilmTrust is
  about 1.5k users x 2k items): EASE (Steck, WWW 2019: ``B = I - P / diag(P)``,
  ``P = (XᵀX + λI)⁻¹``, scores ``XB``) over a λ grid, and item-kNN with cosine similarity,
  its neighbourhoods cut to the ``n`` most similar items per item.
* Optionally (``--normalised-social``), a dense prototype of a *normalised* social term
  (SocialMF-style: each user pulled towards the weighted *mean* of its friends rather than
  a weighted sum of squared distances) on top of RegularizedALS's objective, solved by
  plain dense ALS in numpy (see :func:`normalised_social_als`). It is scored on the
  training users only, whereas ``SocialALS`` (through ``recommend``) also ranks the test
  users known only through the graph, as in ``bench_ranking.py``; compare it with its own
  ``alpha`` 0 row, not with the SocialALS rows.

Their scorer (:func:`dense_ndcg`) is checked against ``bench_ranking.top_n_scores`` on one
fitted model before anything else runs (the run stops if they disagree).

Usage::

    python benchmarks/ranking_ceiling.py                 # FilmTrust, every stage
    python benchmarks/ranking_ceiling.py --normalised-social

Writes ``benchmarks/results/ranking_ceiling_filmtrust.txt``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_ranking as br  # noqa: E402  (the honest benchmark: its folds, models and scorer)
from socialals import Popularity, RegularizedALS, SocialALS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ranking_ceiling_filmtrust.txt"
K = 10
W0S = (0.001, 0.01, 0.03, 0.1, 0.3, 0.5, 1.0)
R0S = (-10.0, -5.0, -3.0, -1.0, 0.0, 0.5)
REGS = (1.0, 3.0, 10.0, 20.0, 35.0, 50.0, 70.0, 100.0, 200.0)
WREGS = (0.03, 0.1, 0.3, 1.0, 3.0)  # with weighted_reg the penalty scales by the row's count
WEIGHTED_W0S = (0.01, 0.1, 0.3, 1.0)
WEIGHTED_R0S = (-5.0, -3.0, -1.0)
FACTORS = (5, 10, 20, 50, 100)
ALPHAS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
EASE_LAMBDAS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0)
KNN_SIZES = (5, 10, 20, 50, 100, 200, 500, None)


# ------------------------------------------------------------------ folds and scoring
def make(name, params):
    """``bench_ranking.make``, with ``factors`` among the parameters searched."""
    cls = {"RegularizedALS": RegularizedALS, "SocialALS": SocialALS}[name]
    return cls(**{"factors": br.FACTORS, "random_state": 0, "n_jobs": 2, **params})


class Fold:
    """One outer fold: the training part as a binary CSR over its own users and items."""

    def __init__(self, f, train, test, social):
        self.f, self.train, self.test, self.social = f, train, test, social
        self.users = pd.Index(pd.unique(train["user"]))
        self.items = pd.Index(pd.unique(train["item"]))
        u = self.users.get_indexer(train["user"])
        i = self.items.get_indexer(train["item"])
        self.X = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(len(self.users), len(self.items)))
        self.X.sum_duplicates()
        self.X.data[:] = 1.0


def dense_ndcg(scores, users, items, seen, test):
    """Mean NDCG@K of dense ``scores`` (rows ``users``, columns ``items``).

    ``seen`` (CSR, same shape) is excluded; relevance = every test item of a scored user,
    items the model does not know included (they count in the ideal DCG); the users scored
    are the test users among ``users``: the rules of ``bench_ranking.top_n_scores``.
    """
    t = test[test["user"].isin(users)].drop_duplicates(["user", "item"])
    if t.empty:
        return float("nan")
    rows = users.get_indexer(t["user"])
    cols = items.get_indexer(t["item"])
    uniq, inv = np.unique(rows, return_inverse=True)
    n_rel = np.bincount(inv, minlength=len(uniq))
    known = cols >= 0
    rel = sp.csr_matrix((np.ones(known.sum()), (inv[known], cols[known])), shape=(len(uniq), len(items)))
    s = np.array(scores[uniq], dtype=np.float64, copy=True)
    sub = seen[uniq].tocoo()
    s[sub.row, sub.col] = -np.inf
    kk = min(K, s.shape[1])
    part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    valid = np.isfinite(np.take_along_axis(s, top, axis=1))
    gains = np.asarray(rel[np.arange(len(uniq))[:, None], top].todense()) * valid
    disc = 1.0 / np.log2(np.arange(2, kk + 2))
    dcg = gains @ disc
    idcg = np.cumsum(disc)[np.minimum(n_rel, kk) - 1]
    return float(np.mean(dcg / idcg))


class Ceiling:
    """Every evaluated setting's per-fold test NDCG@10, by family."""

    def __init__(self, folds, cache=None):
        self.folds = folds
        self.table: dict[str, dict[str, np.ndarray]] = {}
        self.cache = Path(cache) if cache else None
        self.stored = {}
        if self.cache is not None and self.cache.exists():
            self.stored = json.loads(self.cache.read_text())

    def _lookup(self, family, key):
        hit = self.stored.get(family, {}).get(key)
        return None if hit is None or len(hit) != len(self.folds) else np.array(hit)

    def _keep(self, family, key, scores):
        self.table.setdefault(family, {})[key] = scores
        if self.cache is not None:
            self.stored.setdefault(family, {})[key] = scores.tolist()
            self.cache.write_text(json.dumps(self.stored))

    def _scores(self, family, params, compute):
        """Per-fold scores of ``params`` in ``family``: this run's, the cache's, or ``compute()``."""
        key = json.dumps(params, sort_keys=True)
        fam = self.table.setdefault(family, {})
        if key not in fam:
            stored = self._lookup(family, key)
            if stored is not None:
                fam[key] = stored
            else:
                self._keep(family, key, compute())
        return fam[key]

    def model(self, family, name, params):
        def compute():
            out = []
            for fold in self.folds:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m = make(name, params).fit(fold.train, fold.social)
                out.append(br.top_n_scores(m, fold.train, fold.test, set())["ndcg_at_10"])
            return np.array(out)

        return self._scores(family, params, compute)

    def dense(self, family, params, score_fn):
        return self._scores(family, params, lambda: np.array(
            [dense_ndcg(score_fn(fold), fold.users, fold.items, fold.X, fold.test) for fold in self.folds]))

    def best(self, family, n=1):
        fam = self.table[family]
        keys = sorted(fam, key=lambda k: -fam[k].mean())[:n]
        return [(json.loads(k), fam[k]) for k in keys]

    def oracle(self, family):
        return np.vstack(list(self.table[family].values())).max(axis=0)


# ------------------------------------------------------------------ dense references
def ease_scores(lam):
    def score(fold):
        X = fold.X.toarray()
        G = X.T @ X
        G[np.diag_indices_from(G)] += lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices_from(B)] = 0.0
        return X @ B
    return score


def knn_scores(n):
    def score(fold):
        X = fold.X.toarray()
        G = X.T @ X
        norm = np.sqrt(np.diag(G))
        norm[norm == 0] = 1.0
        S = G / norm[:, None] / norm[None, :]
        np.fill_diagonal(S, 0.0)
        if n is not None and n < S.shape[0]:
            cut = np.argpartition(-S, n - 1, axis=0)[n - 1]  # per column j: keep its n most similar items
            thr = S[cut, np.arange(S.shape[1])]
            S = np.where(S >= thr[None, :], S, 0.0)
        return X @ S
    return score


# ------------------------------------------------------------------ normalised social term (prototype)
def normalised_social_als(fold, reg, w0, r0, alpha, factors=10, iterations=15, seed=0):
    """Dense ALS of RegularizedALS's objective (no biases) plus a normalised social term ::

        α/2 Σ_i ‖u_i − Σ_f s_if u_f‖²,   s_if = w_if / Σ_f w_if  (out-links of i, weight 1)

    (SocialMF, Jamali & Ester 2010: each user pulled towards its friends' *mean*). The user
    half-step is solved exactly for all users at once: with ``T = I − S`` the term is
    ``α/2 ‖T U‖²``, so the users' stationarity condition is the linear system
    ``(blockdiag(A_i) + α TᵀT ⊗ I) vec(U) = vec(B)``, solved by conjugate gradients warm-started at
    the previous U (A_i, B the per-user missing-data normal equations). Users with no training
    rating but links are users too (their rows: missing data + social). Returns scores over
    the fold's items for the fold's training users.
    """
    rng = np.random.default_rng(seed)
    ratings = fold.train
    users = fold.users.append(pd.Index(pd.unique(fold.social[["user", "friend"]].values.ravel()))
                              .difference(fold.users))
    items = fold.items
    nu, ni = len(users), len(items)
    u = users.get_indexer(ratings["user"])
    i = items.get_indexer(ratings["item"])
    R = sp.csr_matrix((ratings["rating"].to_numpy(float), (u, i)), shape=(nu, ni))
    M = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(nu, ni))
    src = users.get_indexer(fold.social["user"])
    dst = users.get_indexer(fold.social["friend"])
    ok = (src >= 0) & (dst >= 0) & (src != dst)
    A = sp.csr_matrix((np.ones(ok.sum()), (src[ok], dst[ok])), shape=(nu, nu))
    A.data[:] = 1.0
    deg = np.asarray(A.sum(axis=1)).ravel()
    S = sp.diags(np.where(deg > 0, 1.0 / np.maximum(deg, 1), 0.0)) @ A
    T = (sp.eye(nu) - S).tocsr()
    # users with no out-link: their row of T is e_i, a plain ridge pull towards 0 -> drop it
    T = sp.diags((deg > 0).astype(float)) @ T
    L = (T.T @ T).tocsr()
    U = rng.standard_normal((nu, factors)) * 0.1
    V = rng.standard_normal((ni, factors)) * 0.1
    Mt = M.T.tocsr()
    Rd, Md = R.toarray(), M.toarray()
    C = w0 + (1 - w0) * Md                      # confidence per pair
    P = np.where(Md > 0, Rd, r0)                # target per pair

    def half(F, Cm, Pm, Ms, social):
        # rows: minimise Σ_j c_ij (p_ij − x_iᵀ f_j)² + reg ‖x_i‖² (+ α‖T X‖²), c_ij = w0 off Ω, 1 on it
        k = F.shape[1]
        G = np.empty((Ms.shape[0], k, k))
        base = w0 * (F.T @ F) + reg * np.eye(k)
        for row in range(Ms.shape[0]):
            Fo = F[Ms.indices[Ms.indptr[row]: Ms.indptr[row + 1]]]
            G[row] = base + (1 - w0) * (Fo.T @ Fo)
        b = (Cm * Pm) @ F
        X = np.linalg.solve(G, b[..., None])[..., 0]
        if social is None:
            return X
        x0 = X if social[1] is None else social[1]
        mat = lambda Z: np.einsum("ikl,il->ik", G, Z) + alpha * (L @ Z)  # noqa: E731
        Z = x0.copy()
        r = b - mat(Z)
        p = r.copy()
        rs = float(np.sum(r * r))
        for _ in range(200):
            Ap = mat(p)
            a = rs / float(np.sum(p * Ap))
            Z += a * p
            r -= a * Ap
            rs_new = float(np.sum(r * r))
            if rs_new < 1e-20 * max(1.0, float(np.sum(b * b))):
                break
            p = r + (rs_new / rs) * p
            rs = rs_new
        return Z

    for _ in range(iterations):
        U = half(V, C, P, M, (alpha, U) if alpha > 0 else None)
        V = half(U, C.T, P.T, Mt, None)
    return (U @ V.T)[: len(fold.users)]


# ------------------------------------------------------------------ the run
def fmt(fam_name, label, params, scores, popularity):
    return (f"{fam_name:24s} {label:20s} {scores.mean():.4f} ± {scores.std(ddof=1):.4f}  "
            f"{scores.mean() / popularity.mean():.3f}x  {json.dumps(params) if params is not None else ''}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--normalised-social", action="store_true",
                    help="also the dense prototype of the normalised (friends' mean) social term")
    ap.add_argument("--output", default=str(RESULTS))
    ap.add_argument("--cache", default=None,
                    help="a JSON file keeping every setting's fold scores, so that a rerun skips them")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    ratings, social = br.load("filmtrust")
    rng = np.random.default_rng(0)  # bench_ranking's folds
    fold_of = rng.permutation(np.arange(len(ratings)) % args.folds)
    folds = [Fold(f, ratings[fold_of != f], ratings[fold_of == f], social) for f in range(args.folds)]
    ceil = Ceiling(folds, args.cache)
    log = []

    def say(line):
        print(line, flush=True)
        log.append(line)

    # the dense scorer against the benchmark's, on one fitted model
    fold = folds[0]
    m = make("RegularizedALS", dict(reg=20.0, unobserved_weight=0.1, unobserved_rating=-1.0,
                                       iterations=15)).fit(fold.train)
    U = m.user_factors_[m.users_.get_indexer(fold.users)]  # the model orders its labels its own way
    V = m.item_factors_[m.items_.get_indexer(fold.items)]
    mine = dense_ndcg(U @ V.T, fold.users, fold.items, fold.X, fold.test)
    theirs = br.top_n_scores(m, fold.train, fold.test, set())["ndcg_at_10"]
    if abs(mine - theirs) > 1e-9:
        raise SystemExit(f"dense_ndcg {mine} disagrees with bench_ranking.top_n_scores {theirs}")
    say(f"dense scorer check: {mine:.6f} (dense) vs {theirs:.6f} (bench_ranking.top_n_scores)")

    pop = []
    for fold in folds:
        p = Popularity().fit(fold.train)
        pop.append(br.top_n_scores(p, fold.train, fold.test, set())["ndcg_at_10"])
    pop = np.array(pop)
    ceil.table["Popularity"] = {"{}": pop}

    # ---- RegularizedALS, stage A: w0 x r0 x reg x biases (x weighted_reg), 10 factors, 15 iterations
    t0 = time.perf_counter()
    for w0, r0, biases, reg in itertools.product(W0S, R0S, (False, True), REGS):
        ceil.model("RegularizedALS", "RegularizedALS",
                   dict(reg=reg, unobserved_weight=w0, unobserved_rating=r0, biases=biases,
                        weighted_reg=False, factors=10, iterations=15))
    for w0, r0, reg in itertools.product(WEIGHTED_W0S, WEIGHTED_R0S, WREGS):  # ALS-WR: a coarser grid
        ceil.model("RegularizedALS", "RegularizedALS",
                   dict(reg=reg, unobserved_weight=w0, unobserved_rating=r0, biases=False,
                        weighted_reg=True, factors=10, iterations=15))
    say(f"stage A: {len(ceil.table['RegularizedALS'])} settings in {time.perf_counter() - t0:.0f}s")
    for p, s in ceil.best("RegularizedALS", 5):
        say("  A " + fmt("RegularizedALS", "", p, s, pop))

    # ---- stage B: the best stage-A settings with factors, iterations and neighbouring reg
    t0 = time.perf_counter()
    seeds = []
    for p, _ in ceil.best("RegularizedALS", 40):
        shape = (p["unobserved_weight"], p["unobserved_rating"], p["biases"], p["weighted_reg"])
        if shape not in [(q["unobserved_weight"], q["unobserved_rating"], q["biases"], q["weighted_reg"])
                         for q in seeds]:
            seeds.append(p)
        if len(seeds) == 3:
            break
    for p in seeds:
        grid = WREGS if p["weighted_reg"] else REGS
        j = grid.index(p["reg"])
        for reg, k, it in itertools.product(grid[max(0, j - 1): j + 2], FACTORS, (15, 30)):
            ceil.model("RegularizedALS", "RegularizedALS", {**p, "reg": reg, "factors": k, "iterations": it})
    say(f"stage B: {len(ceil.table['RegularizedALS'])} settings in all, {time.perf_counter() - t0:.0f}s")
    for p, s in ceil.best("RegularizedALS", 5):
        say("  B " + fmt("RegularizedALS", "", p, s, pop))

    # ---- SocialALS: alpha x similarity on the best RegularizedALS settings
    t0 = time.perf_counter()
    for p, _ in ceil.best("RegularizedALS", 3):
        for alpha, sim in itertools.product(ALPHAS, (None, "vss", "pcc")):
            if alpha == 0 and sim is not None:
                continue
            ceil.model("SocialALS", "SocialALS", {**p, "alpha": alpha, "similarity": sim})
    say(f"SocialALS: {len(ceil.table['SocialALS'])} settings, {time.perf_counter() - t0:.0f}s")
    for p, s in ceil.best("SocialALS", 5):
        say("  S " + fmt("SocialALS", "", p, s, pop))

    # ---- dense references
    t0 = time.perf_counter()
    for lam in EASE_LAMBDAS:
        ceil.dense("EASE", {"lambda": lam}, ease_scores(lam))
    for n in KNN_SIZES:
        ceil.dense("item-kNN cosine", {"neighbours": n}, knn_scores(n))
    say(f"EASE and item-kNN: {time.perf_counter() - t0:.0f}s")
    for fam in ("EASE", "item-kNN cosine"):
        for p, s in ceil.best(fam, 3):
            say("  D " + fmt(fam, "", p, s, pop))

    if args.normalised_social:
        t0 = time.perf_counter()
        best_ra = [p for p, _ in ceil.best("RegularizedALS", 20)
                   if not p["biases"] and not p["weighted_reg"]][:1]
        for p in best_ra:
            for alpha in (0.0, 1.0, 5.0, 20.0, 50.0, 200.0):
                params = dict(reg=p["reg"], w0=p["unobserved_weight"], r0=p["unobserved_rating"],
                              alpha=alpha, factors=p["factors"], iterations=p["iterations"])
                ceil.dense("normalised social (dense)", params,
                           lambda fold, q=params: normalised_social_als(fold, **q))
        say(f"normalised social prototype: {time.perf_counter() - t0:.0f}s")
        for p, s in ceil.best("normalised social (dense)", 6):
            say("  N " + fmt("normalised social", "", p, s, pop))

    # ---- the table
    target = 1.1 * pop.mean()
    lines = [
        "OPTIMISTIC CEILING: hyperparameters picked on the TEST folds (not a result; see the docstring).",
        f"FilmTrust, {args.folds}-fold CV (bench_ranking.py's folds), NDCG@10 mean ± std over folds; "
        f"x = ratio to Popularity; target 1.1 x Popularity = {target:.4f}",
        "",
        f"{'family':24s} {'ceiling':20s} {'NDCG@10':16s}  ratio  setting",
    ]
    for fam in ceil.table:
        if fam == "Popularity":
            lines.append(fmt(fam, "(no parameters)", None, pop, pop))
            continue
        (p, s), = ceil.best(fam, 1)
        lines.append(fmt(fam, "best single setting", p, s, pop))
        lines.append(fmt(fam, "oracle per fold", None, ceil.oracle(fam), pop))
    lines.append("")
    lines.append("settings evaluated: " + ", ".join(f"{fam} {len(v)}" for fam, v in ceil.table.items())
                 + f"; {time.perf_counter() - t_start:.0f}s in all")
    text = "\n".join(lines)
    print("\n" + text)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w") as fh:
        fh.write("python benchmarks/ranking_ceiling.py" + (" --normalised-social" if args.normalised_social else "")
                 + "\n\n" + text + "\n\nprogress log:\n" + "\n".join(log) + "\n")


if __name__ == "__main__":
    main()
