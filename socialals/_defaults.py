"""Default hyperparameters of the command line, per data set and model.

Every entry was chosen by ``benchmarks/tune.py``: a grid search scored by validation RMSE
with 3-fold cross-validation *inside the training part* of fold 0 of the 5-fold split that
``benchmarks/bench_social.py`` evaluates on (``KFold(5, shuffle=True, random_state=0)``),
at 10 factors; the test fold is never used. ``factors``, ``random_state`` and ``n_jobs``
are not part of these settings (the command line sets them).

``generic`` is used for data without a tuned entry (Epinions, MovieLens, your own files;
a local copy of FilmTrust or Ciao is recognised by its files' SHA-256, see
:func:`socialals.datasets.identify_files`, and gets its tuned entry): a setting that did
well on all three tuned data sets, not tuned for the data at hand. Its rating rows of
RegularizedALS and SocialALS were chosen by leave-one-data-set-out
(``benchmarks/bench_generic_defaults.py``; log in
``benchmarks/results/bench_generic_defaults.txt``) under the rule that generic SocialALS
is no worse than generic RegularizedALS, on all test users and on cold-start users, on
every tuned data set. No social setting kept that rule on top of the best generic
RegularizedALS row: even ``alpha=0.03`` raised FilmTrust's cold-start RMSE (5-fold,
+0.0013), and larger ones more (the social pull overwhelms the small ``reg * n_i`` ridge of
users with 1-4 ratings). So generic SocialALS has the social term off (``alpha=0``: it
fits as RegularizedALS); set ``alpha`` yourself, or tune it on your data, to use the graph.

The factorization machine (:mod:`socialals.fm`) was tuned afterwards by the same script
and protocol (``python benchmarks/tune.py --models FactorizationMachine``; grid: solver
ALS/SGD, ``reg``, ``reg_scaling``, ``social_features``, 5-25 iterations; log in
``benchmarks/results/tune_output_fm.txt``); the other models' entries were not re-tuned.

FilmTrust's RegularizedALS and SocialALS were re-tuned later, by the same script and
protocol with finer grids (``FINE_GRIDS`` in ``benchmarks/tune.py``): a separate bias
regularisation ``bias_reg``, ``reg`` in steps of 1 around the optimum, VSS as well as PCC,
and 5-40 iterations read off per-iteration validation curves
(``python benchmarks/tune.py --data filmtrust``; log in
``benchmarks/results/tune_output_filmtrust.txt``). RegularizedALS was searched over every
(``reg``, ``bias_reg``, ``weighted_reg``) setting SocialALS was, and more. The other data
sets' entries predate ``bias_reg`` (so their biases use ``reg``).
"""

from __future__ import annotations

__all__ = ["DEFAULTS", "RANKING_DEFAULTS", "defaults_for"]

DEFAULTS: dict = {
    # Chosen by `python benchmarks/tune.py` (3-fold CV inside the training part of fold 0,
    # validation RMSE; see the full tables it prints). Re-run it after changing a model.
    "synthetic": {  # validation RMSE: ALS 24.68, RegularizedALS 0.7285, SocialALS 0.6998
        "ALS": {"iterations": 1},
        "RegularizedALS": {"weighted_reg": True, "reg": 0.1, "biases": True, "iterations": 25},
        "SocialALS": {
            "biases": True, "weighted_reg": False, "reg": 1.5, "alpha": 3.0, "similarity": "pcc", "iterations": 25,
        },
        "FactorizationMachine": {  # validation RMSE 0.7257
            "solver": "als", "reg_scaling": "frequency", "reg": 0.1, "social_features": True, "iterations": 20,
        },
    },
    "filmtrust": {  # validation RMSE: ALS 14.03, RegularizedALS 0.8017, SocialALS 0.8008
        "ALS": {"iterations": 1},
        # before bias_reg (biases regularised by reg): RegularizedALS reg 10, 15 iterations,
        # 0.8073; SocialALS reg 10, alpha 3, no similarity, 10 iterations, 0.8060
        "RegularizedALS": {"weighted_reg": False, "reg": 13.0, "bias_reg": 4.0, "biases": True, "iterations": 10},
        "SocialALS": {
            "biases": True, "weighted_reg": False, "reg": 12.0, "bias_reg": 4.0, "alpha": 3.0, "similarity": "pcc",
            "iterations": 10,
        },
        "FactorizationMachine": {  # validation RMSE 0.8071
            "solver": "als", "reg_scaling": "none", "reg": 10.0, "social_features": False, "iterations": 15,
        },
    },
    "ciao": {  # validation RMSE: ALS 704.6, RegularizedALS 0.9785, SocialALS 0.9615
        "ALS": {"iterations": 3},
        # `socialals tune` (Optuna, 35 trials, a 20 % hold-out) inside the training part of fold 0:
        # benchmarks/results/bench_tune_output.txt, outer fold 1; validation RMSE 0.9533
        "RegularizedALS": {"weighted_reg": False, "reg": 17.13, "bias_reg": 2.936, "biases": True, "iterations": 9},
        "SocialALS": {
            "biases": True, "weighted_reg": False, "reg": 3.0, "alpha": 30.0, "similarity": None, "iterations": 5,
        },
        "FactorizationMachine": {  # validation RMSE 0.9645
            "solver": "sgd", "reg_scaling": "frequency", "reg": 0.3, "social_features": False, "iterations": 10,
        },
    },
    # Untuned data (epinions, movielens-*, files that are not a known release). ALS and the
    # FM: the stage-1 candidate of `python benchmarks/tune.py` with the smallest mean
    # relative excess of validation RMSE over the three data sets above (FM 2.6 %).
    # RegularizedALS and SocialALS: `python benchmarks/bench_generic_defaults.py` (leave one
    # data set out; 3-fold CV scores, 5-fold check): RegularizedALS has the smallest mean
    # relative RMSE over the three sets (2.6 % above each set's best candidate). SocialALS:
    # no social candidate kept "no worse than generic RegularizedALS, all and cold-start
    # users" on all three sets; with this base, alpha 0.3 / 0.1 / 0.03 (PCC) raised
    # FilmTrust's 5-fold cold-start RMSE by 0.0072 / 0.0035 / 0.0013 (old row, alpha 1:
    # +0.0112, Ciao +0.0187), so the safe form ships: the social term off.
    "generic": {
        "ALS": {"iterations": 1},
        "RegularizedALS": {"weighted_reg": True, "reg": 0.1, "biases": True, "iterations": 15},
        "SocialALS": {
            "biases": True, "weighted_reg": True, "reg": 0.1, "alpha": 0.0, "similarity": None, "iterations": 15,
        },
        # The rule's pick (same settings with social_features=True, 2.58 %) costs ~70 s per
        # Ciao fit; without social features the validation RMSEs were about the same
        # (0.7305 / 0.8307 / 1.0103 at 15 iterations) at ~2 s per fit, so untuned (possibly
        # large) data get the cheap one.
        "FactorizationMachine": {
            "solver": "als", "reg_scaling": "frequency", "reg": 0.1, "social_features": False, "iterations": 15,
        },
    },
}


#: Top-N settings (``--task ranking``): the missing-data term of RegularizedALS and
#: SocialALS. Chosen by ``python benchmarks/bench_ranking.py`` on a validation split (20 %,
#: seed 1) inside the training part of fold 0 of its 5-fold split, by validation NDCG@10 over
#: its grid ``RANK_GRID`` (reg in {5, 20, 35, 50, 70}, unobserved_weight in {0.1, 0.3, 0.5},
#: unobserved_rating in {-1, -3, -5}, 15 iterations), then alpha in {0, 1, 5, 20} for
#: SocialALS (log: benchmarks/results/bench_ranking_*.txt, which also lists the other folds'
#: choices; ``tests/test_ranking_defaults.py`` holds the rows to them). On FilmTrust fold 0
#: picks alpha 0 (the other folds 5, 0, 5, 20): with the stronger missing-data term the
#: social term no longer helps all users there (5-fold test NDCG@10 SocialALS 0.5943,
#: RegularizedALS 0.5957). ``generic`` (untuned data, the synthetic set) was set from the
#: tuned rows of the earlier, smaller grid (reg {5, 20, 50}, w0 {0.1, 0.3}, r0 -1; fold 0:
#: FilmTrust reg 20, Ciao reg 5, both w0 0.1, r0 -1, alpha 20): reg between their choices and
#: alpha lowered to 5, so that an untuned graph pulls less. Models without a ranking objective (ALS, the FM)
#: use their rating settings; Popularity has none.
#: ``benchmarks/bench_generic_defaults.py --task ranking`` (leave one data set out, NDCG@10;
#: log ``benchmarks/results/bench_generic_defaults_ranking.txt``) keeps these generic rows:
#: in its 5-fold table generic SocialALS is no worse than generic RegularizedALS on every
#: set, all and cold-start users (FilmTrust 0.5832 vs 0.5828, cold 0.4220 vs 0.4209). Its
#: own choice (RegularizedALS reg 20) has no SocialALS partner that keeps that rule, not
#: even alpha 0: SocialALS also ranks the users known only through the graph, who count in
#: its all-user NDCG (FilmTrust -0.0004 at alpha 0) and are fitted to the missing-data
#: target, so alpha 0 is not RegularizedALS in this task. (Its "tuned" rows are the earlier
#: grid's: the log predates the wider grid.)
_RANKING_BASE = {"unobserved_weight": 0.1, "unobserved_rating": -1.0, "iterations": 15}
RANKING_DEFAULTS: dict = {
    # validation NDCG@10 (fold 0's training part): RegularizedALS 0.280, SocialALS 0.304,
    # Popularity 0.314 -- on these data which items get rated follows popularity alone
    "synthetic": {
        "RegularizedALS": {"reg": 20.0, **_RANKING_BASE},
        "SocialALS": {"reg": 20.0, "alpha": 20.0, **_RANKING_BASE},
    },
    "filmtrust": {  # validation NDCG@10 0.4186 (the old grid's best, w0 0.1 reg 20: 0.3980)
        "RegularizedALS": {"reg": 70.0, "unobserved_weight": 0.3, "unobserved_rating": -5.0, "iterations": 15},
        "SocialALS": {"reg": 70.0, "alpha": 0.0, "unobserved_weight": 0.3, "unobserved_rating": -5.0,
                      "iterations": 15},
    },
    "ciao": {  # the other folds: reg 5, w0 0.1 or 0.3, r0 -5, alpha 20 or 5
        "RegularizedALS": {"reg": 20.0, "unobserved_weight": 0.1, "unobserved_rating": -5.0, "iterations": 15},
        "SocialALS": {"reg": 20.0, "alpha": 5.0, "unobserved_weight": 0.1, "unobserved_rating": -5.0,
                      "iterations": 15},
    },
    "generic": {
        "RegularizedALS": {"reg": 10.0, **_RANKING_BASE},
        "SocialALS": {"reg": 10.0, "alpha": 5.0, **_RANKING_BASE},
    },
}


def defaults_for(data: str, model: str, task: str = "rating") -> dict:
    """A copy of the default hyperparameters of ``model`` on data set ``data``.

    Parameters
    ----------
    data : str
        A key of :data:`DEFAULTS` (unknown keys use ``"generic"``).
    model : str
        A model class name.
    task : {"rating", "ranking"}
        ``"ranking"`` gives the top-N settings of :data:`RANKING_DEFAULTS` where a model
        has them, and the rating settings otherwise.

    Returns
    -------
    dict
        Empty when nothing is recorded (the class defaults apply).
    """
    if task not in ("rating", "ranking"):
        raise ValueError(f"task must be 'rating' or 'ranking'; got {task!r}.")
    if task == "ranking":
        table = RANKING_DEFAULTS.get(data, RANKING_DEFAULTS["generic"])
        if model in table:
            return dict(table[model])
    table = DEFAULTS.get(data, DEFAULTS.get("generic", {}))
    return dict(table.get(model, {}))
