"""Property test of the top-n selection: compiled kernel, numpy reference and a plain
Python sort agree on random score blocks (many ties, NaN and infinities, exclusion lists
with repeats, candidate lists, banned columns, both dtypes and index widths).

Profiles (tests/conftest.py): "ci" by default; ``--hypothesis-profile=thorough`` searches
far longer.
"""

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import socialals  # noqa: E402
from socialals._topn import select_topn, select_topn_reference  # noqa: E402

VALUES = [0.0, 1.0, -1.0, 2.5, 1e30, -1e30, np.nan, np.inf, -np.inf]


@st.composite
def cases(draw):
    m = draw(st.integers(1, 8))
    n_cols = draw(st.integers(1, 25))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    scores = np.array(draw(st.lists(st.sampled_from(VALUES), min_size=m * n_cols, max_size=m * n_cols)),
                      dtype=dtype).reshape(m, n_cols)
    n_rows = draw(st.integers(1, 6))
    excl = [draw(st.lists(st.integers(0, n_cols - 1), max_size=n_cols + 2)) for _ in range(n_rows)]  # repeats too
    indptr = np.concatenate([[0], np.cumsum([len(e) for e in excl])])
    idx_dtype = draw(st.sampled_from([np.int32, np.int64]))
    indices = np.array([c for e in excl for c in e], dtype=idx_dtype)
    rows = np.array(draw(st.lists(st.integers(0, n_rows - 1), min_size=m, max_size=m)), dtype=np.int64)
    cand = draw(st.none() | st.sets(st.integers(0, n_cols - 1)).map(lambda s: np.array(sorted(s), dtype=np.int64)))
    banned = draw(st.none() | st.lists(st.integers(0, n_cols - 1), max_size=n_cols).map(np.array))
    n = draw(st.integers(1, n_cols + 2))
    return scores, n, rows, indptr, indices, cand, banned


def _plain(scores, n, rows, indptr, indices, cand, banned):
    out = []
    m, n_cols = scores.shape
    pool = range(n_cols) if cand is None else [int(c) for c in cand]
    ban = set() if banned is None else {int(c) for c in banned}
    for r in range(m):
        skip = ban | {int(c) for c in indices[indptr[rows[r]]: indptr[rows[r] + 1]]}
        ok = [j for j in pool if j not in skip and np.isfinite(scores[r, j])]
        out.append(sorted(ok, key=lambda j: (-float(scores[r, j]), j))[:n])
    return out


@given(cases())
def test_kernel_reference_and_plain_sort_agree(case):
    compiled = select_topn(*case)
    reference = select_topn_reference(*case)
    with socialals.config_context(compiled=False):
        switched = select_topn(*case)
    for a, b, c in zip(compiled, reference, switched):
        assert a.dtype == b.dtype == c.dtype
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    index, value, count = compiled
    for r, want in enumerate(_plain(*case)):
        assert index[r, : count[r]].tolist() == want
        np.testing.assert_array_equal(value[r, : count[r]], case[0][r, want])
