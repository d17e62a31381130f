"""socialals: alternating least squares with social regularisation."""

__version__ = "0.1.0"

from .als import ALS, RegularizedALS, SocialALS
from .base import BaseRecommender, clone
from .exceptions import ConvergenceWarning, DataWarning, DivergenceError, NotFittedError

__all__ = [
    "ALS",
    "BaseRecommender",
    "RegularizedALS",
    "SocialALS",
    "clone",
    "ConvergenceWarning",
    "DataWarning",
    "DivergenceError",
    "NotFittedError",
    "__version__",
]
