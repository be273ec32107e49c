"""The keras.applications zoo: every application model built offline, with random weights, saved twice.

``make zoo`` (parity/zoo.py) proves scratch on every model that ``keras.applications`` ships. This
module is the Keras side and never imports scratch:

- ``names()``: every application builder the installed Keras exports (40 in Keras 3.15.1);
- ``build(name, size, seed, **kwargs)``: the model with ``weights=None`` (nothing is downloaded) at
  ``size`` x ``size`` x 3, the smallest input its builder accepts (``MIN_SIZE``: 32 px, Xception 71,
  the Inceptions 75), then ``randomize``;
- ``randomize``: Keras initializes biases, BatchNormalization's gamma/beta/moving statistics,
  LayerScale's gamma and Normalization's mean/variance to constants (zeros, ones, 1e-6), which
  would make those layers identities or near-zeros and hide their bugs. Every constant float weight
  is redrawn with a fixed seed: scales and variances from U(0.5, 1.5) (so variances stay positive),
  everything else from N(0, 0.1). Kernels keep their seeded random initialization;
- ``sample_inputs``: scikit-learn's two photos (china.jpg, flower.jpg), resized to ``size`` and run
  through the family's own ``preprocess_input``;
- ``save``: the model as ``.keras`` and as legacy ``.h5``.
"""

import importlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

DEFAULT_SIZE = 32
MIN_SIZE = {"Xception": 71, "InceptionV3": 75, "InceptionResNetV2": 75}
SEED = 0
# Weight names whose constant initial value is a scale or a variance: redrawn positive.
_POSITIVE = ("variance", "gamma", "scale")


def _keras():
    import keras

    return keras


def names():
    """Every application builder of the installed keras.applications, sorted."""
    apps = _keras().applications
    return sorted(n for n in dir(apps) if n[:1].isupper() and callable(getattr(apps, n)))


def min_size(name):
    return MIN_SIZE.get(name, DEFAULT_SIZE)


def build(name, size=None, seed=SEED, **kwargs):
    """``keras.applications.<name>(weights=None, input_shape=(size, size, 3), **kwargs)``, randomized."""
    keras = _keras()
    size = size or min_size(name)
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), **kwargs)
    randomize(model, np.random.default_rng(seed))
    return model


def _layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and hasattr(layer, "inputs"):   # a nested Functional/Sequential
            yield from _layers(layer)
        else:
            yield layer


def randomize(model, rng):
    """Redraw every constant float weight (see the module docstring); returns how many were redrawn."""
    redrawn = 0
    for layer in _layers(model):
        weights = layer.get_weights()
        if not weights:
            continue
        new = []
        for var, w in zip(layer.weights, weights):
            name = var.name.lower()
            if w.dtype.kind != "f" or w.size == 0 or "count" in name or np.ptp(w) > 0:
                new.append(w)
                continue
            if any(k in name for k in _POSITIVE):
                new.append(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
            else:
                new.append(rng.normal(0.0, 0.1, w.shape).astype(w.dtype))
            redrawn += 1
        layer.set_weights(new)
    return redrawn


def sample_inputs(name, size):
    """The two scikit-learn photos at ``size`` x ``size``, through ``name``'s own ``preprocess_input``."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images   # china.jpg, flower.jpg
    x = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in photos])
    builder = getattr(_keras().applications, name)
    preprocess = importlib.import_module(builder.__module__).preprocess_input
    return np.asarray(preprocess(x.astype("float32")), dtype="float32")


def save(model, folder, stem):
    """``{format: path}`` for the model saved as ``.keras`` and as legacy ``.h5``."""
    paths = {"keras": os.path.join(folder, f"{stem}.keras"), "h5": os.path.join(folder, f"{stem}.h5")}
    for path in paths.values():
        model.save(path)
    return paths
