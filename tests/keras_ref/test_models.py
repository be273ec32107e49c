"""Model builders: the grid, the LocallyConnected2D twin and the captioners stay within supported layers,
and the captioners' encoder/step pair computes exactly what the teacher-forced graph computes."""

import numpy as np
import pytest

from keras_ref import cnn
from keras_ref.captioner import build_captioner, build_resnet50_captioner, captioner_configs, greedy_decode
from keras_ref.saved_config import layer_classes, saved_model_config
from tests.support import engine_refusals, expected_grid_params, randomize_keras_weights


def test_grid_is_the_16_configurations():
    configs = cnn.grid_configs()
    assert len(configs) == 16
    assert {(c["blocks"], c["filters"][0], c["kernel"], c["pool"]) for c in configs.values()} == {
        (b, f, k, p) for b in (2, 3) for f in (16, 32) for k in (3, 5) for p in ("max", "avg")}
    assert configs["cnn_b3_f32_k5_avg"]["filters"] == [32, 64, 128]
    assert configs["cnn_b2_f16_k3_max"]["filters"] == [16, 32]


@pytest.mark.parametrize("name", ["cnn_b2_f16_k3_max", "cnn_b3_f32_k5_avg", "cnn_b3_f16_k3_max"])
def test_grid_models_use_supported_layers_and_the_documented_graph(name):
    # Three builds keep this fast; test_manifest checks the saved config of all 16 exported models.
    for cfg in [cnn.grid_configs()[name]]:
        model = cnn.build_cnn(cfg, name=name)
        classes = layer_classes(model.get_config())
        assert engine_refusals(model.get_config()) == []
        pool = "MaxPooling2D" if cfg["pool"] == "max" else "AveragePooling2D"
        assert classes == (["InputLayer"] + ["Conv2D", "ReLU", pool] * cfg["blocks"]
                           + ["GlobalAveragePooling2D", "Dense", "Dropout", "Dense"])
        assert model.count_params() == expected_grid_params(cfg)
        assert model.output_shape == (None, 10)


def test_feature_map_sizes_valid_conv_same_pool():
    assert cnn.feature_map_sizes(32, 3, 5) == [(28, 14), (10, 5), (1, 1)]
    assert cnn.feature_map_sizes(32, 3, 3) == [(30, 15), (13, 7), (5, 3)]
    with pytest.raises(ValueError, match=r"3 blocks of 5x5 'valid' convs do not fit a 12px input"):
        cnn.feature_map_sizes(12, 3, 5)


def test_lc2d_twin_mirrors_the_conv_graph_with_unshared_weights():
    cfg = cnn.grid_configs()["cnn_b2_f16_k3_max"]
    twin = cnn.build_lc2d_twin(cfg)
    conv = cnn.build_cnn(cfg)
    assert [type(l).__name__.replace("LocallyConnected2D", "Conv2D") for l in twin.layers] == \
        [type(l).__name__ for l in conv.layers]
    assert engine_refusals(twin.get_config()) == []
    # Unshared: one kernel per output position (30*30 and 13*13) plus a bias per position.
    assert twin.count_params() == 900 * (9 * 16 + 16) + 169 * (9 * 16 * 32 + 32) + 32 * 64 + 64 + 650
    assert twin.count_params() == cnn.lc2d_param_count(cfg)
    assert twin.get_layer("lc1").get_config()["implementation"] == 1


def test_pick_twin_takes_the_best_eligible_and_reports_the_best_overall():
    configs = cnn.grid_configs()
    scores = {n: 0.9 for n in configs}
    scores["cnn_b3_f32_k5_max"] = 0.99            # best, but its twin is far too large
    scores["cnn_b2_f16_k3_avg"] = 0.95
    assert cnn.pick_twin(scores, configs) == ("cnn_b2_f16_k3_avg", "cnn_b3_f32_k5_max")
    tie = {"cnn_b2_f16_k3_max": 0.9, "cnn_b2_f16_k3_avg": 0.9}
    assert cnn.pick_twin(tie, configs)[0] == "cnn_b2_f16_k3_avg"    # same params: by name
    with pytest.raises(ValueError, match=r"no grid configuration has a LocallyConnected2D twin within 10 parameters"):
        cnn.pick_twin(scores, configs, max_params=10)


def test_select_matches_globs():
    names = ["cnn_b2_f16_k3_max", "lc2d_twin", "cap_rnn1_pre", "cap_lstm2_init"]
    assert cnn.select(names, "") == names
    assert cnn.select(names, "cap_*") == ["cap_rnn1_pre", "cap_lstm2_init"]
    assert cnn.select(names, "lc2d_twin, cnn_*") == ["cnn_b2_f16_k3_max", "lc2d_twin"]


def test_keras3_records_masks_as_operation_nodes():
    # Why the captioners are tf_keras: Keras 3 writes a propagated mask into the config as ops.
    import keras

    t = keras.Input((5,), dtype="int32")
    h = keras.layers.LSTM(3)(keras.layers.Embedding(10, 4, mask_zero=True)(t))
    assert "NotEqual" in layer_classes(keras.Model(t, h).get_config())


def random_weights(model, seed):
    randomize_keras_weights(model, np.random.default_rng(seed), scale=0.3)
    variances = [w for w in model.weights if "variance" in w.name]
    assert variances and all(np.all(np.asarray(v) > 0) for v in variances)   # else BN gives NaN == NaN


@pytest.fixture(scope="module")
def probe():
    rng = np.random.default_rng(0)
    images = rng.random((3, 64, 64, 3)).astype(np.float32)
    tokens = np.zeros((3, 7), np.int32)
    tokens[:, 0] = 1
    tokens[:, 1:6] = rng.integers(4, 20, (3, 5))
    tokens[2, 3:] = 0                              # a short caption: padding from step 3
    return images, tokens


@pytest.mark.parametrize("cell, layers, inject", [("rnn", 1, "pre"), ("lstm", 2, "pre"), ("lstm", 1, "init")])
def test_step_model_replays_the_teacher_forced_graph(probe, cell, layers, inject, tmp_path):
    images, tokens = probe
    cap = build_captioner(20, 7, cell=cell, layers=layers, inject=inject, units=16, embed_dim=8)
    random_weights(cap.train, seed=layers)
    full = np.asarray(cap.train([images, tokens], training=False))
    assert full.shape == (3, 7, 20) and full.dtype == np.float32 and np.isfinite(full).all()
    states = cap.encoder(images, training=False)
    states = [np.asarray(s) for s in (states if isinstance(states, list) else [states])]
    assert [s.shape for s in states] == [(3, 16)] * (layers * (2 if cell == "lstm" else 1)) == \
        [(3, n) for n in cap.state_sizes]
    for t in range(6):
        logits, *states = cap.step([tokens[:, t:t + 1], *states], training=False)
        states = [np.asarray(s) for s in states]
        real = tokens[:, t] != 0
        np.testing.assert_allclose(np.asarray(logits)[real], full[real, t], rtol=1e-5, atol=1e-5)
    # Masked steps carry the state: the padded steps repeat the last real step's logits.
    np.testing.assert_allclose(full[2, 3:], np.repeat(full[2, 2:3], 4, axis=0), rtol=1e-6, atol=1e-6)
    for model in (cap.train, cap.encoder, cap.step):
        assert engine_refusals(model.get_config()) == []
    assert cap.step.get_layer("rnn1") is cap.train.get_layer("rnn1")
    path = tmp_path / "train.h5"
    cap.train.save(path, include_optimizer=False)
    assert engine_refusals(saved_model_config(path)) == []


def test_pre_inject_equals_running_the_stack_over_image_then_words(probe):
    import tensorflow as tf

    images, tokens = probe
    cap = build_captioner(20, 7, cell="lstm", layers=1, inject="pre", units=16, embed_dim=8)
    random_weights(cap.train, seed=5)
    vec = cap.train.get_layer("img_bn")(cap.train.get_layer("img_dense")(cap.feature_extractor(images[:2])))
    seq = tf.concat([vec[:, None, :], cap.train.get_layer("embedding")(tokens[:2])], axis=1)
    # The image step is always real; word steps are real where the token is not <pad> (the probe's
    # last step is padding, so a missing mask would show).
    mask = np.concatenate([np.ones((2, 1), bool), tokens[:2] != 0], axis=1)
    assert not mask.all()
    out = cap.train.get_layer("rnn1")(seq, mask=tf.constant(mask))[0]
    want = np.asarray(cap.train.get_layer("logits")(out)[:, 1:])
    got = np.asarray(cap.train([images[:2], tokens[:2]], training=False))
    assert np.isfinite(want).all() and np.abs(want).max() > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_greedy_decode_stops_at_end(probe):
    from keras_ref.vocab import Vocabulary

    images, _ = probe
    vocab = Vocabulary.build([["w%d" % i for i in range(16)]])
    cap = build_captioner(len(vocab), vocab.max_len, cell="rnn", layers=1, inject="init", units=8, embed_dim=4)
    bias = np.full(len(vocab), -5.0, np.float32)
    bias[vocab.stoi["w3"]] = 5.0
    kernel, _ = cap.train.get_layer("logits").get_weights()
    cap.train.get_layer("logits").set_weights([np.zeros_like(kernel), bias])
    assert greedy_decode(cap.encoder, cap.step, images, vocab) == [["w3"] * vocab.max_len] * 3
    bias[vocab.end] = 10.0
    cap.train.get_layer("logits").set_weights([np.zeros_like(kernel), bias])
    assert greedy_decode(cap.encoder, cap.step, images, vocab) == [[]] * 3


def test_captioner_arguments_are_checked():
    assert len(captioner_configs()) == 8
    with pytest.raises(ValueError, match=r"cell must be 'rnn' or 'lstm'. Received: cell='gru'"):
        build_captioner(10, 5, cell="gru")
    with pytest.raises(ValueError, match=r"inject must be 'pre' or 'init'. Received: inject='par'"):
        build_captioner(10, 5, inject="par")
    with pytest.raises(ValueError, match=r"layers must be 1 or 2. Received: layers=3"):
        build_captioner(10, 5, layers=3)


@pytest.mark.slow
def test_resnet50_captioner_builds_offline_with_supported_layers(tmp_path):
    cap = build_resnet50_captioner(30, 6, image_shape=(32, 32, 3), cell="lstm", layers=1, inject="init")
    classes = set(layer_classes(cap.train.get_config()))
    assert {"Conv2D", "BatchNormalization", "Add", "ZeroPadding2D", "LSTM"} <= classes
    assert engine_refusals(cap.train.get_config()) == []
    assert cap.feature_extractor.count_params() == 23_587_712          # ResNet50 without its top
    with pytest.raises(ValueError, match=r"weights must be None or the path of a local weights file \(no downloads\)"):
        build_resnet50_captioner(30, 6, weights="imagenet")
    with pytest.raises(FileNotFoundError, match=r"ResNet50 weights file not found: .*nowhere.h5"):
        build_resnet50_captioner(30, 6, weights=str(tmp_path / "nowhere.h5"))


def test_pretrained_scene_cnn_ends_in_the_slot_heads():
    from keras_ref.scenes import load_digit_scenes
    from keras_ref.train import pretrain_scene_encoder

    data = load_digit_scenes(n_train=24, n_val=8, n_test=0, progress=False)
    cnn_model, heads, history, _, epochs = pretrain_scene_encoder(
        data, image_shape=(64, 64, 3), crop_count=40, crop_epochs=1, epochs=1, progress=False)
    assert epochs == 1 and len(history["loss"]) == 1 and "crops_val_accuracy" in history
    x = data["val"]["images"][:4]
    slots = [f"{a}_{k}" for k in range(3) for a in ("digit", "color", "size")]
    assert sorted(heads.output_names) == sorted(slots + ["cell_digit", "cell_color", "cell_size"])
    outputs = heads(x, training=False)
    want = np.concatenate([np.asarray(outputs[k]) for k in slots], axis=1)   # slot by slot, in caption order
    np.testing.assert_allclose(np.asarray(cnn_model(x, training=False)), want, rtol=1e-5, atol=1e-5)
    names = [layer.name for layer in cnn_model.layers]
    assert names[-2:] == ["enc_flatten", "enc_features"] and engine_refusals(cnn_model.get_config()) == []
