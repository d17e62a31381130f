"""Exceptions and warnings raised by socialals."""

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class NotFittedError(_SklearnNotFittedError):
    """Raised when a model is used before :meth:`fit` has been called.

    A subclass of scikit-learn's ``NotFittedError`` (itself a ``ValueError`` and an
    ``AttributeError``), so scikit-learn's tools recognise it.
    """


class InvalidParameterError(ValueError, TypeError):
    """A parameter has the wrong type or value.

    Every parameter check of the library (model hyperparameters, splitters, model
    selection, metrics) raises this one class with one message style, "The 'name'
    parameter of Owner must be ...; got ...". It is both a ``ValueError`` and a
    ``TypeError`` (as scikit-learn's), so either ``except`` clause catches it.
    """


class DataWarning(UserWarning):
    """Input data was repaired (rows dropped or merged); the message counts what changed."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance."""


class DivergenceError(FloatingPointError):
    """An iterative solver produced non-finite values (diverged)."""
