"""What a Dask frame of social links costs the client, in bytes a link.

A fit from a ``dask.dataframe.DataFrame`` of links checks and codes each partition on its
worker (:func:`socialals.data._link_chunk`) and joins the chunks on the client
(:func:`socialals.data._join_links`), where ``W`` is built. This script runs the same two
steps in one process on synthetic links (string labels ``"u<n>"`` as Dask holds them,
``--extra`` users known only through the graph, 1 % self-links and 1 % repeated links,
float64 weights) cut into ``--partitions`` chunks, and reports per link:

* ``shipped``: the bytes of the arrays each chunk sends the client (codes, weights,
  graph-only labels' count not included: they are O(users));
* ``join peak``: the peak of the client's join (``tracemalloc``: numpy's and Python's
  allocations) over the shipped chunks, the pair-key duplicate check included;
* ``edges``: the cleaned links the fit holds until ``W`` is built;
* ``W``: the symmetric weight matrix (CSR, 32-bit indices), and the peak of its build;
* ``frame``: for comparison, the bytes of the links as a pandas frame
  (``memory_usage(deep=True)``), what gathering the partitions to the client would bring.

Usage::

    python benchmarks/bench_links.py                          # 2 M links among 200 k users
    python benchmarks/bench_links.py --links 500000 --users 50000 --partitions 4
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from socialals.data import Columns, _join_links, _link_chunk  # noqa: E402
from socialals.social import symmetric_weights  # noqa: E402


def synthetic_links(n_links: int, n_users: int, n_extra: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.array([f"u{i}" for i in range(n_users + n_extra)], dtype=object)
    a = rng.integers(0, n_users + n_extra, n_links)
    b = rng.integers(0, n_users, n_links)
    loops = rng.random(n_links) < 0.01
    b[loops] = a[loops]
    again = rng.random(n_links) < 0.01
    a[again], b[again] = a[np.roll(again, 1)], b[np.roll(again, 1)]
    links = pd.DataFrame({"user": labels[a], "friend": labels[b], "weight": rng.uniform(0.1, 1.0, n_links)})
    return links, pd.Index(labels[:n_users])


def peak_of(fn, *args):
    """``fn(*args)`` and the peak of the memory it allocated (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        out = fn(*args)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--links", type=int, default=2_000_000)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--extra", type=int, default=1_000, help="users known only through the links")
    parser.add_argument("--partitions", type=int, default=8)
    a = parser.parse_args(argv)
    symmetric_weights(3, np.array([0, 1]), np.array([1, 2]), np.ones(2))  # compiled before it is measured
    links, users = synthetic_links(a.links, a.users, a.extra)
    frame_bytes = int(links.memory_usage(index=False, deep=True).sum())
    cuts = np.linspace(0, len(links), a.partitions + 1).astype(int)
    chunks = [_link_chunk(links.iloc[lo:hi], users, Columns()).shipped() for lo, hi in zip(cuts[:-1], cuts[1:])]
    shipped = sum(ch.src.nbytes + ch.dst.nbytes + ch.weight.nbytes for ch in chunks)
    del links
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (src, dst, w, all_users), join_peak = peak_of(_join_links, chunks, users)
    del chunks
    edges = src.nbytes + dst.nbytes + w.nbytes
    W, w_peak = peak_of(symmetric_weights, len(all_users), src, dst, w)
    w_bytes = W.data.nbytes + W.indices.nbytes + W.indptr.nbytes
    n = a.links
    print(f"python benchmarks/bench_links.py --links {a.links} --users {a.users} --extra {a.extra} "
          f"--partitions {a.partitions}")
    print(f"{n} links ({len(src)} after cleaning), {len(all_users)} users ({len(all_users) - len(users)} only "
          f"in the graph); bytes a link given:")
    print()
    print("| frame (gathered) | shipped | join peak | edges kept | W | W build peak |")
    print("|---|---|---|---|---|---|")
    print(f"| {frame_bytes / n:.1f} | {shipped / n:.1f} | {join_peak / n:.1f} | {edges / n:.1f} | {w_bytes / n:.1f} "
          f"(nnz {W.nnz}) | {w_peak / n:.1f} |")


if __name__ == "__main__":
    main()
