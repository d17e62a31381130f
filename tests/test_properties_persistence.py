"""Property tests of model files: round trips are exact, corrupted files never crash.

Profiles (tests/conftest.py): "ci" by default; ``--hypothesis-profile=thorough`` searches
far longer.
"""

import json
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import socialals  # noqa: E402
from socialals import ALS, FactorizationMachine, RegularizedALS, SocialALS  # noqa: E402
from socialals._persistence import model_classes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- random problems
@st.composite
def problems(draw):
    """Ratings (1-30 users and items) and a social graph that may name users without ratings."""
    n_users = draw(st.integers(1, 30))
    n_items = draw(st.integers(1, 30))
    n_ratings = draw(st.integers(1, 60))
    rows = draw(st.lists(st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
                         min_size=n_ratings, max_size=n_ratings))
    values = draw(st.lists(st.floats(0.5, 5.0, allow_nan=False, width=32), min_size=n_ratings, max_size=n_ratings))
    social_only = draw(st.integers(0, 3))
    n_links = draw(st.integers(0, 40))
    links = draw(st.lists(st.tuples(st.integers(0, n_users + social_only - 1), st.integers(0, n_users + social_only - 1)),
                          max_size=n_links))
    string_labels = draw(st.booleans())
    label = (lambda i: f"u{i}") if string_labels else (lambda i: i)
    ratings = pd.DataFrame({
        "user": [label(u) for u, _ in rows],
        "item": [f"i{i}" if string_labels else i for _, i in rows],
        "rating": np.asarray(values, dtype=np.float64),
    })
    links = [(a, b) for a, b in links if a != b]
    social = pd.DataFrame({"user": [label(a) for a, _ in links], "friend": [label(b) for _, b in links]})
    if len(social) == 0:
        social = None
    return ratings, social


@st.composite
def models(draw):
    factors = draw(st.integers(1, 8))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    reg = draw(st.sampled_from([0.01, 0.1, 1.0, 10.0]))
    common = dict(factors=factors, dtype=dtype, iterations=draw(st.integers(1, 3)), random_state=draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(sorted(model_classes())))
    missing_data = dict(unobserved_weight=draw(st.sampled_from([0.0, 0.05])), unobserved_rating=draw(st.sampled_from([0.0, 1.0])))
    if kind == "Popularity":
        return model_classes()[kind]()
    if kind == "ALS":
        return ALS(n_jobs=1, **common)
    if kind == "RegularizedALS":
        return RegularizedALS(reg=reg, biases=draw(st.booleans()), weighted_reg=draw(st.booleans()), n_jobs=1,
                              **missing_data, **common)
    if kind == "SocialALS":
        return SocialALS(reg=reg, alpha=draw(st.sampled_from([0.0, 0.1, 1.0])), biases=draw(st.booleans()),
                         weighted_reg=draw(st.booleans()), similarity=draw(st.sampled_from([None, "vss", "pcc"])),
                         n_jobs=1, **missing_data, **common)
    assert kind == "FactorizationMachine", f"add {kind} to this strategy"
    return FactorizationMachine(reg=reg, solver=draw(st.sampled_from(["sgd", "als"])),
                                social_features=draw(st.booleans()), **common)


def _fit(model, ratings, social):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(ratings, social)


@given(problem=problems(), model=models(), exclude_seen=st.booleans())
def test_save_load_gives_identical_predict_and_recommend(problem, model, exclude_seen):
    ratings, social = problem
    fitted = _fit(model, ratings, social)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.npz"
        fitted.save(path)
        loaded = socialals.load(path)
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    pairs = ratings[["user", "item"]]
    np.testing.assert_array_equal(loaded.predict(pairs), fitted.predict(pairs))
    # every (known user, known item) pair, plus users known only through the graph
    grid = pd.DataFrame([(u, i) for u in fitted.users_ for i in fitted.items_], columns=["user", "item"])
    np.testing.assert_array_equal(loaded.predict(grid), fitted.predict(grid))
    pd.testing.assert_frame_equal(loaded.recommend(n=3, exclude_seen=exclude_seen),
                                  fitted.recommend(n=3, exclude_seen=exclude_seen))


# ---------------------------------------------------------------------------- corrupted files
# One loader process serves the whole test: it reads a path per line and answers one line,
# "ok <digest>" (the predictions and recommendations of what it loaded, all finite) or
# "err <ExceptionType> <message>". A crash (segfault, abort) ends the process: the test
# sees it as a dead worker, never as a dead pytest.
_WORKER = textwrap.dedent(
    """
    import hashlib, sys, warnings
    import numpy as np, pandas as pd
    import socialals
    warnings.simplefilter("ignore")
    for line in sys.stdin:
        path = line.rstrip("\\n")
        try:
            model = socialals.load(path)
            users, items = model.users_[:10], model.items_[:10]
            grid = pd.DataFrame([(u, i) for u in users for i in items], columns=[model.columns_.user, model.columns_.item])
            predictions = np.asarray(model.predict(grid), dtype=np.float64)
            top = model.recommend(list(users), n=3)
            finite = bool(np.isfinite(predictions).all() and np.isfinite(top["score"].to_numpy()).all())
            digest = hashlib.sha256(predictions.tobytes() + top.to_csv().encode()).hexdigest()[:16]
            answer = f"ok {digest} finite={finite}"
        except Exception as exc:
            answer = "err " + type(exc).__name__ + " " + str(exc).replace("\\n", " ")[:300]
        print(answer, flush=True)
    """
)


class _Loader:
    def __init__(self, script=_WORKER):
        self.script = script
        self.proc = None

    def ask(self, path) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-u", "-c", self.script], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            code = self.proc.wait(timeout=60)
            stderr = self.proc.stderr.read()[-2000:]
            self.proc = None
            raise AssertionError(f"the loader process died (exit {code}) on {path}: {stderr}")
        return answer.rstrip("\n")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def loader():
    worker = _Loader()
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def originals(tmp_path_factory, loader):
    """Saved models to corrupt (ALS family with biases and a social graph; an FM with
    social side features), each with the loader's answer for the intact file."""
    from conftest import planted_ratings, random_social

    ratings, _, _ = planted_ratings(n_users=12, n_items=9, seed=3)
    social = random_social(12, 30, seed=4, extra_users=2)
    folder = tmp_path_factory.mktemp("originals")
    out = []
    for name, model in [
        ("social", SocialALS(factors=3, reg=0.1, alpha=0.5, biases=True, iterations=2, random_state=0, n_jobs=1)),
        ("fm", FactorizationMachine(factors=2, iterations=2, random_state=0)),
        ("als32", RegularizedALS(factors=2, iterations=2, random_state=0, dtype="float32", n_jobs=1)),
        ("popularity", model_classes()["Popularity"]()),
    ]:
        path = folder / f"{name}.npz"
        _fit(model, ratings, social).save(path)
        answer = loader.ask(path)
        assert answer.startswith("ok ") and answer.endswith("finite=True"), answer
        out.append((path, answer))
    return out


def _members(path):
    with np.load(path, allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def byte_damage(draw, size):
    """Flipped bytes or a truncation of a file of ``size`` bytes."""
    if draw(st.booleans()):
        return ("truncate", draw(st.integers(0, size - 1)))
    flips = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=1, max_size=4))
    return ("flip", flips)


@st.composite
def member_damage(draw, members):
    """A change of one member (values, shape, dtype, presence) or of the metadata."""
    keys = sorted(k for k in members if k != "__socialals__")
    key = draw(st.sampled_from(keys))
    what = draw(st.sampled_from(["values", "shape", "dtype", "drop", "meta", "recompress", "extra"]))
    if what == "values":
        scale = draw(st.sampled_from([1.0, -1.0, 1e3, 1e300, float("nan"), 2**31 - 1]))
        return (what, key, scale, draw(st.integers(0, 2**16)))
    if what == "shape":
        return (what, key, draw(st.sampled_from(["drop-last", "add-one", "flatten", "2d"])))
    if what == "dtype":
        return (what, key, draw(st.sampled_from(["int8", "uint64", "int32", "float32", "float64", "bool", "<U3", "complex128"])))
    if what == "meta":
        path = draw(st.sampled_from(["params", "attributes", "top"]))
        return (what, path, draw(st.integers(0, 100)), draw(_JSON_VALUES))
    return (what, key)


def _apply_member_damage(members, damage):
    arrays = dict(members)
    what = damage[0]
    if what == "values":
        _, key, scale, seed = damage
        a = arrays[key]
        if a.dtype.kind in "iuf" and a.size:
            rng = np.random.default_rng(seed)
            flat = a.ravel().copy()
            hit = rng.integers(0, a.size, max(1, a.size // 4))
            if a.dtype.kind == "f":
                with np.errstate(all="ignore"):
                    flat[hit] = (scale * rng.standard_normal(len(hit))).astype(a.dtype)
            else:
                info = np.iinfo(a.dtype)
                flat[hit] = int(max(info.min, min(info.max, scale))) if np.isfinite(scale) else info.max
            arrays[key] = flat.reshape(a.shape)
    elif what == "shape":
        _, key, how = damage
        a = arrays[key]
        if how == "drop-last" and a.ndim and len(a):
            arrays[key] = a[:-1]
        elif how == "add-one" and a.ndim:
            arrays[key] = np.concatenate([a, a[:1]]) if len(a) else np.zeros((1,) + a.shape[1:], dtype=a.dtype)
        elif how == "flatten":
            arrays[key] = a.ravel()
        else:
            arrays[key] = a.reshape(1, -1) if a.ndim == 1 else a.reshape(-1, 1)
    elif what == "dtype":
        _, key, dtype = damage
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                arrays[key] = arrays[key].astype(dtype)
            except (TypeError, ValueError):
                pass
    elif what == "drop":
        arrays.pop(damage[1])
    elif what == "extra":
        arrays["attr/extra_"] = np.arange(3)
    elif what == "meta":
        _, where, pick, value = damage
        meta = json.loads(str(arrays["__socialals__"][()]))
        target = meta if where == "top" else meta[where]
        keys = sorted(target) or ["added"]  # Popularity has no parameters
        target[keys[pick % len(keys)]] = value
        arrays["__socialals__"] = np.array(json.dumps(meta))
    return arrays


def _write(path, arrays, compressed=False):
    with open(path, "wb") as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **arrays)


@settings(max_examples=2 * settings.default.max_examples)
@given(data=st.data())
def test_corrupted_file_loads_identically_or_raises_value_error(originals, loader, data):
    original, intact = data.draw(st.sampled_from(originals))
    blob = original.read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        bad = Path(folder) / "damaged.npz"
        if data.draw(st.booleans()):
            damage = data.draw(byte_damage(len(blob)))
            if damage[0] == "truncate":
                bad.write_bytes(blob[: damage[1]])
            else:
                edited = bytearray(blob)
                for pos, xor in damage[1]:
                    edited[pos] ^= xor
                bad.write_bytes(bytes(edited))
            answer = loader.ask(bad)
            event(f"{damage[0]}: {'intact' if answer == intact else answer.split()[1]}")
            # a changed byte is either harmless (e.g. a timestamp) or detected
            assert answer == intact or answer.startswith("err ValueError "), (damage, answer)
        else:
            members = _members(original)
            damage = data.draw(member_damage(members))
            _write(bad, _apply_member_damage(members, damage), compressed=damage[0] == "recompress")
            answer = loader.ask(bad)
            event(f"{damage[0]}: {' '.join(answer.split()[:2]) if answer.startswith('err') else answer.split()[-1]}")
            if damage[0] == "recompress":
                assert answer == intact, answer
            # changed values may make another valid model, but never one that scores NaN
            assert answer.endswith("finite=True") or answer.startswith("err ValueError "), (damage, answer)


def test_worker_detects_a_crash(tmp_path):
    """The harness itself: a loader that crashes fails the test instead of passing silently."""
    crashing = _Loader("import os, signal, sys\nsys.stdin.readline()\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    with pytest.raises(AssertionError, match=r"loader process died \(exit -11\)"):
        crashing.ask(tmp_path / "any.npz")
