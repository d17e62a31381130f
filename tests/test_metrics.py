"""Tests for socialals.metrics against hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from socialals.metrics import (
    average_precision_at_k,
    catalog_coverage,
    hit_rate_at_k,
    mae,
    mean_ranking_metrics,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
    roc_auc,
)

LOG2_3 = math.log2(3)


def recs_frame(lists):
    """Long recommendation table from {user: [item at rank 1, rank 2, ...]}."""
    rows = [
        (user, item, rank, 1.0 / rank)
        for user, items in lists.items()
        for rank, item in enumerate(items, start=1)
    ]
    return pd.DataFrame(rows, columns=["user", "item", "rank", "score"])


def make_test(pairs):
    """Test table from [(user, item, rating), ...]."""
    return pd.DataFrame(pairs, columns=["user", "item", "rating"])


def row_of(table, user):
    rows = table[table["user"] == user]
    assert len(rows) == 1
    return rows.iloc[0]


# ---------------------------------------------------------------------------
# rmse / mae
# ---------------------------------------------------------------------------
def test_rmse_and_mae_hand_computed():
    # errors 0, 0, 2: RMSE = sqrt(4/3), MAE = 2/3
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    # errors -1, 1, 3, -3: RMSE = sqrt(20/4) = sqrt(5), MAE = 8/4 = 2
    assert rmse(np.array([2.0, 2, 2, 2]), [1, 3, 5, -1]) == pytest.approx(math.sqrt(5))
    assert mae(np.array([2.0, 2, 2, 2]), [1, 3, 5, -1]) == pytest.approx(2.0)
    assert isinstance(rmse([1], [1]), float) and rmse([1], [1]) == 0.0


def test_rmse_matches_by_position_not_index():
    y_true = pd.Series([1.0, 2.0], index=[5, 6])
    y_pred = pd.Series([1.0, 4.0], index=[6, 5])
    # by position: errors 0 and 2 -> sqrt(2); index alignment would give sqrt(5)
    assert rmse(y_true, y_pred) == pytest.approx(math.sqrt(2))
    assert mae(y_true, y_pred) == pytest.approx(1.0)


@pytest.mark.parametrize("func", [rmse, mae])
def test_error_metrics_validate_inputs(func):
    name = func.__name__
    with pytest.raises(ValueError, match="same length; got 3 and 2") as info:
        func([1, 2, 3], [1, 2])
    assert name in str(info.value)
    with pytest.raises(ValueError, match="empty"):
        func([], [])
    with pytest.raises(ValueError, match=r"'y_pred' parameter .* 1 non-finite .* position 1"):
        func([1, 2, 3], [1, np.nan, 3])
    with pytest.raises(ValueError, match=r"'y_true' parameter .* non-finite"):
        func([1, np.inf], [1, 2])
    with pytest.raises(ValueError, match="one-dimensional"):
        func([[1, 2]], [[1, 2]])
    with pytest.raises(ValueError, match="'y_true'"):
        func(["a", "b"], [1, 2])
    with pytest.raises(ValueError, match=r"'y_pred' parameter .* non-finite"):
        func(pd.Series([1.0, 2.0]), pd.Series([1.0, None], dtype="Float64"))


# ---------------------------------------------------------------------------
# ranking metrics, hand-computed
# ---------------------------------------------------------------------------
def test_roc_auc_equals_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    score = rng.integers(0, 10, 200).astype(float)  # many ties
    pos, neg = score[y == 1], score[y == 0]
    diff = pos[:, None] - neg[None, :]
    expect = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size  # the definition, pair by pair
    assert roc_auc(y, score) == pytest.approx(expect, rel=1e-12)
    assert roc_auc(2 * y - 1, score) == pytest.approx(expect, rel=1e-12)  # {-1, +1} labels
    assert roc_auc(y, -score) == pytest.approx(1 - expect, rel=1e-12)


def test_roc_auc_validation():
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="labels must be"):
        roc_auc([0, 2], [0.2, 0.3])
    with pytest.raises(ValueError):
        roc_auc([0, 1], [0.2, np.nan])


def test_basic_user_relevant_a_c_ranking_a_b_c():
    # relevant {a, c}, ranking [a, b, c], k = 3
    #   P@3  = 2/3
    #   R@3  = 2/2 = 1
    #   AP@3 = (1/1 + 2/3) / min(3, 2) = 5/6
    #   NDCG = (1/log2(2) + 1/log2(4)) / (1/log2(2) + 1/log2(3)) = 1.5 / (1 + 1/log2 3)
    recs = recs_frame({"u": ["a", "b", "c"]})
    test = make_test([("u", "a", 5.0), ("u", "c", 3.0)])
    table = ranking_metrics(recs, test, k=3)
    assert list(table.columns) == [
        "user", "n_relevant", "n_recommended", "n_hits",
        "precision", "recall", "ndcg", "average_precision", "hit_rate",
    ]
    row = row_of(table, "u")
    assert (row["n_relevant"], row["n_recommended"], row["n_hits"]) == (2, 3, 2)
    assert row["precision"] == pytest.approx(2 / 3)
    assert row["recall"] == pytest.approx(1.0)
    assert row["average_precision"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert row["ndcg"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / LOG2_3))
    assert row["hit_rate"] == 1.0
    assert table.attrs["k"] == 3


def test_cut_at_k_smaller_than_list():
    # same user, k = 2 -> top list [a, b]
    #   P@2 = 1/2, R@2 = 1/2, AP@2 = (1/1) / min(2, 2) = 1/2
    #   NDCG@2 = 1 / (1 + 1/log2 3)
    recs = recs_frame({"u": ["a", "b", "c"]})
    test = make_test([("u", "a", 5.0), ("u", "c", 3.0)])
    row = row_of(ranking_metrics(recs, test, k=2), "u")
    assert row["n_recommended"] == 2
    assert row["precision"] == pytest.approx(0.5)
    assert row["recall"] == pytest.approx(0.5)
    assert row["average_precision"] == pytest.approx(0.5)
    assert row["ndcg"] == pytest.approx(1 / (1 + 1 / LOG2_3))


def test_k_larger_than_list():
    # k = 5 but only 3 items recommended:
    #   P@5 = 2/5 (denominator is k), R@5 = 1
    #   AP@5 = (1 + 2/3) / min(5, 2) = 5/6
    #   NDCG@5: IDCG still uses min(5, 2) = 2 ideal hits -> same as NDCG@3
    recs = recs_frame({"u": ["a", "b", "c"]})
    test = make_test([("u", "a", 5.0), ("u", "c", 3.0)])
    row = row_of(ranking_metrics(recs, test, k=5), "u")
    assert row["n_recommended"] == 3
    assert row["precision"] == pytest.approx(2 / 5)
    assert row["recall"] == pytest.approx(1.0)
    assert row["average_precision"] == pytest.approx(5 / 6)
    assert row["ndcg"] == pytest.approx(1.5 / (1 + 1 / LOG2_3))


def test_many_relevant_items_normalisation():
    # relevant {w, x, y, z}, ranking [p, x, q, y], k = 4: hits at positions 2 and 4
    #   P@4 = 2/4, R@4 = 2/4
    #   AP@4 = (1/2 + 2/4) / min(4, 4) = 1/4
    #   DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4) + 1/log2(5)
    recs = recs_frame({1: ["p", "x", "q", "y"]})
    test = make_test([(1, item, 4.0) for item in "wxyz"])
    row = row_of(ranking_metrics(recs, test, k=4), 1)
    assert row["precision"] == pytest.approx(0.5)
    assert row["recall"] == pytest.approx(0.5)
    assert row["average_precision"] == pytest.approx(0.25)
    dcg = 1 / LOG2_3 + 1 / math.log2(5)
    idcg = 1 + 1 / LOG2_3 + 1 / 2 + 1 / math.log2(5)
    assert row["ndcg"] == pytest.approx(dcg / idcg)
    # k = 2 -> list [p, x]: AP@2 = (1/2) / min(2, 4) = 1/4; NDCG@2 = (1/log2 3) / (1 + 1/log2 3)
    row2 = row_of(ranking_metrics(recs, test, k=2), 1)
    assert row2["average_precision"] == pytest.approx(0.25)
    assert row2["ndcg"] == pytest.approx((1 / LOG2_3) / (1 + 1 / LOG2_3))
    assert row2["recall"] == pytest.approx(0.25)


def test_rank_column_not_row_order_decides():
    # rows shuffled; by rank the list is [a, b, c] as in the basic test
    recs = pd.DataFrame({"user": ["u"] * 3, "item": ["c", "a", "b"], "rank": [3, 1, 2]})
    test = make_test([("u", "a", 5.0), ("u", "c", 3.0)])
    row = row_of(ranking_metrics(recs, test, k=2), "u")
    # top-2 by rank = [a, b] -> one hit at position 1
    assert row["n_hits"] == 1
    assert row["ndcg"] == pytest.approx(1 / (1 + 1 / LOG2_3))


def test_relevance_threshold():
    # test ratings a=5, b=2, c=4; ranking [b, a, c]
    # threshold 4 -> relevant {a, c}: hits at 2, 3
    #   P@3 = 2/3, R@3 = 1, AP = (1/2 + 2/3) / 2 = 7/12
    #   NDCG = (1/log2 3 + 1/log2 4) / (1 + 1/log2 3)
    recs = recs_frame({"u": ["b", "a", "c"]})
    test = make_test([("u", "a", 5.0), ("u", "b", 2.0), ("u", "c", 4.0)])
    row = row_of(ranking_metrics(recs, test, k=3, relevance_threshold=4), "u")
    assert row["n_relevant"] == 2
    assert row["precision"] == pytest.approx(2 / 3)
    assert row["average_precision"] == pytest.approx(7 / 12)
    assert row["ndcg"] == pytest.approx((1 / LOG2_3 + 0.5) / (1 + 1 / LOG2_3))
    # no threshold -> all three relevant and all hit: everything is 1
    row_all = row_of(ranking_metrics(recs, test, k=3), "u")
    assert row_all["n_relevant"] == 3
    for column in ("precision", "recall", "ndcg", "average_precision", "hit_rate"):
        assert row_all[column] == pytest.approx(1.0)


def test_users_without_relevant_items_are_dropped_and_without_recs_score_zero():
    recs = recs_frame({"u1": ["a", "b", "c"], "u3": ["a"], "extra": ["a"]})
    test = make_test(
        [
            ("u1", "a", 5.0), ("u1", "c", 4.0),   # scored: as the basic test
            ("u2", "a", 5.0),                       # scored, no recommendations -> 0
            ("u3", "a", 1.0),                       # nothing >= 4 -> not scored
        ]
    )
    table = ranking_metrics(recs, test, k=3, relevance_threshold=4)
    assert list(table["user"]) == ["u1", "u2"]
    row2 = row_of(table, "u2")
    assert row2["n_recommended"] == 0
    for column in ("precision", "recall", "ndcg", "average_precision", "hit_rate"):
        assert row2[column] == 0.0
    means = mean_ranking_metrics(recs, test, k=3, relevance_threshold=4)
    assert set(means) == {
        "precision_at_3", "recall_at_3", "ndcg_at_3", "map_at_3", "hit_rate_at_3"
    }
    # means over u1 and u2 (u2 contributes 0)
    assert means["precision_at_3"] == pytest.approx((2 / 3) / 2)
    assert means["recall_at_3"] == pytest.approx(0.5)
    assert means["map_at_3"] == pytest.approx((5 / 6) / 2)
    assert means["hit_rate_at_3"] == pytest.approx(0.5)
    assert means["ndcg_at_3"] == pytest.approx(1.5 / (1 + 1 / LOG2_3) / 2)


def test_single_metric_helpers_equal_table_means():
    recs = recs_frame({1: [10, 11, 12], 2: [12, 10, 13], 3: [11]})
    test = make_test([(1, 12, 5), (1, 13, 4), (2, 10, 3), (3, 99, 4), (3, 11, 5)])
    table = ranking_metrics(recs, test, k=2)
    # user 1: [10, 11] vs {12, 13} -> 0 hits; user 2: [12, 10] vs {10} -> hit at 2;
    # user 3: [11] vs {99, 11} -> hit at 1
    assert list(table["n_hits"]) == [0, 1, 1]
    assert precision_at_k(recs, test, k=2) == pytest.approx((0 + 1 / 2 + 1 / 2) / 3)
    assert recall_at_k(recs, test, k=2) == pytest.approx((0 + 1 + 1 / 2) / 3)
    assert hit_rate_at_k(recs, test, k=2) == pytest.approx(2 / 3)
    # AP: user 2 = (1/2)/min(2,1) = 1/2; user 3 = (1/1)/min(2,2) = 1/2
    assert average_precision_at_k(recs, test, k=2) == pytest.approx((0 + 0.5 + 0.5) / 3)
    # NDCG: user 2 = (1/log2 3)/1; user 3 = 1/(1 + 1/log2 3)
    expected_ndcg = (0 + 1 / LOG2_3 + 1 / (1 + 1 / LOG2_3)) / 3
    assert ndcg_at_k(recs, test, k=2) == pytest.approx(expected_ndcg)
    assert mean_ranking_metrics(recs, test, k=2)["ndcg_at_2"] == pytest.approx(expected_ndcg)


def test_duplicate_test_pairs_count_once():
    recs = recs_frame({"u": ["a", "b"]})
    test = make_test([("u", "a", 5.0), ("u", "a", 4.0)])
    row = row_of(ranking_metrics(recs, test, k=2), "u")
    assert row["n_relevant"] == 1
    assert row["recall"] == 1.0


def test_no_relevant_items_anywhere_gives_empty_table_and_nan_means():
    recs = recs_frame({"u": ["a"]})
    test = make_test([("u", "a", 1.0)])
    table = ranking_metrics(recs, test, k=5, relevance_threshold=4.0)
    assert len(table) == 0
    assert "ndcg" in table.columns
    means = mean_ranking_metrics(recs, test, k=5, relevance_threshold=4.0)
    assert all(math.isnan(v) for v in means.values())
    assert math.isnan(precision_at_k(recs, test.iloc[:0], k=5))


def test_label_mismatch_warns():
    recs = recs_frame({1: ["a"]})
    test = make_test([("1", "a", 5.0)])
    with pytest.warns(UserWarning, match="same user labels"):
        table = ranking_metrics(recs, test, k=1)
    assert table["precision"].tolist() == [0.0]


def test_ranking_inputs_not_mutated():
    recs = recs_frame({"u": ["c", "a", "b"]}).sample(frac=1.0, random_state=0)
    test = make_test([("u", "a", 5.0), ("u", "c", 3.0)])
    recs_copy, test_copy = recs.copy(), test.copy()
    ranking_metrics(recs, test, k=2, relevance_threshold=3)
    catalog_coverage(recs, n_items=5, k=1)
    pd.testing.assert_frame_equal(recs, recs_copy)
    pd.testing.assert_frame_equal(test, test_copy)


def test_ranking_validation_errors():
    recs = recs_frame({"u": ["a", "b"]})
    test = make_test([("u", "a", 5.0)])
    with pytest.raises(
        ValueError,
        match=r"^The 'k' parameter of ranking_metrics must be an int >= 1; got 0\.$",
    ):
        ranking_metrics(recs, test, k=0)
    with pytest.raises(TypeError, match="'k' parameter"):
        ranking_metrics(recs, test, k=2.5)
    with pytest.raises(TypeError, match="'k' parameter"):
        ranking_metrics(recs, test, k=True)
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['rank'\]"):
        ranking_metrics(recs.drop(columns="rank"), test)
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['rating'\]"):
        ranking_metrics(recs, test.drop(columns="rating"), relevance_threshold=3)
    # without a threshold the rating column is not needed
    assert len(ranking_metrics(recs, test.drop(columns="rating"), k=2)) == 1
    with pytest.raises(ValueError, match=r"duplicated \(user, item\)"):
        ranking_metrics(pd.concat([recs, recs]), test)
    bad_rank = recs.assign(rank=[1, None])
    with pytest.raises(ValueError, match="'rank' column"):
        ranking_metrics(bad_rank, test)
    with pytest.raises(TypeError, match="DataFrame"):
        ranking_metrics(recs.to_dict(), test)
    with pytest.raises(ValueError, match="'relevance_threshold'"):
        ranking_metrics(recs, test, relevance_threshold=float("nan"))


# ---------------------------------------------------------------------------
# catalogue coverage
# ---------------------------------------------------------------------------
def test_catalog_coverage():
    recs = recs_frame({1: [10, 11], 2: [10, 12]})
    # distinct {10, 11, 12} over 6 items
    assert catalog_coverage(recs, n_items=6) == pytest.approx(0.5)
    # top-1 only: {10}
    assert catalog_coverage(recs, n_items=6, k=1) == pytest.approx(1 / 6)
    assert catalog_coverage(recs.iloc[:0], n_items=3) == 0.0
    with pytest.raises(ValueError, match="more than n_items=2"):
        catalog_coverage(recs, n_items=2)
    with pytest.raises(ValueError, match="'n_items' parameter of catalog_coverage"):
        catalog_coverage(recs, n_items=0)
