"""Reading rating and social files (socialals.io): delimiters, headers, errors by file, line and column."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.io

from socialals.exceptions import DataWarning
from socialals.io import InputError, load_data, read_ratings, read_social, read_table

from conftest import require_dataset

RATINGS = ("user", "item", "rating")
SOCIAL = (("user", "friend"), ("weight",))


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "name, text",
    [
        ("comma.csv", "user,item,rating\n1,10,4.5\n2,11,3\n"),
        ("semicolon.txt", "user;item;rating\n1;10;4.5\n2;11;3\n"),
        ("tab.tsv", "1\t10\t4.5\n2\t11\t3\n"),
        ("space.txt", "1 10 4.5\n2  11   3\n"),
        ("pipe.txt", "USER|Item|Rating\n1|10|4.5\n2|11|3\n"),
        ("reordered.csv", "rating,item,user,timestamp\n4.5,10,1,99\n3,11,2,98\n"),
        ("blank_lines.csv", "\nuser,item,rating\n\n1,10,4.5\n\n2,11,3\n"),
        ("crlf.csv", "user,item,rating\r\n1,10,4.5\r\n2,11,3\r\n"),
    ],
)
def test_delimiters_and_headers_are_detected(tmp_path, name, text):
    frame = read_table(_write(tmp_path, name, text), RATINGS)
    assert frame.to_dict("list") == {"user": [1, 2], "item": [10, 11], "rating": [4.5, 3.0]}
    assert str(frame["user"].dtype) == "int64" and str(frame["rating"].dtype) == "float64"


def test_string_labels_and_optional_columns(tmp_path):
    frame = read_table(_write(tmp_path, "r.tsv", "u1\t10\t4.0\nu2\t11\t3.5\n"), RATINGS)
    assert frame["user"].tolist() == ["u1", "u2"] and frame["item"].tolist() == [10, 11]
    frame = read_table(_write(tmp_path, "s.csv", "Friend,USER,extra,Weight\n2,1,x,0.5\n"), *SOCIAL)
    assert frame.to_dict("list") == {"user": [1], "friend": [2], "weight": [0.5]}
    frame = read_table(_write(tmp_path, "t.csv", "1,2\n3,1\n"), *SOCIAL)
    assert frame.to_dict("list") == {"user": [1, 3], "friend": [2, 1]}


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("uid,iid,stars\n1,2,4\n3,4,5\n", ["line 1", "looks like a header (uid, iid, stars)", "user, item, rating"]),
        ("user,item,rating\n1,2,4\n3,4,five\n", ["line 3, column 3 ('rating')", "'five' is not a number"]),
        ("user,item,rating\n1,2,4\n3,4\n", ["line 3", "only 2 field(s)"]),
        ("user,item,rating\n1,2,4\n3,,5\n", ["line 3", "column 2 ('item') is empty"]),
        ("user,item,rating\n1,2,4\n3,4,inf\n", ["line 3, column 3 ('rating')", "not a finite number"]),
        ("user,product,stars\n1,2,3\n", ["line 1", "missing item, rating"]),
        ("1\n2\n", ["line 1", "found one field"]),
        ("", ["empty"]),
        ("user,item,rating\n", ["no data rows"]),
        ("1,2\n3,4\n", ["line 1", "2 field(s) and no header"]),
    ],
)
def test_malformed_ratings_name_file_line_and_column(tmp_path, text, fragments):
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(InputError) as info:
        read_table(path, RATINGS)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_social_file_with_a_wrong_header_is_not_read_as_data(tmp_path):
    with pytest.raises(InputError, match=r"line 1: looks like a header \(source, target\)"):
        read_table(_write(tmp_path, "s.csv", "source,target\n1,2\n2,3\n"), *SOCIAL)
    with pytest.raises(InputError, match=r"line 2, column 3 \('weight'\): weights must be >= 0"):
        read_table(_write(tmp_path, "w.csv", "user,friend,weight\n1,2,-1\n"), *SOCIAL)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "none.csv", RATINGS)
    with pytest.raises(InputError, match="not a file"):
        read_table(tmp_path, RATINGS)


def test_read_ratings_merges_duplicates_once_with_the_file_name(tmp_path):
    path = _write(tmp_path, "r.csv", "user,item,rating\n1,10,4\n2,10,2\n1,10,5\n1,10,3\n")
    with pytest.warns(DataWarning) as record:
        frame = read_ratings(path)
    assert [str(w.message) for w in record] == [
        "r.csv: 1 duplicate (user, item) pair(s) (2 extra row(s)) merged into their mean rating; "
        "1 of them had different ratings."
    ]
    assert frame.to_dict("list") == {"user": [1, 2], "item": [10, 10], "rating": [4.0, 2.0]}


def test_read_social_drops_self_loops_and_repeats(tmp_path):
    path = _write(tmp_path, "s.csv", "1,2\n2,2\n1,2\n3,1\n")
    with pytest.warns(DataWarning, match=r"s\.csv: dropped 1 self-loop\(s\) and 1 duplicate edge\(s\)"):
        frame = read_social(path)
    assert frame.to_dict("list") == {"user": [1, 3], "friend": [2, 1]}


def test_load_data_csv_is_deduplicated_so_folds_never_share_a_pair(tmp_path):
    rng = np.random.default_rng(0)
    ratings = pd.DataFrame({"user": rng.integers(0, 30, 400), "item": rng.integers(0, 20, 400),
                            "rating": rng.integers(1, 6, 400).astype(float)})
    assert ratings.duplicated(["user", "item"]).any()
    path = tmp_path / "r.csv"
    ratings.to_csv(path, index=False)
    with pytest.warns(DataWarning, match="r.csv: .* duplicate"):
        loaded, social, key = load_data(str(path))
    assert not loaded.duplicated(["user", "item"]).any() and social is None and key == "generic"
    expected = ratings.groupby(["user", "item"])["rating"].mean()
    got = loaded.set_index(["user", "item"])["rating"].sort_index()
    pd.testing.assert_series_equal(got, expected, check_names=False)


def _write_tang(folder):
    folder.mkdir(parents=True)
    rating = np.array([[1, 100, 7, 5, 3], [1, 101, 7, 0, 3], [2, 100, 7, 2, 4]], dtype=np.int32)
    scipy.io.savemat(folder / "rating.mat", {"rating": rating})
    scipy.io.savemat(folder / "trustnetwork.mat", {"trustnetwork": np.array([[1, 2], [2, 2]], dtype=np.int32)})


def test_tang_folder_warnings_use_the_folder_name(tmp_path):
    _write_tang(tmp_path / "mytrust")
    with pytest.warns(DataWarning) as record:
        ratings, social, key = load_data(str(tmp_path / "mytrust"))
    messages = [str(w.message) for w in record]
    assert messages and all(m.startswith("mytrust: ") for m in messages), messages
    assert not any("Ciao" in m for m in messages)
    assert len(ratings) == 2 and len(social) == 1 and key == "generic"


def test_a_data_set_name_beside_a_folder_of_that_name_reads_the_folder(tmp_path, monkeypatch):
    _write_tang(tmp_path / "epinions")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOCIALALS_DATA", str(tmp_path / "cache"))
    with pytest.warns(DataWarning, match="^Epinions: "):
        ratings, social, key = load_data("epinions")
    assert len(ratings) == 2 and not (tmp_path / "cache").exists()  # nothing downloaded


def test_load_data_errors(tmp_path):
    with pytest.raises(InputError, match="neither a known data set"):
        load_data(str(tmp_path / "nothing.csv"))
    with pytest.raises(InputError, match="--social applies only"):
        load_data("synthetic", social=str(tmp_path / "s.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="neither FilmTrust files"):
        load_data(str(tmp_path / "empty"))


def test_real_filmtrust_folder_reads_like_the_loader():
    from socialals.datasets import load_filmtrust

    folder = require_dataset("filmtrust")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ratings, social, _ = load_data(str(folder))
        expected, expected_social = load_filmtrust(folder)
    pd.testing.assert_frame_equal(ratings, expected)
    pd.testing.assert_frame_equal(social, expected_social)
