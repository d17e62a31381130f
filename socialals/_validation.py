"""Parameter checks shared by the models, the splitters, model selection and the metrics.

One error class (:class:`~socialals.exceptions.InvalidParameterError`, both a ``ValueError``
and a ``TypeError``) and one message: "The 'name' parameter of Owner must be ...; got ...".
Each checker returns the value in its canonical type.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from .exceptions import InvalidParameterError

__all__ = ["invalid", "check_random_state", "check_int", "check_real", "check_bool", "check_frame"]


def invalid(name: str, owner: str, expected: str, value) -> InvalidParameterError:
    """The error for parameter ``name`` of ``owner`` (a class or function name)."""
    return InvalidParameterError(f"The {name!r} parameter of {owner} must be {expected}; got {value!r}.")


def check_random_state(seed, owner: str) -> np.random.Generator:
    """``None`` (fresh entropy), an int >= 0 (a fixed seed) or a :class:`numpy.random.Generator`
    (used as it is) as a Generator; the global NumPy random state is never used."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng()
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise invalid("random_state", owner, "None, an int >= 0 or a numpy.random.Generator", seed)


def check_int(value, name: str, owner: str, min_value: int) -> int:
    """``value`` as an int >= ``min_value`` (bools are not ints here)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < min_value:
        raise invalid(name, owner, f"an int >= {min_value}", value)
    return int(value)


def check_real(value, name: str, owner: str, expected: str = "a finite real number") -> float:
    """``value`` as a finite float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise invalid(name, owner, expected, value)
    return float(value)


def check_bool(value, name: str, owner: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise invalid(name, owner, "a bool", value)
    return bool(value)


def check_frame(frame, name: str, owner: str, columns) -> None:
    """``frame`` is a DataFrame holding every column in ``columns``."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a pandas DataFrame; got {type(frame).__name__}."
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} is missing the column(s) {missing}; it has columns {list(frame.columns)}."
        )
