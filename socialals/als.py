"""The ALS family: ``ALS``, ``RegularizedALS`` and ``SocialALS``.

One fit loop (initialisation, sweeps, loss history, tolerance, callback) serves all three;
they differ only in the regulariser and social term of the half-step they solve and in the
objective they report.

Notation: ``Ω`` the observed (user, item) pairs, ``n_i`` the number of ratings of user ``i``,
``m_j`` that of item ``j``, ``U`` (users x k), ``V`` (items x k), ``μ`` the training mean,
``b`` and ``c`` user and item biases, ``W = (S + Sᵀ)/2`` the symmetrised social weights and
``d_i = Σ_f w_if``.

Threads
-------
Each half-step is cut into batches that joblib runs on ``n_jobs`` threads (numpy releases
the GIL in ``matmul`` and LAPACK). For the duration of ``fit`` the BLAS pool is limited to
one thread (threadpoolctl): the batched products are small, BLAS threads on them only
contend with the joblib workers (``n_jobs`` workers x ``cores`` BLAS threads is the classic
oversubscription), and so ``fit`` uses exactly ``n_jobs`` cores. The default ``n_jobs=-1``
uses every core; results are bit-identical for any ``n_jobs``. With numba installed, every
row with a positive regulariser is solved by a compiled kernel that runs on ``n_jobs``
numba threads (rows are independent, so the thread count does not change results either).
``recommend`` scores users with one large matrix product and leaves BLAS its threads.
"""

from __future__ import annotations

import numbers
import time
import warnings
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp
from joblib import effective_n_jobs
from threadpoolctl import threadpool_limits

from . import _fused, _linalg
from ._linalg import solve_rows
from .base import BaseRecommender
from .data import Dataset
from .exceptions import ConvergenceWarning
from .social import edge_similarity, symmetric_weights

__all__ = ["ALS", "RegularizedALS", "SocialALS"]


class _ALSFamily(BaseRecommender):
    """Shared fit loop. Subclasses set ``_reg_value``, ``_alpha_value`` and flags."""

    def _reg_value(self) -> float:
        return 0.0

    def _alpha_value(self) -> float:
        return 0.0

    def _bias_reg_value(self) -> float:
        return self._reg_value()

    def _uses_biases(self) -> bool:
        return False

    def _uses_weighted_reg(self) -> bool:
        return False

    def _validate_common(self) -> None:
        self._check_int("factors", 1)
        self._check_int("iterations", 1)
        self._check_float("tol", 0.0)
        self._check_float("init_scale", 0.0)
        self._check_n_jobs()
        self._check_dtype()
        if self.callback is not None and not callable(self.callback):
            raise self._bad_param("callback", "None or a callable(model, iteration, loss)")

    def _social_weights(self, data: Dataset) -> Optional[sp.csr_matrix]:
        return None

    # ------------------------------------------------------------------ the loop
    def _fit(self, data: Dataset, rng: np.random.Generator) -> None:
        k = int(self.factors)
        dt = self._check_dtype()
        lam = float(self._reg_value())
        alpha = float(self._alpha_value())
        biases = self._uses_biases()
        R, Rt = data.R, data.Rt
        n_users, n_items = data.n_users, data.n_items
        cnt_u = np.diff(R.indptr).astype(np.float64)
        cnt_i = np.diff(Rt.indptr).astype(np.float64)
        scale_u = cnt_u if self._uses_weighted_reg() else np.ones(n_users)
        scale_i = cnt_i if self._uses_weighted_reg() else np.ones(n_items)
        lam_u, lam_i = lam * scale_u, lam * scale_i
        # bias regulariser (λ_b, defaulting to λ), with the same per-row weights λ_i
        lam_b = float(self._bias_reg_value()) if biases else 0.0
        lam_bu, lam_bi = lam_b * scale_u, lam_b * scale_i
        mu = float(R.data.mean()) if biases else 0.0

        W = self._social_weights(data) if alpha > 0 else None
        if W is not None:
            W = W.tocsr()
        self.social_weights_ = W
        if W is not None:
            deg = np.asarray(W.sum(axis=1)).ravel()
            upper = sp.triu(W, k=1).tocsr()  # each link once
            e_i, e_f, e_w = np.repeat(np.arange(n_users), np.diff(upper.indptr)), upper.indices, upper.data
        else:
            deg = np.zeros(n_users)

        U = (rng.standard_normal((n_users, k)) * self.init_scale).astype(dt)
        V = (rng.standard_normal((n_items, k)) * self.init_scale).astype(dt)
        bu = np.zeros(n_users, dtype=dt)
        bi = np.zeros(n_items, dtype=dt)
        kk = k + 1 if biases else k
        unregularised = lam == 0.0 and lam_b == 0.0 and W is None

        def design(F):
            if not biases:
                return F
            out = np.ones((F.shape[0], kk), dtype=dt)
            out[:, :k] = F
            return out

        diag_u = diag_i = None
        if not unregularised:
            diag_u = np.repeat(lam_u[:, None], kk, axis=1)
            diag_u[:, :k] += alpha * deg[:, None]
            diag_i = np.repeat(lam_i[:, None], kk, axis=1)
            if biases:
                diag_u[:, k] = lam_bu
                diag_i[:, k] = lam_bi
            diag_u, diag_i = diag_u.astype(dt), diag_i.astype(dt)

        n_jobs = self.n_jobs
        # One BLAS thread per job: the batches are small, so BLAS threads would only contend.
        limit = threadpool_limits(limits=1, user_api="blas")
        history: list[float] = []
        self.fit_seconds_ = 0.0
        t0 = time.perf_counter()
        converged = False
        try:
            for it in range(int(self.iterations)):
                # ---- user half-step (Jacobi in the social term: previous sweep's U)
                t_u = R.data - mu - bi[R.indices] if biases else R.data
                extra = None
                if W is not None:
                    extra = np.zeros((n_users, kk), dtype=dt)
                    if _linalg.USE_COMPILED:  # parallel, no (users x k) float64 temporaries
                        _fused.weighted_neighbour_sums(W.indptr, W.indices, W.data, U, alpha, extra,
                                                       effective_n_jobs(n_jobs))
                    else:
                        extra[:, :k] = alpha * (W @ U)
                X, _ = solve_rows(R.indptr, R.indices, t_u, design(V), diag_u, extra, n_jobs=n_jobs)
                U = np.ascontiguousarray(X[:, :k])
                if biases:
                    bu = X[:, k].copy()
                # ---- item half-step
                t_i = Rt.data - mu - bu[Rt.indices] if biases else Rt.data
                X, sse = solve_rows(Rt.indptr, Rt.indices, t_i, design(U), diag_i, None, want_sse=True, n_jobs=n_jobs)
                V = np.ascontiguousarray(X[:, :k])
                if biases:
                    bi = X[:, k].copy()
                # ---- the objective written in the docstring
                loss = 0.5 * float(sse.sum())
                if lam > 0:
                    nu = np.einsum("ij,ij->i", U, U, dtype=np.float64)
                    ni = np.einsum("ij,ij->i", V, V, dtype=np.float64)
                    loss += 0.5 * float(lam_u @ nu) + 0.5 * float(lam_i @ ni)
                if lam_b > 0:
                    loss += 0.5 * float(lam_bu @ bu.astype(np.float64) ** 2) + 0.5 * float(lam_bi @ bi.astype(np.float64) ** 2)
                if W is not None and len(e_w):
                    if _linalg.USE_COMPILED:  # per-user sums in parallel, no (links x k) temporaries
                        per_user = _fused.weighted_sq_distances(upper.indptr, e_f, e_w, U, effective_n_jobs(n_jobs))
                        loss += 0.5 * alpha * float(per_user.sum())
                    else:
                        diff = U[e_i].astype(np.float64) - U[e_f]
                        loss += 0.5 * alpha * float(e_w @ np.einsum("ij,ij->i", diff, diff))
                history.append(loss)
                self._store(U, V, bu, bi, mu, biases, history)
                if self.callback is not None and self.callback(self, it, loss):
                    break
                if self.tol > 0 and it > 0 and history[-2] - loss <= self.tol * abs(history[-2]):
                    converged = True
                    break
        finally:
            limit.restore_original_limits()
        self.fit_seconds_ = time.perf_counter() - t0
        if self.tol > 0 and not converged and len(history) == int(self.iterations):
            warnings.warn(
                f"{type(self).__name__} did not reach tol={self.tol} in {self.iterations} iterations "
                f"(last relative decrease {(history[-2] - history[-1]) / abs(history[-2]) if len(history) > 1 else float('nan'):.3g}).",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _store(self, U, V, bu, bi, mu, biases, history):
        self.user_factors_ = U
        self.item_factors_ = V
        self.loss_history_ = np.asarray(history, dtype=np.float64)
        self.n_iter_ = len(history)
        if biases:
            self.global_mean_ = mu
            self.user_bias_ = bu
            self.item_bias_ = bi

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

    def __init__(
        self,
        factors: int = 10,
        iterations: int = 15,
        tol: float = 0.0,
        n_jobs: Optional[int] = -1,
        random_state=None,
        dtype: str = "float64",
        init_scale: float = 0.1,
        callback: Optional[Callable] = None,
    ):
        self.factors = factors
        self.iterations = iterations
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.dtype = dtype
        self.init_scale = init_scale
        self.callback = callback

    def _validate_params(self) -> None:
        self._validate_common()


class RegularizedALS(_ALSFamily):
    __doc__ = (
        """L2-regularised ALS, optionally with ALS-WR weighting and biases.

    Minimises ::

        L = 1/2 Σ_{(i,j) ∈ Ω} (r_ij − μ − b_i − c_j − u_iᵀ v_j)²
            + λ/2 Σ_i λ_i ‖u_i‖² + λ/2 Σ_j λ_j ‖v_j‖²
            + λ_b/2 Σ_i λ_i b_i² + λ_b/2 Σ_j λ_j c_j²

    with ``λ = reg`` and ``λ_b = bias_reg`` (``λ_b = λ`` when ``bias_reg`` is None);
    ``λ_i = n_i`` and ``λ_j = m_j`` when ``weighted_reg=True`` (ALS-WR, Zhou et al. 2008,
    as Spark MLlib does), else 1. Without ``biases`` the terms ``μ``, ``b`` and ``c`` are
    absent. With biases, ``μ`` is the training mean (fixed) and each row's bias is solved
    jointly with its factors in one (k+1)-dimensional normal equation.

    The user half-step solves, for every user at once (batched), ::

        (Σ_{j ∈ Ω_i} ṽ_j ṽ_jᵀ + λ_i diag(λ, …, λ, λ_b)) (u_i, b_i) = Σ_{j ∈ Ω_i} (r_ij − μ − c_j) ṽ_j

    with ``ṽ_j = (v_j, 1)`` (without biases: ``(Σ v_j v_jᵀ + λ λ_i I) u_i = Σ r_ij v_j``),
    and the item half-step is its mirror image.

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
        own); None uses ``reg``. Ignored without ``biases``."""
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

    def __init__(
        self,
        factors: int = 10,
        reg: float = 0.1,
        weighted_reg: bool = False,
        biases: bool = False,
        iterations: int = 15,
        tol: float = 0.0,
        n_jobs: Optional[int] = -1,
        random_state=None,
        dtype: str = "float64",
        init_scale: float = 0.1,
        callback: Optional[Callable] = None,
        bias_reg: Optional[float] = None,
    ):
        self.factors = factors
        self.reg = reg
        self.weighted_reg = weighted_reg
        self.biases = biases
        self.bias_reg = bias_reg
        self.iterations = iterations
        self.tol = tol
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.dtype = dtype
        self.init_scale = init_scale
        self.callback = callback

    def _validate_params(self) -> None:
        self._validate_common()
        self._check_float("reg", 0.0)
        self._check_bool("weighted_reg")
        self._check_bool("biases")
        b = self.bias_reg
        if b is not None and (isinstance(b, bool) or not isinstance(b, numbers.Real) or not np.isfinite(b) or b < 0):
            raise self._bad_param("bias_reg", "None or a float >= 0")

    def _reg_value(self) -> float:
        return float(self.reg)

    def _bias_reg_value(self) -> float:
        return float(self.reg if self.bias_reg is None else self.bias_reg)

    def _uses_biases(self) -> bool:
        return bool(self.biases)

    def _uses_weighted_reg(self) -> bool:
        return bool(self.weighted_reg)


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
        α, the weight of the social term (0 gives :class:`RegularizedALS`).
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

    def __init__(
        self,
        factors: int = 10,
        reg: float = 0.1,
        alpha: float = 0.1,
        similarity: Optional[str] = None,
        weighted_reg: bool = False,
        biases: bool = False,
        iterations: int = 15,
        tol: float = 0.0,
        n_jobs: Optional[int] = -1,
        random_state=None,
        dtype: str = "float64",
        init_scale: float = 0.1,
        callback: Optional[Callable] = None,
        bias_reg: Optional[float] = None,
    ):
        super().__init__(
            factors=factors,
            reg=reg,
            weighted_reg=weighted_reg,
            biases=biases,
            bias_reg=bias_reg,
            iterations=iterations,
            tol=tol,
            n_jobs=n_jobs,
            random_state=random_state,
            dtype=dtype,
            init_scale=init_scale,
            callback=callback,
        )
        self.alpha = alpha
        self.similarity = similarity

    def _validate_params(self) -> None:
        super()._validate_params()
        self._check_float("alpha", 0.0)
        self._check_choice("similarity", (None, "vss", "pcc"))

    def _alpha_value(self) -> float:
        return float(self.alpha)

    def _social_weights(self, data: Dataset) -> Optional[sp.csr_matrix]:
        if not data.has_social:
            return None
        w = data.social_weight
        if self.similarity is not None:
            w = w * edge_similarity(data.R, data.social_src, data.social_dst, self.similarity)
        return symmetric_weights(data.n_users, data.social_src, data.social_dst, w)
