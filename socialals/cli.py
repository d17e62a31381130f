"""The ``socialals`` command line: compare models, fit and save one, recommend with it.

Commands
--------
``socialals compare``
    k-fold cross-validation of every model on one data set; prints RMSE, MAE, the RMSE
    of cold-start users (fewer than 5 training ratings), NDCG@10 and the fit time, and
    optionally writes them to a CSV file.
``socialals fit``
    Train one model on all the ratings of a data set and save it (``model.save``).
``socialals recommend``
    Load a saved model and print a user's top-n items.
``socialals tune``
    Search a model's hyperparameters on validation folds inside the data
    (:func:`socialals.tune.tune`) and write them to a params file that ``fit --params``
    and ``compare --params`` read; ``compare --tune`` tunes inside every outer fold.

Data (``--data``): ``synthetic`` (``make_social_ratings(random_state=0)``), ``filmtrust``,
``ciao``, ``epinions``, ``movielens-100k``, ``movielens-1m`` (downloaded once into
``--data-home`` or ``$SOCIALALS_DATA``), or a path: a folder in FilmTrust format
(``ratings.txt``, ``trust.txt``) or Ciao/Epinions format (``rating.mat``,
``trustnetwork.mat``), or a delimited file of ratings (``user,item,rating``; comma, tab,
semicolon or spaces; with or without a header) with an optional ``--social`` file
(``user,friend[,weight]``). Reading is :func:`socialals.io.load_data`.

Model hyperparameters default to the per-data-set values in :mod:`socialals._defaults`
(tuned by ``benchmarks/tune.py``); ``--param key=value`` overrides them.

Every command returns 0 on success. Usage and input errors (unknown user, missing or
malformed file, bad parameter) print one line ``socialals: error: ...`` on standard error
and return 2; other failures (a diverging fit, a failed download) print one line and
return 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ._defaults import DEFAULTS, defaults_for
from ._registry import model_classes
from .io import DATASETS, InputError, load_data
from .tune import TECHNICAL_PARAMS

__all__ = ["COMPARE_COLUMNS", "DATASETS", "METRICS", "available_models", "build_parser", "main"]

#: Columns of the ``compare`` table and of its ``--output`` CSV with the default metrics:
#: each metric's mean over folds followed by its standard deviation (``<metric>_std``).
COMPARE_COLUMNS = (
    "model", "rmse", "rmse_std", "mae", "mae_std", "cold_start_rmse", "cold_start_rmse_std",
    "ndcg_at_10", "ndcg_at_10_std", "fit_seconds", "fit_seconds_std",
)

_MODEL_ORDER = ("ALS", "RegularizedALS", "SocialALS", "FactorizationMachine", "Popularity")
#: ``compare``'s default models per task: top-N compares the ranking settings with the
#: baseline every top-N number needs, the most-rated unseen items.
_TASK_MODELS = {
    "rating": ("ALS", "RegularizedALS", "SocialALS", "FactorizationMachine"),
    "ranking": ("Popularity", "RegularizedALS", "SocialALS"),
}
_TASK_METRICS = {
    "rating": ("rmse", "mae", "cold_start_rmse", "ndcg_at_10"),
    "ranking": ("ndcg_at_10", "recall_at_10", "cold_start_ndcg_at_10"),
}
_ALIASES = {"fm": "FactorizationMachine"}


class CLIError(Exception):
    """A user error: printed as ``socialals: error: <message>`` without a traceback."""


# ---------------------------------------------------------------------------- models
def available_models() -> dict:
    """Model classes the command line can use, by class name, in table order.

    The factorization machine is included when :mod:`socialals.fm` is importable.
    """
    classes = model_classes()
    return {name: classes[name] for name in _MODEL_ORDER if name in classes}


def _resolve_model_name(name: str) -> str:
    """Canonical class name for a (case-insensitive) model name or alias."""
    models = available_models()
    lowered = name.lower()
    canonical = _ALIASES.get(lowered)
    if canonical is None:
        canonical = next((n for n in _MODEL_ORDER if n.lower() == lowered), None)
    if canonical is None:
        raise CLIError(f"unknown model {name!r}; choose from {list(models)} (or 'FM').")
    if canonical not in models:
        raise CLIError(
            f"model {canonical!r} is not available in this installation (the module "
            "socialals.fm is missing); choose from " + str(list(models)) + "."
        )
    return canonical


def _parse_value(text: str):
    """``key=value`` values: int, float, bool, None, or else the string itself."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low == "true":
        return True
    if low == "false":
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _parse_params(items: Sequence[str]) -> dict:
    params = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--param expects key=value (e.g. reg=0.5); got {item!r}.")
        params[key.strip()] = _parse_value(value.strip())
    return params


def make_model(name: str, data_key: str, *, factors=None, seed=0, iterations=None, overrides=None, task="rating"):
    """Build model ``name`` with the tuned defaults of ``data_key`` and the given overrides.

    Parameters
    ----------
    name : str
        Canonical class name (see :func:`available_models`).
    data_key : str
        Key of :data:`socialals._defaults.DEFAULTS` whose settings are used.
    factors, iterations : int, optional
        Override the factors and the iterations.
    seed : int
        ``random_state`` of the model.
    overrides : dict, optional
        Further parameters (``--param``); unknown names raise :class:`CLIError`.
    task : {"rating", "ranking"}
        Which defaults: rating prediction, or the top-N settings (the missing-data term).

    Returns
    -------
    BaseRecommender
        An unfitted model.
    """
    cls = available_models()[name]
    valid = cls().get_params()
    params = {"random_state": seed} if "random_state" in valid else {}
    params.update(defaults_for(data_key, name, task))
    if factors is not None and "factors" in valid:
        params["factors"] = factors
    if iterations is not None and "iterations" in valid:
        params["iterations"] = iterations
    params.update(overrides or {})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise CLIError(f"unknown parameter(s) {unknown} for {name}; its parameters are {sorted(valid)}.")
    model = cls(**params)
    model._validate_params()  # report a bad value now, not after loading the data
    return model


_TECHNICAL = TECHNICAL_PARAMS  # not modelling settings: seeds, threads, precision, hooks


def _describe(model) -> str:
    """The modelling hyperparameters as ``k=v, ...`` (not seeds, threads or precision)."""
    return ", ".join(f"{k}={v!r}" for k, v in model.get_params().items() if k not in _TECHNICAL)


# ---------------------------------------------------------------------------- data
def _summary(ratings: pd.DataFrame, social) -> str:
    links = 0 if social is None else len(social)
    return (
        f"{len(ratings):,} ratings, {ratings['user'].nunique():,} users, "
        f"{ratings['item'].nunique():,} items, {links:,} social links"
    )


def _check_defaults_option(args) -> None:
    if args.defaults is not None and args.defaults not in DEFAULTS:
        raise CLIError(f"--defaults must be one of {sorted(DEFAULTS)}; got {args.defaults!r}.")


def _data_key(args, key: str) -> str:
    return key if args.defaults is None else args.defaults


def _settings_line(args, key: str, why: str) -> str:
    """Which defaults are used and why (``load_data(explain=True)``'s reason, or ``--defaults``)."""
    return f"settings: {key} ({why if args.defaults is None else 'chosen by --defaults'})"


# ---------------------------------------------------------------------------- compare
#: Metrics ``compare --metrics`` can compute (keys of :func:`socialals.evaluate` at k = 10).
METRICS = (
    "rmse", "mae", "cold_start_rmse", "cold_start_mae", "warm_rmse", "ndcg_at_10", "precision_at_10",
    "recall_at_10", "map_at_10", "hit_rate_at_10", "coverage", "cold_start_ndcg_at_10", "cold_start_recall_at_10",
)
_DEFAULT_METRICS = ("rmse", "mae", "cold_start_rmse", "ndcg_at_10")
_RANKING = {"ndcg_at_10", "precision_at_10", "recall_at_10", "map_at_10", "hit_rate_at_10", "coverage",
            "cold_start_ndcg_at_10", "cold_start_recall_at_10"}
#: Default latent factors of ``fit`` and ``compare``: the setting the defaults were tuned at.
DEFAULT_FACTORS = 10

logger = logging.getLogger("socialals.cli")


def _fold_splits(ratings, folds: int, seed: int):
    from .model_selection import KFold

    return list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(ratings))


def _progress_bar(total: int):
    """A tqdm bar on a terminal when tqdm is installed, else None."""
    try:
        if not sys.stderr.isatty():
            return None
        from tqdm import tqdm
    except (ImportError, AttributeError, ValueError):
        return None
    return tqdm(total=total, unit="fit", leave=False)


def compare(
    ratings, social, model_names, data_key, *, folds=5, factors=DEFAULT_FACTORS, seed=0, iterations=None,
    params=None, metrics=_DEFAULT_METRICS, stream=None, task="rating", file_params=None, tuner=None,
):
    """Cross-validate each model and return one row per model with fold means and standard deviations.

    The folds are drawn once (``KFold(folds, shuffle=True, random_state=seed)``, as
    :func:`~socialals.model_selection.cross_validate` does) and every model runs
    :func:`~socialals.model_selection.evaluate` on each of them. Progress: one INFO
    log record per model and fold (logger ``socialals.cli``; ``-v`` shows them), and a
    tqdm bar on a terminal when tqdm is installed.

    Parameters
    ----------
    ratings, social : DataFrame, DataFrame or None
        The data (not modified).
    model_names : sequence of str
        Canonical model names.
    data_key : str
        Which defaults to use.
    folds, factors, seed, iterations
        CV folds (shuffled with ``seed``), latent factors, model seed, and an optional
        iteration override.
    params : dict, optional
        ``--param`` overrides, given to every model that has the parameter.
    metrics : sequence of str
        Names from :data:`METRICS`; the ranking metrics are computed only when asked for.
    stream : file, optional
        Where the one-line summary per model goes.
    task : {"rating", "ranking"}
        Which defaults the models use (see :func:`make_model`).
    file_params : dict, optional
        ``{model: settings}`` from params files (``--params``), applied before ``params``.
    tuner : socialals.tune.NestedTuner, optional
        Nested cross-validation (``--tune``): each model's settings are tuned on the
        training rows of each fold only (``tuner.params(name, fold, train)``), then it is
        fitted on them and scored on the fold's test rows.

    Returns
    -------
    DataFrame
        Columns ``model``, then ``<metric>`` and ``<metric>_std`` for each metric and for
        ``fit_seconds``: the mean over folds and the population standard deviation
        (``ddof=0``), NaN folds (no cold-start user in the fold) skipped.
    """
    from .base import clone
    from .model_selection import evaluate

    splits = _fold_splits(ratings, folds, seed)
    ranking = bool(set(metrics) & _RANKING)
    columns = [*metrics, "fit_seconds"]
    rows = []
    bar = _progress_bar(len(model_names) * len(splits))
    try:
        for name in model_names:
            fixed = {**(file_params or {}).get(name, {}), **_params_for(name, params)}
            model = make_model(name, data_key, factors=factors, seed=seed, iterations=iterations,
                               overrides=fixed, task=task)
            fold_scores = []
            for number, (train, test) in enumerate(splits, start=1):
                if tuner is not None:  # settings chosen inside this fold's training rows only
                    chosen = tuner.params(name, number, ratings.iloc[train])
                    model = make_model(name, data_key, factors=factors, seed=seed, overrides={**chosen, **fixed},
                                       task=task)
                    logger.info("%s fold %d/%d tuned: %s", name, number, len(splits), _describe(model))
                with warnings.catch_warnings():
                    # Test users or items missing from a training fold get the fallback
                    # prediction: expected in cross-validation, not worth a warning per fold.
                    warnings.filterwarnings("ignore", message=r"predict: \d+ of \d+ pair", category=UserWarning)
                    scores = evaluate(clone(model), ratings.iloc[train], ratings.iloc[test], social,
                                      k=10, ranking=ranking)
                fold_scores.append({c: float(scores.get(c, np.nan)) for c in columns})
                logger.info("%s fold %d/%d: %s %.4f, fit %.2f s", name, number, len(splits), metrics[0],
                            scores.get(metrics[0], np.nan), scores["fit_seconds"])
                if bar is not None:
                    bar.set_description(f"{name} fold {number}/{len(splits)}")
                    bar.update(1)
            per_fold = pd.DataFrame(fold_scores, columns=columns)
            row = {"model": name}
            for c in columns:
                row[c] = float(per_fold[c].mean(skipna=True)) if per_fold[c].notna().any() else np.nan
                row[c + "_std"] = float(per_fold[c].std(ddof=0, skipna=True)) if per_fold[c].notna().any() else np.nan
            rows.append(row)
            if stream is not None:
                shown = "settings tuned per fold" if tuner is not None and tuner.results_for(name) else _describe(model)
                print(f"  {name:<22} {metrics[0]} {row[metrics[0]]:.4f}  ({shown})", file=stream, flush=True)
    finally:
        if bar is not None:
            bar.close()
    ordered = ["model"] + [x for c in columns for x in (c, c + "_std")]
    return pd.DataFrame(rows, columns=ordered)


def _params_for(name: str, params) -> dict:
    if not params:
        return {}
    valid = available_models()[name]().get_params()
    return {k: v for k, v in params.items() if k in valid}


def _format_table(table: pd.DataFrame) -> str:
    """Means with their fold standard deviations, ``0.8123 ± 0.0041``."""

    def fmt(x):
        if not np.isfinite(x):
            return "nan"
        return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"

    shown = pd.DataFrame({"model": table["model"]})
    for c in table.columns:
        if c == "model" or c.endswith("_std"):
            continue
        std = table.get(c + "_std")
        shown[c] = [
            fmt(m) if s is None or not np.isfinite(s) else f"{fmt(m)} ± {fmt(s)}"
            for m, s in zip(table[c], std if std is not None else [None] * len(table))
        ]
    return shown.to_string(index=False)


def _check_writable(option: str, value: str) -> Path:
    """Fail now, not after the work, when ``value`` cannot be written."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise CLIError(f"cannot write {option} {value!r}: it is a folder; give a file name.")
    folder = path.resolve().parent
    if not folder.is_dir():
        raise CLIError(f"cannot write {option} {value!r}: folder {str(folder)!r} does not exist.")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write {option} {value!r}: folder {str(folder)!r} is not writable ({exc.strerror}).") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise CLIError(f"cannot write {option} {value!r}: the file is read-only.")
    return path


def _footnotes(table: pd.DataFrame, social, names, metrics) -> list:
    notes = [
        "mean ± standard deviation over the folds; cold_start = test users with 1-4 training ratings",
        "fit_seconds of the first fit in a process include compiling the numba kernels unless they are "
        "already cached (NUMBA_CACHE_DIR or the package folder)",
    ]
    if "ALS" in names:
        notes.append(
            "ALS is plain, unregularised ALS: it overfits the observed ratings, so its errors can be far "
            "above the rating scale; it is the baseline the regularised models improve on"
        )
    if social is None and "SocialALS" in names:
        notes.append("these data have no social graph: SocialALS is RegularizedALS here and reports its numbers")
    for metric in ("cold_start_rmse", "cold_start_mae"):
        if metric in metrics and table[metric].isna().all():
            notes.append(f"{metric} is nan: no test user had 1-4 training ratings in any fold")
    return notes


def _cmd_compare(args) -> int:
    if args.folds < 2:
        raise CLIError(f"--folds must be at least 2; got {args.folds}.")
    if args.factors < 1:
        raise CLIError(f"--factors must be at least 1; got {args.factors}.")
    _check_defaults_option(args)
    metrics = list(dict.fromkeys(args.metrics or _TASK_METRICS[args.task]))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise CLIError(f"--metrics: unknown metric(s) {unknown}; choose from {list(METRICS)}.")
    names = ([_resolve_model_name(m) for m in args.models] if args.models
             else [n for n in _TASK_MODELS[args.task] if n in available_models()])
    names = list(dict.fromkeys(names))
    params = _parse_params(args.param)
    if not args.tune and (args.budget is not None or args.trials is not None):
        raise CLIError("--budget and --trials need --tune.")
    if args.tune and args.params:
        raise CLIError("give --tune (choose the settings in every fold) or --params (use a file's), not both.")
    if args.tune and args.iterations is not None:
        raise CLIError("--tune reads the iterations off validation curves; give --max-iterations instead of --iterations.")
    file_params = _read_params_files(args.params, names, "compare --models" if args.models else "compare")
    tune_options = _tune_options(args) if args.tune else None
    if params:
        known = set().union(*(available_models()[n]().get_params() for n in names))
        stray = sorted(set(params) - known)
        if stray:
            raise CLIError(f"--param: no model of {names} has the parameter(s) {stray}.")
    if args.output is not None:
        _check_writable("--output", args.output)
    ratings, social, key, why = load_data(args.data, args.social, args.data_home, n_users=args.n_users,
                                          n_items=args.n_items, explain=True)
    key = _data_key(args, key)
    templates = {}
    for name in names:  # fail on a bad setting before any work
        templates[name] = make_model(name, key, factors=args.factors, seed=args.seed, iterations=args.iterations,
                                     overrides={**file_params.get(name, {}), **_params_for(name, params)},
                                     task=args.task)
    tuner = None
    if tune_options is not None:
        from .tune import NestedTuner

        spaces = {n: _params_for(n, params) for n in names}  # --param fixes a setting
        tuner = NestedTuner(names, social, templates=templates, spaces=spaces, task=args.task, **tune_options)
    if len(ratings) < args.folds:
        raise CLIError(f"--folds {args.folds} needs at least {args.folds} ratings; {args.data} has {len(ratings)}.")
    if "FactorizationMachine" not in available_models() and not args.models:
        print("note: the factorization machine (socialals.fm) is not installed; comparing the ALS models only.")
    print(f"{args.data}: {_summary(ratings, social)}")
    print(_settings_line(args, key, why))
    if tuner is not None:
        source = (f"tuned inside each training fold ({_describe_tuning(tune_options)}; nested cross-validation: "
                  "the test folds are never seen by the tuning)")
    elif file_params:
        source = f"{', '.join(args.params)} for {', '.join(file_params)}; {key} {args.task} defaults otherwise"
    else:
        source = f"{key} {args.task} defaults"
    print(f"{args.folds}-fold cross-validation, {args.factors} factors, seed {args.seed}, hyperparameters: {source}")
    started = time.perf_counter()
    table = compare(
        ratings, social, names, key, folds=args.folds, factors=args.factors, seed=args.seed,
        iterations=args.iterations, params=params, metrics=metrics, stream=sys.stdout, task=args.task,
        file_params=file_params, tuner=tuner,
    )
    print()
    print(_format_table(table))
    if tuner is not None and tuner.chosen:
        print()
        print("settings chosen per fold (on validation folds inside the fold's training rows):")
        for row in tuner.chosen:
            score = next(v for k, v in row.items() if k.startswith("validation_"))
            print(f"  {row['model']:<22} fold {row['fold']}: {_format_settings(row['params'])}  "
                  f"(validation {score:.4f}, {row['trials']} trials, {row['seconds']:.0f} s)")
    print()
    for note in _footnotes(table, social, names, metrics):
        print(f"({note})")
    print(f"({time.perf_counter() - started:.1f} s in all)")
    if args.output is not None:
        table.to_csv(args.output, index=False)
        print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------------------- fit
def _cmd_fit(args) -> int:
    _check_defaults_option(args)
    if args.factors < 1:
        raise CLIError(f"--factors must be at least 1; got {args.factors}.")
    name = _resolve_model_name(args.model)
    from .tune import read_params

    overrides = {}
    for path in args.params:  # an entry for this model class, or an error naming the file's models
        overrides.update(read_params(path, model=name))
    overrides.update(_parse_params(args.param))
    out = _check_writable("--out", args.out)
    ratings, social, key, why = load_data(args.data, args.social, args.data_home, n_users=args.n_users,
                                          n_items=args.n_items, explain=True)
    key = _data_key(args, key)
    model = make_model(name, key, factors=args.factors, seed=args.seed, iterations=args.iterations, overrides=overrides,
                       task=args.task)
    print(f"{args.data}: {_summary(ratings, social)}")
    print(_settings_line(args, key, why))
    if social is None and name == "SocialALS":
        print("note: these data have no social graph: SocialALS fits as RegularizedALS.")
    started = time.perf_counter()
    model.fit(ratings, social)
    seconds = time.perf_counter() - started
    try:
        model.save(out)
    except OSError as exc:
        raise CLIError(f"cannot write --out {args.out!r}: {exc.strerror or exc}.") from None
    print(f"fitted {name}({_describe(model)}) in {seconds:.1f} s: {len(model.users_):,} users, {len(model.items_):,} items")
    print(f"saved to {out}")
    return 0


# ---------------------------------------------------------------------------- tune
def _read_params_files(paths, names, what) -> dict:
    """``{model: settings}`` of the ``--params`` files; each file's models must be among ``names``."""
    from .tune import read_params

    merged = {}
    for path in paths or ():
        found = read_params(path)
        stray = sorted(set(found) - set(names))
        if stray:
            raise CLIError(f"--params {path!r} holds settings for {stray}, which {what} does not run "
                           f"(it runs {list(names)}); tune that model or pick the right file.")
        for name, params in found.items():
            merged[name] = {**merged.get(name, {}), **params}
    return merged


def _parse_grid(items, names) -> dict:
    """``--grid key=v1,v2,...`` (choices) or ``key=low:high`` (a log-uniform range) per model."""
    grid = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise CLIError(f"--grid expects key=v1,v2,... or key=low:high (e.g. alpha=0,1,3 or reg=1:30); got {item!r}.")
        if ":" in value:
            low, _, high = value.partition(":")
            try:
                grid[key] = (float(low), float(high))
            except ValueError:
                raise CLIError(f"--grid {item!r}: a range is low:high with two numbers.") from None
        else:
            grid[key] = [_parse_value(v.strip()) for v in value.split(",")]
    known = set().union(*(available_models()[n]().get_params() for n in names))
    stray = sorted(set(grid) - known)
    if stray:
        raise CLIError(f"--grid: unknown parameter(s) {stray}; no model of {list(names)} has them.")
    return grid


def _tune_options(args) -> dict:
    from .tune import _require_optuna

    try:
        _require_optuna()
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    if args.max_iterations is not None and args.max_iterations < 1:
        raise CLIError(f"--max-iterations must be at least 1; got {args.max_iterations}.")
    if args.budget is not None and not args.budget > 0:
        raise CLIError(f"--budget must be a number of seconds > 0; got {args.budget:g}.")
    if args.trials is not None and args.trials < 1:
        raise CLIError(f"--trials must be at least 1; got {args.trials}.")
    inner = "auto" if args.inner_folds is None else args.inner_folds
    if inner != "auto" and inner < 2:
        raise CLIError(f"the validation folds must be at least 2; got {inner}.")
    if args.validation_size is not None and not 0 < args.validation_size < 1:
        raise CLIError(f"--validation-size must be a fraction in (0, 1); got {args.validation_size:g}.")
    trials, budget = args.trials, args.budget
    if trials is None and budget is None:
        trials = _DEFAULT_TRIALS if args.command == "tune" else _DEFAULT_NESTED_TRIALS
    return {"budget": budget, "n_trials": trials, "cv": inner, "validation_size": args.validation_size,
            "random_state": args.seed, "verbose": bool(args.verbose or args.command == "tune"), "stream": sys.stderr,
            "max_iterations": args.max_iterations}


def _describe_tuning(options) -> str:
    parts = []
    if options["n_trials"] is not None:
        parts.append(f"{options['n_trials']} trials")
    if options["budget"] is not None:
        parts.append(f"at most {options['budget']:g} s")
    split = (f"a {options['validation_size']:g} hold-out" if options["validation_size"] is not None
             else "3 validation folds (a 0.2 hold-out from 100,000 ratings on)" if options["cv"] == "auto"
             else f"{options['cv']} validation folds")
    return " and ".join(parts) + f" per model and fold, {split}"


def _format_settings(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in params.items())


#: Trials of ``socialals tune`` (per model) and of ``compare --tune`` (per model and outer
#: fold) when neither --trials nor --budget is given: a number of trials, not seconds, so
#: that the same seed gives the same table. 25 keeps ``compare --tune`` on FilmTrust, every
#: model, within 5 minutes on 2 cores (benchmarks/bench_tune.py); a 12-second budget per
#: model and fold instead cut the first folds to 7 trials on a busy machine and cost 0.01 RMSE.
_DEFAULT_TRIALS = 40
_DEFAULT_NESTED_TRIALS = 25


def _cmd_tune(args) -> int:
    from .tune import NestedTuner, save_params

    _check_defaults_option(args)
    if args.factors < 1:
        raise CLIError(f"--factors must be at least 1; got {args.factors}.")
    names = list(dict.fromkeys(_resolve_model_name(m) for m in args.model))
    params = _parse_params(args.param)
    known = set().union(*(available_models()[n]().get_params() for n in names))
    stray = sorted(set(params) - known)
    if stray:
        raise CLIError(f"--param: no model of {names} has the parameter(s) {stray}.")
    grid = _parse_grid(args.grid, names)
    options = _tune_options(args)
    out = _check_writable("--output", args.output)
    ratings, social, key = load_data(args.data, args.social, args.data_home, n_users=args.n_users, n_items=args.n_items)
    key = _data_key(args, key)
    templates = {n: make_model(n, key, factors=args.factors, seed=args.seed, overrides=_params_for(n, params),
                               task=args.task) for n in names}
    spaces = {n: {**_params_for(n, grid), **_params_for(n, params)} for n in names}
    tuner = NestedTuner(names, social, templates=templates, spaces=spaces, task=args.task, **options)
    print(f"{args.data}: {_summary(ratings, social)}")
    print(f"tuning {', '.join(names)} for {args.task}: {_describe_tuning(options).replace(' and fold', '')}, "
          f"seed {args.seed}")
    started = time.perf_counter()
    results = {}
    for name in names:
        result = tuner.result(name, 0, ratings)
        if result is None:
            print(f"  {name:<22} nothing to tune")
            continue
        results[name] = result
        print(f"  {name:<22} validation {result.metric} {result.score:.4f}: {_format_settings(result.params)} "
              f"({len(result.trials)} trials, {result.seconds:.0f} s)")
    if not results:
        raise CLIError(f"nothing to tune: {names} have no hyperparameters to search.")
    save_params(out, results, data=str(args.data))
    print(f"({time.perf_counter() - started:.1f} s in all)")
    print(f"wrote {out}: use it with 'socialals fit --params {out}' or 'socialals compare --params {out}'")
    return 0


# ---------------------------------------------------------------------------- recommend
def _parse_user(text: str, users: pd.Index):
    kind = users.dtype.kind
    if kind in "iu":
        try:
            return int(text)
        except ValueError:
            raise CLIError(f"unknown user {text!r}: this model's users are integers.") from None
    if kind == "f":
        try:
            return float(text)
        except ValueError:
            raise CLIError(f"unknown user {text!r}: this model's users are numbers.") from None
    return text


def _cmd_recommend(args) -> int:
    from ._persistence import load

    if args.n < 1:
        raise CLIError(f"-n must be at least 1; got {args.n}.")
    model = load(args.model)
    user = _parse_user(args.user, model.users_)
    if user not in model.users_:
        raise CLIError(
            f"unknown user {args.user!r}: the model in {args.model!r} was not fitted on it "
            f"({len(model.users_):,} users, e.g. {', '.join(map(str, model.users_[:3]))})."
        )
    recs = model.recommend(user, n=args.n, exclude_seen=not args.include_seen)
    c = model.columns_
    table = recs[["rank", c.item, "score"]]
    print(f"top {args.n} items for user {user} ({type(model).__name__}, {args.model}):")
    if table.empty:
        print("(no items left to recommend: the user has rated every item)")
    else:
        print(table.to_string(index=False, formatters={"score": "{:.4f}".format}))
    return 0


# ---------------------------------------------------------------------------- parser
def _add_data_options(p: argparse.ArgumentParser, default_data: Optional[str], seed_help: str) -> None:
    p.add_argument(
        "--data", default=default_data, required=default_data is None, metavar="NAME|PATH",
        help="synthetic, filmtrust, ciao, epinions, movielens-100k, movielens-1m, a folder in FilmTrust "
        "or Ciao format, or a ratings file (user,item,rating; comma, tab, semicolon or space separated)"
        + (f" (default: {default_data})" if default_data else ""),
    )
    p.add_argument("--social", metavar="FILE", help="social links (user,friend[,weight]) for a ratings file")
    p.add_argument("--task", choices=("rating", "ranking"), default="rating",
                   help="rating: settings for rating prediction (default); ranking: top-N settings (the "
                   "missing-data term), and compare reports NDCG@10, Recall@10 and cold-start NDCG@10 next to "
                   "Popularity")
    p.add_argument("--data-home", metavar="DIR", help="download cache (default: $SOCIALALS_DATA or ~/socialals_data)")
    p.add_argument(
        "--defaults", metavar="NAME", default=None,
        help="use the tuned hyperparameters of this data set (%s) instead of those of --data"
        % ", ".join(sorted(DEFAULTS)),
    )
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter (repeatable), e.g. --param reg=0.5")
    p.add_argument("--factors", type=int, default=DEFAULT_FACTORS,
                   help=f"latent factors (default: {DEFAULT_FACTORS}, the setting the defaults were tuned at)")
    p.add_argument("--iterations", type=int, default=None, help="override the iterations of the defaults")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress (each model and fold) on standard error")
    # Hidden: sizes of the synthetic data (tests and quick experiments).
    p.add_argument("--n-users", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--n-items", type=int, default=None, help=argparse.SUPPRESS)


def _add_tune_options(p: argparse.ArgumentParser, nested: bool) -> None:
    each = " per model and fold" if nested else " per model"
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                   help=f"seconds of search{each}; the best complete trial wins")
    default = _DEFAULT_NESTED_TRIALS if nested else _DEFAULT_TRIALS
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help=f"settings tried{each} (default: {default} without --budget); without --budget the same "
                   "--seed gives the same choices")
    p.add_argument("--inner-folds" if nested else "--folds", dest="inner_folds", type=int, default=None, metavar="K",
                   help="validation folds drawn inside the " + ("training fold" if nested else "data")
                   + " (default: 3, or one 20%% hold-out from 100,000 ratings on)")
    p.add_argument("--validation-size", type=float, default=None, metavar="FRACTION",
                   help="instead of validation folds, one hold-out of this share (faster, noisier)")
    p.add_argument("--max-iterations", type=int, default=None, metavar="N",
                   help="length of each validation fit, whose curve gives the iterations (default: 40; ranking 30)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``socialals`` command."""
    from . import __version__

    p = argparse.ArgumentParser(
        prog="socialals",
        description="Collaborative filtering with ALS and social regularisation.",
        epilog="Start with: socialals compare",
    )
    p.add_argument("--version", action="version", version=f"socialals {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser(
        "compare", help="cross-validate every model on a data set and print a table",
        description="k-fold cross-validation of ALS, RegularizedALS, SocialALS and the factorization "
        "machine (when installed) with tuned per-data-set hyperparameters.",
    )
    _add_data_options(c, "synthetic", "random seed of the folds and the models (default: 0)")
    c.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    c.add_argument("--models", nargs="+", metavar="MODEL", help="models to run (default: all); FM = FactorizationMachine")
    c.add_argument("--metrics", nargs="+", metavar="METRIC",
                   help="what to compute (default: %s); choose from %s; ranking metrics cost most"
                   % (" ".join(_DEFAULT_METRICS), ", ".join(METRICS)))
    c.add_argument("--output", metavar="FILE.csv", help="also write the table (means and _std columns) as CSV")
    c.add_argument("--params", action="append", default=[], metavar="FILE.json",
                   help="settings written by 'socialals tune' for the models it names (repeatable)")
    c.add_argument("--tune", action="store_true",
                   help="nested cross-validation: tune every model inside each training fold (on validation folds "
                   "drawn there), then score it on the fold's test rows; prints each fold's chosen settings")
    _add_tune_options(c, nested=True)
    c.set_defaults(func=_cmd_compare)

    f = sub.add_parser("fit", help="fit one model on all the ratings and save it",
                       description="Fit a model on all the ratings of a data set and save it as .npz.")
    _add_data_options(f, None, "random seed of the model's initialisation (default: 0)")
    f.add_argument("--model", required=True, help="ALS, RegularizedALS, SocialALS, FM or Popularity")
    f.add_argument("--out", required=True, metavar="FILE.npz", help="where to save the model")
    f.add_argument("--params", action="append", default=[], metavar="FILE.json",
                   help="settings written by 'socialals tune' (for this model; --param still overrides them)")
    f.set_defaults(func=_cmd_fit)

    t = sub.add_parser("tune", help="search a model's hyperparameters on validation folds and write them as JSON",
                       description="Search hyperparameters (reg, bias_reg, weighted_reg, alpha including 0, "
                       "similarity, the ranking weights with --task ranking, and the iterations read off validation "
                       "curves) on validation folds drawn inside the data, with Optuna (pip install "
                       "'socialals[tune]'); write the best settings for 'fit --params' and 'compare --params'.")
    _add_data_options(t, None, "seed of the validation folds, the sampler and the models (default: 0)")
    t.add_argument("--model", required=True, nargs="+", metavar="MODEL",
                   help="model(s) to tune; RegularizedALS is tuned before SocialALS and its best setting is a "
                   "SocialALS trial with alpha=0")
    t.add_argument("--output", required=True, metavar="FILE.json", help="where to write the chosen settings")
    t.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2|LOW:HIGH",
                   help="search these choices (alpha=0,1,3) or this log range (reg=1:30) instead of the default "
                   "(repeatable); --param fixes a setting")
    _add_tune_options(t, nested=False)
    t.set_defaults(func=_cmd_tune)

    r = sub.add_parser("recommend", help="print a user's top-n items from a saved model",
                       description="Load a model saved by 'socialals fit' and print a user's top-n items.")
    r.add_argument("--model", required=True, metavar="FILE.npz", help="a model saved by 'socialals fit'")
    r.add_argument("--user", required=True, help="user id (parsed as an int when the model's users are ints)")
    r.add_argument("-n", type=int, default=10, help="number of items (default: 10)")
    r.add_argument("--include-seen", action="store_true", help="do not leave out the user's rated items")
    r.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    r.set_defaults(func=_cmd_recommend)
    return p


class _OncePerMessage:
    """``warnings.showwarning`` replacement: ``socialals: warning: ...``, each text once per command."""

    def __init__(self):
        self.seen = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if text not in self.seen:
            self.seen.add(text)
            print(f"socialals: warning: {text}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(message).split())  # pandas previews of offending rows span lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success. Usage and input errors (an unknown option, model or parameter, a
        missing or malformed file, an unknown user) print one line
        ``socialals: error: ...`` on standard error and return 2 (argument errors exit
        with 2 through :mod:`argparse`); other failures (a diverging fit, a failed
        download, a full disk) print one line and return 1. Set ``SOCIALALS_DEBUG=1`` to
        get the traceback instead. Ctrl-C ends a command with
        ``socialals: interrupted`` and status 130 (128 + SIGINT).
    """
    from .datasets import DownloadError
    from .exceptions import DivergenceError, NotFittedError

    args = build_parser().parse_args(argv)
    handler = None
    if getattr(args, "verbose", False):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("socialals: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    usage = (CLIError, InputError, ValueError, KeyError, TypeError, NotFittedError, FileNotFoundError,
             IsADirectoryError, NotADirectoryError)
    with warnings.catch_warnings():
        warnings.showwarning = _OncePerMessage()
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            if os.environ.get("SOCIALALS_DEBUG"):
                raise
            print("socialals: interrupted", file=sys.stderr)
            return 130  # 128 + SIGINT, as shells report it
        except Exception as exc:
            if os.environ.get("SOCIALALS_DEBUG"):
                raise
            if isinstance(exc, DivergenceError):
                remedy = "" if "try a lower" in str(exc) else (
                    " Try a smaller learning_rate or a larger reg (--param reg=...), or check the ratings' scale."
                )
                print(f"socialals: error: the fit diverged: {_one_line(exc)}{remedy}", file=sys.stderr)
                return 1
            if isinstance(exc, DownloadError):
                print(f"socialals: error: {_one_line(exc)}", file=sys.stderr)
                return 1
            if isinstance(exc, usage):
                print(f"socialals: error: {_one_line(exc)}", file=sys.stderr)
                return 2
            kind = type(exc).__name__
            print(f"socialals: error: {kind}: {_one_line(exc)} (set SOCIALALS_DEBUG=1 for the traceback)",
                  file=sys.stderr)
            return 1
        finally:
            if handler is not None:
                logger.removeHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
