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
