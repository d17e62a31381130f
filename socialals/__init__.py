"""socialals: alternating least squares with social regularisation.

Models: :class:`ALS`, :class:`RegularizedALS`, :class:`SocialALS` (and the
factorization-machine baseline). Evaluation lives in :mod:`socialals.metrics` and
:mod:`socialals.model_selection`, data sets in :mod:`socialals.datasets`.
"""

__version__ = "0.1.0"

from . import datasets, metrics, model_selection
from ._config import config_context, get_config, set_config
from .als import ALS, RegularizedALS, SocialALS
from ._persistence import load
from .base import BaseRecommender, clone
from .baselines import Popularity
from .datasets import (
    load_ciao,
    load_epinions,
    load_filmtrust,
    load_movielens_100k,
    load_movielens_1m,
    make_social_ratings,
)
from .fm import FactorizationMachine
from .exceptions import ConvergenceWarning, DataWarning, DivergenceError, InvalidParameterError, NotFittedError
from .model_selection import (
    GridSearch,
    KFold,
    cold_start_groups,
    cross_validate,
    evaluate,
    grid_search,
    train_test_split,
    user_holdout_split,
)
from .tune import tune  # the function; the module stays importable as socialals.tune's submodule

__all__ = [
    "ALS",
    "BaseRecommender",
    "ConvergenceWarning",
    "DataWarning",
    "DivergenceError",
    "FactorizationMachine",
    "GridSearch",
    "InvalidParameterError",
    "KFold",
    "NotFittedError",
    "Popularity",
    "RegularizedALS",
    "SocialALS",
    "__version__",
    "clone",
    "config_context",
    "cold_start_groups",
    "cross_validate",
    "datasets",
    "evaluate",
    "get_config",
    "grid_search",
    "load",
    "load_ciao",
    "load_epinions",
    "load_filmtrust",
    "load_movielens_100k",
    "load_movielens_1m",
    "make_social_ratings",
    "metrics",
    "model_selection",
    "set_config",
    "train_test_split",
    "tune",
    "user_holdout_split",
]
