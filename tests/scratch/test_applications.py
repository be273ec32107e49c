"""Whole-model proofs: Keras Applications rebuilt by ``scratch.load`` agree with Keras on real photos.

ResNet50 and DenseNet121 (``weights=None``: nothing is downloaded) are built with a fixed seed; the
BatchNormalization moving statistics (and gamma/beta) are randomized so BN is not the identity.
Each is saved as ``.h5`` and as ``.keras`` in a temporary folder and run by scratch on scikit-learn's
``china.jpg`` and ``flower.jpg``, resized to 224x224 and preprocessed with the model's own
``preprocess_input`` ('caffe' mode for ResNet50, 'torch' mode for DenseNet).

Tolerance: every layer's output is checked twice, both under ``parity.tolerance``'s rule.
1. End to end: scratch runs the whole net; a layer's output carries the rounding of every layer
   before it, so ``reduction`` is the longest chain of sums behind it (its own plus its deepest
   input's, ``parity.compare.effective_reductions``).
2. Layer by layer: each scratch layer reads Keras's own outputs of the layers feeding it
   (``Model.trace(x, feed=...)``) and ``reduction`` is the layer's own longest sum alone. This
   isolates each layer's error from the error it inherits and is the tight check.
"""

import os
import time

import numpy as np
import pytest

import scratch
from parity.compare import effective_reductions, own_reduction
from parity.keras_runner import intermediate_outputs, layer_infos
from parity.tolerance import assert_close, compare

keras = pytest.importorskip("keras")

pytestmark = pytest.mark.slow

APPS = {
    # name: (keras.applications module, layers incl. InputLayer, params, formats proven)
    "ResNet50": ("resnet50", 177, 25_636_712, ("h5", "keras")),
    # DenseNet's 428 outputs make each full comparison slow: its proof runs from .h5 only.
    "DenseNet121": ("densenet", 429, 8_062_504, ("h5",)),
}


def sample_images():
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()   # china.jpg, flower.jpg, shipped with scikit-learn
    assert [p.rsplit("/", 1)[-1] for p in photos.filenames] == ["china.jpg", "flower.jpg"]
    return np.stack([np.asarray(Image.fromarray(im).resize((224, 224), Image.BILINEAR))
                     for im in photos.images]).astype("float32")


def best_of(n, fn):
    """(result, fastest wall time of n runs): the machine is shared, so the minimum is the signal."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, min(times)


def randomize_batchnorm(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0.0, 0.1, beta.shape).astype("float32"),
                               rng.normal(0.0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, var.shape).astype("float32")])


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """name -> the built, saved and Keras-run application; each built once per module, on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _prepare(name, tmp_path_factory.mktemp(name))
        return cache[name]
    return get


def _prepare(name, folder):
    module, n_layers, n_params, formats = APPS[name]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None)
    randomize_batchnorm(model, np.random.default_rng(0))
    paths = {fmt: folder / f"{name}.{fmt}" for fmt in formats}
    for path in paths.values():
        model.save(path)
    x = getattr(keras.applications, module).preprocess_input(sample_images())
    infos = layer_infos(model)
    reference = intermediate_outputs(model, x)
    model.predict(x, verbose=0)   # warm-up: the timed calls below measure inference, not tracing
    keras_pred, keras_seconds = best_of(2, lambda: model.predict(x, verbose=0))
    return dict(name=name, model=model, paths=paths, x=x, reference=reference, keras_pred=keras_pred,
                keras_seconds=keras_seconds, n_layers=n_layers, n_params=n_params,
                own={i["name"]: max(1, own_reduction(i["class_name"], i["config"], i["input_shape"])) for i in infos},
                chain=effective_reductions(infos))


CASES = [(name, fmt) for name, spec in APPS.items() for fmt in spec[3]]


def _check_all(trace, reference, reductions, label):
    """assert_close on every layer; returns the worst layer as (share of its atol, name, max_abs)."""
    assert list(trace) == list(reference), f"{label}: trace names/order differ from Keras's model.layers"
    worst = (-1.0, "", 0.0)
    for name, want in reference.items():
        stats = assert_close(trace[name], want, label=f"{label}: {name}", reduction=reductions[name])
        worst = max(worst, (stats["max_abs"] / stats["atol"], name, stats["max_abs"]))
    return worst


@pytest.mark.parametrize("name, fmt", CASES)
def test_application_per_layer_parity(apps, name, fmt):
    app = apps(name)
    smodel = scratch.load(app["paths"][fmt])
    assert len(smodel.layers) == app["n_layers"]
    assert smodel.count_params() == app["n_params"] == app["model"].count_params()
    pred, scratch_seconds = best_of(2, lambda: smodel.predict(app["x"]))
    assert_close(pred, app["keras_pred"], label=f"{app['name']} predict", reduction=max(app["chain"].values()))

    label = f"{app['name']} from .{fmt}"
    chained = _check_all(smodel.trace(app["x"]), app["reference"], app["chain"], label + " end to end")
    print(f"\n{label}: {len(app['reference'])} layers agree. Worst end to end: {chained[1]} "
          f"max abs {chained[2]:.3e} ({chained[0]:.3f} of its atol). Forward on 2 images (best of 2): "
          f"scratch predict {scratch_seconds:.2f} s, Keras predict {app['keras_seconds']:.2f} s "
          f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset: oneDNN on')})")
    if fmt == "h5":   # both formats hold the same arrays (end to end above); the isolated check once
        isolated = _check_all(smodel.trace(app["x"], feed=app["reference"]), app["reference"], app["own"],
                              label + " layer by layer")
        print(f"{label}: worst layer by layer: {isolated[1]} max abs {isolated[2]:.3e} "
              f"({isolated[0]:.3f} of its atol)")


def test_float32_error_matches_keras_against_a_float64_truth(apps):
    """Each float32 engine against the float64 scratch run (ResNet50): scratch's error is Keras's order."""
    app = apps("ResNet50")
    truth = scratch.load(app["paths"]["h5"]).to_dtype("float64").trace(app["x"])
    mine = scratch.load(app["paths"]["h5"]).trace(app["x"])
    ratios = []
    for name, want in app["reference"].items():
        scale = max(1.0, float(np.abs(truth[name]).max()))
        k_err = float(np.abs(want - truth[name]).max()) / scale
        s_err = float(np.abs(mine[name] - truth[name]).max()) / scale
        ratios.append((s_err / max(k_err, 1e-30), name, s_err, k_err))
        assert truth[name].dtype == np.float64
    worst = max(ratios)
    stats = compare(mine[name], want)
    print(f"\n{app['name']}: scratch float32 vs float64 truth is at most {worst[0]:.2f}x Keras's error "
          f"(at {worst[1]}: {worst[2]:.2e} vs {worst[3]:.2e}); final layer eps units {stats['eps_units']:.1f}")
    # Scratch's float32 error is of the same order as Keras's own, layer by layer.
    assert worst[0] < 10.0
