"""Model files written by socialals 0.1.0 (before the core redesign) load and answer as then.

``tests/data/v0_1_0_*.npz`` were saved by commit df5e99b, with the predictions and top-4
lists it gave in ``v0_1_0_expected.json`` (users 1000 and 1001 are known only through the
social graph).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import socialals

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = json.loads((DATA / "v0_1_0_expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_files_of_0_1_0_load_and_predict_identically(name):
    model = socialals.load(DATA / f"v0_1_0_{name}.npz")
    pairs = pd.DataFrame({"user": np.repeat(np.arange(8), 5), "item": np.tile(np.arange(5), 8)})
    np.testing.assert_array_equal(model.predict(pairs), EXPECTED[name]["predict"])
    users = [0, 1, 2, 1000] if 1000 in model.users_ else [0, 1, 2]
    got = model.recommend(users, n=4)["item"].tolist()
    assert got == EXPECTED[name]["recommend"][: len(got)]
