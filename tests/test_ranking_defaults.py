"""The tuned top-N rows of ``socialals/_defaults.py`` are what ``benchmarks/bench_ranking.py``
chose at fold 0, as its results files record (the rule the rows' comment states)."""

import json
from pathlib import Path

import pytest

from socialals import SocialALS, make_social_ratings
from socialals._defaults import defaults_for

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _fold0_choices(data):
    path = RESULTS / f"bench_ranking_{data}.txt"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    chosen = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            row = json.loads(line.replace("NaN", "null"))
            if row["fold"] == 0:
                chosen[row["model"]] = row["params"]
    return chosen


@pytest.mark.parametrize("data", ["filmtrust", "ciao"])
@pytest.mark.parametrize("model", ["RegularizedALS", "SocialALS"])
def test_tuned_ranking_rows_are_the_benchmarks_fold_0_choice(data, model):
    chosen = _fold0_choices(data)
    assert model in chosen, f"bench_ranking_{data}.txt records no fold-0 choice of {model}"
    assert defaults_for(data, model, task="ranking") == chosen[model]


@pytest.mark.parametrize("data", ["filmtrust", "ciao", "synthetic", "generic"])
def test_ranking_rows_share_the_missing_data_setting_and_fit(data):
    reg_row = defaults_for(data, "RegularizedALS", task="ranking")
    social_row = defaults_for(data, "SocialALS", task="ranking")
    assert {k: v for k, v in social_row.items() if k != "alpha"} == reg_row
    assert reg_row["unobserved_weight"] > 0
    ratings, social = make_social_ratings(n_users=60, n_items=30, random_state=2)
    model = SocialALS(factors=3, random_state=0, **social_row).fit(ratings, social)
    rec = model.recommend(list(model.users_[:5]), n=3)
    assert len(rec) == 15 and rec["score"].notna().all()
