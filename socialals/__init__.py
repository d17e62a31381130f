"""socialals: alternating least squares with social regularisation."""

__version__ = "0.1.0"

from .exceptions import ConvergenceWarning, DataWarning, DivergenceError, NotFittedError

__all__ = [
    "ConvergenceWarning",
    "DataWarning",
    "DivergenceError",
    "NotFittedError",
    "__version__",
]
