"""A compiled (numba) half-step for regularised rows: gather, Gram or Woodbury, Cholesky.

Used by :func:`socialals._linalg.solve_rows` for every row with a positive diagonal
regulariser when numba imports; the pure numpy path remains the reference and the
fallback. For row ``i`` with observed columns ``J_i`` (``n_i`` of them), ``A = Y[J_i]``,
targets ``t`` and diagonal ``d > 0`` it solves ``(A^T A + diag(d)) x = A^T t + e``:

* ``n_i = 0``: ``x = e / d``;
* ``0 < n_i < k``: the Woodbury form, an ``n_i x n_i`` Cholesky instead of ``k x k``
  (``x = g - D^-1 A^T (I + A D^-1 A^T)^-1 A g``, ``g = D^-1 (A^T t + e)``), in float64;
* ``n_i >= k``: the rows of ``A`` are gathered in L1-sized blocks and ``A^T A`` is summed
  by a register-blocked micro-kernel (4 x 2-vector tiles of the lower triangle, emitted
  as LLVM IR through a numba intrinsic), in the factors' dtype: float32 factors give
  float32 Gram sums, as Spark, implicit and LensKit do, float64 factors float64 sums.
  The right-hand side, the Cholesky factorisation and the solves are float64.

A row whose Cholesky meets a non-positive pivot (possible only through rounding, when
``d`` is tiny next to the Gram matrix) is flagged and left to the numpy path, which
solves it with a pseudo-inverse fallback.

Rows are independent and each row's arithmetic depends only on its own data, so results
are bit-identical for any number of threads. Threads take rows round-robin from a list
sorted by cost, which balances the long-tailed row lengths of rating data.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

try:  # pragma: no cover - exercised when numba is installed
    import numba
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic
except Exception:  # numba missing or broken: the numpy path is used
    numba = None

AVAILABLE = numba is not None

__all__ = ["AVAILABLE", "solve_rows_fused", "weighted_sq_distances"]

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
                name = "llvm.fma.v%d%s" % (L, "f32" if L == 8 else "f64")
                fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), name)

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
                undef = ir.Constant(vec, ir.Undefined)
                splat = ir.Constant(ir.VectorType(ir.IntType(32), L), [0] * L)
                with cgutils.for_range(builder, m) as loop:
                    row = builder.gep(arr_a.data, [builder.mul(builder.add(p0, loop.index), lda)])
                    cols = [builder.load(builder.bitcast(builder.gep(row, [builder.add(c0, const(v * L))]), vptr),
                                         align=1) for v in range(2)]
                    for i in range(4):
                        s = builder.load(builder.gep(row, [builder.add(a0, const(i))]))
                        if negate:
                            s = builder.fneg(s)
                        bcast = builder.shuffle_vector(
                            builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0)), undef, splat)
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
    def _gram_lower(Y, indices, s0, m, t, Ag, G, b, width):  # pragma: no cover
        """``G = A^T A`` on and below the diagonal (in ``G``'s dtype), ``b += A^T t`` (float64).

        ``A = Y[indices[s0:s0+m]]`` is gathered ``Ag.shape[0]`` rows at a time into ``Ag``
        (its columns beyond ``k`` stay zero), and each block is folded into ``G`` by
        :func:`_tile_add` over the 4 x ``width`` tiles that touch the lower triangle
        (a few entries above the diagonal are computed and never used). ``G`` is
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
                for c0 in range(0, a0 + 4, width):
                    _tile_add(Ag, 0, nb, a0, c0, G)

    @_jit
    def _cholesky_solve(H, dd, n, b, x):  # pragma: no cover
        """Solve ``S x = b[:n]`` by Cholesky ``S = L L^T``, ``S`` given as ``H`` and ``dd``.

        ``H`` holds the strictly lower triangle of ``S`` and zeros everywhere else (on the
        diagonal too), with at least ``n`` rounded up to a multiple of 8 columns; ``dd``
        holds the diagonal. ``L`` overwrites both. Because the entries right of a row's
        diagonal are zero, every dot product may run to the next multiple of 8, so the
        inner loops vectorise without scalar remainders (about twice as fast at k = 64
        as the exact lengths). ``x`` (as long as ``H`` is wide) receives the solution.
        Returns False (``x`` undefined) when a pivot is not positive.
        """
        for a in range(x.shape[0]):
            x[a] = 0.0  # the padded dot products read x[a:], multiplied by zeros
        for a in range(n):
            w = (a + 7) // 8 * 8
            s = dd[a]
            for c in range(w):
                s -= H[a, c] * H[a, c]
            if not s > 0.0:
                return False
            d = np.sqrt(s)
            dd[a] = d
            for i in range(a + 1, n):
                s2 = H[i, a]
                for c in range(w):
                    s2 -= H[i, c] * H[a, c]
                H[i, a] = s2 / d
        for a in range(n):  # L y = b
            w = (a + 7) // 8 * 8
            s = b[a]
            for c in range(w):
                s -= H[a, c] * x[c]
            x[a] = s / dd[a]
        for a in range(n - 1, -1, -1):  # L^T x = y, column by column
            xa = x[a] / dd[a]
            x[a] = xa
            for c in range(a):
                x[c] -= H[a, c] * xa
        return True

    @njit(parallel=True, fastmath=True, cache=True)
    def _kernel(order, n_chunks, width, indptr, indices, targets, Y, diag, extra, use_extra, want_sse,
                out, sse, ok):  # pragma: no cover
        k = Y.shape[1]
        kp = (k + 7) // 8 * 8
        kg = (k + width - 1) // width * width
        block = max(8, 16384 // (kg * Y.itemsize))  # a gathered block fills half of L1
        for chunk in prange(n_chunks):
            Ag = np.zeros((block, kg), Y.dtype)
            G = np.empty((kg, kg), Y.dtype)
            H = np.zeros((k, kp))
            dd = np.empty(k)
            A = np.empty((k, k))
            AD = np.empty((k, k))
            b = np.empty(k)
            g = np.empty(k)
            x = np.empty(kp)
            z = np.empty(kp)
            for q in range(chunk, order.shape[0], n_chunks):
                r = order[q]
                s0 = indptr[r]
                m = indptr[r + 1] - s0
                for a in range(k):
                    b[a] = extra[r, a] if use_extra else 0.0
                if m >= k:
                    _gram_lower(Y, indices, s0, m, targets, Ag, G, b, width)
                    for a in range(k):
                        for c in range(a):
                            H[a, c] = G[a, c]
                        for c in range(a, kp):
                            H[a, c] = 0.0
                        dd[a] = np.float64(G[a, a]) + np.float64(diag[r, a])
                    if not _cholesky_solve(H, dd, k, b, x):
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
                        b[p] = s  # b is free now: the right-hand side A g
                        for q2 in range(p):
                            s = 0.0
                            for a in range(k):
                                s += AD[p, a] * A[q2, a]
                            H[p, q2] = s
                        s = 1.0
                        for a in range(k):
                            s += AD[p, a] * A[p, a]
                        dd[p] = s
                        for c in range(p, kp):
                            H[p, c] = 0.0
                    if not _cholesky_solve(H, dd, m, b, z):
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


def solve_rows_fused(rows, indptr, indices, targets, Y, diag, extra, want_sse, n_threads, out, sse):
    """Solve ``(A_i^T A_i + diag(d_i)) x_i = A_i^T t_i + e_i`` for ``rows`` (``d > 0``).

    Writes ``out[rows]`` (and ``sse[rows]`` when asked); returns a boolean mask over
    ``rows`` of the rows solved (False: a non-positive Cholesky pivot, see module doc).
    """
    k = Y.shape[1]
    rows = np.asarray(rows, dtype=np.int64)
    counts = indptr[rows + 1] - indptr[rows]
    # cost model: Gram rows ~ n k^2 / 2 + k^3 / 3, Woodbury rows ~ n^2 k + n^3 / 3. The order
    # only balances the threads (results never depend on it), so rows are sorted by an
    # int16 key of 1/8-octave cost buckets: a radix sort, ~4x cheaper than sorting floats.
    n = counts.astype(np.float32)
    cost = np.where(counts >= k, n * (k * k / 2) + k**3 / 3, n * n * (n / 3 + k) + k)
    order = rows[np.argsort((-8 * np.log2(cost)).astype(np.int16), kind="stable")]
    use_extra = extra is not None
    ext = extra if use_extra else np.zeros((1, k), dtype=Y.dtype)
    ok = np.ones(len(out), dtype=bool)
    threads = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS, len(rows)))
    with _parallel_region(threads):
        _kernel(
            order,
            threads,
            16 if Y.dtype == np.float32 else 8,  # two AVX2 vectors of the dtype
            _index_array(indptr),
            _index_array(indices),
            np.ascontiguousarray(targets, dtype=np.float64),
            np.ascontiguousarray(Y),
            np.ascontiguousarray(diag),  # the dtype of Y: no float64 copy per half-step
            np.ascontiguousarray(ext),
            use_extra,
            want_sse,
            out,
            sse if sse is not None else np.zeros(len(out)),
            ok,
        )
    return ok[rows]
