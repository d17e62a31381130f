"""The estimator :class:`FactorizationMachine`: hyperparameters, targets, the design-matrix
and DataFrame APIs; the solvers live in :mod:`._sgd` and :mod:`._cd`, the DataFrame design
in :mod:`._design`."""

from __future__ import annotations

import numbers
import time
import warnings
from typing import Callable, Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from .._foldin import FoldInMixin
from ..base import BaseRecommender, check_random_state
from ..data import Columns, Dataset
from ..exceptions import ConvergenceWarning, NotFittedError
from ._cd import _check_groups, _detect_groups, fit_cd
from ._design import build_design, entity_parts, pair_rows
from ._foldin import fold_in as _fold_in
from ._objective import LOSSES, _fm_decision
from ._sgd import fit_sgd

__all__ = ["FactorizationMachine"]

_SOLVERS = ("sgd", "als")
_SCHEDULES = ("constant", "invscaling")
_REG_SCALINGS = ("frequency", "none")


class FactorizationMachine(FoldInMixin, BaseRecommender):
    """Degree-2 factorization machine with SGD or coordinate-wise ALS.

    See :mod:`socialals.fm` for the model and the exact objective, and its solver modules
    for the solvers. SGD epochs run in a compiled single-threaded kernel that makes
    exactly the updates of the numpy reference (``socialals.config_context(compiled=False)``,
    and the fallback should the kernel fail to compile), so results do not depend on
    which is used beyond floating-point rounding.

    Parameters
    ----------
    factors : int, default 8
        Latent dimension k of the pairwise interactions.
    loss : {"squared", "logistic", "hinge"}, default "squared"
        ``"squared"`` for ratings; the others for binary labels ({-1, +1} or {0, 1}).
    solver : {"sgd", "als"}, default "sgd"
        ``"als"`` supports the squared loss only.
    iterations : int, default 30
        Epochs (SGD) or sweeps over all parameters (ALS).
    learning_rate : float, default 0.03
        Per-sample SGD step η (gradients are summed over a batch, with damping).
    batch_size : int, default 1024
        Rows per SGD step; 1 is classic SGD. A speed knob more than a statistical one
        (about 1024-2048 is fastest at k = 64, 4096 at k = 16 on 1M rows with the numpy
        kernel; the compiled kernel, used when numba is installed, is nearly insensitive
        to it).
    schedule : {"constant", "invscaling"}, default "constant"
        ``"invscaling"`` uses ``η / (1 + epoch)**power_t`` in epoch ``epoch`` (0-based).
    power_t : float, default 0.5
        Exponent of ``"invscaling"``.
    reg : float, default 0.05
        λ of the penalty on ``w`` and ``V`` (per occurrence with the default
        ``reg_scaling``; see :mod:`socialals.fm`).
    reg_w, reg_V : float or None, default None
        Separate λ for ``w`` and ``V``; None uses ``reg``.
    reg_w0 : float, default 0
        λ on the global bias ``w0``.
    reg_scaling : {"frequency", "none"}, default "frequency"
        Penalty weight of a parameter: the number of training rows its feature occurs
        in (λ per occurrence, libFM-SGD / ALS-WR style), or 1 (λ per parameter, libFM
        ALS / MCMC style).
    social_features : bool, default True
        In :meth:`fit`, add each user's friends (out-links, weights normalised to sum
        to 1) as a block of n_users features when a social frame is given.
    tol : float, default 0
        Stop when an epoch / iteration lowers the objective by at most ``tol`` times
        its previous value; 0 runs every iteration.
    random_state : None, int or numpy.random.Generator
        Seeds the initial ``V`` (normal, standard deviation ``init_scale``) and the SGD
        shuffles.
    dtype : {"float64", "float32"}, default "float64"
        Precision of the parameters and of the arithmetic (float32 is faster, and
        ALS's monotonicity then only holds to float32 rounding).
    init_scale : float, default 0.1
        Standard deviation of the initial ``V``. ``w`` starts at 0 and ``w0`` at the
        loss-optimal constant (the mean target for the squared loss, the log-odds of
        the positive rate for the logistic loss, 0 for the hinge loss).
    callback : callable(model, iteration, loss) -> bool or None, optional
        Called after every epoch / iteration with the fitted state so far (``predict``
        works inside it); returning True stops.

    Attributes
    ----------
    w0_ : float
    w_ : ndarray (n_features,)
    V_ : ndarray (n_features, factors)
    n_features_in_ : int
    classes_ : ndarray of 2 labels
        Classification losses only: the caller's (negative, positive) label coding.
    loss_history_ : ndarray
        The objective after every epoch / iteration.
    n_iter_ : int
    fit_seconds_ : float
        Wall time of the epochs / iterations.
    groups_ : ndarray (n_features,)
        ALS only: the group of every column (columns of a group never share a row).
    users_, items_ : pandas.Index
        After :meth:`fit` only, as for every socialals model.
    feature_blocks_ : dict of str -> [start, stop]
        After :meth:`fit` only: the column range of each design block (``"user"``,
        ``"item"``, and when present ``"social"``, ``"user_features"``,
        ``"item_features"``).

    New users need no refit: :meth:`fold_in` fits their own parameters (the weight and
    factor row of their user column) by the objective above restricted to their ratings,
    every other parameter fixed, with their friends' and side features in their design rows
    as in :meth:`fit`: an exact ridge solve for the squared loss, Newton (IRLS) steps for the
    logistic loss and dual coordinate descent for the hinge loss, each to convergence;
    :meth:`recommend_new` recommends to them, and ``fold_in(..., update=True)`` adds them
    to the model.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from socialals.fm import FactorizationMachine
    >>> X = sp.csr_matrix(np.array([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1]], float))
    >>> y = np.array([5.0, 3.0, 4.0, 1.0])
    >>> fm = FactorizationMachine(factors=2, solver="als", reg=0.001, iterations=50, random_state=0)
    >>> fm.fit_matrix(X, y).predict_matrix(X).round(1).tolist()
    [5.0, 3.0, 4.0, 1.0]
    """

    _include_social_users = True
    # what save() must keep besides the public learned attributes (see _persistence)
    _saved_private_attributes = ("_entity_ZU", "_entity_ZI", "_entity_meta")
    # the private fitted state a failed refit restores (see BaseRecommender._atomic_fit)
    _private_fitted_attributes = ("_seen", "_parts", "_converged") + _saved_private_attributes

    def __init__(
        self,
        factors: int = 8,
        loss: str = "squared",
        solver: str = "sgd",
        iterations: int = 30,
        learning_rate: float = 0.03,
        batch_size: int = 1024,
        schedule: str = "constant",
        power_t: float = 0.5,
        reg: float = 0.05,
        reg_w: Optional[float] = None,
        reg_V: Optional[float] = None,
        reg_w0: float = 0.0,
        reg_scaling: str = "frequency",
        social_features: bool = True,
        tol: float = 0.0,
        random_state=None,
        dtype: str = "float64",
        init_scale: float = 0.1,
        callback: Optional[Callable] = None,
    ):
        self.factors = factors
        self.loss = loss
        self.solver = solver
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.schedule = schedule
        self.power_t = power_t
        self.reg = reg
        self.reg_w = reg_w
        self.reg_V = reg_V
        self.reg_w0 = reg_w0
        self.reg_scaling = reg_scaling
        self.social_features = social_features
        self.tol = tol
        self.random_state = random_state
        self.dtype = dtype
        self.init_scale = init_scale
        self.callback = callback

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        self._check_int("factors", 1)
        self._check_choice("loss", LOSSES)
        self._check_choice("solver", _SOLVERS)
        self._check_int("iterations", 1)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not np.isfinite(lr) or lr <= 0:
            raise self._bad_param("learning_rate", "a float > 0")
        self._check_int("batch_size", 1)
        self._check_choice("schedule", _SCHEDULES)
        self._check_float("power_t", 0.0)
        self._check_float("reg", 0.0)
        for name in ("reg_w", "reg_V"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v < 0):
                raise self._bad_param(name, "None or a float >= 0")
        self._check_float("reg_w0", 0.0)
        self._check_choice("reg_scaling", _REG_SCALINGS)
        self._check_bool("social_features")
        self._check_float("tol", 0.0)
        self._check_dtype()
        self._check_float("init_scale", 0.0)
        if self.callback is not None and not callable(self.callback):
            raise self._bad_param("callback", "None or a callable(model, iteration, loss)")
        if self.solver == "als" and self.loss != "squared":
            raise ValueError(
                f"solver='als' of FactorizationMachine minimises the squared loss only; got loss={self.loss!r}. "
                "Use solver='sgd' for the hinge and logistic losses."
            )
        check_random_state(self.random_state, type(self).__name__)

    def _regs(self) -> tuple[float, float, float]:
        reg = float(self.reg)
        rw = reg if self.reg_w is None else float(self.reg_w)
        rv = reg if self.reg_V is None else float(self.reg_V)
        return float(self.reg_w0), rw, rv

    # ------------------------------------------------------------------ targets
    def _encode_target(self, y: np.ndarray) -> np.ndarray:
        if self.loss == "squared":
            self.__dict__.pop("classes_", None)
            return y.astype(np.float64)
        vals = np.unique(y)
        if len(vals) == 2 and set(vals.tolist()) == {-1.0, 1.0}:
            classes = np.array([-1, 1])
        elif len(vals) == 2 and set(vals.tolist()) == {0.0, 1.0}:
            classes = np.array([0, 1])
        else:
            shown = ", ".join(f"{v:g}" for v in vals[:6]) + (", ..." if len(vals) > 6 else "")
            raise ValueError(
                f"loss={self.loss!r} needs binary labels, coded {{-1, +1}} or {{0, 1}} with both classes "
                f"present; got {len(vals)} distinct value(s): {shown}."
            )
        self.classes_ = classes
        return np.where(y == classes[1], 1.0, -1.0)

    def _initial_w0(self, y: np.ndarray) -> float:
        if self.loss == "squared":
            return float(y.mean())
        if self.loss == "logistic":
            p = float(np.clip((y > 0).mean(), 1e-3, 1 - 1e-3))
            return float(np.log(p / (1 - p)))
        return 0.0

    # ------------------------------------------------------------------ matrix API
    def fit_matrix(self, X, y, *, groups=None) -> "FactorizationMachine":
        """Fit on a design matrix.

        Parameters
        ----------
        X : scipy sparse matrix or array-like, shape (n_samples, n_features)
            Feature values (converted to CSR of ``dtype``); every value finite.
        y : array-like, shape (n_samples,)
            Targets: ratings for the squared loss, labels {-1, +1} or {0, 1} otherwise.
        groups : array-like of int, shape (n_features,), optional
            ALS only: a group id per column; the columns of a group must never be
            non-zero in the same row (one-hot blocks), and each group is updated as one
            vectorised step. None detects groups (see :mod:`socialals.fm._cd`).

        Returns
        -------
        self
        """
        self._validate_params()
        dt = self._check_dtype()
        X = self._check_X(X, dt, "X")
        y = self._check_y(y, X.shape[0])
        if groups is not None:
            groups = _check_groups(X, groups)
        rng = check_random_state(self.random_state, type(self).__name__)
        with self._atomic_fit():  # starts unfitted: no DataFrame state survives from a fit()
            self._train(X, self._encode_target(y), groups, rng)
        return self

    @staticmethod
    def _check_X(X, dt, name: str) -> sp.csr_matrix:
        if sp.issparse(X):
            X = sp.csr_matrix(X, dtype=dt)
            data = X.data
        else:
            try:
                arr = np.asarray(X, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"'{name}' must be a numeric 2-D array or scipy sparse matrix: {exc}") from None
            if arr.ndim != 2:
                raise ValueError(f"'{name}' must be 2-D (n_samples, n_features); got shape {arr.shape}.")
            data = arr
            X = sp.csr_matrix(arr, dtype=dt)
        if X.ndim != 2:
            raise ValueError(f"'{name}' must be 2-D (n_samples, n_features); got shape {X.shape}.")
        if not np.isfinite(data).all():
            raise ValueError(f"'{name}' has {int((~np.isfinite(data)).sum())} NaN or infinite value(s).")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"'{name}' is empty (shape {X.shape}); at least one row and one column are needed.")
        X.sum_duplicates()
        X.eliminate_zeros()
        X.sort_indices()
        return X

    @staticmethod
    def _check_y(y, n: int) -> np.ndarray:
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"'y' must be numeric: {exc}") from None
        if y.ndim != 1 or len(y) != n:
            raise ValueError(f"'y' must be 1-D with one value per row of X ({n}); got shape {y.shape}.")
        if not np.isfinite(y).all():
            raise ValueError(f"'y' has {int((~np.isfinite(y)).sum())} NaN or infinite value(s).")
        return y

    def _check_matrix_fitted(self) -> None:
        if not hasattr(self, "V_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit() or fit_matrix() first."
            )

    def decision_function_matrix(self, X) -> np.ndarray:
        """Raw model output ŷ for every row of a design matrix (float64)."""
        self._check_matrix_fitted()
        X = self._check_X(X, self.V_.dtype, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"'X' has {X.shape[1]} columns; the model was fitted on {self.n_features_in_}.")
        return _fm_decision(X, self.w0_, self.w_, self.V_)

    def predict_matrix(self, X) -> np.ndarray:
        """Predictions for a design matrix: ŷ (squared loss) or labels in ``classes_``."""
        return self._to_labels(self.decision_function_matrix(X))

    def predict_proba_matrix(self, X) -> np.ndarray:
        """Logistic loss only: (n, 2) probabilities of ``classes_``."""
        self._require_logistic()
        return self._proba(self.decision_function_matrix(X))

    def _to_labels(self, s: np.ndarray) -> np.ndarray:
        if self.loss == "squared" or not hasattr(self, "classes_"):
            return s
        return np.where(s >= 0, self.classes_[1], self.classes_[0])

    def _require_logistic(self) -> None:
        if self.loss != "logistic":
            raise AttributeError(f"predict_proba needs loss='logistic'; this model has loss={self.loss!r}.")

    @staticmethod
    def _proba(s: np.ndarray) -> np.ndarray:
        p = expit(s)
        return np.column_stack([1.0 - p, p])

    # ------------------------------------------------------------------ DataFrame API
    def fit(
        self,
        ratings,
        social=None,
        *,
        user_features: Optional[pd.DataFrame] = None,
        item_features: Optional[pd.DataFrame] = None,
        user_labels=None,
        item_labels=None,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
        friend_col: str = "friend",
        weight_col: str = "weight",
    ) -> "FactorizationMachine":
        """Fit on a rating (or label) DataFrame.

        Parameters
        ----------
        ratings : DataFrame or scipy.sparse matrix
            ``user, item, rating`` rows (for the classification losses the rating column
            holds the labels), or a sparse user x item matrix (see
            :meth:`BaseRecommender.fit`).
        social : DataFrame, optional
            ``user, friend[, weight]`` links. With ``social_features=True`` each user's
            out-links become a normalised block of features; users known only through
            the graph are users of the model (scored from their friends' features).
        user_features, item_features : DataFrame, optional
            Numeric side features indexed by user / item label (one row per label).
            Known users or items without a row get zeros (with a DataWarning).
        user_labels, item_labels : array-like, optional
            Labels of the rows and columns of a sparse ``ratings`` (and of a sparse
            ``social``), as in :meth:`BaseRecommender.fit`.
        user_col, item_col, rating_col, friend_col, weight_col : str
            Column names, remembered for :meth:`predict`.

        Returns
        -------
        self
        """
        cols = Columns(user_col, item_col, rating_col, friend_col, weight_col)
        return self._fit_frames(ratings, social, cols, user_labels=user_labels, item_labels=item_labels,
                                user_features=user_features, item_features=item_features)

    def _fit(self, data: Dataset, rng: np.random.Generator, user_features=None, item_features=None) -> None:
        design = build_design(data, self.social_features, user_features, item_features, self._check_dtype())
        self.feature_blocks_ = design.blocks
        self._entity_ZU, self._entity_ZI, self._entity_meta = design.ZU, design.ZI, design.meta
        y = self._encode_target(data.R.data.astype(np.float64))
        self._train(design.X, y, design.groups, rng)

    # ------------------------------------------------------------------ scoring (DataFrame API)
    @property
    def _entity(self):
        """The DataFrame design's entity blocks (None after ``fit_matrix``)."""
        meta = self.__dict__.get("_entity_meta")
        if meta is None:
            return None
        return {"ZU": self._entity_ZU, "ZI": self._entity_ZI, **meta}

    def _after_load(self) -> None:
        self._refresh_parts()

    def _refresh_parts(self) -> None:
        if getattr(self, "_entity", None) is not None:
            self._parts = entity_parts(self._entity, self.w_, self.V_)

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        a, PU, b, PI = self._parts
        return self.w0_ + a[u] + b[i] + np.einsum("ij,ij->i", PU[u], PI[i])

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        a, PU, b, PI = self._parts
        return PU[u] @ PI.T + (self.w0_ + a[u])[:, None] + b[None, :]

    def _user_vectors(self) -> np.ndarray:
        return self._parts[1]  # P_U: a user's whole embedding (one-hot, social, side features)

    def _item_vectors(self) -> np.ndarray:
        return self._parts[3]  # P_I

    def _fallback(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        # unknown user or item: leave its features out of the design row
        a, PU, b, PI = self._parts
        ku, ki = u >= 0, i >= 0
        uu, ii = np.maximum(u, 0), np.maximum(i, 0)
        out = np.full(len(u), self.w0_, dtype=np.float64)
        out += np.where(ku, a[uu], 0.0) + np.where(ki, b[ii], 0.0)
        both = ku & ki
        if both.any():
            out[both] += np.einsum("ij,ij->i", PU[uu[both]], PI[ii[both]])
        return out

    def design_matrix(self, pairs) -> sp.csr_matrix:
        """The FM design rows of (user, item) pairs, as built by :meth:`fit`.

        Columns follow ``feature_blocks_``. An unknown user or item contributes no
        feature (the row then holds only the known side), which is exactly how
        :meth:`predict` scores it, so ``decision_function_matrix(design_matrix(pairs))``
        equals ``decision_function(pairs)``.
        """
        self._check_fitted()
        users, items = self._pairs_to_labels(pairs)
        return pair_rows(self._entity, self.users_.get_indexer(users), self.items_.get_indexer(items), self.V_.dtype)


    def decision_function(self, pairs) -> np.ndarray:
        """Raw model output ŷ for (user, item) pairs (as :meth:`predict` of the ALS models)."""
        return BaseRecommender.predict(self, pairs)

    def predict(self, pairs) -> np.ndarray:
        """Predicted ratings (squared loss) or labels in ``classes_`` for (user, item) pairs.

        Unknown users or items are scored without their features (with a DataWarning).
        """
        return self._to_labels(BaseRecommender.predict(self, pairs))

    def predict_proba(self, pairs) -> np.ndarray:
        """Logistic loss only: (n, 2) probabilities of ``classes_`` for (user, item) pairs."""
        self._require_logistic()
        return self._proba(BaseRecommender.predict(self, pairs))

    # ------------------------------------------------------------------ fold-in
    _fold_in_keywords = ("user_features",)

    def fold_in(self, ratings: Optional[pd.DataFrame] = None, social: Optional[pd.DataFrame] = None, *,
                update: bool = False, user_features: Optional[pd.DataFrame] = None) -> pd.DataFrame:
        """Own parameters of new users, fitted with every other parameter held fixed.

        A new user's own parameters are the weight ``w_u`` and factor row ``v_u`` of its
        column of the one-hot user block; its friend and side features enter its design
        rows exactly as in :meth:`fit` (their parameters, shared with other users, stay
        fixed). They minimise the part of the written objective that involves them, with
        the model's own λ and penalty weights: exactly for the squared loss (a ridge
        system of size k+1 per user), by Newton's method (IRLS) for the logistic loss
        and by dual coordinate descent for the hinge loss, each to convergence
        (:mod:`socialals.fm._foldin` writes the row objective and the solvers out). A
        user with no ratings keeps ``w_u = 0, v_u = 0`` and is scored from its friends'
        and side features. The classification losses need ``reg_w > 0`` and ``reg_V > 0``.

        Parameters
        ----------
        ratings : DataFrame, optional
            The new users' ratings (labels for the classification losses, coded as in
            ``fit``), columns as in ``fit``. A label the model already knows is folded in
            afresh from these ratings (and links). Ratings of items the model does not
            know are dropped with a :class:`~socialals.DataWarning`.
        social : DataFrame, optional
            Used when the model has social features: the new users' out-links (``user``
            a new user, or a user unknown to the model: someone with friends and no
            ratings yet), normalised as in ``fit``. Friends neither known nor new are
            dropped with a ``DataWarning``, and so are links from known users to new ones
            (a known user's features are not changed).
        update : bool, default False
            Also add the new users to the model (a column each in the user block and, with
            social features, in the social block, with their parameters; known labels are
            replaced), so that ``predict``, ``recommend`` and ``design_matrix`` know them
            and ``save`` stores them.
        user_features : DataFrame, optional
            Side features of the new users (indexed by label, the columns of ``fit``'s
            ``user_features``) for a model fitted with them; users without a row get zeros
            (with a ``DataWarning``).

        Returns
        -------
        DataFrame
            Indexed by the new users' labels; columns ``factor_0 … factor_{k-1}`` (``v_u``)
            and ``bias`` (``w_u``).
        """
        return _fold_in(self, ratings, social, update=update, user_features=user_features)

    # ------------------------------------------------------------------ training
    def _train(self, X: sp.csr_matrix, y: np.ndarray, groups: Optional[np.ndarray], rng: np.random.Generator) -> None:
        dt = self._check_dtype()
        n, p = X.shape
        k = int(self.factors)
        present = np.bincount(X.indices, minlength=p) > 0
        V = (rng.standard_normal((p, k)) * self.init_scale).astype(dt)
        V[~present] = 0
        w = np.zeros(p, dtype=dt)
        w0 = self._initial_w0(y)
        self.n_features_in_ = p
        if self.solver == "als":
            if groups is None:
                groups = _detect_groups(X)
            self.groups_ = groups
            fit_cd(self, X, y, w0, w, V, groups)
        else:
            self.__dict__.pop("groups_", None)
            fit_sgd(self, X, y, w0, w, V, rng)

    def _store(self, w0, w, V, history) -> None:
        self.w0_ = float(w0)
        self.w_ = w
        self.V_ = V
        self.loss_history_ = np.asarray(history, dtype=np.float64)
        self.n_iter_ = len(history)
        self._refresh_parts()

    def _after_iteration(self, it: int, history: list) -> bool:
        """Callback and tolerance; True stops."""
        loss = history[-1]
        if self.callback is not None and self.callback(self, it, loss):
            return True
        if self.tol > 0 and it > 0 and history[-2] - loss <= self.tol * abs(history[-2]):
            self._converged = True
            return True
        return False

    def _finish(self, t0: float, history: list) -> None:
        self.fit_seconds_ = time.perf_counter() - t0
        converged = self.__dict__.pop("_converged", False)
        if self.tol > 0 and not converged and len(history) == int(self.iterations):
            last = (history[-2] - history[-1]) / abs(history[-2]) if len(history) > 1 else float("nan")
            warnings.warn(
                f"{type(self).__name__} did not reach tol={self.tol} in {self.iterations} iterations "
                f"(last relative decrease {last:.3g}).",
                ConvergenceWarning,
                stacklevel=4,
            )

    # ---- SGD
