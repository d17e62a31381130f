"""The ALS family: ``ALS``, ``RegularizedALS`` and ``SocialALS``.

One fit loop (:meth:`_ALSFamily._fit`: initialisation, sweeps, loss history, tolerance,
callback) knows no model. Each class supplies, in this file:

* ``_prepare(fit)``: its per-fit constants (regulariser diagonals, the social graph);
* ``_system(fit, side)``: the half-step as one linear system per row, a
  :class:`~socialals._linalg.RowSystem` (its docstring writes the system out);
* ``_assign(fit, side, X)``: the solved rows back into factors (and biases);
* ``_objective(fit, sse)``: the objective its docstring states, after a sweep.

A term of the objective is therefore one class's business: the social term is
``SocialALS``'s (two lines in ``_prepare``, three in ``_system``, one in ``_objective``), the
missing-data term ``RegularizedALS``'s. The maths of the solve is :mod:`socialals._linalg`,
its reference there too; the tests are ``tests/test_als_math.py``.

Notation: ``Ω`` the observed (user, item) pairs, ``n_i`` the number of ratings of user ``i``,
``m_j`` that of item ``j``, ``U`` (users x k), ``V`` (items x k), ``μ`` the training mean,
``b`` and ``c`` user and item biases, ``W = (S + Sᵀ)/2`` the symmetrised social weights and
``d_i = Σ_f w_if``.

Threads
-------
Each half-step's rows are cut into blocks of about equal cost; each block is one joblib
task running the compiled kernel serially without the GIL, on ``n_jobs`` threads, or on
the workers of another joblib backend (``joblib.parallel_config(backend="dask")`` with a
``dask.distributed.Client``: see :mod:`socialals._blocks`). Rows are independent, so
results are bit-identical for any ``n_jobs``, block count and backend. For the duration of
``fit`` the BLAS pool is limited to one thread (threadpoolctl): the dense products of a fit
are small, and BLAS threads would only contend with the kernel's. ``recommend`` scores
blocks of users on ``n_jobs`` threads, each with one BLAS thread.
"""

from __future__ import annotations

import time
import warnings
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs

from . import _kernels
from ._config import compiled_or_reference, one_blas_thread
from ._dask import ClusterRows, on_ratings, solve_held
from ._linalg import RowSystem, solve_rows
from .base import BaseRecommender
from ._foldin import FoldInMixin
from .data import Dataset
from .exceptions import ConvergenceWarning
from .social import symmetric_weights
from .social import neighbour_sums as social_sums
from .social import sq_distances as social_distances

__all__ = ["ALS", "RegularizedALS", "SocialALS"]


def _rating_targets(M, mu, bias, w0, r0):
    """The targets of a half-step's observed ratings (the rows of the CSR ``M``, columns
    the other side) and what their residuals are measured against (None: the targets).
    ``mu`` and ``bias`` (the other side's biases, or None) offset the ratings; ``w0 > 0``
    adds the missing-data term's pull towards ``r0`` (see :class:`RegularizedALS`). The
    ratings may be stored as float32 (:func:`socialals.data._rating_matrices`); offset
    targets are computed in float64."""
    r = M.data
    if bias is not None or w0 > 0:
        r = r.astype(np.float64, copy=False)
    if w0 > 0:
        o = (mu + bias.astype(np.float64) if bias is not None else np.zeros(M.shape[1]))[M.indices]
        return r - w0 * r0 - (1.0 - w0) * o, np.stack([r - o, r0 - o])  # observed residuals, as if unobserved
    return (r - mu - bias[M.indices] if bias is not None else r), None


def _draw_normal(rng: np.random.Generator, scale: float, out: np.ndarray) -> None:
    """``out[:] = rng.standard_normal(out.shape) * scale`` (drawn and scaled in float64),
    without a temporary where ``out`` is float64."""
    if out.dtype == np.float64:
        rng.standard_normal(out=out)
        out *= scale
    else:
        draw = rng.standard_normal(out.shape)
        draw *= scale
        out[:] = draw


def _threads(fit) -> int:
    """The fit's (or fold-in's) ``effective_n_jobs``, asked once: joblib reads the CPU quota
    files on every call, and a fold-in's sweeps are short."""
    if getattr(fit, "n_threads", None) is None:
        fit.n_threads = effective_n_jobs(fit.n_jobs)
    return fit.n_threads


def _weighted_sum(lam, v: np.ndarray) -> float:
    """``Σ_i λ_i v_i`` for per-row ``λ`` (an array) or one ``λ`` (a number)."""
    return float(lam @ v) if np.ndim(lam) else float(lam) * float(v.sum())


class _ALSFamily(FoldInMixin, BaseRecommender):
    """The fit loop. Subclasses supply ``_prepare``, ``_system``, ``_assign``, ``_objective``."""

    _fits_dask_frames = True

    def __init__(self, factors, iterations, tol, n_jobs, random_state, dtype, init_scale, callback):
        """The parameters every class has (each class's own ``__init__`` states them and their defaults)."""
        self.factors = factors
        self.iterations = iterations
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.dtype = dtype
        self.init_scale = init_scale
        self.callback = callback

    def _validate_common(self) -> None:
        self._check_int("factors", 1)
        self._check_int("iterations", 1)
        self._check_float("tol", 0.0)
        self._check_float("init_scale", 0.0)
        if not self.init_scale > 0:
            raise self._bad_param("init_scale", "a float > 0 (zero factors are a fixed point of ALS)")
        self._check_n_jobs()
        self._check_dtype()
        if self.callback is not None and not callable(self.callback):
            raise self._bad_param("callback", "None or a callable(model, iteration, loss)")

    def _uses_biases(self) -> bool:
        return False

    # ------------------------------------------------------------------ the loop
    def _fit(self, data: Dataset, rng: np.random.Generator) -> None:
        k = int(self.factors)
        dt = self._check_dtype()
        n_rated = data.n_rated_users
        # Users known only through the social graph draw their start last, so they change
        # nobody else's: SocialALS(alpha=0) starts exactly where RegularizedALS does.
        U = np.empty((data.n_users, k), dtype=dt)
        V = np.empty((data.n_items, k), dtype=dt)
        _draw_normal(rng, self.init_scale, U[:n_rated])
        _draw_normal(rng, self.init_scale, V)
        _draw_normal(rng, self.init_scale, U[n_rated:])
        fit = SimpleNamespace(
            data=data, k=k, dtype=dt, U=U, V=V, n_jobs=self.n_jobs,
            rows={"user": data.R, "item": data.Rt},
            # the kernel's row order, once per fit (it only balances threads)
            order={side: _kernels.row_order(np.diff(M.indptr), k) for side, M in (("user", data.R), ("item", data.Rt))},
            cache={},  # what a Dask cluster holds for this fit (socialals._dask)
        )
        del U, V  # fit owns the factors: locals would keep the first ones alive through every sweep
        self._prepare(fit)
        solve = solve_held if isinstance(data.R, ClusterRows) else solve_rows  # a Dask frame's blocks
        limit = one_blas_thread()
        history: list[float] = []
        t0 = time.perf_counter()
        converged = False
        try:
            for it in range(int(self.iterations)):
                for side in ("user", "item"):  # the user step uses the friends' previous factors (Jacobi)
                    X, sse = solve(self._system(fit, side), fit.order[side], want_sse=side == "item",
                                   n_jobs=self.n_jobs, cache=fit.cache)
                    self._assign(fit, side, X)
                history.append(self._objective(fit, sse))
                self._store(fit, history)
                self.fit_seconds_ = time.perf_counter() - t0
                if self.callback is not None and self.callback(self, it, history[-1]):
                    break
                if self.tol > 0 and it > 0 and history[-2] - history[-1] <= self.tol * abs(history[-2]):
                    converged = True
                    break
        finally:
            limit.restore_original_limits()
            fit.cache.clear()  # releases what a cluster held for this fit
        self.fit_seconds_ = time.perf_counter() - t0
        if self.tol > 0 and not converged and len(history) == int(self.iterations):
            last = (history[-2] - history[-1]) / abs(history[-2]) if len(history) > 1 else float("nan")
            warnings.warn(
                f"{type(self).__name__} did not reach tol={self.tol} in {self.iterations} iterations "
                f"(last relative decrease {last:.3g}).",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _store(self, fit, history) -> None:
        self.user_factors_ = fit.U
        self.item_factors_ = fit.V
        self.loss_history_ = np.asarray(history, dtype=np.float64)
        self.n_iter_ = len(history)

    # ------------------------------------------------------------------ plain ALS's half-step
    def _prepare(self, fit) -> None:
        pass

    def _system(self, fit, side: str) -> RowSystem:
        M = fit.rows[side]
        targets, _ = on_ratings(M, _rating_targets, 0.0, None, 0.0, 0.0)
        return RowSystem(M.indptr, M.indices, targets, fit.V if side == "user" else fit.U)

    def _assign(self, fit, side: str, X: np.ndarray) -> None:
        if side == "user":
            fit.U = X
        else:
            fit.V = X

    def _objective(self, fit, sse: np.ndarray) -> float:
        return 0.5 * float(sse[:, 0].sum())

    def _fold_in_state(self, fit, new) -> None:
        """Per-class state of a fold-in beyond ``_prepare`` (the model's own constants)."""

    def _fold_in_again(self, fit, X) -> bool:
        """Whether the fold-in needs another sweep (links among new users)."""
        return False

    # ------------------------------------------------------------------ scoring
    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        s = np.einsum("ij,ij->i", self.user_factors_[u], self.item_factors_[i], dtype=np.float64)
        if self._uses_biases():
            s += self.global_mean_ + self.user_bias_[u] + self.item_bias_[i]
        return s

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        s = self.user_factors_[u] @ self.item_factors_.T
        if self._uses_biases():
            s = s + (self.item_bias_[None, :] + (self.global_mean_ + self.user_bias_[u])[:, None])
        return s

    def _fallback(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        if not self._uses_biases():
            return super()._fallback(u, i)
        out = np.full(len(u), self.global_mean_, dtype=np.float64)
        out += np.where(u >= 0, self.user_bias_[np.maximum(u, 0)], 0.0)
        out += np.where(i >= 0, self.item_bias_[np.maximum(i, 0)], 0.0)
        return out


_COMMON_DOC = """
    factors : int, default 10
        Latent dimension k.
    iterations : int, default 15
        Maximum number of sweeps (a user half-step then an item half-step).
    tol : float, default 0
        Stop when a sweep lowers the objective by at most ``tol`` times its previous value;
        0 runs every iteration.
    n_jobs : int or None, default -1
        joblib workers (threads) over batches of rows; -1 uses every core. Results do not
        depend on it. See the module notes on BLAS threads.
    random_state : None, int or numpy.random.Generator
        Seeds the initial factors (normal, standard deviation ``init_scale``).
    dtype : {"float64", "float32"}, default "float64"
        Precision of the factors. With float32 the compiled kernel sums the Gram
        matrices in float32 (as Spark, implicit and LensKit do) and factorises them in
        float64; the numpy path solves float32 systems in float64.
    init_scale : float, default 0.1
        Standard deviation of the initial factors.
    callback : callable(model, iteration, loss) -> bool or None, optional
        Called after every sweep with the fitted state so far; returning True stops.
"""

_ATTR_DOC = """
    Attributes
    ----------
    users_, items_ : pandas.Index
        Labels in factor-row order.
    user_factors_ : ndarray (n_users, k)
    item_factors_ : ndarray (n_items, k)
    loss_history_ : ndarray
        The objective above after every sweep.
    n_iter_ : int
        Sweeps run.
    fit_seconds_ : float
        Wall time of the sweeps.
"""


class ALS(_ALSFamily):
    __doc__ = (
        """Plain, unregularised alternating least squares.

    Minimises ::

        L(U, V) = 1/2 Σ_{(i,j) ∈ Ω} (r_ij − u_iᵀ v_j)²

    Each half-step sets every row to its least-squares solution; a row with fewer ratings
    than factors (a singular system) gets the minimum-norm least-squares solution. Without
    regularisation the model interpolates sparse rows and overfits; it is the reference
    point, not the model to deploy.

    Parameters
    ----------"""
        + _COMMON_DOC
        + _ATTR_DOC
        + """
    Examples
    --------
    >>> import pandas as pd
    >>> from socialals import ALS
    >>> r = pd.DataFrame({"user": [1, 1, 2, 2], "item": ["a", "b", "a", "c"], "rating": [4., 3., 5., 2.]})
    >>> ALS(factors=1, iterations=5, random_state=0).fit(r).predict(r).round(1).tolist()
    [4.0, 3.0, 5.0, 2.0]
    """
    )

    def __init__(self, factors: int = 10, iterations: int = 15, tol: float = 0.0, n_jobs: Optional[int] = -1,
                 random_state=None, dtype: str = "float64", init_scale: float = 0.1,
                 callback: Optional[Callable] = None):
        super().__init__(factors, iterations, tol, n_jobs, random_state, dtype, init_scale, callback)

    def _validate_params(self) -> None:
        self._validate_common()


class RegularizedALS(_ALSFamily):
    __doc__ = (
        """L2-regularised ALS, optionally with ALS-WR weighting and biases.

    Minimises ::

        L = 1/2 Σ_{(i,j) ∈ Ω} (r_ij − μ − b_i − c_j − u_iᵀ v_j)²
            + λ/2 Σ_i λ_i ‖u_i‖² + λ/2 Σ_j λ_j ‖v_j‖²
            + λ_b/2 Σ_i λ_i b_i² + λ_b/2 Σ_j λ_j c_j²
            + w₀/2 Σ_{(i,j) ∉ Ω} (r₀ − μ − b_i − c_j − u_iᵀ v_j)²

    with ``λ = reg`` and ``λ_b = bias_reg`` (``λ_b = λ`` when ``bias_reg`` is None);
    ``λ_i = n_i`` and ``λ_j = m_j`` when ``weighted_reg=True`` (ALS-WR, Zhou et al. 2008,
    as Spark MLlib does), else 1. Without ``biases`` the terms ``μ``, ``b`` and ``c`` are
    absent. With biases, ``μ`` is the training mean (fixed) and each row's bias is solved
    jointly with its factors in one (k+1)-dimensional normal equation.

    The user half-step solves, for every user at once (batched), ::

        (Σ_{j ∈ Ω_i} ṽ_j ṽ_jᵀ + λ_i diag(λ, …, λ, λ_b)) (u_i, b_i) = Σ_{j ∈ Ω_i} (r_ij − μ − c_j) ṽ_j

    with ``ṽ_j = (v_j, 1)`` (without biases: ``(Σ v_j v_jᵀ + λ λ_i I) u_i = Σ r_ij v_j``),
    and the item half-step is its mirror image.

    **The missing-data term** (``w₀ = unobserved_weight > 0``, ``r₀ = unobserved_rating``)
    makes the model learn which items a user does *not* rate, which is what top-N
    recommendation needs (Steck, KDD 2010; the Gram trick of Hu, Koren & Volinsky, ICDM
    2008). Unobserved pairs are never materialised: with ``o_ij = μ + c_j`` the user
    system becomes ::

        ((1 − w₀) Σ_{j ∈ Ω_i} ṽ_j ṽ_jᵀ + w₀ Σ_j ṽ_j ṽ_jᵀ + D_i) (u_i, b_i)
            = Σ_{j ∈ Ω_i} (r_ij − w₀ r₀ − (1 − w₀) o_ij) ṽ_j + w₀ Σ_j (r₀ − o_ij) ṽ_j

    whose shared parts (sums over all items) are formed once per half-step, so a row
    still costs O(n_i k² + k³); the objective is evaluated through the same identities.
    With ``w₀ = 0`` (the default) the model is the rating predictor above, unchanged.
    See the README's "Top-N" section for the settings that rank well.

    Parameters
    ----------
    reg : float, default 0.1
        λ.
    weighted_reg : bool, default False
        Scale λ (and λ_b) by each row's rating count (ALS-WR).
    biases : bool, default False
        Add the global mean and regularised user and item biases.
    bias_reg : float or None, default None
        λ_b, the regularisation of the biases (as BiasedMF in Surprise and LibRec has its
        own); None uses ``reg``. Ignored without ``biases``.
    unobserved_weight : float, default 0
        w₀ >= 0, the weight of every unobserved (user, item) pair; 0 switches the term off.
    unobserved_rating : float, default 0
        r₀, the rating the missing-data term pulls unobserved pairs towards."""
        + _COMMON_DOC
        + _ATTR_DOC
        + """    global_mean_, user_bias_, item_bias_ : float, ndarray, ndarray
        With ``biases=True`` only.

    Examples
    --------
    >>> from socialals import RegularizedALS
    >>> from socialals.datasets import make_social_ratings  # doctest: +SKIP
    >>> ratings, social = make_social_ratings(random_state=0)  # doctest: +SKIP
    >>> model = RegularizedALS(factors=8, reg=0.1, biases=True, random_state=0).fit(ratings)  # doctest: +SKIP
    """
    )

    def __init__(self, factors: int = 10, reg: float = 0.1, weighted_reg: bool = False, biases: bool = False,
                 iterations: int = 15, tol: float = 0.0, n_jobs: Optional[int] = -1, random_state=None,
                 dtype: str = "float64", init_scale: float = 0.1, callback: Optional[Callable] = None,
                 bias_reg: Optional[float] = None, unobserved_weight: float = 0.0, unobserved_rating: float = 0.0):
        super().__init__(factors, iterations, tol, n_jobs, random_state, dtype, init_scale, callback)
        self.reg = reg
        self.weighted_reg = weighted_reg
        self.biases = biases
        self.bias_reg = bias_reg
        self.unobserved_weight = unobserved_weight
        self.unobserved_rating = unobserved_rating

    def _validate_params(self) -> None:
        self._validate_common()
        self._check_float("reg", 0.0)
        self._check_bool("weighted_reg")
        self._check_bool("biases")
        self._check_float("bias_reg", 0.0, optional=True)
        self._check_float("unobserved_weight", 0.0)
        self._check_float("unobserved_rating", -np.inf)

    def _uses_biases(self) -> bool:
        return bool(self.biases)

    def _prepare(self, fit) -> None:
        k = fit.k
        lam = float(self.reg)
        lam_b = float(self.reg if self.bias_reg is None else self.bias_reg) if self.biases else 0.0
        fit.biases = bool(self.biases)
        fit.kk = k + 1 if fit.biases else k
        fit.mu = fit.data.mean_rating() if fit.biases else 0.0
        fit.bias = ({"user": np.zeros(fit.data.n_users, fit.dtype), "item": np.zeros(fit.data.n_items, fit.dtype)}
                    if fit.biases else {})
        fit.w0, fit.r0 = float(self.unobserved_weight), float(self.unobserved_rating)
        fit.diag, fit.lam = {}, {}
        for side, M in fit.rows.items():
            # λ_i: the row's count with ALS-WR weighting, else 1 (one number for every row);
            # the bias column gets λ_b λ_i
            scale = np.diff(M.indptr).astype(np.float64) if self.weighted_reg else 1.0
            fit.lam[side] = (lam * scale, lam_b * scale)
            # in the model's dtype (no float64 copy); one column, the same for every factor,
            # unless the bias column's differs
            d = np.empty((M.shape[0], fit.kk if fit.biases else 1), dtype=fit.dtype)
            d[:] = np.reshape(fit.lam[side][0], (-1, 1))
            if fit.biases:
                d[:, k] = fit.lam[side][1]
            fit.diag[side] = d

    def _fold_in_state(self, fit, new) -> None:
        if fit.biases:  # the fitted model's mean and item biases, not the new users'
            fit.mu = self.global_mean_
            fit.bias["item"] = self.item_bias_

    def _design(self, fit, F: np.ndarray) -> np.ndarray:
        """``F`` with a column of ones for the biases."""
        if not fit.biases:
            return F
        out = np.ones((F.shape[0], fit.kk), dtype=fit.dtype)
        out[:, : fit.k] = F
        return out

    def _system(self, fit, side: str) -> RowSystem:
        M = fit.rows[side]
        other = "item" if side == "user" else "user"
        Y = self._design(fit, fit.V if side == "user" else fit.U)
        t, goals = on_ratings(M, _rating_targets, fit.mu, fit.bias[other] if fit.biases else None, fit.w0, fit.r0)
        system = RowSystem(M.indptr, M.indices, t, Y, diag=fit.diag[side], sse_targets=goals)
        if fit.w0 > 0:  # the missing-data term (class docstring): shared parts once per half-step
            w0, r0 = fit.w0, fit.r0
            o_all = fit.mu + fit.bias[other].astype(np.float64) if fit.biases else np.zeros(len(Y))
            Y64 = Y.astype(np.float64)
            system.gram = w0 * (Y64.T @ Y64)
            system.rhs = w0 * (Y64.T @ (r0 - o_all))
            system.scale = 1.0 - w0
        return system

    def _assign(self, fit, side: str, X: np.ndarray) -> None:
        super()._assign(fit, side, np.ascontiguousarray(X[:, : fit.k]))
        if fit.biases:
            fit.bias[side] = X[:, fit.k].copy()

    def _objective(self, fit, sse: np.ndarray) -> float:
        loss = 0.5 * float(sse[:, 0].sum())
        (lam_u, lam_bu), (lam_i, lam_bi) = fit.lam["user"], fit.lam["item"]
        if self.reg > 0:  # λ_i per row (ALS-WR) or one λ
            nu = np.einsum("ij,ij->i", fit.U, fit.U, dtype=np.float64)
            ni = np.einsum("ij,ij->i", fit.V, fit.V, dtype=np.float64)
            loss += 0.5 * _weighted_sum(lam_u, nu) + 0.5 * _weighted_sum(lam_i, ni)
        if fit.biases and np.any(lam_bu):
            bu, bi = fit.bias["user"].astype(np.float64), fit.bias["item"].astype(np.float64)
            loss += 0.5 * _weighted_sum(lam_bu, bu**2) + 0.5 * _weighted_sum(lam_bi, bi**2)
        if fit.w0 > 0:
            # Σ over all pairs minus Σ over the observed ones of (r₀ − r̂)²; the first by
            # (r₀ − r̂_ij) = x_iᵀ y_j with x_i = (u_i, b_i, 1, 1), y_j = (−v_j, −1, −c_j, r₀ − μ)
            n_u, n_i, bias = fit.data.n_users, fit.data.n_items, fit.bias
            X = np.column_stack([fit.U, *([bias["user"], np.ones(n_u)] if fit.biases else []), np.ones(n_u)])
            Yj = np.column_stack([-fit.V, *([-np.ones(n_i), -bias["item"]] if fit.biases else []),
                                  np.full(n_i, fit.r0 - fit.mu)])
            X, Yj = X.astype(np.float64), Yj.astype(np.float64)
            everything = float(np.sum((X.T @ X) * (Yj.T @ Yj)))
            loss += 0.5 * fit.w0 * (everything - float(sse[:, 1].sum()))
        return loss

    def _store(self, fit, history) -> None:
        super()._store(fit, history)
        if fit.biases:
            self.global_mean_ = fit.mu
            self.user_bias_ = fit.bias["user"]
            self.item_bias_ = fit.bias["item"]


class SocialALS(RegularizedALS):
    __doc__ = (
        """ALS with social regularisation (Ma et al., "Recommender Systems with Social
    Regularization", WSDM 2011).

    Minimises the :class:`RegularizedALS` objective plus ::

        α/2 Σ_{linked pairs {i, f}} w_if ‖u_i − u_f‖²

    with ``α = alpha`` and ``W = (S + Sᵀ)/2`` the symmetrised similarities ``S`` of the
    (possibly directed) links. The exact minimiser over ``u_i`` with everything else fixed
    solves ::

        (Σ_{j ∈ Ω_i} v_j v_jᵀ + (λ λ_i + α d_i) I) u_i = Σ_{j ∈ Ω_i} r̃_ij v_j + α Σ_f w_if u_f

    with ``d_i = Σ_f w_if``. The user half-step solves it for all users at once with the
    friends' factors of the previous sweep (Jacobi), so batches are independent; with
    non-negative weights it still never increases the objective (the decrease is
    ``½ δᵀ(D + N)δ`` with ``D + N ⪰ λI``, or ``min(λ, λ_b) I`` with biases, N = αW ⊗ I,
    because the signless Laplacian of W is positive semidefinite).

    Users who appear only in the social graph are users of the model: they have no rating,
    so their factors are ``α Σ_f w_if u_f / (λ λ_i + α d_i)`` — their friends' weighted mean,
    shrunk — and they can be recommended to.

    Parameters
    ----------
    reg : float, default 0.1
        λ.
    alpha : float, default 0.1
        α, the weight of the social term. 0 gives :class:`RegularizedALS`'s factors for every
        rated user and item, except with ``unobserved_weight > 0``: users known only through
        the graph are users of the model, so their unobserved pairs enter the missing-data
        term (and, slightly, the item factors).
    similarity : {None, "vss", "pcc"}, default None
        ``None`` uses the social frame's ``weight`` column (1 where absent). ``"vss"`` and
        ``"pcc"`` multiply it by Ma et al.'s similarity of each link computed from co-rated
        items (PCC mapped to [0, 1] by (x + 1)/2); a link with no co-rated item gets 0.5
        (see :mod:`socialals.social`).
    weighted_reg, biases : bool
        As in :class:`RegularizedALS`.
    bias_reg : float or None, default None
        λ_b, as in :class:`RegularizedALS` (None: ``reg``). The social term does not
        involve the biases."""
        + _COMMON_DOC
        + _ATTR_DOC
        + """    social_weights_ : scipy.sparse.csr_matrix
        The symmetric ``W`` used (None with ``alpha=0``).

    Examples
    --------
    >>> import pandas as pd
    >>> from socialals import SocialALS
    >>> r = pd.DataFrame({"user": ["a", "a", "b"], "item": [1, 2, 1], "rating": [5., 3., 4.]})
    >>> s = pd.DataFrame({"user": ["a", "c"], "friend": ["b", "a"]})
    >>> m = SocialALS(factors=2, reg=0.1, alpha=1.0, random_state=0).fit(r, s)
    >>> list(m.users_)  # "c" is known only through the graph
    ['a', 'b', 'c']
    """
    )

    _include_social_users = True

    def __init__(self, factors: int = 10, reg: float = 0.1, alpha: float = 0.1, similarity: Optional[str] = None,
                 weighted_reg: bool = False, biases: bool = False, iterations: int = 15, tol: float = 0.0,
                 n_jobs: Optional[int] = -1, random_state=None, dtype: str = "float64", init_scale: float = 0.1,
                 callback: Optional[Callable] = None, bias_reg: Optional[float] = None,
                 unobserved_weight: float = 0.0, unobserved_rating: float = 0.0):
        super().__init__(factors=factors, reg=reg, weighted_reg=weighted_reg, biases=biases, iterations=iterations,
                         tol=tol, n_jobs=n_jobs, random_state=random_state, dtype=dtype, init_scale=init_scale,
                         callback=callback, bias_reg=bias_reg, unobserved_weight=unobserved_weight,
                         unobserved_rating=unobserved_rating)
        self.alpha = alpha
        self.similarity = similarity

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_float("alpha", 0.0)
        self._check_choice("similarity", (None, "vss", "pcc"))

    def _social_weights(self, data: Dataset) -> Optional[sp.csr_matrix]:
        """W of the fit's links; the edge arrays are dropped from ``data`` once W holds the graph."""
        if not data.has_social:
            return None
        w = data.social_weight
        if self.similarity is not None:
            w = w * data.edge_similarity(self.similarity, effective_n_jobs(self.n_jobs))
        W = symmetric_weights(data.n_users, data.social_src, data.social_dst, w).tocsr()
        data.social_src = data.social_dst = data.social_weight = None  # a fit's own Dataset: W replaces them
        return W

    # Everything social: W and its degrees (here), α W U (``_system``), the term (``_objective``).
    def _prepare(self, fit) -> None:
        super()._prepare(fit)
        fit.alpha = float(self.alpha)
        fit.W = self._social_weights(fit.data) if fit.alpha > 0 else None
        self._add_degrees(fit)

    @staticmethod
    def _add_degrees(fit) -> None:
        """The user rows' diagonal gains α d_i, d_i = Σ_f w_if (fit and fold-in alike)."""
        if fit.W is not None:
            deg = np.asarray(fit.W.sum(axis=1)).ravel()
            fit.diag["user"][:, : fit.k] += fit.alpha * deg[:, None]

    def _fold_in_state(self, fit, new) -> None:
        super()._fold_in_state(fit, new)
        fit.W = new.social_rows(self) if fit.alpha > 0 else None
        self._add_degrees(fit)
        if fit.W is not None:
            fit.U = np.vstack([self.user_factors_, fit.U])  # friends: known users, then the new ones
            fit.among_new = fit.W[:, len(self.users_):].nnz > 0

    def _fold_in_again(self, fit, X) -> bool:
        if fit.W is None or not fit.among_new:
            return False
        old = fit.U[len(self.users_):]
        new = X[:, : fit.k]
        fit.U = np.vstack([self.user_factors_, new])
        return bool(np.abs(new - old).max() > 1e-12 * max(1.0, float(np.abs(new).max())))

    def _system(self, fit, side: str) -> RowSystem:
        system = super()._system(fit, side)
        if side == "user" and fit.W is not None:  # α Σ_f w_if u_f with the previous sweep's U
            extra = np.zeros((fit.data.n_users, fit.kk), dtype=fit.dtype)

            def reference():
                extra[:, : fit.k] = fit.alpha * (fit.W @ fit.U)

            compiled_or_reference(
                "social_sums",
                lambda: social_sums(fit.W, fit.U, fit.alpha, extra, _threads(fit)),
                reference,
            )
            system.extra = extra
        return system

    def _objective(self, fit, sse: np.ndarray) -> float:
        loss = super()._objective(fit, sse)
        if fit.W is not None and fit.W.nnz:  # every link is in W twice: half of Σ_i Σ_f
            def reference():
                rows = np.repeat(np.arange(fit.W.shape[0]), np.diff(fit.W.indptr))
                diff = fit.U[rows].astype(np.float64) - fit.U[fit.W.indices]
                return float(fit.W.data @ np.einsum("ij,ij->i", diff, diff))

            links = compiled_or_reference(
                "social_term",
                lambda: float(social_distances(fit.W, fit.U, _threads(fit)).sum()),
                reference,
            )
            loss += 0.25 * fit.alpha * links
        return loss

    def _store(self, fit, history) -> None:
        super()._store(fit, history)
        self.social_weights_ = fit.W
