"""Hyperparameters chosen on the user's own data: :func:`tune`, and the params files.

:func:`tune` searches one model's hyperparameters on validation folds drawn *inside* the
ratings it is given (the caller's test data never reaches it) and returns the best
setting with a table of every trial. The search is Optuna's (the optional extra
``socialals[tune]``): a seeded TPE sampler proposes settings, a median pruner stops
settings that trail the others, and the time budget ends the search. (Optuna rather than
a search of our own: its seeded TPE sampler handles the conditional space below, such as
``reg``'s range depending on ``weighted_reg``, its pruners use the per-sweep scores we
report, and enqueued trials give the starting points; ``GridSearch`` stays for explicit
grids.) What is ours is what is about these models:

* **Iterations are read off validation curves.** Every candidate is fitted once per
  validation fold with ``max_iterations`` sweeps; the fit loop's ``callback`` scores the
  validation ratings after every sweep (every ``score_every`` sweeps for ranking). A fit
  of ``t`` sweeps is exactly the first ``t`` sweeps of a longer one (same seed, ``tol=0``),
  so the curve equals refitting at every count, for the price of one fit. The chosen
  ``iterations`` is the minimum of the curve averaged over the folds. A fold's fit stops
  early when its curve has not improved for ``patience`` scores (the curve has turned
  up); the later folds stop where the first did.
* **The social term can be switched off.** ``alpha`` is searched as "0, or a log-uniform
  value", and the first trials are enqueued: the ``generic`` defaults and, for
  :class:`~socialals.SocialALS`, the same with ``alpha=0`` (which *is*
  :class:`~socialals.RegularizedALS`). :func:`tune_models` tunes RegularizedALS first
  and enqueues its winner with ``alpha=0`` as a SocialALS trial on the same folds, so the
  tuned SocialALS is never worse than the tuned RegularizedALS on validation.
* **Params files**: :meth:`TuneResult.save` / :func:`save_params` write the chosen
  settings as JSON; :func:`read_params` reads them back with every name checked, and
  ``socialals fit --params FILE`` and ``socialals compare --params FILE`` use them.

Reproducibility: with ``n_trials`` (and no budget) the same ``random_state`` gives the same
trials and the same choice. A time budget alone ends the search after however many
trials fitted in it, which depends on the machine; the trials run in the same order.
"""

from __future__ import annotations

import json
import math
import numbers
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from ._validation import check_random_state
from .exceptions import InvalidParameterError

__all__ = ["TuneResult", "default_space", "read_params", "save_params", "tune", "tune_models"]

#: Parameters that are not hyperparameters of the model (seeds, threads, precision, hooks).
TECHNICAL_PARAMS = ("n_jobs", "random_state", "dtype", "init_scale", "callback", "tol")
#: Iterations are read off the validation curve, never sampled.
_CURVE_PARAM = "iterations"
PARAMS_FORMAT = "socialals-params"
_METRIC = {"rating": "rmse", "ranking": "ndcg_at_10"}
_OPTUNA_HINT = "install the optional extra: pip install 'socialals[tune]' (it adds Optuna)"


# ---------------------------------------------------------------------------- search spaces
@dataclass(frozen=True)
class _LogRange:
    """A float drawn log-uniformly from [low, high] (uniformly when low <= 0)."""

    low: float
    high: float

    def suggest(self, trial, name):
        return trial.suggest_float(name, self.low, self.high, log=self.low > 0)


@dataclass(frozen=True)
class _ZeroOr:
    """0, or a float drawn log-uniformly from [low, high]: the social term off or on."""

    low: float
    high: float


@dataclass(frozen=True)
class _By:
    """A log range that depends on an earlier parameter (``reg`` on ``weighted_reg``)."""

    on: str
    ranges: tuple  # ((value of `on`, _LogRange), ...)


@dataclass(frozen=True)
class _RatioOf:
    """``bias_reg`` as a log-uniform multiple of ``reg`` (searched only with biases)."""

    of: str
    low: float
    high: float


@dataclass(frozen=True)
class _WhenPositive:
    """Choices searched only when parameter ``on`` is > 0 (``similarity`` needs ``alpha``)."""

    on: str
    choices: tuple
    otherwise: object = None


_SOCIAL = {"alpha": _ZeroOr(0.1, 100.0), "similarity": _WhenPositive("alpha", (None, "vss", "pcc"))}
_RATING_ALS = {
    "biases": True,
    "weighted_reg": [False, True],
    "reg": _By("weighted_reg", ((True, _LogRange(0.01, 3.0)), (False, _LogRange(0.3, 100.0)))),
    "bias_reg": _RatioOf("reg", 0.03, 3.0),
}
_RANKING_ALS = {
    "biases": False,
    "weighted_reg": False,
    "reg": _LogRange(1.0, 100.0),
    "unobserved_weight": _LogRange(0.01, 1.0),
    "unobserved_rating": [-1.0, 0.0],
}
_FM = {
    "solver": ["als", "sgd"],
    "reg_scaling": ["frequency", "none"],
    "reg": _By("reg_scaling", (("frequency", _LogRange(0.01, 1.0)), ("none", _LogRange(1.0, 30.0)))),
    "social_features": [False, True],
}
_SPACES = {
    ("rating", "ALS"): {},
    ("rating", "RegularizedALS"): _RATING_ALS,
    ("rating", "SocialALS"): {**_RATING_ALS, **_SOCIAL},
    ("rating", "FactorizationMachine"): _FM,
    ("rating", "Popularity"): {},
    ("ranking", "RegularizedALS"): _RANKING_ALS,
    ("ranking", "SocialALS"): {**_RANKING_ALS, **_SOCIAL},
}
#: Default longest fit (sweeps) per task: enough for every optimum the shipped tables found
#: (the factorization machine's: 25, the longest its grid in benchmarks/tune.py tried).
_MAX_ITERATIONS = {"rating": 40, "ranking": 30, "FactorizationMachine": 25}
_SCORE_EVERY = {"rating": 1, "ranking": 5}
#: ``cv="auto"``: from this many ratings on, one 20 % hold-out instead of 3 folds.
_AUTO_HOLDOUT_FROM = 100_000


def default_space(model, task: str = "rating") -> dict:
    """The search space :func:`tune` uses for ``model`` (a class name or an estimator).

    Values are fixed settings (scalars), choices (lists) or internal range objects;
    ``iterations`` is not in it: it is read off the validation curves.
    """
    name = _model_name(model)
    _check_task(task)
    space = _SPACES.get((task, name), _SPACES.get(("rating", name)))
    return dict(space or {})


def _user_space(name: str, valid: dict, space) -> dict:
    """User entries of the search space: scalar (fixed), list (choices), (low, high) (log range)."""
    if space is None:
        return {}
    if not isinstance(space, dict):
        raise InvalidParameterError(
            f"The 'space' parameter of tune must be a dict {{parameter: value, [choices] or (low, high)}}; got {space!r}."
        )
    out = {}
    for key, value in space.items():
        if key == _CURVE_PARAM:
            raise InvalidParameterError(
                f"'iterations' cannot be searched for {name}: it is read off the validation curves; "
                "set max_iterations instead."
            )
        if key not in valid or key in TECHNICAL_PARAMS:
            raise InvalidParameterError(
                f"unknown parameter {key!r} in the search space of {name}; its parameters are "
                f"{sorted(k for k in valid if k not in TECHNICAL_PARAMS)}."
            )
        if isinstance(value, tuple):
            if len(value) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value) \
                    or not value[0] < value[1]:
                raise InvalidParameterError(
                    f"the range of {key!r} for {name} must be (low, high) with low < high; got {value!r}."
                )
            out[key] = _LogRange(float(value[0]), float(value[1]))
        elif isinstance(value, list):
            if not value:
                raise InvalidParameterError(f"the choices of {key!r} for {name} are empty.")
            out[key] = list(value)
        else:
            out[key] = value
    return out


def _suggest(trial, space: dict) -> dict:
    """One model setting from ``space`` (Optuna names: the parameter, or a tagged variant)."""
    params = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            params[key] = spec[0] if len(spec) == 1 else trial.suggest_categorical(key, spec)
        elif isinstance(spec, _LogRange):
            params[key] = spec.suggest(trial, key)
        elif isinstance(spec, _ZeroOr):
            on = trial.suggest_categorical(f"{key}>0", [False, True])
            params[key] = trial.suggest_float(key, spec.low, spec.high, log=True) if on else 0.0
        elif isinstance(spec, _By):
            ranges = dict(spec.ranges)
            rng = ranges.get(params.get(spec.on))
            if rng is not None:
                params[key] = rng.suggest(trial, f"{key}[{spec.on}={params[spec.on]}]")
        elif isinstance(spec, _RatioOf):
            if params.get("biases", True):
                ratio = trial.suggest_float(f"{key}/{spec.of}", spec.low, spec.high, log=True)
                params[key] = ratio * params[spec.of]
        elif isinstance(spec, _WhenPositive):
            if params.get(spec.on, 0) > 0:
                params[key] = trial.suggest_categorical(key, list(spec.choices))
            else:
                params[key] = spec.otherwise
        else:
            params[key] = spec
    return params


def _is_searched(spec) -> bool:
    """Whether a space entry is searched (a range, or a list of several choices), not fixed."""
    if isinstance(spec, list):
        return len(spec) > 1
    return isinstance(spec, (_LogRange, _ZeroOr, _By, _RatioOf, _WhenPositive))


def _internal(space: dict, params: dict) -> dict:
    """The Optuna parameters that make :func:`_suggest` give ``params`` (for enqueued trials)."""
    out = {}
    for key, spec in space.items():
        if key not in params and not isinstance(spec, _RatioOf):
            continue
        value = params.get(key)
        if isinstance(spec, list) and len(spec) > 1:
            out[key] = value
        elif isinstance(spec, _LogRange):
            out[key] = float(np.clip(value, spec.low, spec.high))
        elif isinstance(spec, _ZeroOr):
            out[f"{key}>0"] = bool(value and value > 0)
            if value and value > 0:
                out[key] = float(np.clip(value, spec.low, spec.high))
        elif isinstance(spec, _By):
            rng = dict(spec.ranges).get(params.get(spec.on))
            if rng is not None:
                out[f"{key}[{spec.on}={params[spec.on]}]"] = float(np.clip(value, rng.low, rng.high))
        elif isinstance(spec, _RatioOf):
            base = params.get(spec.of)
            ratio = 1.0 if value is None or not base else value / base
            out[f"{key}/{spec.of}"] = float(np.clip(ratio, spec.low, spec.high))
        elif isinstance(spec, _WhenPositive) and value is not None:
            out[key] = value
    return out


# ---------------------------------------------------------------------------- helpers
def _model_name(model) -> str:
    from ._registry import model_classes

    if isinstance(model, str):
        classes = model_classes()
        match = next((n for n in classes if n.lower() == model.lower()), None)
        if match is None and model.lower() == "fm":
            match = "FactorizationMachine"
        if match is None:
            raise InvalidParameterError(f"unknown model {model!r}; choose from {sorted(classes)}.")
        return match
    return model.__name__ if isinstance(model, type) else type(model).__name__


def _template(model):
    """An unfitted estimator for ``model`` (a class name, a class or an estimator)."""
    from ._registry import model_classes
    from .base import clone

    if isinstance(model, str):
        return model_classes()[_model_name(model)]()
    if isinstance(model, type):
        return model()
    if not callable(getattr(model, "get_params", None)):
        raise InvalidParameterError(
            f"The 'model' parameter of tune must be a model class name, a class or an estimator; got {model!r}."
        )
    return clone(model)


def _check_task(task):
    if task not in _METRIC:
        raise InvalidParameterError(f"The 'task' parameter of tune must be 'rating' or 'ranking'; got {task!r}.")


def _require_optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError(f"socialals.tune needs Optuna, which is not installed; {_OPTUNA_HINT}.") from None
    return optuna


def _seed_int(random_state) -> int:
    """An int seed for Optuna and the models (drawn once from a Generator or fresh entropy)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and random_state >= 0:
        return int(random_state)
    return int(check_random_state(random_state, "tune").integers(2**31 - 1))


def _splits(ratings, cv, validation_size, seed):
    """Validation splits of ``ratings`` (positions into it): ``cv`` folds or one hold-out."""
    from .model_selection import KFold, _check_test_size, _split_positions

    if validation_size is not None:
        size = _check_test_size(validation_size, "tune", "validation_size")
        held = _split_positions(ratings, size, np.random.default_rng(seed), "random", "tune")
        return [(np.flatnonzero(~held), np.flatnonzero(held))]
    if isinstance(cv, str) and cv == "auto":
        if len(ratings) >= _AUTO_HOLDOUT_FROM:
            return _splits(ratings, None, 0.2, seed)
        cv = 3
    if isinstance(cv, bool) or not isinstance(cv, numbers.Integral) or cv < 2:
        raise InvalidParameterError(f"The 'cv' parameter of tune must be an int >= 2 or 'auto'; got {cv!r}.")
    return [(np.asarray(a), np.asarray(b)) for a, b in KFold(int(cv), shuffle=True, random_state=seed).split(ratings)]


class _Scorer:
    """Scores a model on one validation part: RMSE (rating) or NDCG@10 (ranking)."""

    def __init__(self, valid: pd.DataFrame, task: str):
        self.task = task
        self.pairs = valid[["user", "item"]]
        self.truth = valid["rating"].to_numpy(dtype=float)
        self.valid = valid

    def __call__(self, model) -> float:
        from .metrics import ranking_metrics, rmse

        if self.task == "rating":
            pred = np.asarray(model.predict(self.pairs), dtype=float)
            if not np.isfinite(pred).all():
                return math.inf
            return rmse(self.truth, pred)
        users = pd.unique(self.valid["user"])
        users = [u for u in users if u in model.users_]
        if not users:
            return 0.0
        recs = model.recommend(users=users, n=10, exclude_seen=True)
        table = ranking_metrics(recs, self.valid[self.valid["user"].isin(users)], k=10)
        return float(table["ndcg"].mean()) if len(table) else 0.0


class _OutOfTime(Exception):
    pass


class _Curve:
    """The fit loop's callback: the validation score every ``every`` sweeps, early stop, deadline."""

    def __init__(self, scorer, every, patience, stop_at, deadline, lower, report=None):
        self.scorer, self.every, self.patience = scorer, every, patience
        self.stop_at, self.deadline, self.lower, self.report = stop_at, deadline, lower, report
        self.scores = {}
        self.timed_out = self.pruned = False

    def __call__(self, model, it, loss):
        t = it + 1
        if t % self.every == 0 or t == self.stop_at:
            value = self.scorer(model)
            self.scores[t] = value
            if self.report is not None and self.report(t, value):
                self.pruned = True
                return True
            if self.stop_at is None and self.patience:
                best_t = min(self.scores, key=lambda s: (self.scores[s] if self.lower else -self.scores[s], s))
                if t - best_t >= self.patience * self.every:
                    return True
        if self.stop_at is not None and t >= self.stop_at:
            return True
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
            return True
        return False


# ---------------------------------------------------------------------------- results
@dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes
    ----------
    model : str
        The model class name.
    params : dict
        The chosen hyperparameters (including ``iterations``), ready for ``cls(**params)``
        together with the settings that were not searched (``factors`` ...).
    score : float
        The chosen setting's validation score: mean RMSE (task rating, lower is better) or
        NDCG@10 (ranking, higher is better) over the validation folds.
    metric : str
        ``"rmse"`` or ``"ndcg_at_10"``.
    task : str
    trials : pandas.DataFrame
        One row per trial: ``trial``, ``state`` (complete, pruned, out of time),
        ``score`` (the mean over the folds at the trial's best iteration count; for a
        pruned trial the last fold score it reported), ``iterations``, ``seconds``, and
        one column per parameter of the search space.
    seconds : float
        Wall time of the search.
    """

    model: str
    params: dict
    score: float
    metric: str
    task: str
    trials: pd.DataFrame = field(repr=False)
    seconds: float = 0.0

    def estimator(self, **overrides):
        """An unfitted model with the chosen settings (and ``overrides``)."""
        from ._registry import model_classes

        return model_classes()[self.model](**{**self.params, **overrides})

    def save(self, path) -> Path:
        """Write the chosen settings as a params file (see :func:`save_params`)."""
        return save_params(path, [self])


# ---------------------------------------------------------------------------- the search
def tune(
    model,
    ratings: pd.DataFrame,
    social=None,
    *,
    task: str = "rating",
    budget: Optional[float] = None,
    n_trials: Optional[int] = None,
    cv="auto",
    validation_size: Optional[float] = None,
    random_state=0,
    space: Optional[dict] = None,
    start: Optional[list] = None,
    max_iterations: Optional[int] = None,
    patience: int = 5,
    n_jobs: Optional[int] = 1,
    verbose: bool = True,
    stream=None,
) -> TuneResult:
    """Search the hyperparameters of ``model`` on validation folds drawn inside ``ratings``.

    Parameters
    ----------
    model : str, class or estimator
        ``"SocialALS"``, ``"RegularizedALS"``, ``"ALS"``, ``"FactorizationMachine"`` (or
        ``"FM"``), ``"Popularity"``, a model class, or an estimator whose settings that are
        not searched (``factors``, ...) are kept.
    ratings, social : DataFrame, DataFrame or None
        The training data. Validation folds are drawn from ``ratings`` only; nothing else
        is seen. The social graph (which holds no ratings) is given whole to every fit.
    task : {"rating", "ranking"}
        ``rating``: minimise validation RMSE; ``ranking``: maximise validation NDCG@10
        (the missing-data weights ``unobserved_weight`` and ``unobserved_rating`` are
        searched, scored every 5 sweeps).
    budget : float, optional
        Seconds for the search; the running fit stops at the deadline and the best
        complete trial wins. A budget that ends before the first trial is complete is an
        error (it names the time one trial needed).
    n_trials : int, optional
        Number of settings tried. Without ``budget`` and ``n_trials``, 30. A model with
        nothing to search (``ALS``, ``Popularity``) runs one trial.
    cv : int or "auto", default "auto"
        Validation folds (shuffled :class:`~socialals.KFold` of ``ratings``). ``"auto"``:
        3 folds for fewer than 100,000 ratings, else one 20 % hold-out (a trial then costs
        one fit instead of three: on Ciao 3.3 s instead of 12 s, so a budget buys 3-4x the
        trials, and 20 % of 100,000 ratings score a setting precisely enough).
    validation_size : float, optional
        Instead of ``cv``: one hold-out of this share of ``ratings`` (faster, noisier).
    random_state : int, None or numpy.random.Generator, default 0
        Seeds the folds, the sampler and every model.
    space : dict, optional
        Replaces entries of :func:`default_space`: ``{"alpha": [0, 1, 3]}`` (choices),
        ``{"reg": (1.0, 30.0)}`` (a log-uniform range) or ``{"biases": True}`` (fixed).
        Unknown names are an error.
    start : list of dict, optional
        Settings tried first (Optuna's enqueued trials); parameters they leave out take
        the model's values. Default: the ``generic`` settings of :mod:`socialals._defaults`
        and, for SocialALS, the same with ``alpha=0``.
    max_iterations : int, optional
        Length of every fit, whose validation curve gives ``iterations`` (default 40 for
        rating, 30 for ranking, 25 for the factorization machine).
    patience : int, default 5
        Stop a fold's fit when its curve has not improved for this many scores (0: never).
    n_jobs : int or None, default 1
        Threads of each validation fit (the model's ``n_jobs``; None keeps the model's
        own). Validation fits are small: on FilmTrust one thread was 7x faster than
        ``n_jobs=-1`` on a shared 2-core machine.
    verbose : bool, default True
        Print one line per trial with the best score so far (to ``stream``, default
        standard error).

    Returns
    -------
    TuneResult
        ``params`` (the chosen settings), ``score``, ``trials`` (the table of every trial).

    Raises
    ------
    ImportError
        Optuna is missing (the extra ``socialals[tune]``).
    ValueError
        A bad option, an unknown parameter in ``space`` or ``start``, or a budget too small
        for one trial.
    """
    optuna = _require_optuna()
    from .base import clone
    from .model_selection import _check_ratings

    _check_task(task)
    _check_ratings(ratings, "ratings", "tune")
    template = _template(model)
    name = type(template).__name__
    valid = template.get_params()
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, numbers.Real)
                               or not math.isfinite(budget) or budget <= 0):
        raise InvalidParameterError(f"The 'budget' parameter of tune must be a number of seconds > 0; got {budget!r}.")
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral)
                                 or n_trials < 1):
        raise InvalidParameterError(f"The 'n_trials' parameter of tune must be an int >= 1; got {n_trials!r}.")
    if budget is None and n_trials is None:
        n_trials = 30
    full = {**default_space(name, task), **_user_space(name, valid, space)}
    full = {k: v for k, v in full.items() if k in valid}
    curve = _CURVE_PARAM in valid and "callback" in valid
    lower = task == "rating"
    if curve:
        if max_iterations is None:
            max_iterations = _MAX_ITERATIONS.get(name, _MAX_ITERATIONS[task])
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, numbers.Integral) or max_iterations < 1:
            raise InvalidParameterError(f"The 'max_iterations' parameter of tune must be an int >= 1; got {max_iterations!r}.")
    if not any(_is_searched(s) for s in full.values()):
        n_trials = 1
    seed = _seed_int(random_state)
    splits = _splits(ratings, cv, validation_size, seed)
    parts = [(ratings.iloc[tr], ratings.iloc[te]) for tr, te in splits]
    scorers = [_Scorer(te, task) for _, te in parts]
    every = _SCORE_EVERY[task]
    fixed = {k: v for k, v in template.get_params().items() if k not in full}
    if "random_state" in valid:
        fixed["random_state"] = seed
    if n_jobs is not None and "n_jobs" in valid:
        fixed["n_jobs"] = n_jobs
    fixed.pop("callback", None)
    stream = sys.stderr if stream is None else stream
    started = time.monotonic()
    deadline = None if budget is None else started + float(budget)
    rows = []
    n_steps = (max_iterations or 1) + 1

    def objective(trial):
        params = _suggest(trial, full)
        trial.set_user_attr("params", params)
        t0 = time.monotonic()
        curves, stop_at = [], None
        for j, ((train, _), scorer) in enumerate(zip(parts, scorers)):
            def report(t, value, j=j):
                trial.report(value, j * n_steps + t)
                return trial.should_prune()

            est = clone(template).set_params(**{**fixed, **params})
            if curve:
                cb = _Curve(scorer, every, patience, stop_at, deadline, lower, report)
                est.set_params(iterations=int(max_iterations), callback=cb)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"predict: \d+ of \d+ pair", category=UserWarning)
                    est.fit(train, social)
                if cb.timed_out:
                    raise _OutOfTime(time.monotonic() - t0)
                if not cb.scores:
                    raise optuna.TrialPruned()
                curves.append(cb.scores)
                if stop_at is None:
                    stop_at = max(cb.scores)
                if cb.pruned:
                    raise optuna.TrialPruned()
            else:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=r"predict: \d+ of \d+ pair", category=UserWarning)
                    est.fit(train, social)
                curves.append({0: scorer(est)})
                if deadline is not None and time.monotonic() > deadline:
                    raise _OutOfTime(time.monotonic() - t0)
        common = sorted(set.intersection(*(set(c) for c in curves)))
        mean = {t: float(np.mean([c[t] for c in curves])) for t in common}
        best_t = min(common, key=lambda t: (mean[t] if lower else -mean[t], t))
        trial.set_user_attr("iterations", int(best_t))
        trial.set_user_attr("seconds", time.monotonic() - t0)
        return mean[best_t]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=min(5, max_iterations or 1))
    starts = _starts(name, task, full, valid, start)
    # a start setting that leaves a searched parameter out takes the model's own value
    starts = [{**{k: valid[k] for k in full if k in valid}, **p} for p in starts]
    state = {"best": None}

    def progress(study, frozen):
        label = frozen.state.name.lower()
        score = frozen.value if frozen.value is not None else np.nan
        rows.append({"trial": frozen.number, "state": label, "score": score,
                     "iterations": frozen.user_attrs.get("iterations"),
                     "seconds": frozen.user_attrs.get("seconds", np.nan),
                     **frozen.user_attrs.get("params", {})})
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if complete:
            best = study.best_trial
            state["best"] = best
        if verbose and label != "fail":  # a fit cut by the deadline says nothing
            elapsed = time.monotonic() - started
            line = f"{name} trial {frozen.number + 1}: {label}"
            if frozen.value is not None:
                line += f" {_METRIC[task]} {frozen.value:.4f}"
            if complete:
                line += f"; best {study.best_value:.4f} ({_short({**best.user_attrs['params'], 'iterations': best.user_attrs.get('iterations')})})"
            line += f" [{elapsed:.0f} s" + (f" of {budget:g} s]" if budget is not None else "]")
            print(line, file=stream, flush=True)
        if deadline is not None and time.monotonic() > deadline:
            study.stop()

    def guarded(trial):
        try:
            return objective(trial)
        except _OutOfTime as exc:
            trial.set_user_attr("seconds", float(exc.args[0]))
            raise

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our progress lines replace Optuna's log
    try:
        study = optuna.create_study(direction="minimize" if lower else "maximize", sampler=sampler, pruner=pruner)
        for params in starts:
            study.enqueue_trial(_internal(full, params), skip_if_exists=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(guarded, n_trials=n_trials, callbacks=[progress], catch=(_OutOfTime,))
    except KeyboardInterrupt:
        if state["best"] is None:
            raise
    finally:
        optuna.logging.set_verbosity(verbosity)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        spent = max((t.user_attrs.get("seconds", 0.0) for t in study.trials), default=0.0)
        raise ValueError(
            f"tune: the budget of {budget:g} s is too small for one trial of {name} "
            f"({len(parts)} validation fit(s); the first stopped unfinished after {spent:.1f} s); "
            "give a larger budget."
            if budget is not None else f"tune: every trial of {name} was pruned; nothing was chosen."
        )
    best = study.best_trial
    chosen = {k: v for k, v in template.get_params().items() if k not in TECHNICAL_PARAMS}
    chosen.update(best.user_attrs["params"])
    if curve:
        chosen[_CURVE_PARAM] = int(best.user_attrs["iterations"])
    trials = pd.DataFrame(rows)
    trials.loc[trials["state"] == "fail", "state"] = "out of time"
    return TuneResult(model=name, params=_plain(chosen), score=float(best.value), metric=_METRIC[task], task=task,
                      trials=trials, seconds=time.monotonic() - started)


def _starts(name, task, space, valid, start):
    """Settings tried first: ``start``, or the generic defaults (and with ``alpha=0``)."""
    from ._defaults import defaults_for

    if start is None:
        base = {k: v for k, v in defaults_for("generic", name, task).items() if k in space}
        start = [base] if base else []
        if base and isinstance(space.get("alpha"), _ZeroOr):
            start.append({**base, "alpha": 0.0})
    out = []
    for params in start:
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise InvalidParameterError(f"unknown parameter(s) {unknown} in a start setting of {name}.")
        out.append({k: v for k, v in params.items() if k in space})
    return [p for p in out if p]


def _short(params: dict) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else repr(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def _plain(params: dict) -> dict:
    """JSON-ready values (numpy scalars to Python ones)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def tune_models(names, ratings, social=None, **options) -> dict:
    """:func:`tune` for several models on the same folds; ``{name: TuneResult}``.

    RegularizedALS is tuned before SocialALS when both are asked for, and its winner is
    enqueued as a SocialALS trial with ``alpha=0`` (the same model), so on validation the
    tuned SocialALS is never worse than the tuned RegularizedALS. ``options`` go to
    :func:`tune` (``budget`` and ``n_trials`` apply to each model); a model with nothing
    to search (``Popularity``) is left out.
    """
    tuner = NestedTuner(names, social, **options)
    out = {}
    for name in tuner.names:
        result = tuner.result(name, 0, ratings)
        if result is not None:
            out[name] = result
    return out


# ---------------------------------------------------------------------------- params files
def save_params(path, results, *, data: Optional[str] = None) -> Path:
    """Write tuned settings as JSON: ``{"format": "socialals-params", "version": 1, "models": {...}}``.

    Each model entry holds ``params`` (what ``fit --params`` uses), ``task``, the
    validation ``metric`` and ``score``, and the number of trials.
    """
    if isinstance(results, TuneResult):
        results = [results]
    if isinstance(results, dict):
        results = list(results.values())
    doc = {"format": PARAMS_FORMAT, "version": 1, "data": data, "models": {}}
    for r in results:
        doc["models"][r.model] = {"task": r.task, "params": _plain(r.params), "metric": r.metric,
                                  "validation_score": r.score, "trials": int(len(r.trials))}
    path = Path(path)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def read_params(path, model: Optional[str] = None) -> dict:
    """Read a params file; ``{model name: params}`` (or the params of ``model``).

    Every model name and parameter name is checked against the model classes, and values
    go through the model's own parameter checks. Raises ``ValueError`` naming the file and
    the offending entry: not JSON, not a params file, an unknown model or parameter, or
    (with ``model``) no entry for ``model`` (a file written for another model class).
    """
    from ._registry import model_classes

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"params file {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read params file {str(path)!r}: {exc}.") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"params file {str(path)!r} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    if not isinstance(doc, dict) or doc.get("format") != PARAMS_FORMAT or not isinstance(doc.get("models"), dict):
        raise ValueError(f"{str(path)!r} is not a socialals params file (written by 'socialals tune').")
    if doc.get("version") != 1:
        raise ValueError(f"params file {str(path)!r} has version {doc.get('version')!r}; this socialals reads version 1.")
    classes = model_classes()
    out = {}
    for name, entry in doc["models"].items():
        if name not in classes:
            raise ValueError(f"params file {str(path)!r} names an unknown model {name!r}; known: {sorted(classes)}.")
        params = entry.get("params") if isinstance(entry, dict) else None
        if not isinstance(params, dict):
            raise ValueError(f"params file {str(path)!r}: the entry of {name} has no 'params' object.")
        valid = classes[name]().get_params()
        unknown = sorted(k for k in params if k not in valid or k in TECHNICAL_PARAMS)
        if unknown:
            raise ValueError(f"params file {str(path)!r}: unknown parameter(s) {unknown} for {name}; "
                             f"its parameters are {sorted(k for k in valid if k not in TECHNICAL_PARAMS)}.")
        classes[name](**params)._validate_params()
        out[name] = dict(params)
    if model is not None:
        if model not in out:
            raise ValueError(f"params file {str(path)!r} holds settings for {sorted(out) or 'no model'}, not for {model}.")
        return dict(out[model])
    return out


# ---------------------------------------------------------------------------- nested CV
class NestedTuner:
    """Tunes each model inside each outer training fold (``socialals compare --tune``).

    :meth:`params` is called with the *training* rows of one outer fold only and returns
    the settings chosen on validation folds drawn inside them. Results are kept per
    fold, so that SocialALS can start from RegularizedALS's winner of the same fold (see
    :func:`tune_models`); :attr:`chosen` lists every fold's choice.
    """

    def __init__(self, names, social, templates=None, spaces=None, **options):
        self.names = [_model_name(n) for n in names]
        self.social = social
        self.spaces = spaces or {}  # name -> ``space`` of tune (fixed settings, grids)
        if "space" in options:
            raise InvalidParameterError("several models take 'spaces', a dict {model name: space}; got 'space'.")
        # name -> unfitted estimator holding the settings that are not searched
        self.templates = {n: _template(n) for n in self.names} if templates is None else templates
        self.options = options
        self.results = {}
        self.chosen = []

    def _needs_search(self, name) -> bool:
        template = self.templates[name]
        valid = template.get_params()
        curve = _CURVE_PARAM in valid and "callback" in valid
        space = default_space(name, self.options.get("task", "rating"))
        space = {**space, **_user_space(name, valid, self.spaces.get(name))}
        return curve or any(_is_searched(s) for k, s in space.items() if k in valid)

    def params(self, name, fold, train) -> dict:
        """The chosen settings of ``name`` for outer fold ``fold`` (tuned on ``train`` only)."""
        result = self.result(name, fold, train)
        return {} if result is None else dict(result.params)

    def result(self, name, fold, train) -> Optional[TuneResult]:
        """The :class:`TuneResult` of ``name`` on outer fold ``fold`` (None: nothing to search)."""
        name = _model_name(name)
        key = (name, fold)
        if key in self.results:
            return self.results[key]
        if not self._needs_search(name):
            return None
        opts = dict(self.options)
        if name == "SocialALS" and "RegularizedALS" in self.names and opts.get("start") is None:
            reg = self.params("RegularizedALS", fold, train)
            from ._defaults import defaults_for

            generic = defaults_for("generic", name, opts.get("task", "rating"))
            opts["start"] = [{**{k: v for k, v in reg.items() if k != _CURVE_PARAM}, "alpha": 0.0}] + (
                [generic] if generic else [])
        result = tune(self.templates[name], train, self.social, space=self.spaces.get(name), **opts)
        self.results[key] = result
        self.chosen.append({"model": name, "fold": fold, "validation_" + result.metric: result.score,
                            "trials": len(result.trials), "seconds": result.seconds,
                            "params": {k: v for k, v in result.params.items()
                                       if k in _searched_keys(name, opts.get("task", "rating")) or k == _CURVE_PARAM}})
        return result

    def results_for(self, name) -> list:
        """The :class:`TuneResult` of every outer fold tuned so far for ``name``."""
        return [r for (n, _), r in self.results.items() if n == _model_name(name)]

    def table(self) -> pd.DataFrame:
        """One row per (model, outer fold): the validation score, trials, seconds and settings."""
        return pd.DataFrame(self.chosen)


def _searched_keys(name, task):
    return {k for k, s in default_space(name, task).items() if _is_searched(s)}
