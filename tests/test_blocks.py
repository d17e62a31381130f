"""Half-steps as cost-balanced blocks scheduled by joblib: the same factors, bit for bit,
as numba's prange kernel, for any n_jobs, block count and joblib backend."""

import joblib
import numba
import numpy as np
import pytest

import socialals
from socialals import ALS, RegularizedALS, SocialALS, _blocks, _kernels
from socialals._config import numba_available
from socialals._linalg import RowSystem, solve_reference, solve_rows

pytestmark = pytest.mark.skipif(not numba_available, reason="the block schedule runs the compiled kernel")


def mixed_system(k=12, n_rows=90, n_other=70, seed=0, dtype=np.float64, unregularised_rows=True):
    """Rows of every route: empty, Woodbury (few ratings), Gram (many), unregularised with
    fewer ratings than k (minimum norm), and exactly singular ones (duplicated columns)."""
    rng = np.random.default_rng(seed)
    counts = rng.choice([0, 1, 3, 7, 15, 40], n_rows)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate([np.sort(rng.choice(n_other, c, replace=False)) for c in counts]).astype(np.int64)
    Y = rng.normal(size=(n_other, k)).astype(dtype)
    Y[5] = Y[4]  # an exactly repeated column makes some unregularised Gram rows singular
    targets = rng.normal(3, 1, indptr[-1])
    diag = np.full((n_rows, k), 0.3, dtype)
    if unregularised_rows:
        diag[::4] = 0.0
    extra = rng.normal(size=(n_rows, k)).astype(dtype)
    extra[::4] = 0.0
    return RowSystem(indptr, indices, targets, Y, diag=diag, extra=extra)


def test_cost_blocks_are_contiguous_balanced_and_cover_every_row():
    counts = np.random.default_rng(1).integers(0, 300, 1000)
    k = 16
    for n_blocks in (1, 2, 3, 8, 999, 1000, 5000):
        bounds = _blocks.cost_blocks(counts, k, n_blocks)
        assert bounds[0] == 0 and bounds[-1] == len(counts)
        assert np.all(np.diff(bounds) > 0) and len(bounds) - 1 <= min(n_blocks, len(counts))
    cost = _kernels.row_cost(counts, k)
    bounds = _blocks.cost_blocks(counts, k, 4)
    per_block = np.add.reduceat(cost, bounds[:-1])
    assert len(per_block) == 4
    # each block ends at the first row past its share: off the share by at most one row's cost
    assert per_block.max() - per_block.min() <= 2 * cost.max()
    assert _blocks.cost_blocks(np.zeros(0, int), k, 4).tolist() == [0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("want_sse", [False, True])
def test_block_routes_equal_prange_bit_for_bit(dtype, want_sse):
    system = mixed_system(dtype=dtype)
    order = _kernels.row_order(np.diff(system.indptr), system.Y.shape[1])
    with socialals.config_context(schedule="prange"):
        X0, sse0 = solve_rows(system, order, want_sse=want_sse, n_jobs=2)
    # the reference agrees (the maths), and the routes agree bit for bit (the schedule)
    ref = solve_reference(system)
    tol = 1e-4 if dtype == np.float32 else 1e-8
    np.testing.assert_allclose(X0, ref, rtol=tol, atol=tol)
    runs = []
    with socialals.config_context(schedule="blocks"):
        for n_jobs in (1, 2, 3):
            for n_blocks in (None, 1, 5, 89, 90):
                with socialals.config_context(n_blocks=n_blocks):
                    runs.append(solve_rows(system, order, want_sse=want_sse, n_jobs=n_jobs))
    with joblib.parallel_config(backend="sequential"), socialals.config_context(schedule="blocks"):
        runs.append(solve_rows(system, order, want_sse=want_sse, n_jobs=2))
    with joblib.parallel_config(backend="loky", n_jobs=2), socialals.config_context(n_blocks=3):
        runs.append(solve_rows(system, order, want_sse=want_sse, n_jobs=2))
    # Bit for bit on the numba release CI runs as latest (0.68). numba 0.59, the declared
    # minimum, compiles the fastmath kernel differently in its two uses (prange and serial),
    # so there the routes agree to rounding only (see the README's Threads section).
    bitwise = tuple(int(x) for x in numba.__version__.split(".")[:2]) >= (0, 68)
    for X, sse in runs:
        if bitwise:
            assert np.array_equal(X, X0)
            if want_sse:
                assert np.array_equal(sse, sse0)
        else:
            np.testing.assert_allclose(X, X0, rtol=1e-9 if dtype == np.float64 else 1e-4, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_handful_of_rows_is_solved_on_the_calling_thread_as_on_any_route(dtype, monkeypatch):
    """A fold-in's few rows skip joblib's backend and thread-count lookups (they cost more
    than the solve): the serial kernel on the calling thread, the same bits as the prange
    and block routes, near-singular rows still handed to the reference; a fit's systems
    (they come with a cluster cache) and larger ones still ask joblib."""
    from socialals import _linalg

    system = mixed_system(n_rows=_linalg._CALLING_THREAD_ROWS, dtype=dtype, seed=3)
    order = _kernels.row_order(np.diff(system.indptr), system.Y.shape[1])
    handed_back = ~_kernels.solve_serial(system, order, np.empty((system.n_rows, 12), dtype), None,
                                         np.ones(system.n_rows, dtype=bool))
    assert handed_back.any()  # a row only the reference decides
    expect = [solve_rows(system, order, want_sse=True, n_jobs=2, cache={})]
    with socialals.config_context(schedule="blocks"):
        expect.append(solve_rows(system, order, want_sse=True, n_jobs=2, cache={}))

    def no_lookup(n_jobs):
        raise AssertionError("asked joblib for a route")

    monkeypatch.setattr(_blocks, "active_route", no_lookup)
    X, sse = solve_rows(system, order, want_sse=True, n_jobs=2)
    tol = 1e-4 if dtype == np.float32 else 1e-8
    np.testing.assert_allclose(X, solve_reference(system), rtol=tol, atol=tol)  # the maths
    # bit for bit on numba 0.68 (what CI runs as latest); numba 0.59, the declared minimum,
    # compiles the prange and serial twins differently (see test_block_routes_equal_prange_bit_for_bit)
    bitwise = tuple(int(x) for x in numba.__version__.split(".")[:2]) >= (0, 68)
    for X0, sse0 in expect:
        if bitwise:
            np.testing.assert_array_equal(X, X0)
            np.testing.assert_array_equal(sse, sse0)
        else:
            np.testing.assert_allclose(X, X0, rtol=1e-9 if dtype == np.float64 else 1e-4, atol=1e-10)
            np.testing.assert_allclose(sse, sse0, rtol=1e-9 if dtype == np.float64 else 1e-4, atol=1e-10)
    larger = mixed_system(n_rows=_linalg._CALLING_THREAD_ROWS + 1)
    with pytest.raises(AssertionError, match="asked joblib"):
        solve_rows(larger, _kernels.row_order(np.diff(larger.indptr), larger.Y.shape[1]), n_jobs=2)
    with pytest.raises(AssertionError, match="asked joblib"):
        solve_rows(system, order, n_jobs=2, cache={})


def test_active_route_follows_config_and_joblib_backend():
    assert _blocks.active_route(2)[0] == "prange"  # the default: numba's threads
    with socialals.config_context(schedule="blocks"):
        assert _blocks.active_route(2)[0] == "threads"
        with joblib.parallel_config(backend="threading"):
            assert _blocks.active_route(2)[0] == "threads"
    with joblib.parallel_config(backend="threading"):
        assert _blocks.active_route(2)[0] == "prange"
    with joblib.parallel_config(backend="loky"):  # another backend always runs the blocks
        assert _blocks.active_route(2)[0] == "joblib"


@pytest.mark.parametrize("bad", ["dask", 1, "threads"])
def test_bad_schedule_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="schedule"):
        socialals.set_config(schedule=bad)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_n_blocks_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="n_blocks"):
        socialals.set_config(n_blocks=bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ALS(factors=6, iterations=3, random_state=0),
        lambda: RegularizedALS(factors=6, iterations=3, random_state=0, biases=True, unobserved_weight=0.2),
        lambda: SocialALS(factors=6, iterations=3, random_state=0, alpha=0.7, weighted_reg=True),
    ],
    ids=["ALS", "RegularizedALS", "SocialALS"],
)
def test_fits_by_blocks_equal_prange_fits(make, small_problem):
    ratings, social = small_problem
    with socialals.config_context(schedule="prange"):
        ref = make().fit(ratings, social)
    fits = []
    with socialals.config_context(schedule="blocks"):
        for n_jobs, n_blocks in ((1, None), (2, 1), (2, 7), (3, 1000)):
            with socialals.config_context(n_blocks=n_blocks):
                m = make().set_params(n_jobs=n_jobs)
                fits.append(m.fit(ratings, social))
    for m in fits:
        assert np.array_equal(m.user_factors_, ref.user_factors_)
        assert np.array_equal(m.item_factors_, ref.item_factors_)
        assert np.array_equal(m.loss_history_, ref.loss_history_)


def test_one_blas_thread_limits_blas_through_one_controller_kept_for_the_process():
    """Fits, fold-ins, ``recommend`` and every block task limit BLAS to one thread through
    one threadpoolctl controller (building one scans every loaded library): kept while no
    module is imported, built again after an import (it may have loaded a BLAS), but not
    after numba's own imports (its threading layer loads an OpenMP runtime, no BLAS)."""
    import sys
    import types

    from threadpoolctl import threadpool_info

    from socialals import _config

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("threadpoolctl sees no BLAS library here")
    with _config.one_blas_thread():
        assert blas_threads() == [1] * len(before)
        first = _config._blas["controller"]
    assert blas_threads() == before  # restored
    limit = _config.one_blas_thread()
    assert _config._blas["controller"] is first
    limit.restore_original_limits()
    assert blas_threads() == before
    for name, rebuilt in (("numba._socialals_test_module", False), ("_socialals_test_module", True)):
        sys.modules[name] = types.ModuleType(name)
        try:
            with _config.one_blas_thread():
                assert blas_threads() == [1] * len(before)
                assert (_config._blas["controller"] is not first) == rebuilt, name
                first = _config._blas["controller"]
        finally:
            del sys.modules[name]
