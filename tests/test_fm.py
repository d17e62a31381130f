"""FactorizationMachine: the maths (prediction, gradients, SGD step, exact coordinate
descent), learning planted models, classification, and the DataFrame contract."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import socialals
from socialals import _config
from socialals.base import clone
from socialals.exceptions import ConvergenceWarning, DataWarning, DivergenceError, NotFittedError
from socialals.fm import FactorizationMachine
from socialals.fm import _kernels
from socialals.fm._cd import _ALS_RESYNC, _detect_groups
from socialals.fm._objective import _fm_decision, _fm_objective
from socialals.fm._sgd import _fm_gradient, _param_matrix, _sgd_batch, _Step

LOSSES = ["squared", "logistic", "hinge"]
COMPILED = [False] + ([True] if _config.numba_available else [])


@pytest.fixture(params=COMPILED, ids=lambda c: "numba" if c else "numpy")
def path(request):
    """Run a test with the numpy kernels and, when numba is installed, the compiled ones
    (the SGD epoch; ALS's update of groups that cover only some rows)."""
    with socialals.config_context(compiled=request.param):
        yield request.param


# ---------------------------------------------------------------------- helpers
def naive_fm(X, w0, w, V):
    """ŷ by the definition: w0 + Σ w_l x_l + Σ_{l<m} <v_l, v_m> x_l x_m (double loop)."""
    D = X.toarray() if sp.issparse(X) else np.asarray(X)
    out = np.empty(D.shape[0])
    for r, x in enumerate(D):
        s = w0 + x @ w
        nz = np.flatnonzero(x)
        for a in range(len(nz)):
            for b in range(a + 1, len(nz)):
                s += V[nz[a]] @ V[nz[b]] * x[nz[a]] * x[nz[b]]
        out[r] = s
    return out


def naive_coordinate_descent(X, y, w0, w, V, lam0, lamw, lamV, iterations, order=None, scaling="none"):
    """libFM's ALS written one scalar parameter at a time, features in column order (or
    ``order``) — the reference. ``scaling="frequency"`` multiplies λ by the number of rows
    where the parameter's feature is non-zero (n for w0)."""
    D = X.toarray()
    n, p = D.shape
    order = range(p) if order is None else order
    c = (D != 0).sum(0) if scaling == "frequency" else np.ones(p)
    c0 = n if scaling == "frequency" else 1
    k = V.shape[1]
    w, V = w.astype(float).copy(), V.astype(float).copy()

    def solve(theta, h, e, lam):
        den = h @ h + lam
        return (theta * (h @ h) - h @ e) / den if den > 0 else 0.0

    for _ in range(iterations):
        e = naive_fm(D, w0, w, V) - y
        new = solve(w0, np.ones(n), e, lam0 * c0)
        e += new - w0
        w0 = new
        for l in order:
            h = D[:, l]
            new = solve(w[l], h, e, lamw * c[l])
            e += (new - w[l]) * h
            w[l] = new
        for f in range(k):
            q = D @ V[:, f]
            for l in order:
                h = D[:, l] * (q - V[l, f] * D[:, l])
                new = solve(V[l, f], h, e, lamV * c[l])
                e += (new - V[l, f]) * h
                q += (new - V[l, f]) * D[:, l]
                V[l, f] = new
    return w0, w, V


def initial_params(X, k, seed, init_scale=0.1):
    """The model's initial V for ``random_state=seed`` (w = 0)."""
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((X.shape[1], k)) * init_scale
    V[np.bincount(sp.csr_matrix(X).indices, minlength=X.shape[1]) == 0] = 0
    return V


def one_hot_design(u, i, n_users, n_items, extra=None):
    n = len(u)
    blocks = [
        sp.csr_matrix((np.ones(n), (np.arange(n), u)), shape=(n, n_users)),
        sp.csr_matrix((np.ones(n), (np.arange(n), i)), shape=(n, n_items)),
    ]
    if extra is not None:
        blocks.append(sp.csr_matrix(extra))
    return sp.hstack(blocks, format="csr")


def planted_fm(n=4000, n_users=40, n_items=30, n_dense=4, k=3, noise=0.1, seed=0):
    """A degree-2 FM with strong pairwise interactions: one-hot user + item + sparse reals."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    extra = rng.normal(size=(n, n_dense)) * (rng.random((n, n_dense)) < 0.5)
    X = one_hot_design(u, i, n_users, n_items, extra)
    p = X.shape[1]
    w = rng.normal(0, 0.3, p)
    V = rng.normal(0, 0.8, (p, k))
    clean = naive_fm_fast(X, 3.0, w, V)
    y = clean + noise * rng.standard_normal(n)
    return X, y, clean


def naive_fm_fast(X, w0, w, V):
    """Dense O(p²) formula for larger checks: w0 + Xw + ½ (‖XV‖² − X² ‖V‖²) per row."""
    D = X.toarray()
    XV = D @ V
    return w0 + D @ w + 0.5 * ((XV**2).sum(1) - (D**2) @ (V**2).sum(1))


def ridge_rmse(Xtr, ytr, Xte, yte, lam=1.0):
    """The best linear model on the same features (closed-form ridge with intercept)."""
    A = np.hstack([np.ones((Xtr.shape[0], 1)), Xtr.toarray()])
    reg = lam * np.eye(A.shape[1])
    reg[0, 0] = 0
    beta = np.linalg.solve(A.T @ A + reg, A.T @ ytr)
    pred = np.hstack([np.ones((Xte.shape[0], 1)), Xte.toarray()]) @ beta
    return float(np.sqrt(np.mean((pred - yte) ** 2)))


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# ---------------------------------------------------------------------- the maths
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_time_prediction_equals_naive_double_sum(dtype):
    rng = np.random.default_rng(3)
    X = sp.random(60, 25, density=0.25, random_state=4, format="csr", dtype=np.float64)
    X = sp.csr_matrix(X.multiply((np.arange(60) != 5)[:, None]))  # row 5 empty
    w0, w, V = 0.7, rng.normal(size=25), rng.normal(size=(25, 4))
    expected = naive_fm(X, w0, w, V)
    got = _fm_decision(X.astype(dtype), w0, w.astype(dtype), V.astype(dtype), chunk=7)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    assert got[5] == pytest.approx(w0)
    # and through a fitted model's public method
    m = FactorizationMachine(factors=4, iterations=1, random_state=0).fit_matrix(X, rng.normal(size=60))
    np.testing.assert_allclose(m.decision_function_matrix(X), naive_fm(X, m.w0_, m.w_, m.V_), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("scaling", ["none", "frequency"])
@pytest.mark.parametrize("binary", [False, True], ids=["real-valued", "binary"])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_of_the_written_objective_matches_finite_differences(loss, binary, scaling):
    rng = np.random.default_rng(11)
    n, p, k = 40, 12, 3
    X = sp.random(n, p, density=0.3, random_state=5, format="csr")
    if binary:
        X.data[:] = 1.0
    else:
        X.data = rng.normal(size=X.nnz)
    w0, w, V = 0.2, rng.normal(size=p) * 0.5, rng.normal(size=(p, k)) * 0.5
    if loss == "squared":
        y = rng.normal(size=n)
    else:
        y = rng.choice([-1.0, 1.0], n)
        if loss == "hinge":  # keep every margin away from the kink at y ŷ = 1
            m = y * naive_fm(X, w0, w, V)
            y[np.abs(1 - m) < 0.05] *= -1
            assert np.abs(1 - y * naive_fm(X, w0, w, V)).min() > 0.01
    regs = (0.3, 0.7, 1.3)
    g0, gw, gV = _fm_gradient(X, y, w0, w, V, loss, *regs, scaling=scaling)

    def L(w0_, w_, V_):
        return _fm_objective(X, y, w0_, w_, V_, loss, *regs, scaling=scaling)

    eps = 1e-6
    fd0 = (L(w0 + eps, w, V) - L(w0 - eps, w, V)) / (2 * eps)
    fdw = np.array([(L(w0, w + eps * e, V) - L(w0, w - eps * e, V)) / (2 * eps) for e in np.eye(p)])
    fdV = np.zeros_like(V)
    for l in range(p):
        for f in range(k):
            E = np.zeros_like(V)
            E[l, f] = eps
            fdV[l, f] = (L(w0, w, V + E) - L(w0, w, V - E)) / (2 * eps)
    assert g0 == pytest.approx(fd0, abs=1e-5)
    np.testing.assert_allclose(gw, fdw, atol=1e-5)
    np.testing.assert_allclose(gV, fdV, atol=1e-5)
    # the objective itself is the written one
    yhat = naive_fm(X, w0, w, V)
    data = {
        "squared": 0.5 * (yhat - y) ** 2,
        "logistic": np.log1p(np.exp(-y * yhat)),
        "hinge": np.maximum(0, 1 - y * yhat),
    }[loss].sum()
    c = (X.toarray() != 0).sum(0) if scaling == "frequency" else np.ones(p)
    c0 = n if scaling == "frequency" else 1
    pen = 0.5 * (0.3 * c0 * w0**2 + 0.7 * (c @ w**2) + 1.3 * (c @ (V**2).sum(1)))
    assert L(w0, w, V) == pytest.approx(data + pen, rel=1e-12)


def damped_update_by_formula(D, w, V, g, eta, kappa, lw, lv, share):
    """The documented damped SGD step of (w, V) for one batch, written out with dense algebra:
    G from the dense gradient; H_w = Σ x², H_V = Σ x_l² Σ_{m≠l} x_m² ‖v_m‖²; features absent
    from the batch keep their values."""
    n, p = D.shape
    XV = D @ V
    Gw = D.T @ g
    GV = D.T @ (g[:, None] * XV) - ((D**2).T @ g)[:, None] * V
    vsq = (V**2).sum(1)
    Hw = (D**2).sum(0)
    HV = np.array([sum(D[i, l] ** 2 * ((D[i] ** 2) @ vsq - D[i, l] ** 2 * vsq[l]) for i in range(n)) for l in range(p)])
    c = (D != 0).sum(0)
    act = c > 0
    w_exp, V_exp = w.copy(), V.copy()
    dw = 1 + eta * kappa * Hw
    w_exp[act] = ((w * dw - eta * Gw) / (dw + eta * lw * c * share))[act]
    dv = 1 + eta * kappa * HV
    V_exp[act] = ((V * dv[:, None] - eta * GV) / (dv + eta * lv * c * share)[:, None])[act]
    return w_exp, V_exp


@pytest.mark.parametrize("binary", [False, True], ids=["real-valued", "binary"])
def test_sgd_step_is_the_documented_damped_update(binary):
    """One batch through the fused kernel equals the formula written out with dense algebra."""
    rng = np.random.default_rng(2)
    n, p, k = 30, 10, 3
    X = sp.random(n, p, density=0.35, random_state=7, format="csr")
    X.data = np.ones(X.nnz) if binary else rng.uniform(0.5, 2.0, X.nnz)
    w0, w, V = 0.1, rng.normal(size=p) * 0.3, rng.normal(size=(p, k)) * 0.3
    y = rng.normal(size=n)
    eta, kappa, lw, lv = 0.05, 1.0, 0.4, 0.9
    share = rng.uniform(0.2, 1.5, p)  # penalty weight per occurrence, c_l / n_l

    D = X.toarray()
    g = naive_fm(D, w0, w, V) - y
    w_exp, V_exp = damped_update_by_formula(D, w, V, g, eta, kappa, lw, lv, share)

    P = _param_matrix(w, V)
    row = np.repeat(np.arange(n), np.diff(X.indptr))
    yhat, g_k = _sgd_batch(
        X.indptr.astype(np.int64), X.indices.astype(np.int64), None if binary else X.data, row, y, w0, P, "squared",
        _Step(eta, kappa, lw, lv, share),
    )
    np.testing.assert_allclose(yhat, naive_fm(D, w0, w, V), atol=1e-12)
    np.testing.assert_allclose(g_k, g, atol=1e-12)
    np.testing.assert_allclose(P[:, k], w_exp, atol=1e-12)
    np.testing.assert_allclose(P[:, :k], V_exp, atol=1e-12)
    np.testing.assert_allclose(P[:, k + 1], (P[:, :k] ** 2).sum(1), atol=1e-12)


def test_compiled_kernel_is_installed_in_ci():
    import os

    if os.environ.get("CI"):
        assert _config.numba_available, "numba is a dependency; the compiled SGD epoch must be tested in CI"


@pytest.mark.skipif(not _config.numba_available, reason="numba is not installed")
@pytest.mark.parametrize("binary", [False, True], ids=["real-valued", "binary"])
@pytest.mark.parametrize("loss", LOSSES)
def test_compiled_batch_is_the_documented_damped_update(loss, binary):
    """One batch of the compiled epoch (all rows, natural order) against the formula written
    out with dense algebra, for every loss, including the intercept's damped step."""
    rng = np.random.default_rng(5)
    n, p, k = 64, 11, 3  # 64 rows = two shuffle blocks of 32, visited in order
    X = sp.random(n, p, density=0.3, random_state=8, format="csr")
    X.data = np.ones(X.nnz) if binary else rng.uniform(-1.5, 2.0, X.nnz)
    w0, w, V = 0.2, rng.normal(size=p) * 0.3, rng.normal(size=(p, k)) * 0.3
    y = rng.normal(size=n) if loss == "squared" else rng.choice([-1.0, 1.0], n)
    eta, kappa, lw, lv, l0, c0 = 0.05, (0.25 if loss == "logistic" else 1.0), 0.4, 0.9, 0.3, 50.0
    share = rng.uniform(0.2, 1.5, p)

    D = X.toarray()
    yhat = naive_fm(D, w0, w, V)
    m = y * yhat
    g = {"squared": yhat - y, "logistic": -y / (1 + np.exp(m)), "hinge": np.where(m < 1, -y, 0.0)}[loss]
    data_loss = {"squared": 0.5 * (yhat - y) ** 2, "logistic": np.log1p(np.exp(-m)), "hinge": np.maximum(0, 1 - m)}[loss].sum()
    w_exp, V_exp = damped_update_by_formula(D, w, V, g, eta, kappa, lw, lv, share)
    d0 = 1 + eta * kappa * n
    w0_exp = (w0 * d0 - eta * g.sum()) / (d0 + eta * l0 * c0)  # every row is in the batch: m / n = 1

    P = _param_matrix(w, V)
    ws = _kernels.EpochWorkspace(n, p, p, k, np.float64)
    w0_new, loss_sum, bad, _ = _kernels.sgd_epoch(
        ws, X.indptr.astype(np.int64), X.indices, None if binary else X.data, y, np.arange(2), 32, n, P, w0, loss,
        eta, kappa, l0, c0, lw, lv, share,
    )
    assert not bad
    assert loss_sum == pytest.approx(data_loss, rel=1e-12)
    assert w0_new == pytest.approx(w0_exp, rel=1e-12)
    np.testing.assert_allclose(P[:, k], w_exp, atol=1e-12)
    np.testing.assert_allclose(P[:, :k], V_exp, atol=1e-12)
    np.testing.assert_allclose(P[:, k + 1], (P[:, :k] ** 2).sum(1), atol=1e-12)
    assert (ws.slot == -1).all()  # the scratch is left clean for the next batch


def _random_sgd_problem(loss, binary, seed):
    """Rows of varying length (some empty), features that repeat within a batch."""
    rng = np.random.default_rng(seed)
    n, p = 403, 37
    X = sp.random(n, p, density=0.12, random_state=seed, format="csr")
    X = sp.csr_matrix(X.multiply((rng.random(n) > 0.05)[:, None]))  # ~5% empty rows
    X.data = np.ones(X.nnz) if binary else rng.uniform(-1.5, 2.0, X.nnz)
    y = rng.normal(size=n) + 3 if loss == "squared" else rng.choice([0.0, 1.0], n)
    return X, y


@pytest.mark.skipif(not _config.numba_available, reason="numba is not installed")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("binary", [False, True], ids=["real-valued", "binary"])
@pytest.mark.parametrize("loss", LOSSES)
def test_compiled_sgd_equals_the_numpy_kernel(loss, binary, dtype):
    """The compiled epoch makes the numpy kernel's updates (same shuffles, batches, steps,
    penalty shares, intercept): equal fits up to floating-point summation order."""
    X, y = _random_sgd_problem(loss, binary, seed=3)
    fits = {}
    for compiled in [False, True]:
        for params in [dict(batch_size=29, schedule="invscaling"), dict(batch_size=1, iterations=2), dict(reg_scaling="none", reg_w0=0.2)]:
            base = dict(factors=4, loss=loss, iterations=4, learning_rate=0.02, dtype=dtype, random_state=1)
            with socialals.config_context(compiled=compiled):
                fits[compiled, str(params)] = FactorizationMachine(**{**base, **params}).fit_matrix(X, y)
    tol = dict(rtol=1e-9, atol=1e-11) if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    for key in {k[1] for k in fits}:
        a, b = fits[False, key], fits[True, key]
        assert a.n_iter_ == b.n_iter_
        np.testing.assert_allclose(b.w0_, a.w0_, **tol)
        np.testing.assert_allclose(b.w_, a.w_, **tol)
        np.testing.assert_allclose(b.V_, a.V_, **tol)
        np.testing.assert_allclose(b.loss_history_, a.loss_history_, **tol)
        assert not np.array_equal(a.V_, np.zeros_like(a.V_))  # something was learned


def _mixed_design(seed=0, n=120):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 10, n)
    i = rng.integers(0, 7, n)
    X = sp.hstack(
        [
            sp.csr_matrix((np.ones(n), (np.arange(n), u)), shape=(n, 10)),
            sp.csr_matrix((rng.uniform(0.5, 2, n), (np.arange(n), i)), shape=(n, 7)),  # valued one-hot
            sp.random(n, 3, density=0.4, random_state=seed + 1),  # sparse reals that overlap
        ],
        format="csr",
    )
    return X, 3 + rng.normal(size=n)


@pytest.mark.parametrize("scaling", ["none", "frequency"])
@pytest.mark.parametrize("design", ["mixed", "one-hot"])
def test_als_vectorised_groups_equal_sequential_coordinate_descent(design, scaling, path):
    """Updating a whole group of never-co-occurring features at once is exact."""
    if design == "mixed":
        X, y = _mixed_design()
    else:
        rng = np.random.default_rng(4)
        u, i = rng.integers(0, 9, 150), rng.integers(0, 6, 150)
        order = np.lexsort((i, u))  # row order sorted by user: the reduceat/repeat path
        X, y = one_hot_design(u[order], i[order], 9, 6), 3 + rng.normal(size=150)
    k, its = 3, _ALS_RESYNC + 2  # beyond one residual resync
    f = 0.01 if scaling == "frequency" else 1.0
    m = FactorizationMachine(
        factors=k, solver="als", reg=0.5 * f, reg_w=0.2 * f, reg_w0=0.1 * f, reg_scaling=scaling, iterations=its, random_state=0
    )
    m.fit_matrix(X, y)
    w0, w, V = naive_coordinate_descent(
        X, y, y.mean(), np.zeros(X.shape[1]), initial_params(X, k, 0), 0.1 * f, 0.2 * f, 0.5 * f, its, scaling=scaling
    )
    assert m.w0_ == pytest.approx(w0, abs=1e-10)
    np.testing.assert_allclose(m.w_, w, atol=1e-10)
    np.testing.assert_allclose(m.V_, V, atol=1e-10)
    # the reported objective is the written one at the final parameters
    objective = _fm_objective(X, y, m.w0_, m.w_, m.V_, "squared", 0.1 * f, 0.2 * f, 0.5 * f, scaling=scaling)
    assert m.loss_history_[-1] == pytest.approx(objective, rel=1e-10)


def test_als_on_the_social_design_equals_sequential_coordinate_descent(frames, path):
    """Same check on fit()'s design: one-hot blocks plus coloured groups of friend columns."""
    ratings, social = frames
    m = FactorizationMachine(factors=2, solver="als", reg=0.07, iterations=3, random_state=1).fit(ratings, social)
    groups = m.groups_[slice(*m.feature_blocks_["social"])]
    assert 1 < len(np.unique(groups)) < 40  # friend columns were coloured into a few groups
    X = m.design_matrix(ratings)
    y = ratings["rating"].to_numpy()
    # visiting order: group by group (groups by first column), columns ascending within
    first = {g: c for c, g in reversed(list(enumerate(m.groups_)))}
    order = sorted(range(X.shape[1]), key=lambda c: (first[m.groups_[c]], c))
    assert order != sorted(order)
    w0, w, V = naive_coordinate_descent(
        X, y, y.mean(), np.zeros(X.shape[1]), initial_params(X, 2, 1), 0.0, 0.07, 0.07, 3, order, scaling="frequency"
    )
    np.testing.assert_allclose(m.w_, w, atol=1e-9)
    np.testing.assert_allclose(m.V_, V, atol=1e-9)


def test_group_detection_and_user_groups():
    X, _ = _mixed_design()
    g = _detect_groups(X)
    assert (g[:10] == g[0]).all() and (g[10:17] == g[10]).all() and g[0] != g[10]
    # non-adjacent columns that never share a row are merged by the colouring
    D = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]], float)
    g = _detect_groups(sp.csr_matrix(D))
    assert g[0] == g[2] and g[0] != g[1]
    y = np.arange(4.0)
    FactorizationMachine(factors=2, solver="als", iterations=2).fit_matrix(D, y, groups=[0, 1, 0])
    with pytest.raises(ValueError, match=r"group 0 has two columns \(0 and 1\).*row 0"):
        FactorizationMachine(factors=2, solver="als").fit_matrix(D, y, groups=[0, 0, 1])
    with pytest.raises(ValueError, match="one group id per column"):
        FactorizationMachine(factors=2, solver="als").fit_matrix(D, y, groups=[0, 1])


# ---------------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def planted():
    X, y, clean = planted_fm()
    cut = 3200
    return X[:cut], y[:cut], X[cut:], y[cut:], clean[cut:]


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="sgd", learning_rate=0.01, batch_size=64, iterations=60, reg=0.001, schedule="invscaling", power_t=0.25),
        dict(solver="als", iterations=25, reg=0.001),
    ],
    ids=["sgd", "als"],
)
def test_learns_a_planted_fm_with_pairwise_interactions(planted, params, path):
    Xtr, ytr, Xte, yte, clean = planted
    noise = rmse(clean, yte)  # 0.1
    linear = ridge_rmse(Xtr, ytr, Xte, yte)
    m = FactorizationMachine(factors=3, init_scale=0.3, random_state=0, **params).fit_matrix(Xtr, ytr)
    err = rmse(m.predict_matrix(Xte), yte)
    assert linear > 1.0  # the interactions matter: the best linear model is poor ...
    assert err < 2.5 * noise  # ... the FM gets close to the noise level
    assert err < 0.15 * linear
    if params["solver"] == "als":
        h = m.loss_history_
        assert len(h) == 25 and (np.diff(h) <= 1e-10 * np.abs(h[:-1])).all()  # never rises


@pytest.mark.parametrize("scaling, reg", [("none", 2.0), ("frequency", 0.02)])
def test_sgd_and_als_minimise_the_same_objective(planted, scaling, reg, path):
    Xtr, ytr = planted[0], planted[1]
    common = dict(factors=3, reg=reg, reg_scaling=scaling, init_scale=0.3, random_state=0)
    als = FactorizationMachine(solver="als", iterations=60, **common).fit_matrix(Xtr, ytr)
    sgd = FactorizationMachine(solver="sgd", iterations=80, learning_rate=0.02, batch_size=32, schedule="invscaling", **common)
    sgd.fit_matrix(Xtr, ytr)
    L = lambda m: _fm_objective(Xtr, ytr, m.w0_, m.w_, m.V_, "squared", 0.0, reg, reg, scaling)  # noqa: E731
    assert L(sgd) == pytest.approx(L(als), rel=0.05)
    assert als.loss_history_[-1] == pytest.approx(L(als), rel=1e-10)


@pytest.mark.parametrize("loss", ["logistic", "hinge"])
@pytest.mark.parametrize("coding", [(-1, 1), (0, 1)])
def test_classification_on_separable_data(loss, coding, path):
    X, _, clean = planted_fm(n=3000, noise=0.0, seed=5)
    score = clean - np.median(clean)
    y = np.where(score > 0, coding[1], coding[0])
    m = FactorizationMachine(factors=3, loss=loss, learning_rate=0.05, batch_size=64, iterations=40, reg=0.001, init_scale=0.3, random_state=0)
    m.fit_matrix(X[:2400], y[:2400])
    pred = m.predict_matrix(X[2400:])
    assert set(np.unique(pred)) <= set(coding)
    assert (pred == y[2400:]).mean() > 0.9
    np.testing.assert_array_equal(m.classes_, coding)
    np.testing.assert_array_equal(pred, np.where(m.decision_function_matrix(X[2400:]) >= 0, coding[1], coding[0]))
    if loss == "logistic":
        P = m.predict_proba_matrix(X[2400:])
        assert P.shape == (600, 2) and np.allclose(P.sum(1), 1) and ((P[:, 1] > 0.5) == (pred == coding[1])).all()
    else:
        with pytest.raises(AttributeError, match="loss='logistic'"):
            m.predict_proba_matrix(X[2400:])


def test_float32_batch_sizes_and_classic_sgd(planted, path):
    Xtr, ytr, Xte, yte, _ = planted
    for params in [dict(dtype="float32", batch_size=256), dict(batch_size=1, iterations=3), dict(solver="als", dtype="float32")]:
        base = dict(factors=3, iterations=15, learning_rate=0.01, reg=0.001, init_scale=0.3, random_state=0)
        m = FactorizationMachine(**{**base, **params}).fit_matrix(Xtr, ytr)
        assert m.V_.dtype == np.dtype(params.get("dtype", "float64"))
        err = rmse(m.predict_matrix(Xte), yte)
        assert np.isfinite(err) and err < 0.5 * ridge_rmse(Xtr, ytr, Xte, yte), params


def test_empty_rows_odd_batches_and_degenerate_inputs(path):
    rng = np.random.default_rng(0)
    X = sp.random(300, 20, density=0.1, random_state=1, format="csr")  # 28 rows without features
    y = rng.normal(size=300)
    assert (np.diff(X.indptr) == 0).sum() > 0
    for params in [dict(batch_size=1), dict(batch_size=7), dict(batch_size=1000), dict(solver="als")]:
        m = FactorizationMachine(factors=2, iterations=3, random_state=0, **params).fit_matrix(X, y)
        assert np.isfinite(m.loss_history_).all() and m.loss_history_[-1] < m.loss_history_[0]
        np.testing.assert_allclose(m.decision_function_matrix(X), naive_fm(X, m.w0_, m.w_, m.V_), atol=1e-10)
    for solver in ["sgd", "als"]:  # no feature at all: only the intercept can learn
        m = FactorizationMachine(factors=2, solver=solver, iterations=2).fit_matrix(np.zeros((3, 2)), [1.0, 2.0, 3.0])
        assert m.w0_ == pytest.approx(2.0) and not m.V_.any()


def test_divergence_is_reported_with_advice(path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 6)) * 3
    y = X[:, 0] * X[:, 1] + rng.normal(size=500)
    with pytest.raises(DivergenceError, match="diverged in epoch 0.*learning_rate=1.0 is too high.*lower learning_rate"):
        FactorizationMachine(factors=3, learning_rate=1.0, batch_size=8, iterations=20, random_state=0).fit_matrix(X, y)
    # the same problem is fine with a small step (and no warning about overflow leaks out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = FactorizationMachine(factors=3, learning_rate=0.01, batch_size=8, iterations=5, random_state=0).fit_matrix(X, y)
    assert np.isfinite(m.V_).all()


def test_callback_tol_and_convergence_warning(planted, path):
    Xtr, ytr = planted[0], planted[1]
    seen = []

    def stop_after_three(model, it, loss):
        seen.append((it, loss, model.n_iter_))
        return it == 2

    for solver in ["sgd", "als"]:
        seen.clear()
        m = FactorizationMachine(factors=2, solver=solver, iterations=10, callback=stop_after_three, random_state=0)
        m.fit_matrix(Xtr, ytr)
        assert m.n_iter_ == 3 and len(m.loss_history_) == 3
        assert [s[0] for s in seen] == [0, 1, 2] and [s[2] for s in seen] == [1, 2, 3]
        assert [s[1] for s in seen] == list(m.loss_history_)
    m = FactorizationMachine(factors=2, solver="als", iterations=200, tol=1e-3, random_state=0).fit_matrix(Xtr, ytr)
    assert m.n_iter_ < 200
    with pytest.warns(ConvergenceWarning, match="did not reach tol"):
        FactorizationMachine(factors=2, solver="als", iterations=2, tol=1e-12, random_state=0).fit_matrix(Xtr, ytr)


def test_parameter_and_input_validation():
    X, y = _mixed_design()
    bad = [
        (dict(learning_rate=-1), r"The 'learning_rate' parameter of FactorizationMachine must be a float > 0; got -1\."),
        (dict(factors=0), r"The 'factors' parameter of FactorizationMachine must be an int >= 1; got 0"),
        (dict(loss="absolute"), r"The 'loss' parameter .* must be one of \['squared', 'logistic', 'hinge'\]"),
        (dict(solver="mcmc"), r"The 'solver' parameter"),
        (dict(batch_size=0), r"The 'batch_size' parameter .* int >= 1"),
        (dict(reg_V=-0.5), r"The 'reg_V' parameter .* None or a float >= 0"),
        (dict(schedule="adam"), r"The 'schedule' parameter"),
        (dict(dtype="int8"), r"The 'dtype' parameter"),
        (dict(solver="als", loss="hinge"), r"solver='als' .* squared loss only.*solver='sgd'"),
        (dict(solver="als", loss="logistic"), r"squared loss only"),
        (dict(callback=3), r"The 'callback' parameter"),
    ]
    for params, msg in bad:
        with pytest.raises(ValueError, match=msg):
            FactorizationMachine(**params).fit_matrix(X, y)
    m = FactorizationMachine(factors=2, iterations=1)
    with pytest.raises(ValueError, match=r"'y' must be 1-D with one value per row of X \(120\)"):
        m.fit_matrix(X, y[:-1])
    Xn = X.toarray()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="'X' has 1 NaN or infinite"):
        m.fit_matrix(Xn, y)
    with pytest.raises(ValueError, match="'y' has 1 NaN"):
        m.fit_matrix(X, np.r_[y[:-1], np.inf])
    with pytest.raises(ValueError, match=r"binary labels, coded \{-1, \+1\} or \{0, 1\}"):
        FactorizationMachine(loss="logistic").fit_matrix(X, y)
    with pytest.raises(NotFittedError, match="fit_matrix"):
        FactorizationMachine().predict_matrix(X)
    m.fit_matrix(X, y)
    with pytest.raises(ValueError, match="'X' has 5 columns; the model was fitted on 20"):
        m.predict_matrix(X[:, :5])


# ---------------------------------------------------------------------- DataFrame API
def rating_frame(n_users=40, n_items=25, density=0.35, seed=0):
    rng = np.random.default_rng(seed)
    U, W = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    u, i = np.nonzero(mask)
    r = np.clip(3 + (U[u] * W[i]).sum(1) + 0.2 * rng.normal(size=len(u)), 1, 5)
    return pd.DataFrame({"user": [f"u{a}" for a in u], "item": [f"i{b}" for b in i], "rating": r})


@pytest.fixture(scope="module")
def frames():
    ratings = rating_frame()
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 40, 150), rng.integers(0, 40, 150)
    social = pd.DataFrame({"user": [f"u{x}" for x in a], "friend": [f"u{x}" for x in b]})
    social = social[a != b].drop_duplicates()
    # two users known only through the graph, with different friends
    extra = pd.DataFrame({"user": ["s1", "s1", "s2", "s2"], "friend": ["u1", "u2", "u30", "u31"]})
    return ratings, pd.concat([social, extra], ignore_index=True)


@pytest.mark.parametrize("solver", ["sgd", "als"])
def test_dataframe_fit_predict_recommend(frames, solver, path):
    ratings, social = frames
    model = FactorizationMachine(factors=4, solver=solver, iterations=20, random_state=0)
    before = model.get_params()
    with pytest.raises(NotFittedError, match="not fitted"):
        model.predict(ratings)
    with pytest.raises(NotFittedError):
        model.recommend(["u1"])
    assert model.fit(ratings, social) is model
    assert model.get_params() == before  # fit does not touch the hyperparameters
    assert set(model.feature_blocks_) == {"user", "item", "social"}

    p = model.predict(ratings[["user", "item"]])
    assert p.shape == (len(ratings),) and np.isfinite(p).all()
    assert rmse(p, ratings["rating"]) < 0.7 * ratings["rating"].std()
    # the user/item decomposition equals the FM on the design rows
    pairs = pd.DataFrame({"user": ["u1", "s1", "u3", "nobody"], "item": ["i2", "i4", "zzz", "i1"]})
    with pytest.warns(DataWarning, match="2 of 4 pair"):
        dec = model.decision_function(pairs)
    np.testing.assert_allclose(dec, model.decision_function_matrix(model.design_matrix(pairs)), rtol=1e-10)
    np.testing.assert_allclose(p, model.decision_function_matrix(model.design_matrix(ratings)), rtol=1e-10)

    rec = model.recommend(["u1", "u2"], n=5)
    assert list(rec.columns) == ["user", "item", "rank", "score"] and len(rec) == 10
    np.testing.assert_allclose(rec["score"], model.predict(rec[["user", "item"]]), rtol=1e-10)
    everything = model.recommend(None, n=len(model.items_))
    assert len(everything.merge(ratings, on=["user", "item"])) == 0  # seen items excluded
    # a user's top item really is the best unseen one
    seen = set(ratings.loc[ratings["user"] == "u1", "item"])
    unseen = [i for i in model.items_ if i not in seen]
    best = model.predict(pd.DataFrame({"user": "u1", "item": unseen})).max()
    assert rec.loc[rec["user"] == "u1", "score"].iloc[0] == pytest.approx(best)


def test_social_only_users_are_scored_from_their_friends(frames):
    ratings, social = frames
    m = FactorizationMachine(factors=4, solver="als", iterations=15, random_state=0).fit(ratings, social)
    assert {"s1", "s2"} <= set(m.users_) and "s1" not in set(ratings["user"])
    rec = m.recommend(["s1", "s2"], n=len(m.items_))
    assert len(rec) == 2 * len(m.items_)  # nothing seen, everything ranked
    s1 = rec[rec.user == "s1"].set_index("item")["score"].sort_index()
    s2 = rec[rec.user == "s2"].set_index("item")["score"].sort_index()
    assert not np.allclose(s1, s2)  # different friends, different scores
    # they are the FM scores of [friends' block] + item, not the item-only fallback
    items = list(s1.index)
    item_only = m.decision_function_matrix(m.design_matrix(pd.DataFrame({"user": "nobody", "item": items})))
    assert np.abs(s1.to_numpy() - item_only).max() > 1e-3
    # without social features the two get identical (item-only) scores
    plain = FactorizationMachine(factors=4, solver="als", iterations=15, social_features=False, random_state=0)
    plain.fit(ratings, social)
    assert "social" not in plain.feature_blocks_
    r = plain.recommend(["s1", "s2"], n=5)
    np.testing.assert_allclose(r[r.user == "s1"]["score"].to_numpy(), r[r.user == "s2"]["score"].to_numpy())


def test_seeded_refit_identical_and_inputs_untouched(frames, path):
    ratings, social = frames
    r0, s0 = ratings.copy(deep=True), social.copy(deep=True)
    for solver in ["sgd", "als"]:
        m = FactorizationMachine(factors=3, solver=solver, iterations=5, random_state=7)
        a = m.fit(ratings, social).predict(ratings)
        b = clone(m).fit(ratings, social).predict(ratings)
        np.testing.assert_array_equal(a, b)
        c = clone(m).set_params(random_state=8).fit(ratings, social).predict(ratings)
        assert not np.array_equal(a, c)
    pd.testing.assert_frame_equal(ratings, r0)
    pd.testing.assert_frame_equal(social, s0)


def test_side_features_and_classification_frames(frames, path):
    ratings, _ = frames
    users = sorted(ratings["user"].unique())
    items = sorted(ratings["item"].unique())
    rng = np.random.default_rng(0)
    uf = pd.DataFrame({"age": rng.normal(size=len(users)), "x": rng.random(len(users))}, index=users)
    itf = pd.DataFrame({"genre": rng.integers(0, 2, len(items)).astype(float)}, index=items).iloc[:-2]
    with pytest.warns(DataWarning, match="2 of 25 known label"):
        m = FactorizationMachine(factors=3, solver="als", iterations=8, random_state=0)
        m.fit(ratings, user_features=uf, item_features=itf)
    assert m.feature_blocks_["user_features"] == [65, 67] and m.feature_blocks_["item_features"] == [67, 68]
    np.testing.assert_allclose(m.predict(ratings), m.decision_function_matrix(m.design_matrix(ratings)), rtol=1e-10)
    with pytest.raises(ValueError, match="duplicate index"):
        FactorizationMachine().fit(ratings, user_features=pd.concat([uf, uf.iloc[:1]]))
    # labels in the rating column: predict gives labels, predict_proba probabilities
    liked = ratings.assign(rating=(ratings["rating"] > 3).astype(int))
    clf = FactorizationMachine(factors=3, loss="logistic", iterations=30, learning_rate=0.05, reg=0.01, random_state=0).fit(liked)
    pred = clf.predict(liked)
    assert set(np.unique(pred)) <= {0, 1} and (pred == liked["rating"]).mean() > 0.8
    proba = clf.predict_proba(liked)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-clf.decision_function(liked))))
    rec = clf.recommend("u1", n=3)
    assert len(rec) == 3 and rec["score"].is_monotonic_decreasing


# ---------------------------------------------------------------------- fail-soft kernels
def _uncompilable(*args):
    return args[0].no_such_attribute  # numba cannot type this: a genuine compile failure


@pytest.mark.skipif(not _config.numba_available, reason="numba is not installed")
def test_a_kernel_that_fails_to_compile_warns_once_and_the_fit_uses_the_reference(frames, monkeypatch):
    """Both FM kernels replaced by functions numba cannot compile: each warns once, and the
    fits equal the reference path's exactly (the fallback happens before anything runs)."""
    import numba

    broken = numba.njit(_uncompilable)
    monkeypatch.setattr(_kernels, "_epoch", broken)
    monkeypatch.setattr(_kernels, "_cd_partial", broken)
    ratings, social = frames
    X, y = _random_sgd_problem("squared", False, seed=4)
    sgd = dict(factors=3, iterations=3, batch_size=50, learning_rate=0.02, random_state=0)
    als = dict(factors=3, solver="als", iterations=3, random_state=0)
    _config._forget_failures()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            got_sgd = FactorizationMachine(**sgd).fit_matrix(X, y)
            got_als = FactorizationMachine(**als).fit(ratings, social)
            FactorizationMachine(**sgd).fit_matrix(X, y)  # a known failure does not warn again
        messages = [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 2, messages
        assert "'fm.sgd_epoch' failed to compile (TypingError" in messages[0]
        assert "'fm.cd_factor_partial' failed to compile (TypingError" in messages[1]
        assert all("plain numpy reference" in m for m in messages)
    finally:
        _config._forget_failures()
    with socialals.config_context(compiled=False):
        ref_sgd = FactorizationMachine(**sgd).fit_matrix(X, y)
        ref_als = FactorizationMachine(**als).fit(ratings, social)
    np.testing.assert_array_equal(got_sgd.V_, ref_sgd.V_)
    np.testing.assert_array_equal(got_sgd.loss_history_, ref_sgd.loss_history_)
    np.testing.assert_array_equal(got_als.V_, ref_als.V_)
    np.testing.assert_array_equal(got_als.predict(ratings), ref_als.predict(ratings))
    # and the reference is not the compiled result (the switch really changed the path)
    monkeypatch.undo()
    compiled_sgd = FactorizationMachine(**sgd).fit_matrix(X, y)
    assert not np.array_equal(compiled_sgd.V_, ref_sgd.V_)


def test_failed_refit_leaves_the_previous_fit_intact(frames):
    """A refit that fails after its first iteration (on other data, with other blocks)
    restores every piece of the previous fit, the private scoring blocks included:
    predictions and recommendations are unchanged."""
    ratings, social = frames
    m = FactorizationMachine(factors=3, solver="als", iterations=4, random_state=0).fit(ratings, social)
    before_pred, before_rec = m.predict(ratings), m.recommend(["u1", "s1"], n=4)
    other = ratings.assign(user=ratings["user"] + "x").iloc[::2]  # other users, no social block
    def interrupt(model, iteration, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        m.set_params(solver="sgd", callback=interrupt).fit(other)
    np.testing.assert_array_equal(m.predict(ratings), before_pred)
    pd.testing.assert_frame_equal(m.recommend(["u1", "s1"], n=4), before_rec)
    assert "social" in m.feature_blocks_
    # the design-matrix API too, and a matrix fit then drops the DataFrame state
    X, y = _mixed_design()
    mm = FactorizationMachine(factors=2, iterations=3, random_state=0).fit_matrix(X, y)
    before = mm.predict_matrix(X)
    with pytest.raises(KeyboardInterrupt):
        mm.set_params(callback=interrupt).fit_matrix(X[:, :10], y)
    np.testing.assert_array_equal(mm.predict_matrix(X), before)
    m.set_params(callback=None).fit_matrix(X, y)
    assert not hasattr(m, "users_") and not hasattr(m, "feature_blocks_") and m._entity is None
