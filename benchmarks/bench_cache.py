"""Why 10x the ratings costs a little more than 10x the time: the gather outgrows L2.

The ALS half-step's inner loop gathers the other side's factor rows of each row's
ratings and folds them into the row's Gram matrix (``socialals._kernels._gram_upper``
with the SIMD tile of ``socialals._simd``). This script times that loop alone, single
threaded, on the item-major and the user-major rating matrices of ``bench_scale.py``'s
synthetic sets at 1 M and 10 M ratings (k = 16, float64), and prints nanoseconds per
rating. At 1 M ratings the gathered matrix (6,061 users or 3,706 items x 16 x 8 bytes:
0.78 and 0.47 MB) fits this machine's 1 MiB L2 cache; at 10 M (60,606 users, 11,719
items: 7.8 and 1.5 MB) it does not, and every gathered row comes from L3.

It also times the same loop with a software prefetch (``llvm.prefetch``) of the row
``PD`` ratings ahead, to see whether the hardware's out-of-order loads leave latency to
hide. The factor matrix is allocated afresh 6 times (new pages each time); each time
every variant runs once, interleaved. Reported: the fastest and the slowest of the six,
since on this virtual machine the same loop over the same indices costs more or less
depending on where the matrix's pages land (transparent huge pages only on request here, which
numpy makes for arrays of 4 MB and more: the 7.8 MB matrix gets 6 MB of them, the rest 4 KB pages).

Usage::

    python benchmarks/bench_cache.py [--output benchmarks/results/bench_cache.txt]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import llvmlite.binding as llb  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

from socialals import _simd  # noqa: E402

_SUFFIX = ".p0" if llb.llvm_version_info[0] >= 15 else ".p0i8"


@intrinsic
def _prefetch(typingctx, arr, i):
    """Hint the CPU to load row ``i`` of the C-contiguous 2-D ``arr`` (read, keep in all levels)."""

    def codegen(context, builder, signature, args):
        a = context.make_array(signature.args[0])(context, builder, args[0])
        idx = context.cast(builder, args[1], signature.args[1], types.intp)
        addr = builder.add(builder.ptrtoint(a.data, ir.IntType(64)), builder.mul(idx, builder.extract_value(a.strides, 0)))
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch" + _SUFFIX)
        builder.call(fn, [builder.inttoptr(addr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, i), codegen


def _loop(ahead: int):
    @njit(fastmath=True, nogil=True)
    def gram(Y, indptr, indices, out):
        k = Y.shape[1]
        Ag = np.zeros((128, 16))
        G = np.zeros((16, 16))
        for r in range(len(indptr) - 1):
            s0, m = indptr[r], indptr[r + 1] - indptr[r]
            G[:, :] = 0
            for q0 in range(0, m, 128):
                nb = min(128, m - q0)
                for p in range(nb):
                    if ahead > 0 and s0 + q0 + p + ahead < len(indices):
                        _prefetch(Y, indices[s0 + q0 + p + ahead])
                    j = indices[s0 + q0 + p]
                    for a in range(k):
                        Ag[p, a] = Y[j, a]
                for a0 in range(0, 16, 4):
                    for c0 in range(a0 // 8 * 8, 16, 8):
                        _simd.tile_add(Ag, 0, nb, a0, c0, G)
            out[r] = G[0, 0] + G[3, 15]  # keeps the loop's work alive

    return gram


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", default=None)
    args = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).with_name("bench_scale.py"))
    bench_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_scale)
    variants = {"no prefetch": _loop(0), "prefetch 8 ahead": _loop(8), "prefetch 16 ahead": _loop(16)}
    lines = ["python benchmarks/bench_cache.py",
             "gather + Gram tile of a half-step, k = 16, float64, one thread; ns per rating, fastest-slowest of 6 allocations", "",
             f"{'ratings':>9} {'side':>5} {'gathered MB':>11} " + " ".join(f"{name:>18}" for name in variants)]
    per = {}
    for size in (1_000_000, 10_000_000):
        ratings, _ = bench_scale.synthetic(size)
        R = sp.csr_matrix((np.ones(len(ratings)), (ratings.user.to_numpy(), ratings.item.to_numpy())))
        R.sort_indices()
        Rt = R.T.tocsr()
        Rt.sort_indices()
        for side, M in (("item", Rt), ("user", R)):
            indptr, indices = M.indptr.astype(np.int64), M.indices.astype(np.int32)
            out = np.empty(M.shape[0])
            times = {name: [] for name in variants}
            for trial in range(6):
                Y = np.random.default_rng(trial).normal(size=(M.shape[1], 16))  # fresh pages
                for name, fn in variants.items():
                    fn(Y, indptr, indices, out)  # compiles (first trial) and warms the caches
                    t0 = time.perf_counter()
                    fn(Y, indptr, indices, out)
                    times[name].append((time.perf_counter() - t0) * 1e9 / M.nnz)
                del Y
            per[(size, side)] = times["no prefetch"]
            lines.append(f"{len(ratings):>9} {side:>5} {M.shape[1] * 128 / 1e6:>11.2f} "
                         + " ".join(f"{min(t):>8.2f}-{max(t):<9.2f}" for t in times.values()))
    big, small = max(s for s, _ in per), min(s for s, _ in per)
    lines += ["", "10 M over 1 M, ns per rating without prefetch, fastest / slowest allocation: "
              + ", ".join(f"{side} {min(per[(big, side)]) / min(per[(small, side)]):.3f}x / "
                          f"{max(per[(big, side)]) / max(per[(small, side)]):.3f}x" for side in ("item", "user"))]
    text = "\n".join(lines)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
