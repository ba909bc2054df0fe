"""Students' .keras archives read as data: a plain Keras model rebuilt exactly, hostile ones refused."""

from __future__ import annotations

import base64
import json
import marshal
import zipfile

import numpy as np
import pytest

from app.errors import InvalidInput
from app.lab import safekeras

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A tiny model trained outside the app with plain Keras, saved as .keras."""
    keras.utils.set_random_seed(3)
    x = np.random.rand(32, 4, 3).astype("float32")
    y = (x.sum(axis=(1, 2)) > 6).astype("int32")
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.Bidirectional(keras.layers.LSTM(5)),
                              keras.layers.Dense(4, activation="relu"), keras.layers.Dropout(0.1), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("plain") / "model.keras"
    model.save(path)
    return path, model, x, y


def rewrite(src, dst, config=None, members=None):
    """A copy of archive `src` with config.json (a dict) and other members replaced."""
    with zipfile.ZipFile(src) as zf:
        content = {n: zf.read(n) for n in zf.namelist()}
    if config is not None:
        content["config.json"] = json.dumps(config).encode()
    content.update(members or {})
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in content.items():
            zf.writestr(name, data)
    return dst


def test_a_plain_keras_model_is_rebuilt_with_the_same_predictions(plain):
    path, model, x, y = plain
    sub = safekeras.load_submission(path)
    np.testing.assert_allclose(sub.model.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert sub.params == model.count_params()
    assert [r["class"] for r in sub.layers] == ["Bidirectional", "Dense", "Dropout", "Dense"]


def _config(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json"))


def _marker_code(marker):
    return base64.b64encode(marshal.dumps(compile(f"open({str(marker)!r}, 'w').write('ran')", "x", "exec"))).decode()


def hostile_configs(config, marker):
    """One config.json per CVE class: each would write `marker` if Keras executed it."""
    lam = json.loads(json.dumps(config))
    lam["config"]["layers"].insert(1, {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
                                       "config": {"name": "evil", "function": {"class_name": "__lambda__",
                                                  "config": {"code": _marker_code(marker)}}}})
    imp = json.loads(json.dumps(config))
    imp["config"]["layers"].insert(1, {"module": "os", "class_name": "system", "registered_name": None,
                                       "config": {"command": f"touch {marker}"}})
    reg = json.loads(json.dumps(config))
    reg["config"]["layers"][1]["registered_name"] = "builtins>exec"
    flip = json.loads(json.dumps(config))
    flip["config"]["layers"].insert(1, {"module": "keras.config", "class_name": "enable_unsafe_deserialization",
                                        "registered_name": None, "config": {}})
    key = json.loads(json.dumps(config))
    key["config"]["layers"][-1]["config"]["safe_mode"] = False
    act = json.loads(json.dumps(config))
    act["config"]["layers"][-1]["config"]["activation"] = {"module": "builtins", "class_name": "exec",
                                                           "config": {"source": f"open({str(marker)!r},'w')"}}
    return {"lambda": (lam, "Lambda"), "module import": (imp, "system"), "registered name": (reg, "builtins>exec"),
            "safe mode flip": (flip, "enable_unsafe_deserialization"), "safe_mode key": (key, "safe_mode"),
            "activation object": (act, "activation")}


@pytest.mark.parametrize("case", ["lambda", "module import", "registered name", "safe mode flip", "safe_mode key",
                                  "activation object"])
def test_every_code_execution_class_is_refused_naming_what(plain, tmp_path, case):
    marker = tmp_path / "marker"
    config, named = hostile_configs(_config(plain[0]), marker)[case]
    path = rewrite(plain[0], tmp_path / "evil.keras", config=config)
    with pytest.raises(InvalidInput) as err:
        safekeras.load_submission(path)
    assert named in err.value.en and err.value.status == 400
    assert err.value.vi != err.value.en
    assert not marker.exists()


def test_a_legacy_h5_file_and_a_non_zip_are_refused(plain, tmp_path):
    h5 = tmp_path / "model.h5"
    plain[1].save_weights(tmp_path / "w.weights.h5")
    h5.write_bytes((tmp_path / "w.weights.h5").read_bytes())
    with pytest.raises(InvalidInput, match="HDF5"):
        safekeras.load_submission(h5)
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"print('hello')\n" * 10)
    with pytest.raises(InvalidInput, match="not a .keras file"):
        safekeras.load_submission(junk)


def test_a_zip_bomb_and_path_traversal_are_refused(plain, tmp_path):
    bomb = rewrite(plain[0], tmp_path / "bomb.keras", members={"metadata.json": b" " * (50 * 2 ** 20)})
    with pytest.raises(InvalidInput, match="zip bomb|larger than"):
        safekeras.load_submission(bomb)
    trav = rewrite(plain[0], tmp_path / "trav.keras", members={"../../escape.py": b"x"})
    with pytest.raises(InvalidInput, match="outside the archive|at most"):
        safekeras.load_submission(trav)
    assert not (tmp_path.parent / "escape.py").exists()


def test_a_500_mb_weight_claim_and_wrong_shapes_are_refused(plain, tmp_path):
    import h5py
    claim = tmp_path / "claim.h5"
    with h5py.File(claim, "w") as fh:
        fh.create_dataset("layers/dense/vars/0", shape=(500 * 2 ** 20 // 4,), dtype="float32", chunks=True,
                          compression="gzip")
    path = rewrite(plain[0], tmp_path / "claim.keras", members={"model.weights.h5": claim.read_bytes()})
    with pytest.raises(InvalidInput, match="claims 500.0 MB"):
        safekeras.load_submission(path)
    other = keras.Sequential([keras.Input((4, 3)), keras.layers.Bidirectional(keras.layers.LSTM(6)),
                              keras.layers.Dense(4, activation="relu"), keras.layers.Dropout(0.1), keras.layers.Dense(2, activation="softmax")])
    other.save_weights(tmp_path / "o.weights.h5")
    path = rewrite(plain[0], tmp_path / "shape.keras",
                   members={"model.weights.h5": (tmp_path / "o.weights.h5").read_bytes()})
    with pytest.raises(InvalidInput, match="has shape"):
        safekeras.load_submission(path)


def test_a_convolution_is_refused_under_a_recurrent_only_rule(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.save(tmp_path / "conv.keras")
    assert safekeras.load_submission(tmp_path / "conv.keras").params == model.count_params()
    with pytest.raises(InvalidInput, match="Conv2D"):
        safekeras.load_submission(tmp_path / "conv.keras", recurrent_only=True)


def test_unknown_keys_and_deep_json_are_refused(plain, tmp_path):
    config = _config(plain[0])
    config["config"]["layers"][-1]["config"]["surprise"] = 1
    with pytest.raises(InvalidInput, match="surprise"):
        safekeras.load_submission(rewrite(plain[0], tmp_path / "k.keras", config=config))
    deep = rewrite(plain[0], tmp_path / "d.keras", members={"config.json": b"[" * 100 + b"]" * 100})
    with pytest.raises(InvalidInput, match="nested"):
        safekeras.load_submission(deep)


def test_the_score_from_the_limited_child_equals_keras_evaluate(plain, tmp_path):
    from app.lab.scoring import score_submission
    path, model, x, y = plain
    scored = score_submission(path, x, y)
    assert scored["accuracy"] == pytest.approx(model.evaluate(x, y, verbose=0)[1], abs=1e-6)
    assert scored["params"] == model.count_params()
    marker = tmp_path / "marker"
    config, _ = hostile_configs(_config(path), marker)["lambda"]
    with pytest.raises(InvalidInput, match="Lambda"):
        score_submission(rewrite(path, tmp_path / "evil.keras", config=config), x, y)
    assert not marker.exists()
    with pytest.raises(InvalidInput, match="longer than"):
        score_submission(path, x, y, wall_seconds=0.01)
    with pytest.raises(InvalidInput, match="CPU-time or memory limit"):
        score_submission(path, x, y, memory_bytes=256 * 2 ** 20)
