"""The comparison engine: sample-order guard, reductions from configs, per-layer verdicts, naming."""

import numpy as np
import pytest

from parity.compare import (SampleOrderError, assert_same_samples, compare_layers, effective_reductions,
                            error_budget, own_reduction, summarize)
from parity.compare_table import format_table


# ---- same samples, same order ---------------------------------------------------------------------
def test_same_samples_guard_accepts_identical_ids():
    assert assert_same_samples([3, 1, 2], np.array([3, 1, 2])) == 3


def test_same_samples_guard_catches_a_shuffle_with_equal_sets():
    with pytest.raises(SampleOrderError, match=r"position 1: Keras id '1' vs scratch id '2' \(same ids, different order\)"):
        assert_same_samples([3, 1, 2], [3, 2, 1])


def test_same_samples_guard_catches_different_ids_and_counts():
    with pytest.raises(SampleOrderError, match=r"position 0: .*\(different ids\)"):
        assert_same_samples(["scene-test-00000"], ["scene-test-00001"])
    with pytest.raises(SampleOrderError, match="Keras saw 3 samples, scratch 2"):
        assert_same_samples([1, 2, 3], [1, 2])


# ---- reductions come from the layers' own Keras configs -------------------------------------------
@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


def test_own_reduction_reads_keras_configs(keras):
    L = keras.layers
    conv = L.Conv2D(8, (3, 5), groups=2, activation="relu")
    assert own_reduction("Conv2D", conv.get_config(), (None, 16, 16, 6)) == 3 * 5 * 6 // 2 + 1
    assert own_reduction("Dense", L.Dense(7).get_config(), (None, 40)) == 40
    # softmax sums over the units after the matmul
    assert own_reduction("Dense", L.Dense(7, activation="softmax").get_config(), (None, 40)) == 40 + 7 + 1
    assert own_reduction("LSTM", L.LSTM(5).get_config(), (None, 9, 3)) == 9 * (3 + 5)
    assert own_reduction("AveragePooling2D", L.AveragePooling2D(3).get_config(), (None, 9, 9, 2)) == 9
    assert own_reduction("MaxPooling2D", L.MaxPooling2D(3).get_config(), (None, 9, 9, 2)) == 0
    assert own_reduction("GlobalAveragePooling2D", {}, (None, 4, 6, 2)) == 24
    bidi = L.Bidirectional(L.GRU(4))
    assert own_reduction("Bidirectional", bidi.get_config(), (None, 6, 3)) == 6 * (3 + 4)
    assert own_reduction("Add", {}, [(None, 4), (None, 4), (None, 4)]) == 3


def test_own_reduction_of_per_sample_normalizations(keras):
    L = keras.layers
    # Their moments (or the L2 norm) sum over every normalized axis; a list of axes multiplies them.
    assert own_reduction("LayerNormalization", L.LayerNormalization().get_config(), (None, 5, 7)) == 7
    assert own_reduction("LayerNormalization", L.LayerNormalization(axis=[1, -1]).get_config(), (None, 5, 3, 7)) == 35
    assert own_reduction("UnitNormalization", L.UnitNormalization(axis=[1, 2]).get_config(), (None, 4, 3, 2)) == 12
    assert own_reduction("GroupNormalization", L.GroupNormalization(groups=4).get_config(), (None, 3, 3, 8)) == 18
    assert own_reduction("GroupNormalization", L.GroupNormalization(groups=-1).get_config(), (None, 3, 5, 8)) == 15
    assert own_reduction("Activation", L.Activation("log_softmax").get_config(), (None, 9)) == 9
    assert own_reduction("Dense", L.Dense(6, activation="sparsemax").get_config(), (None, 4)) == 4 + 6 + 1
    assert own_reduction("Rescaling", L.Rescaling(0.5).get_config(), (None, 4)) == 1


def test_effective_reduction_is_the_longest_chain_of_sums():
    infos = [
        dict(name="a", class_name="Dense", config={"units": 4}, input_shape=(None, 10), inbound=["in"]),
        dict(name="b", class_name="Dense", config={"units": 4}, input_shape=(None, 4), inbound=["a"]),
        dict(name="c", class_name="Flatten", config={}, input_shape=(None, 10), inbound=["in"]),
        dict(name="d", class_name="Concatenate", config={}, input_shape=[(None, 4), (None, 10)], inbound=["b", "c"]),
    ]
    assert effective_reductions(infos) == {"a": 10, "b": 14, "c": 1, "d": 14}


# ---- per-layer verdicts ---------------------------------------------------------------------------
def _outputs(rng):
    return {"dense": rng.normal(size=(4, 5)).astype(np.float32),
            "lstm": [rng.normal(size=(4, 3, 2)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)],
            "logits": rng.normal(size=(4, 7)).astype(np.float32)}


def _trace(outs):
    # The scratch trace is flat: output i > 0 of a multi-output layer is ``name[i]``.
    return {"dense": outs["dense"].copy(), "lstm": outs["lstm"][0].copy(), "lstm[1]": outs["lstm"][1].copy(),
            "logits": outs["logits"].copy()}


def test_identical_outputs_pass_and_multi_output_layers_are_split():
    outs = _outputs(np.random.default_rng(0))
    res = compare_layers(outs, _trace(outs))
    assert res["passed"] and res["first_diverging"] is None
    assert [r["name"] for r in res["layers"]] == ["dense", "lstm", "lstm[1]", "logits"]
    assert all(r["max_abs"] == 0.0 for r in res["layers"])


def test_first_diverging_layer_is_named_with_the_worst_element():
    outs = _outputs(np.random.default_rng(1))
    trace = _trace(outs)
    trace["lstm[1]"][2, 1] += 1e-3
    trace["logits"][0, 0] += 1.0          # later layers diverge too; the first one is reported
    res = compare_layers(outs, trace)
    assert not res["passed"]
    assert res["first_diverging"] == "lstm[1]"
    assert "worst at (2, 1)" in res["first_diverging_reason"]
    row = next(r for r in res["layers"] if r["name"] == "lstm[1]")
    assert row["frac_beyond"] == pytest.approx(1 / 8)
    assert "first diverging layer: lstm[1]" in format_table(res)
    assert summarize(res)["worst_layer"] == "logits"


def test_a_few_eps_of_difference_is_within_tolerance_but_more_is_not():
    k = {"dense": np.linspace(-2, 2, 50, dtype=np.float32).reshape(5, 10)}
    near = {"dense": np.nextafter(k["dense"], np.float32(np.inf))}     # one ulp everywhere
    assert compare_layers(k, near)["passed"]
    far = {"dense": k["dense"] * np.float32(1 + 1e-4)}
    assert not compare_layers(k, far)["passed"]


def test_missing_layers_and_shape_mismatches_fail_with_reasons():
    outs = _outputs(np.random.default_rng(2))
    trace = _trace(outs)
    del trace["lstm[1]"]
    trace["logits"] = trace["logits"][:, :6]
    res = compare_layers(outs, trace)
    assert res["first_diverging"] == "lstm[1]"
    assert "scratch trace has no output named 'lstm[1]'" in res["first_diverging_reason"]
    row = next(r for r in res["layers"] if r["name"] == "logits")
    assert row["reason"] == "shape mismatch: scratch (4, 6) vs Keras (4, 7)"


def test_error_budget_names_the_side_further_from_the_truth():
    truth = np.linspace(-1, 1, 64).reshape(8, 8)
    keras = (truth + 1e-7).astype(np.float32)
    scratch = (truth + 3e-3).astype(np.float32)
    budget = error_budget(keras, scratch, truth)
    assert budget["further"] == "scratch" and not budget["scratch_passed"] and budget["keras_passed"]
    res = compare_layers({"x": keras}, {"x": scratch}, truth={"x": truth})
    assert "scratch is further from the truth" in res["first_diverging_reason"]


def test_error_growth_reports_a_slope_per_layer():
    k = {f"l{i}": np.ones((2, 2), np.float32) for i in range(4)}
    s = {f"l{i}": np.ones((2, 2), np.float32) + np.float32(10.0 ** i * 1.2e-7) for i in range(4)}
    res = compare_layers(k, s)
    assert res["growth"]["depth"] == [0, 1, 2, 3]
    assert res["growth"]["log10_eps_units_per_layer"] == pytest.approx(1.0, abs=0.05)


# ---- names line up with the scratch trace on a real model -----------------------------------------
def test_keras_probe_names_match_the_scratch_trace(tmp_path, keras):
    import scratch
    from parity import keras_runner as kr

    L = keras.layers
    keras.utils.set_random_seed(3)
    enc = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(3, 3, padding="same", activation="relu", name="conv"),
                            L.Flatten(name="flat"), L.Dense(5, name="proj")], name="encoder")
    img = keras.Input((6, 6, 2), name="image")
    tok = keras.Input((4,), dtype="int32", name="tokens")
    shared = L.Dense(5, name="shared")
    h = shared(enc(img))
    seq, h1, c1 = L.LSTM(5, return_sequences=True, return_state=True, name="lstm")(
        L.Embedding(9, 3, mask_zero=True, name="emb")(tok), initial_state=[h, shared(h)])
    model = keras.Model([img, tok], [L.Dense(9, name="logits")(seq), h1], name="cap")
    path = tmp_path / "cap.keras"
    model.save(path)
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(3, 6, 6, 2)).astype(np.float32), rng.integers(0, 9, size=(3, 4)).astype(np.int32)]
    km = kr.load_model(path)
    keras_out = kr.intermediate_outputs(km, x)
    trace = scratch.load(path).trace(x)
    res = compare_layers(keras_out, trace, kr.layer_infos(km))
    names = [r["name"] for r in res["layers"]]
    assert names[:4] == ["encoder/conv", "encoder/flat", "encoder/proj", "encoder"]
    assert {"shared", "shared@1", "lstm", "lstm[1]", "lstm[2]"} <= set(names)
    assert res["scratch_only"] == []
    assert res["passed"], format_table(res)
