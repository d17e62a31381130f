"""A compiled (numba) half-step: gather, Gram or Woodbury, Cholesky.

Used by :func:`socialals._linalg.solve_rows` when numba imports, for every row with a
positive diagonal regulariser and for unregularised rows with at least ``k`` ratings;
the pure numpy path remains the reference and the fallback. For row ``i`` with observed columns ``J_i`` (``n_i`` of them), ``A = Y[J_i]``,
targets ``t`` and diagonal ``d > 0`` it solves ``(A^T A + diag(d)) x = A^T t + e``:

* ``n_i = 0``: ``x = e / d``;
* ``0 < n_i < 5k/8``: the Woodbury form, an ``n_i x n_i`` Cholesky instead of ``k x k``
  (``x = g - D^-1 A^T (I + A D^-1 A^T)^-1 A g``, ``g = D^-1 (A^T t + e)``), in float64;
* ``n_i >= 5k/8``: the rows of ``A`` are gathered in L1-sized blocks and ``A^T A`` is summed
  by a register-blocked micro-kernel (4 x 2-vector tiles of the upper triangle, emitted
  as LLVM IR through a numba intrinsic), in the factors' dtype: float32 factors give
  float32 Gram sums, as Spark, implicit and LensKit do, float64 factors float64 sums.
  The right-hand side, the Cholesky factorisation and the solves are float64: a
  blocked right-looking Cholesky (8-row panels by whole-vector row operations, the rest
  by the same micro-kernel) with the right-hand side carried as an extra column, so the
  forward substitution comes with the factorisation.

A row whose Cholesky meets a non-positive pivot (possible only through rounding, when
``d`` is tiny next to the Gram matrix), or for unregularised rows a squared pivot below
the numpy path's singularity test, is flagged and left to the numpy path, which solves
it with a pseudo-inverse fallback.

Rows are independent and each row's arithmetic depends only on its own data, so results
are bit-identical for any number of threads. Threads take rows round-robin from a list
sorted by cost, which balances the long-tailed row lengths of rating data.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import weakref

import numpy as np

try:  # pragma: no cover - exercised when numba is installed
    import numba
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic
except Exception:  # numba missing or broken: the numpy path is used
    numba = None

# NUMBA_DISABLE_JIT runs njit functions as Python, where the LLVM intrinsics cannot run
AVAILABLE = numba is not None and not numba.config.DISABLE_JIT

__all__ = ["AVAILABLE", "solve_rows_fused", "weighted_neighbour_sums", "weighted_sq_distances"]

# numba's fallback "workqueue" threading layer (used where neither OpenMP nor TBB loads)
# aborts the whole process when two Python threads launch parallel regions at once, e.g.
# two models fitted from a thread pool. Launches are serialised until the layer is known
# to be a thread-safe one (omp or tbb); then the lock is skipped.
_LAUNCH_LOCK = threading.Lock()
_THREAD_SAFE_LAYERS = ("omp", "tbb")


@contextlib.contextmanager
def _parallel_region(n_threads):
    """Run a parallel kernel on ``n_threads`` numba threads (restored afterwards),
    serialised against other Python threads unless the threading layer is thread-safe."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet: the layer is not chosen
        layer = None
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        with contextlib.nullcontext() if layer in _THREAD_SAFE_LAYERS else _LAUNCH_LOCK:
            yield
    finally:
        numba.set_num_threads(previous)


if AVAILABLE:
    _jit = njit(fastmath=True, cache=True, nogil=True)

    def _fmuladd(builder, vec):
        """``llvm.fmuladd`` on ``vec``: one fused multiply-add where the CPU has FMA, a
        multiply and an add elsewhere (``llvm.fma`` would fall back to a libm call per lane)."""
        name = "llvm.fmuladd.v%d%s" % (vec.count, "f32" if isinstance(vec.element, ir.FloatType) else "f64")
        return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), name)

    def _splat(builder, vec, scalar):
        """``scalar`` broadcast to every lane of ``vec``."""
        i32 = ir.IntType(32)
        undef = ir.Constant(vec, ir.Undefined)
        one = builder.insert_element(undef, scalar, ir.Constant(i32, 0))
        return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(i32, vec.count), [0] * vec.count))

    def _make_tile(negate):
        """An intrinsic ``tile(A, p0, m, a0, c0, G)``:
        ``G[a0:a0+4, c0:c0+w] (+/-)= A[p0:p0+m, a0:a0+4]^T A[p0:p0+m, c0:c0+w]``, ``w`` = two
        256-bit vectors of the dtype (16 float32, 8 float64); ``-=`` when ``negate``.

        A register-blocked micro-kernel emitted as LLVM IR: the 4 x w block of ``G`` lives
        in eight vector registers while rows of ``A`` stream past; each row costs two
        vector loads and four broadcasts for eight fused multiply-adds, so the loop is
        bound by the FMA units instead of by loads and stores of ``G`` (2.5-2.7x the
        throughput of accumulating in memory). ``A`` and ``G`` are C-contiguous 2-D
        arrays of one float dtype (possibly the same array, with rows ``p0:p0+m`` disjoint
        from rows ``a0:a0+4``); the caller keeps every index in bounds.
        """

        @intrinsic
        def tile(typingctx, A, p0, m, a0, c0, G):
            if not (isinstance(A, types.Array) and isinstance(G, types.Array) and A.dtype == G.dtype
                    and A.dtype in (types.float32, types.float64)):
                return None
            sig = types.void(A, p0, m, a0, c0, G)

            def codegen(context, builder, signature, args):
                aty, gty = signature.args[0], signature.args[5]
                fl = context.get_value_type(aty.dtype)
                L = 8 if aty.dtype == types.float32 else 4
                vec = ir.VectorType(fl, L)
                vptr = vec.as_pointer()
                intp = context.get_value_type(types.intp)
                arr_a = context.make_array(aty)(context, builder, args[0])
                arr_g = context.make_array(gty)(context, builder, args[5])
                lda = cgutils.unpack_tuple(builder, arr_a.shape, 2)[1]
                ldg = cgutils.unpack_tuple(builder, arr_g.shape, 2)[1]
                p0, m, a0, c0 = (context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 2, 3, 4))
                fma = _fmuladd(builder, vec)

                def const(v):
                    return ir.Constant(intp, v)

                # accumulators: stack slots that LLVM's mem2reg turns into registers
                slots, g_ptrs = [], []
                for i in range(4):
                    row = builder.mul(builder.add(a0, const(i)), ldg)
                    for v in range(2):
                        off = builder.add(row, builder.add(c0, const(v * L)))
                        p = builder.bitcast(builder.gep(arr_g.data, [off]), vptr)
                        slot = cgutils.alloca_once(builder, vec)
                        builder.store(builder.load(p, align=1), slot)
                        slots.append(slot)
                        g_ptrs.append(p)
                with cgutils.for_range(builder, m) as loop:
                    row = builder.gep(arr_a.data, [builder.mul(builder.add(p0, loop.index), lda)])
                    cols = [builder.load(builder.bitcast(builder.gep(row, [builder.add(c0, const(v * L))]), vptr),
                                         align=1) for v in range(2)]
                    for i in range(4):
                        s = builder.load(builder.gep(row, [builder.add(a0, const(i))]))
                        if negate:
                            s = builder.fneg(s)
                        bcast = _splat(builder, vec, s)
                        for v in range(2):
                            slot = slots[2 * i + v]
                            builder.store(builder.call(fma, [bcast, cols[v], builder.load(slot)]), slot)
                for p, slot in zip(g_ptrs, slots):
                    builder.store(builder.load(slot), p, align=1)
                return context.get_dummy_value()

            return sig, codegen

        return tile

    _tile_add = _make_tile(False)
    _tile_sub = _make_tile(True)

    @_jit
    def _gram_upper(Y, indices, s0, m, t, Ag, G, b, width):  # pragma: no cover
        """``G = A^T A`` on and above the diagonal (in ``G``'s dtype), ``b += A^T t`` (float64).

        ``A = Y[indices[s0:s0+m]]`` is gathered ``Ag.shape[0]`` rows at a time into ``Ag``
        (its columns beyond ``k`` stay zero), and each block is folded into ``G`` by
        :func:`_tile_add` over the 4 x ``width`` tiles that touch the upper triangle
        (a few entries below the diagonal are computed and never used). ``G`` is
        ``kp x kp``, ``kp`` = ``k`` rounded up to ``width``.
        """
        k = Y.shape[1]
        kp = G.shape[0]
        block = Ag.shape[0]
        for a in range(kp):
            for c in range(kp):
                G[a, c] = 0
        for q0 in range(0, m, block):
            nb = min(block, m - q0)
            for p in range(nb):
                j = indices[s0 + q0 + p]
                tp = t[s0 + q0 + p]
                for a in range(k):
                    y = Y[j, a]
                    Ag[p, a] = y
                    b[a] += np.float64(y) * tp
            for a0 in range(0, kp, 4):
                for c0 in range(a0 // width * width, kp, width):
                    _tile_add(Ag, 0, nb, a0, c0, G)

    def _make_row_op(kind):
        """An intrinsic ``op(D, d, A, a, s, nvec)`` on ``nvec`` whole ``<4 x double>`` vectors
        at flat element offsets ``d`` of ``D`` and ``a`` of ``A`` (C-contiguous float64):
        ``"fnma"``: ``D[d:d+4n] -= s * A[a:a+4n]``; ``"scale"``: ``D[d:d+4n] *= s``
        (``A``, ``a`` unused); ``"dot"``: returns ``A[a:a+4n] . D[d:d+4n]`` (``s`` unused).
        Whole vectors only, so no scalar remainder loops; the caller pads with zeros."""

        @intrinsic
        def op(typingctx, D, d, A, a, s, nvec):
            if not all(isinstance(t, types.Array) and t.dtype == types.float64 for t in (D, A)):
                return None
            sig = (types.float64 if kind == "dot" else types.void)(D, d, A, a, s, nvec)

            def codegen(context, builder, signature, args):
                vec = ir.VectorType(ir.DoubleType(), 4)
                vptr = vec.as_pointer()
                i32 = ir.IntType(32)
                p_d = context.make_array(signature.args[0])(context, builder, args[0]).data
                p_a = context.make_array(signature.args[2])(context, builder, args[2]).data
                d, a, n = (context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 3, 5))
                sc = context.cast(builder, args[4], signature.args[4], types.float64)
                fma = _fmuladd(builder, vec)
                four = ir.Constant(d.type, 4)

                def at(base, off, i):
                    return builder.bitcast(builder.gep(base, [builder.add(off, builder.mul(i, four))]), vptr)

                if kind == "fnma":
                    sc = builder.fneg(sc)
                sv = _splat(builder, vec, sc)
                acc = cgutils.alloca_once(builder, vec)
                builder.store(ir.Constant(vec, [0.0] * 4), acc)
                with cgutils.for_range(builder, n) as loop:
                    p = at(p_d, d, loop.index)
                    if kind == "scale":
                        builder.store(builder.fmul(builder.load(p, align=8), sv), p, align=8)
                    else:
                        x = builder.load(at(p_a, a, loop.index), align=8)
                        if kind == "fnma":
                            builder.store(builder.call(fma, [sv, x, builder.load(p, align=8)]), p, align=8)
                        else:
                            builder.store(builder.call(fma, [x, builder.load(p, align=8), builder.load(acc)]), acc)
                if kind != "dot":
                    return context.get_dummy_value()
                v = builder.load(acc)
                lanes = [builder.extract_element(v, ir.Constant(i32, j)) for j in range(4)]
                return builder.fadd(builder.fadd(lanes[0], lanes[1]), builder.fadd(lanes[2], lanes[3]))

            return sig, codegen

        return op

    _row_fnma = _make_row_op("fnma")
    _row_scale = _make_row_op("scale")
    _row_dot = _make_row_op("dot")

    @_jit
    def _cholesky_solve(S, n, x, dinv, floor):  # pragma: no cover
        """Solve an ``n x n`` SPD system by blocked Cholesky ``S = R^T R``; True when solved.

        ``S`` (float64, C-contiguous, at least ``n`` rounded up to 4 rows and
        :func:`_extent` columns) holds the matrix on and above the diagonal of its first
        ``n`` rows and the right-hand side in column ``n``; zeros must fill the columns
        right of ``n`` up to ``_extent(n)`` (they enter the padded vector operations).
        Left of each diagonal only the diagonal's 8-column block is touched, and with the
        padding rows up to ``n`` rounded up to 4 it serves as scratch that never reaches
        the result; it is kept zero so that stale values cannot slow the arithmetic.
        Nothing further left is ever touched. :func:`_clear_padding` writes these zeros. ``R``
        overwrites the upper triangle and ``R^-T b`` column ``n``, so the forward
        substitution rides along with the factorisation. Panels of 8 pivot rows are
        factorised with whole-vector row operations; the rest of the matrix is updated by
        the :func:`_tile_sub` micro-kernel, four rows by two vectors at a time. Row
        operations start at the diagonal rounded down to a vector, so those few entries
        left of a diagonal hold finite scratch values, never read into the result.
        ``x`` (at least as long as ``S`` is wide) receives the solution, ``dinv`` the
        reciprocal pivots. Returns False (``x`` undefined) when a squared pivot is not
        above ``floor`` (0 for a positive definite system).
        """
        w = S.shape[1]
        ne = (n + 4) // 4 * 4  # columns with the right-hand side, in whole vectors
        nr = (n + 3) // 4 * 4
        for p0 in range(0, n, 8):
            pe = min(p0 + 8, n)
            for p in range(p0, pe):
                s = S[p, p]
                if not s > floor:
                    return False
                d = np.sqrt(s)
                inv = 1.0 / d
                c0 = p // 4 * 4
                # scaling row p from its vector start also turns S[p, p] into s / d = d: no
                # scalar store there, which would stall the vector loads of the row that follow
                _row_scale(S, p * w + c0, S, 0, inv, (ne - c0) // 4)
                dinv[p] = inv
                for q in range(p + 1, pe):
                    cq = q // 4 * 4
                    _row_fnma(S, q * w + cq, S, p * w + cq, S[p, q], (ne - cq) // 4)
            if pe == n:  # the last panel: nothing left to update (and pe may be ragged)
                break
            for a0 in range(pe, nr, 4):  # pe is a multiple of 8 here: a0 + 4 <= nr
                for c0 in range(a0 // 8 * 8, ne, 8):
                    _tile_sub(S, p0, pe - p0, a0, c0, S)
        for c in range(w):
            x[c] = 0.0  # x beyond n stays 0
        for p0 in range(nr - 4, -1, -4):  # R x = y, four rows at a time
            # the four dot products with the solved part are independent (they overlap)
            c0 = p0 + 4
            nv = (nr - c0) // 4
            for p in range(min(p0 + 3, n - 1), p0 - 1, -1):
                t = S[p, n] - _row_dot(x, c0, S, p * w + c0, 0.0, nv)
                for c in range(p + 1, min(c0, n)):
                    t -= S[p, c] * x[c]
                x[p] = t * dinv[p]
        return True

    @_jit
    def _clear_padding(S, n):  # pragma: no cover
        """Zero every entry :func:`_cholesky_solve` touches besides the matrix (on and above
        the diagonal of rows ``< n``) and the right-hand side (column ``n``): the columns
        right of ``n`` up to :func:`_extent` (needed), and the scratch left of each
        diagonal within its 8-column block and the padding rows up to ``n`` rounded up to
        4 (kept zero so stale values cannot slow the arithmetic)."""
        e = _extent(n)
        for a in range(n):
            for c in range(a // 8 * 8, a):
                S[a, c] = 0.0
            for c in range(n + 1, e):
                S[a, c] = 0.0
        for a in range(n, (n + 3) // 4 * 4):
            for c in range(e):
                S[a, c] = 0.0

    @_jit
    def _extent(n):  # pragma: no cover
        """The columns :func:`_cholesky_solve` reads for an ``n x n`` system."""
        return ((n + 4) // 4 * 4 + 7) // 8 * 8

    @njit(parallel=True, fastmath=True, cache=True)
    def _kernel(order, n_chunks, width, gram_min, indptr, indices, targets, Y, diag, extra, use_extra, want_sse,
                pivot_tol, out, sse, ok):  # pragma: no cover
        k = Y.shape[1]
        kp = (k + 7) // 8 * 8
        kg = (k + width - 1) // width * width
        block = max(8, 16384 // (kg * Y.itemsize))  # a gathered block fills half of L1
        for chunk in prange(n_chunks):
            Ag = np.zeros((block, kg), Y.dtype)
            G = np.empty((kg, kg), Y.dtype)
            S = np.zeros((kp, kp + 8))
            dinv = np.empty(kp)
            A = np.empty((k, k))
            AD = np.empty((k, k))
            b = np.empty(k)
            g = np.empty(k)
            x = np.empty(kp + 8)
            z = np.empty(kp + 8)
            for q in range(chunk, order.shape[0], n_chunks):
                r = order[q]
                s0 = indptr[r]
                m = indptr[r + 1] - s0
                for a in range(k):
                    b[a] = extra[r, a] if use_extra else 0.0
                if m >= gram_min:
                    _gram_upper(Y, indices, s0, m, targets, Ag, G, b, width)
                    top = 0.0
                    for a in range(k):
                        S[a, a] = np.float64(G[a, a]) + np.float64(diag[r, a])
                        top = max(top, S[a, a])
                        for c in range(a + 1, k):
                            S[a, c] = G[a, c]
                        S[a, k] = b[a]
                    _clear_padding(S, k)
                    if not _cholesky_solve(S, k, x, dinv, pivot_tol * top):
                        ok[r] = False
                        continue
                elif m > 0:  # Woodbury: an m x m system
                    for p in range(m):
                        j = indices[s0 + p]
                        t = targets[s0 + p]
                        for a in range(k):
                            v = np.float64(Y[j, a])
                            A[p, a] = v
                            AD[p, a] = v / diag[r, a]
                            b[a] += v * t
                    for a in range(k):
                        g[a] = b[a] / diag[r, a]
                    for p in range(m):
                        s = 0.0
                        for a in range(k):
                            s += A[p, a] * g[a]
                        S[p, m] = s  # the right-hand side A g
                        for q2 in range(p):
                            s = 0.0
                            for a in range(k):
                                s += AD[p, a] * A[q2, a]
                            S[q2, p] = s
                        s = 1.0
                        for a in range(k):
                            s += AD[p, a] * A[p, a]
                        S[p, p] = s
                    _clear_padding(S, m)
                    if not _cholesky_solve(S, m, z, dinv, 0.0):
                        ok[r] = False
                        continue
                    for a in range(k):
                        s = g[a]
                        for p in range(m):
                            s -= AD[p, a] * z[p]
                        x[a] = s
                else:
                    for a in range(k):
                        x[a] = b[a] / diag[r, a]
                for a in range(k):
                    out[r, a] = x[a]
                if want_sse:
                    acc = 0.0
                    for p in range(m):
                        j = indices[s0 + p]
                        pred = 0.0
                        for a in range(k):
                            pred += np.float64(Y[j, a]) * x[a]
                        res = targets[s0 + p] - pred
                        acc += res * res
                    sse[r] = acc


    @njit(parallel=True, fastmath=True, cache=True)
    def _row_sq_distances(indptr, indices, weights, U, out):  # pragma: no cover
        for r in prange(len(indptr) - 1):
            acc = 0.0
            for p in range(indptr[r], indptr[r + 1]):
                f = indices[p]
                d2 = 0.0
                for a in range(U.shape[1]):
                    d = np.float64(U[r, a]) - np.float64(U[f, a])
                    d2 += d * d
                acc += weights[p] * d2
            out[r] = acc


    @njit(parallel=True, fastmath=True, cache=True)
    def _row_neighbour_sums(indptr, indices, weights, U, scale, out):  # pragma: no cover
        k = U.shape[1]
        for r in prange(len(indptr) - 1):
            acc = np.zeros(k)
            for p in range(indptr[r], indptr[r + 1]):
                f = indices[p]
                w = weights[p]
                for a in range(k):
                    acc[a] += w * np.float64(U[f, a])
            for a in range(k):
                out[r, a] = scale * acc[a]


def weighted_neighbour_sums(indptr, indices, weights, U, scale, out, n_threads):
    """``out[r, :k] = scale * sum_p w_p U[indices[p]]`` over each row ``r`` of a CSR graph.

    Summed in float64 in CSR order on one thread per row (so independent of
    ``n_threads``), then stored in ``out``'s dtype; ``out`` may be wider than ``U``.
    """
    with _parallel_region(n_threads):
        _row_neighbour_sums(_index_array(indptr), _index_array(indices), np.asarray(weights, dtype=np.float64),
                            np.ascontiguousarray(U), float(scale), out)
    return out


def weighted_sq_distances(indptr, indices, weights, U, n_threads):
    """Per row ``r`` of a CSR graph: ``sum_p w_p ||U[r] - U[indices[p]]||^2`` (float64).

    Each row's sum runs in a fixed order on one thread, so the result (and its
    ``np.sum``) does not depend on ``n_threads``.
    """
    out = np.empty(len(indptr) - 1)
    with _parallel_region(n_threads):
        _row_sq_distances(indptr, indices, np.asarray(weights, dtype=np.float64), np.ascontiguousarray(U), out)
    return out


def _index_array(a):
    """``a`` itself when it is a contiguous int32/int64 array (the kernel takes both)."""
    a = np.ascontiguousarray(a)
    return a if a.dtype in (np.int32, np.int64) else a.astype(np.int64)


# Rows with at least this fraction of k ratings take the Gram route, shorter ones Woodbury:
# with the micro-kernel Gram a row of 5k/8 ratings costs about the same both ways. On the
# MovieLens-shaped user rows at k = 64 the half-step is 4-9 % faster than with a threshold of
# k (``python benchmarks/bench_kernels.py --k 64 --gram-fraction 1.0`` against the default).
_GRAM_FRACTION = 0.625


def _gram_min(k):
    return max(1, int(np.ceil(_GRAM_FRACTION * k)))


# The row order of the last few (indptr, rows, k) seen: a fit solves the same two sparse
# matrices every iteration, so the sort is done once per fit instead of twice per sweep.
_ORDER_CACHE: "collections.OrderedDict[int, tuple]" = collections.OrderedDict()
_ORDER_CACHE_SIZE = 8
_ORDER_LOCK = threading.Lock()


def _row_order(rows, indptr, k, gram_min):
    """``rows`` by decreasing cost, for the round-robin threads.

    Cost model: Gram rows ~ n k^2 / 2 + k^3 / 3, Woodbury rows ~ n^2 k + n^3 / 3. The order
    only balances the threads (results never depend on it), so rows are sorted by an int16
    key of 1/8-octave cost buckets: a radix sort, ~4x cheaper than sorting floats. Cached
    per ``indptr`` object (held by a weak reference, so a freed array never matches).
    """
    key = id(indptr)
    with _ORDER_LOCK:
        hit = _ORDER_CACHE.get(key)
    if hit is not None:
        ref, c_rows, c_k, c_min, order = hit
        if ref() is indptr and c_k == k and c_min == gram_min and np.array_equal(c_rows, rows):
            return order
    counts = indptr[rows + 1] - indptr[rows]
    n = counts.astype(np.float32)
    cost = np.where(counts >= gram_min, n * (k * k / 2) + k**3 / 3, n * n * (n / 3 + k) + k)
    order = rows[np.argsort((-8 * np.log2(cost)).astype(np.int16), kind="stable")]
    try:
        ref = weakref.ref(indptr)
    except TypeError:  # not weak-referenceable: no caching
        return order
    with _ORDER_LOCK:
        _ORDER_CACHE[key] = (ref, rows.copy(), k, gram_min, order)
        _ORDER_CACHE.move_to_end(key)
        while len(_ORDER_CACHE) > _ORDER_CACHE_SIZE:
            _ORDER_CACHE.popitem(last=False)
    return order


def solve_rows_fused(rows, indptr, indices, targets, Y, diag, extra, want_sse, n_threads, out, sse, pivot_tol=0.0):
    """Solve ``(A_i^T A_i + diag(d_i)) x_i = A_i^T t_i + e_i`` for ``rows``.

    Every row needs ``d > 0``, or at least ``k`` observations (then ``d`` may be 0: the
    unregularised normal equations). Writes ``out[rows]`` (and ``sse[rows]`` when asked);
    returns a boolean mask over ``rows`` of the rows solved. False: a squared Cholesky
    pivot of a Gram system not above ``pivot_tol`` times its largest diagonal entry (for
    ``pivot_tol`` = 0: not positive, see module doc); the caller solves those rows itself.
    """
    k = Y.shape[1]
    rows = np.asarray(rows, dtype=np.int64)
    gram_min = _gram_min(k)
    order = _row_order(rows, indptr, k, gram_min)
    use_extra = extra is not None
    ext = extra if use_extra else np.zeros((1, k), dtype=Y.dtype)
    ok = np.ones(len(out), dtype=bool)
    threads = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS, len(rows)))
    with _parallel_region(threads):
        _kernel(
            order,
            threads,
            16 if Y.dtype == np.float32 else 8,  # two AVX2 vectors of the dtype
            gram_min,
            _index_array(indptr),
            _index_array(indices),
            np.ascontiguousarray(targets, dtype=np.float64),
            np.ascontiguousarray(Y),
            np.ascontiguousarray(diag),  # the dtype of Y: no float64 copy per half-step
            np.ascontiguousarray(ext),
            use_extra,
            want_sse,
            float(pivot_tol),
            out,
            sse if sse is not None else np.zeros(len(out)),
            ok,
        )
    return ok[rows]
