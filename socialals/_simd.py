"""Hand-written SIMD micro-kernels (LLVM IR through numba intrinsics) and their plain twins.

Four operations dominate a half-step: the Gram tile ``G[a0:a0+4, c0:c0+w] (+/-)= A^T A`` and
three whole-vector row operations of the blocked Cholesky (``fnma``, ``scale``, ``dot``).
Measured on this project's benchmarks, no library routine does them as fast on the
many small systems of ALS: LAPACK's ``dposv`` through ``scipy.linalg.cython_lapack`` costs
1.7-1.9x the blocked Cholesky per solve at k = 16 and 64 (``python
benchmarks/bench_kernels.py --lapack``), which is more than 10 % of an iteration.

Each operation exists twice with one contract:

* ``*_ir``: LLVM IR emitted through ``numba.extending.intrinsic``, a register-blocked
  4 x (two 256-bit vectors) tile, used where the host CPU has AVX2 and FMA;
* ``*_plain``: the same arithmetic as ordinary numba loops, used elsewhere (and when
  ``SOCIALALS_SIMD=0`` is set before import). Tests hold the two to each other at
  k in {1, 8, 10, 16, 21, 64} in both dtypes.

The names without suffix (``tile_add``, ``tile_sub``, ``row_fnma``, ``row_scale``,
``row_dot``) are the chosen ones; the compiled half-step (:mod:`socialals._kernels`) calls
only those. Callers keep every index in bounds: the IR does raw pointer arithmetic that
bounds checking cannot see, so the contracts below are tested with NaN-filled margins.
Numba caches compiled kernels on disk: after changing ``SOCIALALS_SIMD`` use a fresh
``NUMBA_CACHE_DIR``.
"""

from __future__ import annotations

import os

from ._config import njit as _njit
from ._config import numba_available

__all__ = ["USE_IR", "host_has_simd", "tile_add", "tile_sub", "row_fnma", "row_scale", "row_dot"]


def host_has_simd() -> bool:
    """True where the host CPU has AVX2 and FMA (what the IR tiles are shaped for)."""
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features()
        return bool(features.get("avx2")) and bool(features.get("fma"))
    except Exception:  # pragma: no cover - llvmlite without the query
        return False


USE_IR = numba_available and host_has_simd() and os.environ.get("SOCIALALS_SIMD", "1") != "0"

if numba_available:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

if numba_available:
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

    tile_add_ir = _make_tile(False)
    tile_sub_ir = _make_tile(True)


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

    row_fnma_ir = _make_row_op("fnma")
    row_scale_ir = _make_row_op("scale")
    row_dot_ir = _make_row_op("dot")


_plain = _njit(fastmath=True, nogil=True, error_model="numpy", inline="always")


@_plain
def tile_add_plain(A, p0, m, a0, c0, G):  # pragma: no cover - compiled
    """``G[a0:a0+4, c0:c0+w] += A[p0:p0+m, a0:a0+4]^T A[p0:p0+m, c0:c0+w]``, ``w`` = 16 for
    float32 and 8 for float64 (the IR tile's width)."""
    w = 16 if A.itemsize == 4 else 8
    for p in range(p0, p0 + m):
        for i in range(4):
            s = A[p, a0 + i]
            for c in range(w):
                G[a0 + i, c0 + c] += s * A[p, c0 + c]


@_plain
def tile_sub_plain(A, p0, m, a0, c0, G):  # pragma: no cover - compiled
    """As :func:`tile_add_plain`, subtracting."""
    w = 16 if A.itemsize == 4 else 8
    for p in range(p0, p0 + m):
        for i in range(4):
            s = A[p, a0 + i]
            for c in range(w):
                G[a0 + i, c0 + c] -= s * A[p, c0 + c]


@_plain
def row_fnma_plain(D, d, A, a, s, nvec):  # pragma: no cover - compiled
    """``D.flat[d:d+4n] -= s * A.flat[a:a+4n]``."""
    Df, Af = D.reshape(-1), A.reshape(-1)
    for i in range(4 * nvec):
        Df[d + i] -= s * Af[a + i]


@_plain
def row_scale_plain(D, d, A, a, s, nvec):  # pragma: no cover - compiled
    """``D.flat[d:d+4n] *= s``."""
    Df = D.reshape(-1)
    for i in range(4 * nvec):
        Df[d + i] *= s


@_plain
def row_dot_plain(D, d, A, a, s, nvec):  # pragma: no cover - compiled
    """``A.flat[a:a+4n] . D.flat[d:d+4n]``."""
    Df, Af = D.reshape(-1), A.reshape(-1)
    acc = 0.0
    for i in range(4 * nvec):
        acc += Af[a + i] * Df[d + i]
    return acc


if USE_IR:
    tile_add, tile_sub = tile_add_ir, tile_sub_ir
    row_fnma, row_scale, row_dot = row_fnma_ir, row_scale_ir, row_dot_ir
else:
    tile_add, tile_sub = tile_add_plain, tile_sub_plain
    row_fnma, row_scale, row_dot = row_fnma_plain, row_scale_plain, row_dot_plain
