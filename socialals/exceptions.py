"""Exceptions and warnings raised by socialals."""


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used before :meth:`fit` has been called."""


class DataWarning(UserWarning):
    """Input data was repaired (rows dropped or merged); the message counts what changed."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance."""


class DivergenceError(FloatingPointError):
    """An iterative solver produced non-finite values (diverged)."""
