"""The model classes of socialals, by class name.

:class:`~socialals.base.BaseRecommender` registers every public subclass defined inside
the ``socialals`` package when the class is created (``__init_subclass__``), so the
modules that need "every model class" — :func:`socialals.load` and the command line —
read this table instead of importing the model modules (which import the base class:
that was an import cycle). Subclasses defined outside the package are not registered,
so a model file can only ever name one of the library's own classes.
"""

from __future__ import annotations

__all__ = ["model_classes", "register"]

_CLASSES: dict = {}


def _is_library_model(cls: type) -> bool:
    module = getattr(cls, "__module__", "") or ""
    in_package = module == "socialals" or module.startswith("socialals.")
    return in_package and not cls.__name__.startswith("_")


def register(cls: type) -> None:
    """Record ``cls`` under its name when it is a public class of the package.

    A class created again under the same name (a module reload) replaces the old entry.
    """
    if _is_library_model(cls):
        _CLASSES[cls.__name__] = cls


def model_classes() -> dict:
    """The registered model classes by name, in the order they were defined."""
    return dict(_CLASSES)
