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

Data (``--data``): ``synthetic`` (``make_social_ratings(random_state=0)``), ``filmtrust``,
``ciao``, ``epinions``, ``movielens-100k``, ``movielens-1m`` (downloaded once into
``--data-home`` or ``$SOCIALALS_DATA``), or a path: a folder in FilmTrust format
(``ratings.txt``, ``trust.txt``) or Ciao/Epinions format (``rating.mat``,
``trustnetwork.mat``), or a CSV/TSV file of ratings (``user,item,rating`` with or without
a header) with an optional ``--social`` file (``user,friend[,weight]``).

Model hyperparameters default to the per-data-set values in :mod:`socialals._defaults`
(tuned by ``benchmarks/tune.py``); ``--param key=value`` overrides them.

Every command returns 0 on success; user errors (unknown user, missing or malformed file,
bad parameter) print ``socialals: error: ...`` on standard error and return 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ._defaults import DEFAULTS, defaults_for
from ._registry import model_classes

__all__ = ["COMPARE_COLUMNS", "DATASETS", "available_models", "build_parser", "load_data", "main"]

#: Columns of the ``compare`` table and of its ``--output`` CSV, in order.
COMPARE_COLUMNS = ("model", "rmse", "mae", "cold_start_rmse", "ndcg_at_10", "fit_seconds")

#: Named data sets accepted by ``--data``.
DATASETS = ("synthetic", "filmtrust", "ciao", "epinions", "movielens-100k", "movielens-1m")

_MODEL_ORDER = ("ALS", "RegularizedALS", "SocialALS", "FactorizationMachine")
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


def make_model(name: str, data_key: str, *, factors=None, seed=0, iterations=None, overrides=None):
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

    Returns
    -------
    BaseRecommender
        An unfitted model.
    """
    cls = available_models()[name]
    valid = cls().get_params()
    params = {"random_state": seed}
    params.update(defaults_for(data_key, name))
    if factors is not None:
        params["factors"] = factors
    if iterations is not None:
        params["iterations"] = iterations
    params.update(overrides or {})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise CLIError(f"unknown parameter(s) {unknown} for {name}; its parameters are {sorted(valid)}.")
    model = cls(**params)
    model._validate_params()  # report a bad value now, not after loading the data
    return model


_TECHNICAL = ("n_jobs", "random_state", "dtype", "init_scale", "callback", "tol")


def _describe(model) -> str:
    """The modelling hyperparameters as ``k=v, ...`` (not seeds, threads or precision)."""
    return ", ".join(f"{k}={v!r}" for k, v in model.get_params().items() if k not in _TECHNICAL)


# ---------------------------------------------------------------------------- data
def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return line
    raise CLIError(f"{str(path)!r} is empty.")


def _separator(path: Path, line: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ","
    if suffix in (".tsv", ".tab"):
        return "\t"
    for sep in ("\t", ",", ";"):
        if sep in line:
            return sep
    return r"\s+"


def read_table(path, required: Sequence[str], optional: Sequence[str] = ()) -> pd.DataFrame:
    """Read a delimited file whose columns are ``required`` (+ ``optional``).

    With a header line (one that names the columns, matched case-insensitively) the
    columns are taken by name; without one, the first columns are taken in order.
    The separator comes from the suffix (``.csv`` comma, ``.tsv``/``.tab`` tab) or
    else from the first line (tab, comma, semicolon, or whitespace).

    Parameters
    ----------
    path : str or path-like
    required, optional : sequence of str
        Column names to return.

    Returns
    -------
    DataFrame with the required columns and those optional ones present.
    """
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"file {str(path)!r} does not exist.")
    line = _first_line(path)
    sep = _separator(path, line)
    tokens = [t.strip().strip('"').lower() for t in re.split(sep if sep != r"\s+" else r"\s+", line.strip())]
    has_header = any(name in tokens for name in list(required) + list(optional))
    try:
        frame = pd.read_csv(path, sep=sep, header=0 if has_header else None, engine="python" if sep == r"\s+" else "c")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CLIError(f"could not parse {str(path)!r}: {exc}") from None
    if has_header:
        lower = {str(c).strip().lower(): c for c in frame.columns}
        missing = [c for c in required if c not in lower]
        if missing:
            raise CLIError(
                f"{str(path)!r} has columns {list(frame.columns)}; expected {list(required)}"
                + (f" (and optionally {list(optional)})" if optional else "")
                + f"; missing {missing}."
            )
        names = [c for c in list(required) + list(optional) if c in lower]
        out = frame[[lower[c] for c in names]]
        out.columns = names
        return out.reset_index(drop=True)
    if frame.shape[1] < len(required):
        raise CLIError(
            f"{str(path)!r} has {frame.shape[1]} column(s) and no header; expected the columns "
            f"{list(required)}" + (f" (and optionally {list(optional)})" if optional else "") + "."
        )
    n = min(frame.shape[1], len(required) + len(optional))
    out = frame.iloc[:, :n].copy()
    out.columns = (list(required) + list(optional))[:n]
    return out


def _has_files(folder: Path, names: Sequence[str]) -> bool:
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
    return any(all((c / n).is_file() for n in names) for c in candidates)


def load_data(spec: str, social: Optional[str] = None, data_home: Optional[str] = None, *,
              n_users: Optional[int] = None, n_items: Optional[int] = None):
    """Ratings and social frame for ``--data spec``.

    Parameters
    ----------
    spec : str
        A name of :data:`DATASETS` or a path (see the module docstring).
    social : str, optional
        Social file for a ratings-file ``spec``.
    data_home : str, optional
        Download cache for named data sets (default ``$SOCIALALS_DATA`` or
        ``~/socialals_data``).
    n_users, n_items : int, optional
        Size of the synthetic data (defaults of :func:`~socialals.make_social_ratings`).

    Returns
    -------
    ratings : DataFrame
    social : DataFrame or None
    key : str
        The :data:`~socialals._defaults.DEFAULTS` entry for these data.
    """
    from . import datasets

    if social is not None and (spec in DATASETS or Path(spec).is_dir()):
        raise CLIError("--social applies only when --data is a ratings file (CSV/TSV).")
    if spec == "synthetic":
        sizes = {k: v for k, v in (("n_users", n_users), ("n_items", n_items)) if v is not None}
        ratings, graph = datasets.make_social_ratings(random_state=0, **sizes)
        return ratings, graph, "synthetic"
    loaders = {
        "filmtrust": datasets.load_filmtrust,
        "ciao": datasets.load_ciao,
        "epinions": datasets.load_epinions,
        "movielens-100k": datasets.load_movielens_100k,
        "movielens-1m": datasets.load_movielens_1m,
    }
    if spec in loaders:
        ratings, graph = loaders[spec](data_home=data_home)
        return ratings, graph, spec if spec in DEFAULTS else "generic"
    path = Path(spec).expanduser()
    if path.is_dir():
        if _has_files(path, ("ratings.txt", "trust.txt")):
            ratings, graph = datasets.load_filmtrust(path)
        elif _has_files(path, ("rating.mat", "trustnetwork.mat")):
            ratings, graph = datasets.load_ciao(path)
        else:
            raise CLIError(
                f"folder {spec!r} holds neither FilmTrust files (ratings.txt, trust.txt) nor "
                "Ciao/Epinions files (rating.mat, trustnetwork.mat)."
            )
        return ratings, graph, "generic"
    if path.is_file():
        ratings = read_table(path, ("user", "item", "rating"))
        graph = read_table(Path(social).expanduser(), ("user", "friend"), ("weight",)) if social else None
        return ratings, graph, "generic"
    raise CLIError(
        f"--data {spec!r} is neither a known data set ({', '.join(DATASETS)}) nor an existing file or folder."
    )


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


# ---------------------------------------------------------------------------- compare
def compare(ratings, social, model_names, data_key, *, folds=5, factors=10, seed=0, iterations=None, stream=None):
    """Cross-validate each model and return the :data:`COMPARE_COLUMNS` table.

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
    stream : file, optional
        Where progress lines go (one per model as it finishes).

    Returns
    -------
    DataFrame
        One row per model, columns :data:`COMPARE_COLUMNS`; metrics are means over folds.
    """
    from .model_selection import cross_validate

    rows = []
    for name in model_names:
        model = make_model(name, data_key, factors=factors, seed=seed, iterations=iterations)
        with warnings.catch_warnings():
            # Test users or items missing from a training fold get the fallback prediction:
            # expected in cross-validation, not worth a warning per fold.
            warnings.filterwarnings("ignore", message=r"predict: \d+ of \d+ pair", category=UserWarning)
            scores = cross_validate(model, ratings, social, cv=folds, random_state=seed, k=10)
        mean = scores.loc["mean"]
        row = {"model": name, **{c: float(mean.get(c, np.nan)) for c in COMPARE_COLUMNS[1:]}}
        rows.append(row)
        if stream is not None:
            print(
                f"  {name:<22} rmse {row['rmse']:.4f}  ({_describe(model)})",
                file=stream,
                flush=True,
            )
    return pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))


def _format_table(table: pd.DataFrame) -> str:
    def fmt(x):
        if isinstance(x, str):
            return x
        if not np.isfinite(x):
            return "nan"
        return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.4g}"

    return table.to_string(index=False, formatters={c: fmt for c in table.columns})


def _cmd_compare(args) -> int:
    if args.folds < 2:
        raise CLIError(f"--folds must be at least 2; got {args.folds}.")
    if args.factors < 1:
        raise CLIError(f"--factors must be at least 1; got {args.factors}.")
    _check_defaults_option(args)
    names = [_resolve_model_name(m) for m in args.models] if args.models else list(available_models())
    names = list(dict.fromkeys(names))
    if args.output is not None:
        out_dir = Path(args.output).expanduser().resolve().parent
        if not out_dir.is_dir():
            raise CLIError(f"cannot write --output {args.output!r}: folder {str(out_dir)!r} does not exist.")
    ratings, social, key = load_data(args.data, args.social, args.data_home, n_users=args.n_users, n_items=args.n_items)
    key = _data_key(args, key)
    for name in names:  # fail on a bad setting before any work
        make_model(name, key, factors=args.factors, seed=args.seed, iterations=args.iterations)
    if "FactorizationMachine" not in available_models() and not args.models:
        print("note: the factorization machine (socialals.fm) is not installed; comparing the ALS models only.")
    print(f"{args.data}: {_summary(ratings, social)}")
    print(f"{args.folds}-fold cross-validation, {args.factors} factors, seed {args.seed}, hyperparameters: {key} defaults")
    started = time.perf_counter()
    table = compare(
        ratings, social, names, key, folds=args.folds, factors=args.factors, seed=args.seed,
        iterations=args.iterations, stream=sys.stdout,
    )
    print()
    print(_format_table(table))
    print(f"\n(means over folds; cold_start = test users with 1-4 training ratings; {time.perf_counter() - started:.1f} s)")
    if args.output is not None:
        table.to_csv(args.output, index=False)
        print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------------------- fit
def _cmd_fit(args) -> int:
    _check_defaults_option(args)
    name = _resolve_model_name(args.model)
    overrides = _parse_params(args.param)
    out = Path(args.out).expanduser()
    if not out.resolve().parent.is_dir():
        raise CLIError(f"cannot write --out {args.out!r}: folder {str(out.resolve().parent)!r} does not exist.")
    ratings, social, key = load_data(args.data, args.social, args.data_home, n_users=args.n_users, n_items=args.n_items)
    key = _data_key(args, key)
    model = make_model(name, key, factors=args.factors, seed=args.seed, overrides=overrides)
    print(f"{args.data}: {_summary(ratings, social)}")
    started = time.perf_counter()
    model.fit(ratings, social)
    seconds = time.perf_counter() - started
    model.save(out)
    print(f"fitted {name}({_describe(model)}) in {seconds:.1f} s: {len(model.users_):,} users, {len(model.items_):,} items")
    print(f"saved to {out}")
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
def _add_data_options(p: argparse.ArgumentParser, default_data: Optional[str]) -> None:
    p.add_argument(
        "--data", default=default_data, required=default_data is None, metavar="NAME|PATH",
        help="synthetic, filmtrust, ciao, epinions, movielens-100k, movielens-1m, a folder in FilmTrust "
        "or Ciao format, or a CSV/TSV ratings file (user,item,rating)"
        + (f" (default: {default_data})" if default_data else ""),
    )
    p.add_argument("--social", metavar="FILE", help="social links (user,friend[,weight]) for a ratings file")
    p.add_argument("--data-home", metavar="DIR", help="download cache (default: $SOCIALALS_DATA or ~/socialals_data)")
    p.add_argument(
        "--defaults", metavar="NAME", default=None,
        help="use the tuned hyperparameters of this data set (%s) instead of those of --data"
        % ", ".join(sorted(DEFAULTS)),
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of the folds and the models (default: 0)")
    # Hidden: sizes of the synthetic data (tests and quick experiments).
    p.add_argument("--n-users", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--n-items", type=int, default=None, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``socialals`` command."""
    p = argparse.ArgumentParser(
        prog="socialals",
        description="Collaborative filtering with ALS and social regularisation.",
        epilog="Start with: socialals compare",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser(
        "compare", help="cross-validate every model on a data set and print a table",
        description="k-fold cross-validation of ALS, RegularizedALS, SocialALS and the factorization "
        "machine (when installed) with tuned per-data-set hyperparameters.",
    )
    _add_data_options(c, "synthetic")
    c.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    c.add_argument("--factors", type=int, default=10, help="latent factors (default: 10)")
    c.add_argument("--iterations", type=int, default=None, help="override every model's iterations")
    c.add_argument("--models", nargs="+", metavar="MODEL", help="models to run (default: all); FM = FactorizationMachine")
    c.add_argument("--output", metavar="FILE.csv", help="also write the table as CSV")
    c.set_defaults(func=_cmd_compare)

    f = sub.add_parser("fit", help="fit one model on all the ratings and save it",
                       description="Fit a model on all the ratings of a data set and save it as .npz.")
    _add_data_options(f, None)
    f.add_argument("--model", required=True, help="ALS, RegularizedALS, SocialALS or FM")
    f.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter (repeatable), e.g. --param reg=0.5")
    f.add_argument("--factors", type=int, default=None, help="latent factors (default: the model's)")
    f.add_argument("--out", required=True, metavar="FILE.npz", help="where to save the model")
    f.set_defaults(func=_cmd_fit)

    r = sub.add_parser("recommend", help="print a user's top-n items from a saved model",
                       description="Load a model saved by 'socialals fit' and print a user's top-n items.")
    r.add_argument("--model", required=True, metavar="FILE.npz", help="a model saved by 'socialals fit'")
    r.add_argument("--user", required=True, help="user id (parsed as an int when the model's users are ints)")
    r.add_argument("-n", type=int, default=10, help="number of items (default: 10)")
    r.add_argument("--include-seen", action="store_true", help="do not leave out the user's rated items")
    r.set_defaults(func=_cmd_recommend)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"socialals: warning: {message}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 on a user error (message on standard error), 130 when
        interrupted (Ctrl-C, one line, no traceback). Argument errors exit with status 2
        through :mod:`argparse`. Set ``SOCIALALS_DEBUG=1`` to get the
        traceback of an error instead.
    """
    from .exceptions import NotFittedError

    args = build_parser().parse_args(argv)
    handled = (CLIError, OSError, ValueError, KeyError, TypeError, NotFittedError)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            if os.environ.get("SOCIALALS_DEBUG"):
                raise
            print("socialals: interrupted", file=sys.stderr)
            return 130  # 128 + SIGINT, as shells report it
        except handled as exc:
            if os.environ.get("SOCIALALS_DEBUG"):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"socialals: error: {message}", file=sys.stderr)
            return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
