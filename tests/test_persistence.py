"""Saving and loading fitted models (``model.save`` / ``socialals.load``)."""

import json
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import socialals
from socialals import ALS, NotFittedError, RegularizedALS, SocialALS, clone
from socialals._persistence import FORMAT_VERSION, model_classes

from conftest import planted_ratings, random_social


def _models():
    models = [
        ALS(factors=3, iterations=3, random_state=0),
        RegularizedALS(factors=3, reg=0.1, iterations=3, random_state=0),
        RegularizedALS(factors=3, reg=0.05, biases=True, weighted_reg=True, iterations=3, random_state=0, dtype="float32"),
        SocialALS(factors=3, reg=0.1, alpha=0.5, iterations=3, random_state=0),
        SocialALS(factors=3, reg=0.1, alpha=0.5, similarity="pcc", biases=True, iterations=3, random_state=0),
        SocialALS(factors=3, reg=0.1, alpha=0.0, biases=True, iterations=3, random_state=0),  # social_weights_ None
        SocialALS(factors=3, reg=0.1, bias_reg=0.02, alpha=0.5, biases=True, iterations=3, random_state=0),
    ]
    fm = getattr(socialals, "FactorizationMachine", None)
    if fm is not None:
        models.append(fm(factors=3, iterations=3, random_state=0))
    return models


MODELS = _models()


def _data(string_users):
    ratings, _, _ = planted_ratings(n_users=40, n_items=25, seed=5)
    social = random_social(40, 90, seed=2, extra_users=3)
    if string_users:
        ratings = ratings.assign(user="u" + ratings["user"].astype(str))
        social = social.assign(user="u" + social["user"].astype(str), friend="u" + social["friend"].astype(str))
    return ratings, social


def _fitted(model, string_users=False):
    ratings, social = _data(string_users)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return clone(model).fit(ratings, social), ratings


def _public_learned(model):
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


@pytest.mark.parametrize("string_users", [False, True], ids=["int-labels", "str-labels"])
@pytest.mark.parametrize("model", MODELS, ids=lambda m: repr(m)[:70])
def test_round_trip_is_exact(model, string_users, tmp_path):
    fitted, ratings = _fitted(model, string_users)
    path = tmp_path / "model.npz"
    assert fitted.save(path) == path
    loaded = socialals.load(path)

    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    # every public learned attribute comes back with the same type, dtype and values
    before, after = _public_learned(fitted), _public_learned(loaded)
    assert before.keys() == after.keys()
    for name, value in before.items():
        restored = after[name]
        assert type(restored) is type(value), name
        if isinstance(value, np.ndarray):
            assert restored.dtype == value.dtype, name
            np.testing.assert_array_equal(restored, value, err_msg=name)
        elif isinstance(value, pd.Index):
            pd.testing.assert_index_equal(restored, value, exact=True)
        elif sp.issparse(value):
            assert (restored != value).nnz == 0 and restored.shape == value.shape, name
        else:
            assert restored == value, name
    assert (loaded._seen != fitted._seen).nnz == 0

    pairs = ratings[["user", "item"]]
    np.testing.assert_array_equal(loaded.predict(pairs), fitted.predict(pairs))
    users = list(fitted.users_[:7])
    pd.testing.assert_frame_equal(loaded.recommend(users, n=5), fitted.recommend(users, n=5))
    pd.testing.assert_frame_equal(
        loaded.recommend(users, n=5, exclude_seen=False), fitted.recommend(users, n=5, exclude_seen=False)
    )


@pytest.mark.parametrize("model", MODELS[:1] + MODELS[4:5], ids=lambda m: type(m).__name__)
def test_unknown_pairs_fall_back_identically(model, tmp_path):
    fitted, _ = _fitted(model)
    fitted.save(tmp_path / "m.npz")
    loaded = socialals.load(tmp_path / "m.npz")
    pairs = pd.DataFrame({"user": [0, 999, 1], "item": [0, 1, 999]})
    with pytest.warns(socialals.DataWarning):
        expected = fitted.predict(pairs)
    with pytest.warns(socialals.DataWarning):
        np.testing.assert_array_equal(loaded.predict(pairs), expected)


def test_file_is_an_npz_readable_without_pickle(tmp_path):
    fitted, _ = _fitted(MODELS[4])
    path = tmp_path / "plain-name"  # no suffix is added
    fitted.save(path)
    assert path.is_file() and not (tmp_path / "plain-name.npz").exists()
    with np.load(path, allow_pickle=False) as archive:
        meta = json.loads(str(archive["__socialals__"][()]))
        for name in archive.files:  # every member loads without pickle
            archive[name]
    assert meta["format"] == "socialals-model" and meta["format_version"] == FORMAT_VERSION
    assert meta["class"] == "SocialALS"
    assert meta["socialals_version"] == socialals.__version__
    assert meta["params"]["alpha"] == 0.5 and meta["params"]["similarity"] == "pcc"
    assert meta["columns"] == {"user": "user", "item": "item", "rating": "rating", "friend": "friend", "weight": "weight"}
    assert meta["attributes"]["n_iter_"] == {"kind": "scalar", "value": 3}
    assert meta["attributes"]["rating_mean_"]["kind"] == "scalar"


def test_custom_column_names_survive(tmp_path):
    ratings, social = _data(False)
    r = ratings.rename(columns={"user": "uid", "item": "iid", "rating": "stars"})
    s = social.rename(columns={"user": "uid", "friend": "fid"})
    model = SocialALS(factors=2, iterations=2, random_state=0).fit(
        r, s, user_col="uid", item_col="iid", rating_col="stars", friend_col="fid"
    )
    model.save(tmp_path / "m.npz")
    loaded = socialals.load(tmp_path / "m.npz")
    assert loaded.columns_ == model.columns_
    np.testing.assert_array_equal(loaded.predict(r[["uid", "iid"]]), model.predict(r[["uid", "iid"]]))
    assert list(loaded.recommend(r["uid"].iloc[0], n=2).columns) == ["uid", "iid", "rank", "score"]


def test_callback_and_generator_params_are_stored_as_none_with_warning(tmp_path):
    ratings, _ = _data(False)
    model = RegularizedALS(factors=2, iterations=2, callback=lambda m, i, loss: False,
                           random_state=np.random.default_rng(0)).fit(ratings)
    with pytest.warns(UserWarning) as record:
        model.save(tmp_path / "m.npz")
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "'callback' parameter" in messages[0] and "'random_state' parameter" in messages[1]
    loaded = socialals.load(tmp_path / "m.npz")
    assert loaded.callback is None and loaded.random_state is None
    np.testing.assert_array_equal(loaded.predict(ratings), model.predict(ratings))


def test_numpy_param_values_are_stored_as_plain_json(tmp_path):
    ratings, _ = _data(False)
    model = RegularizedALS(factors=np.int64(2), reg=np.float64(0.5), biases=np.bool_(True), iterations=2,
                           random_state=0).fit(ratings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save(tmp_path / "m.npz")
    loaded = socialals.load(tmp_path / "m.npz")
    assert (loaded.factors, loaded.reg, loaded.biases) == (2, 0.5, True)


def test_classmethod_load_checks_the_class(tmp_path):
    fitted, _ = _fitted(MODELS[0])
    fitted.save(tmp_path / "als.npz")
    assert isinstance(ALS.load(tmp_path / "als.npz"), ALS)
    assert isinstance(socialals.BaseRecommender.load(tmp_path / "als.npz"), ALS)
    with pytest.raises(ValueError, match="holds a ALS model, not a SocialALS"):
        SocialALS.load(tmp_path / "als.npz")


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        SocialALS().save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_mixed_label_types_are_a_clear_error(tmp_path):
    ratings = pd.DataFrame({"user": [1, "b", 1, "b"], "item": [0, 0, 1, 1], "rating": [1.0, 2.0, 3.0, 4.0]})
    model = RegularizedALS(factors=1, iterations=2, random_state=0).fit(ratings)
    with pytest.raises(TypeError, match="users_.*int.*str|users_.*str.*int"):
        model.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_unsupported_attribute_is_a_clear_error(tmp_path):
    fitted, _ = _fitted(MODELS[0])
    fitted.extra_ = object()
    with pytest.raises(TypeError, match="extra_ has type object"):
        fitted.save(tmp_path / "m.npz")


def test_subclass_outside_allow_list_cannot_be_saved(tmp_path):
    class Custom(RegularizedALS):
        pass

    model = Custom(factors=1, iterations=1).fit(_data(False)[0])
    with pytest.raises(ValueError, match="Custom is not one of the socialals model classes"):
        model.save(tmp_path / "m.npz")


def test_allow_list():
    classes = model_classes()
    assert {"ALS", "RegularizedALS", "SocialALS"} <= set(classes)
    fm = getattr(socialals, "FactorizationMachine", None)
    assert (fm is not None) == ("FactorizationMachine" in classes)


# ---------------------------------------------------------------------------- bad files
@pytest.fixture
def saved(tmp_path):
    fitted, _ = _fitted(MODELS[4])
    path = tmp_path / "good.npz"
    fitted.save(path)
    return path


def _rewrite(src, dst, edit_meta=None, drop=(), extra=None):
    with np.load(src, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files if k not in drop}
    if edit_meta is not None:
        meta = json.loads(str(arrays["__socialals__"][()]))
        edit_meta(meta)
        arrays["__socialals__"] = np.array(json.dumps(meta))
    arrays.update(extra or {})
    with open(dst, "wb") as handle:
        np.savez(handle, **arrays)
    return dst


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        socialals.load(tmp_path / "nope.npz")


def test_directory(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        socialals.load(tmp_path)


@pytest.mark.parametrize("cut", [0.3, 0.9, 0.999])
def test_truncated_file(saved, tmp_path, cut):
    data = saved.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match="truncated.npz"):
        socialals.load(bad)


def test_corrupted_member(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("attr/user_factors_.npy")
    start = info.header_offset + 30 + len(info.filename) + 200
    data[start : start + 8] = b"\xff" * 8
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt.npz"):
        socialals.load(bad)


def test_not_a_zip(tmp_path):
    bad = tmp_path / "text.npz"
    bad.write_text("user,item,rating\n1,2,3\n")
    with pytest.raises(ValueError, match="text.npz.*could not be read"):
        socialals.load(bad)


def test_plain_npy_file(tmp_path):
    bad = tmp_path / "array.npy"
    np.save(bad, np.arange(3))
    with pytest.raises(ValueError, match="array.npy.*not an .npz"):
        socialals.load(bad)


def test_foreign_npz(tmp_path):
    bad = tmp_path / "foreign.npz"
    np.savez(bad, a=np.arange(4))
    with pytest.raises(ValueError, match="foreign.npz.*not a socialals model file"):
        socialals.load(bad)


def test_pickled_content_is_refused(tmp_path, saved):
    bad = _rewrite(saved, tmp_path / "pickled.npz", extra={"attr/users_": np.array([object(), 1], dtype=object)})
    with pytest.raises(ValueError, match="pickled.npz"):
        socialals.load(bad)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format_version=FORMAT_VERSION + 1), "format version 2.*newer"),
        (lambda m: m.update(format_version="1"), "not an integer"),
        (lambda m: m.update(format="something-else"), "does not declare"),
        (lambda m: m.update({"class": "os.system"}), "'os.system', which is not one of"),
        (lambda m: m.update({"class": "BaseRecommender"}), "not one of the loadable"),
        (lambda m: m["params"].update(bogus=1), "parameters do not fit"),
        (lambda m: m["attributes"]["users_"].update(kind="pickle"), "unknown kind"),
        (lambda m: m.pop("attributes"), "'attributes' is missing"),
        (lambda m: m["attributes"].update(__class__={"kind": "scalar", "value": 1}), "'__class__' that is not"),
        (lambda m: m["attributes"].update(predict={"kind": "none"}), "'predict' that is not"),
    ],
)
def test_bad_metadata(saved, tmp_path, edit, message):
    bad = _rewrite(saved, tmp_path / "edited.npz", edit_meta=edit)
    with pytest.raises(ValueError, match=f"edited.npz.*{message}"):
        socialals.load(bad)


def test_bias_reg_is_saved_and_files_without_it_load_as_none(tmp_path):
    fitted, ratings = _fitted(MODELS[6])
    assert fitted.bias_reg == 0.02
    fitted.save(tmp_path / "b.npz")
    loaded = socialals.load(tmp_path / "b.npz")
    assert loaded.bias_reg == 0.02
    # a file written before ``bias_reg`` existed has no such parameter: it means reg
    plain, ratings = _fitted(MODELS[4])
    plain.save(tmp_path / "old.npz")
    old = _rewrite(tmp_path / "old.npz", tmp_path / "old2.npz", edit_meta=lambda m: m["params"].pop("bias_reg"))
    loaded = socialals.load(old)
    assert loaded.bias_reg is None
    np.testing.assert_array_equal(loaded.predict(ratings), plain.predict(ratings))


def test_metadata_not_json(saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "garbled.npz", extra={"__socialals__": np.array("{not json")})
    with pytest.raises(ValueError, match="garbled.npz.*not valid JSON"):
        socialals.load(bad)


def test_missing_array(saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "holes.npz", drop=("attr/item_factors_",))
    with pytest.raises(ValueError, match="holes.npz.*'attr/item_factors_'.*missing"):
        socialals.load(bad)


def test_inconsistent_shapes(saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "shapes.npz", extra={"attr/items_": np.arange(3)})
    with pytest.raises(ValueError, match=r"shapes.npz.*'_seen' has shape \(43, 25\); the model needs \(43, 3\)"):
        socialals.load(bad)


def test_save_replaces_existing_file(saved):
    fitted, ratings = _fitted(MODELS[1])
    fitted.save(saved)
    loaded = socialals.load(saved)
    assert type(loaded) is RegularizedALS
    np.testing.assert_array_equal(loaded.predict(ratings), fitted.predict(ratings))
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_save_into_missing_folder(tmp_path):
    fitted, _ = _fitted(MODELS[0])
    with pytest.raises(FileNotFoundError, match="folder .*nowhere.* does not exist"):
        fitted.save(tmp_path / "nowhere" / "m.npz")


def test_saved_file_has_ordinary_permissions(tmp_path):
    fitted, _ = _fitted(MODELS[0])
    fitted.save(tmp_path / "m.npz")
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "m.npz").stat().st_mode == (tmp_path / "plain").stat().st_mode


# ---------------------------------------------------------------------------- untrusted files
# A model file is untrusted input: every array is checked before anything uses it, and
# members are sized from their headers before anything is decompressed or allocated.
import os
import signal
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from pathlib import Path

from socialals import FactorizationMachine


def _load_in_subprocess(paths):
    """Load every path in a fresh interpreter; a crash fails the test instead of pytest.

    Returns one line per path: "ok" or "<ExceptionType>: <message>".
    """
    script = textwrap.dedent(
        """
        import sys, socialals
        for path in sys.argv[1:]:
            try:
                socialals.load(path)
                print("ok", flush=True)
            except Exception as exc:
                print(type(exc).__name__ + ": " + str(exc).replace("\\n", " "), flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, paths)], capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, f"the loader crashed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    lines = proc.stdout.splitlines()
    assert len(lines) == len(paths), proc.stdout + proc.stderr
    return lines


@pytest.fixture(scope="module")
def fm_social_file(tmp_path_factory):
    """A factorization machine fitted with a social frame (side-feature matrix _entity_ZU)."""
    ratings, social = _data(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FactorizationMachine(factors=3, iterations=2, random_state=0).fit(ratings, social)
    assert model._entity_ZU is not None and model._entity_ZU.nnz > 0
    path = tmp_path_factory.mktemp("fm") / "fm.npz"
    model.save(path)
    return path, model, ratings


def _with_array(src, dst, key, transform):
    with np.load(src, allow_pickle=False) as archive:
        value = archive[key]
    return _rewrite(src, dst, extra={key: transform(value)})


def test_forged_sparse_indices_never_crash_the_interpreter(fm_social_file, tmp_path):
    path, model, _ = fm_social_file
    n_cols = model._entity_ZU.shape[1]
    key = "attr/_entity_ZU/indices"
    forged = {
        "huge": lambda a: np.full_like(a, 2**31 - 1),
        "negative": lambda a: np.where(np.arange(len(a)) % 2 == 0, -5, a).astype(a.dtype),
        "just-out": lambda a: np.where(np.arange(len(a)) == 0, n_cols, a).astype(a.dtype),
        "float": lambda a: a.astype(np.float64),
    }
    paths = [_with_array(path, tmp_path / f"zu-{name}.npz", key, f) for name, f in forged.items()]
    # the seen matrix of an ALS model: -1 as an item index
    als_path = tmp_path / "als.npz"
    _fitted(MODELS[1])[0].save(als_path)
    paths.append(_with_array(als_path, tmp_path / "seen-minus-one.npz", "attr/_seen/indices",
                             lambda a: np.where(np.arange(len(a)) == 3, -1, a).astype(a.dtype)))
    paths.append(_with_array(als_path, tmp_path / "seen-indptr.npz", "attr/_seen/indptr",
                             lambda a: a[::-1].copy()))
    results = _load_in_subprocess(paths)
    for p, line in zip(paths, results):
        assert line.startswith("ValueError: ") and p.name in line, line
    assert "_entity_ZU" in results[0] and "2147483647" in results[0]
    assert "_entity_ZU" in results[1] and "-5" in results[1]
    assert f"outside 0 .. {n_cols - 1}" in results[2]
    assert "not integers" in results[3]
    assert "'_seen'" in results[4] and "-1" in results[4]
    assert "row pointers" in results[5]


def test_valid_fm_file_still_loads_and_designs(fm_social_file):
    path, model, ratings = fm_social_file
    loaded = socialals.load(path)
    pairs = ratings[["user", "item"]].head(20)
    np.testing.assert_array_equal(loaded.predict(pairs), model.predict(pairs))
    assert (loaded.design_matrix(pairs) != model.design_matrix(pairs)).nnz == 0


def _meta_edit(saved, tmp_path, name, edit):
    return _rewrite(saved, tmp_path / name, edit_meta=edit)


def test_attributes_are_checked_against_labels_and_parameters(saved, tmp_path):
    with np.load(saved, allow_pickle=False) as archive:
        U = archive["attr/user_factors_"]
        V = archive["attr/item_factors_"]
    nan_U = U.copy()
    nan_U[2, 1] = np.nan
    cases = {
        "short.npz": ({"attr/user_factors_": U[:-1]}, None, r"'user_factors_' has shape \(42, 3\); the model needs \(43, 3\)"),
        "k.npz": (None, lambda m: m["params"].update(factors=4), r"'user_factors_' has shape \(43, 3\); the model needs \(43, 4\)"),
        "nan.npz": ({"attr/user_factors_": nan_U}, None, "'user_factors_' holds 1 NaN or infinite"),
        "dtype.npz": ({"attr/item_factors_": V.astype(np.float32)}, None, "'item_factors_' has dtype float32, not the model's dtype float64"),
        "huge.npz": ({"attr/item_factors_": np.full_like(V, 1e200)}, None, "too large to score without overflow"),
        "missing.npz": (None, lambda m: m["attributes"].pop("item_bias_"), "'item_bias_' is missing"),
        "missing-u.npz": (None, lambda m: m["attributes"].pop("user_factors_"), "'user_factors_' is missing"),
        "label-dtype.npz": (None, lambda m: m["attributes"]["users_"].update(dtype="datetime64[ns]"), "do not match their declared type"),
        "label-kind.npz": (None, lambda m: m["attributes"]["users_"].update(labels="str"), "do not match their declared type"),
        "dup-labels.npz": ({"attr/items_": np.zeros(25, dtype=np.int64)}, None, "labels of 'items_' are not unique"),
        "param.npz": (None, lambda m: m["params"].update(factors=-1), "parameters are invalid: The 'factors' parameter of SocialALS must be an int >= 1"),
        "param-seed.npz": (None, lambda m: m["params"].update(random_state=-1), "parameters are invalid: The 'random_state' parameter"),
        "param-alpha.npz": (None, lambda m: m["params"].update(alpha=float("nan")), "'alpha' parameter"),
        "scalar.npz": (None, lambda m: m["attributes"]["rating_mean_"].update(value=[1, 2]), "'rating_mean_' is not a scalar"),
        "columns.npz": (None, lambda m: m["attributes"]["columns_"].update(value={"user": 1}), "column names"),
        "history.npz": (None, lambda m: m["attributes"]["n_iter_"].update(value=7), "n_iter_ = 7"),
    }
    for name, (extra, edit, message) in cases.items():
        bad = _rewrite(saved, tmp_path / name, edit_meta=edit, extra=extra)
        with pytest.raises(ValueError, match=f"{name}.*{message}"):
            socialals.load(bad)


def test_fm_layout_is_checked(fm_social_file, tmp_path):
    path, model, _ = fm_social_file
    p = model.n_features_in_
    cases = {
        "fm-meta.npz": (lambda m: m["attributes"]["_entity_meta"]["value"].update(i_start=3), "does not add up"),
        "fm-meta2.npz": (lambda m: m["attributes"]["_entity_meta"]["value"].update(n_users=2), "does not match its user and item labels"),
        "fm-p.npz": (lambda m: m["attributes"]["n_features_in_"].update(value=p + 1), rf"'w_' has shape \({p},\); the model needs \({p + 1},\)"),
        "fm-blocks.npz": (lambda m: m["attributes"]["feature_blocks_"].update(value={"user": [0, p + 5]}), "feature_blocks_"),
        "fm-zu.npz": (lambda m: m["attributes"].pop("_entity_ZU"), "does not add up"),
    }
    for name, (edit, message) in cases.items():
        bad = _rewrite(path, tmp_path / name, edit_meta=edit)
        with pytest.raises(ValueError, match=f"{name}.*{message}"):
            socialals.load(bad)


def _peak_bytes(func):
    tracemalloc.start()
    try:
        func()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_oversized_member_is_rejected_before_decompression(saved, tmp_path):
    bad = tmp_path / "bomb.npz"
    data = saved.read_bytes()
    bad.write_bytes(data)
    size = 128 * 2**20  # 128 MiB of zeros deflate to ~130 KiB; the budget for this file is 64 MiB
    with zipfile.ZipFile(bad, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("unused.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": (size,)})
            chunk = bytes(2**20)
            for _ in range(size // len(chunk)):
                member.write(chunk)
    assert bad.stat().st_size < 2 * 2**20

    def load():
        with pytest.raises(ValueError, match=r"bomb.npz.*members would expand to [\d,]+ bytes, more than"):
            socialals.load(bad)

    assert _peak_bytes(load) < 16 * 2**20


def test_npy_header_cannot_make_the_reader_allocate(saved, tmp_path):
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    member = tmp_path / "member.npy"
    with open(member, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(bytes(64))
    bad = tmp_path / "forged-header.npz"
    bad.write_bytes(saved.read_bytes())
    with zipfile.ZipFile(bad, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        zf.write(member, "attr/user_factors_.npy")  # a duplicate name, then a new one below
    with pytest.raises(ValueError, match="forged-header.npz.*names a member twice"):
        socialals.load(bad)
    bad.write_bytes(saved.read_bytes())
    with zipfile.ZipFile(bad, "a") as zf:
        zf.write(member, "extra.npy")

    def load():
        with pytest.raises(ValueError, match=r"forged-header.npz.*'extra.npy' declares shape \(1000000000000,\).*holds 64 bytes"):
            socialals.load(bad)

    assert _peak_bytes(load) < 16 * 2**20


@pytest.mark.parametrize("descr", ["|O", [("a", "<f8")], "<M8[ns]", "<c16"])
def test_npy_members_of_other_dtypes_are_refused(saved, tmp_path, descr):
    member = tmp_path / "member.npy"
    with open(member, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": descr, "fortran_order": False, "shape": (1,)})
        fh.write(bytes(np.dtype(np.lib.format.descr_to_dtype(descr)).itemsize))
    bad = tmp_path / "dtype.npz"
    bad.write_bytes(saved.read_bytes())
    with zipfile.ZipFile(bad, "a") as zf:
        zf.write(member, "extra.npy")
    with pytest.raises(ValueError, match="dtype.npz.*'extra.npy' has dtype .*only numeric, bool and string"):
        socialals.load(bad)


def test_big_endian_and_fortran_members_load_as_native(saved, tmp_path):
    with np.load(saved, allow_pickle=False) as archive:
        U = archive["attr/user_factors_"]
    ok = _rewrite(saved, tmp_path / "swapped.npz", extra={"attr/user_factors_": np.asfortranarray(U.astype(">f8"))})
    loaded = socialals.load(ok)
    assert loaded.user_factors_.dtype == np.float64 and loaded.user_factors_.dtype.isnative
    np.testing.assert_array_equal(loaded.user_factors_, U)


def test_deeply_nested_metadata_is_a_value_error(saved, tmp_path):
    depth = 100_000
    meta = '{"format": "socialals-model", "x": ' + "[" * depth + "]" * depth + "}"
    bad = _rewrite(saved, tmp_path / "nested.npz", extra={"__socialals__": np.array(meta)})
    with pytest.raises(ValueError, match="nested.npz.*nested too deeply"):
        socialals.load(bad)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    outcome = []

    def target():
        try:
            socialals.load(fifo)
        except Exception as exc:  # recorded and checked below
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "load blocked on a FIFO"
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError)
    assert "model.npz" in str(outcome[0]) and "FIFO" in str(outcome[0])


def test_save_refuses_parameters_changed_after_fit(tmp_path):
    fitted, _ = _fitted(MODELS[1])
    fitted.set_params(factors=5)
    with pytest.raises(ValueError, match=r"'user_factors_' has shape \(40, 3\); the model needs \(40, 5\).*Refit before saving"):
        fitted.save(tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_part_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    target = tmp_path / "model.npz"
    script = textwrap.dedent(
        f"""
        import os, signal, numpy as np, pandas as pd
        import socialals
        r = pd.DataFrame({{"user": [0, 0, 1], "item": [0, 1, 1], "rating": [1.0, 2.0, 3.0]}})
        model = socialals.RegularizedALS(factors=2, iterations=2, random_state=0).fit(r)
        real = np.savez
        def dying(handle, **arrays):
            handle.write(b"PK" + bytes(4096))  # part of the archive, then the process is killed
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = dying
        model.save({str(target)!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    parts = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(parts) == 1 and parts[0].name.startswith(".model.npz.") and not target.exists()
    # a part file of a save still running in another process is left alone
    live = tmp_path / f".model.npz.{os.getppid()}.0123abcd.part"
    live.write_bytes(b"in progress")
    other = tmp_path / ".other.npz.999999999.0123abcd.part"
    other.write_bytes(b"another target")
    fitted, ratings = _fitted(MODELS[1])
    fitted.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "model.npz"])
    np.testing.assert_array_equal(socialals.load(target).predict(ratings), fitted.predict(ratings))


def test_every_registered_class_has_a_state_check():
    from socialals._persistence import _state_check

    classes = model_classes()
    assert {"ALS", "RegularizedALS", "SocialALS", "FactorizationMachine"} <= set(classes)
    for cls in classes.values():
        assert _state_check(cls) is not None, cls


def test_classes_outside_the_package_are_not_registered():
    class Mine(SocialALS):
        pass

    assert "Mine" not in model_classes()
    assert Mine.__name__ == "Mine"


def test_base_and_persistence_do_not_import_the_model_modules():
    """No import path (module- or function-level) from base or _persistence reaches als/fm."""
    import ast

    root = Path(socialals.__file__).parent

    def imports(module):
        path = root / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = root / module.replace(".", "/") / "__init__.py"
        if not path.exists():
            return set()
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(a.name for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("socialals."))
        return found

    for start in ("base", "_persistence", "_registry"):
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module in seen or module == "__version__":
                continue
            seen.add(module)
            todo.extend(imports(module))
        assert not seen & {"als", "fm"}, (start, sorted(seen))
