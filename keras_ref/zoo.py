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
- ``calibrate``: then every BatchNormalization's moving statistics are set from the scale of its
  own input on the zoo's sample (one eager pass in graph order): random statistics make the deep
  EfficientNetV2s chaotic (activations to 1e7, Keras float32 far from Keras float64), calibrated
  ones describe a well-conditioned, trained-like net. Still random per channel, never an identity;
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
# What ``build`` does to the weights after Keras initializes them; part of make zoo's build-cache key,
# so a cache built by an older rule is rebuilt.
RANDOMIZATION = "constants redrawn; BatchNormalization statistics calibrated to its input's pooled scale"
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


# Reduced members of some families for the bounded test subset (tests/parity/test_zoo.py): the
# family's own generic builder with fewer blocks and narrower stages. Same layer types, cells and
# graph patterns as the named model, a fraction of its build and run time.
REDUCED = {
    "NASNetMobile": ("nasnet.NASNet", dict(penultimate_filters=96, num_blocks=1, stem_block_filters=8,
                                           skip_reduction=False, filter_multiplier=2, default_size=224,
                                           name="nasnet_mobile_reduced")),
    "ConvNeXtTiny": ("convnext.ConvNeXt", dict(depths=[1, 1, 2, 1], projection_dims=[8, 16, 24, 32],
                                               default_size=224, name="convnext_tiny_reduced")),
    "EfficientNetB0": ("efficientnet.EfficientNet", dict(width_coefficient=0.25, depth_coefficient=0.25,
                                                         default_size=224, name="efficientnetb0_reduced")),
    # InceptionResNetV2's builder has no width or depth knob: its own stem pieces and one block of each
    # type (block35, block17, block8 and the final linear block8), through Keras's conv2d_bn and
    # inception_resnet_block, which give the CustomScaleLayer residuals.
    "InceptionResNetV2": ("zoo.mini_inception_resnet_v2", {}),
}


def mini_inception_resnet_v2(weights=None, input_shape=(75, 75, 3), classes=1000):
    """A small InceptionResNetV2 made of Keras's own InceptionResNetV2 building blocks (see ``REDUCED``)."""
    from keras.src.applications.inception_resnet_v2 import conv2d_bn, inception_resnet_block

    keras = _keras()
    L = keras.layers
    img = keras.Input(input_shape)
    x = conv2d_bn(img, 16, 3, strides=2, padding="valid")
    x = L.MaxPooling2D(3, strides=2)(conv2d_bn(x, 32, 3))
    branches = [conv2d_bn(x, 16, 1), conv2d_bn(conv2d_bn(x, 8, 1), 16, 5),
                conv2d_bn(L.AveragePooling2D(3, strides=1, padding="same")(x), 16, 1)]
    x = inception_resnet_block(L.Concatenate(name="mixed_5b")(branches), scale=0.17, block_type="block35", block_idx=1)
    for stage, (scale, block) in enumerate(((0.1, "block17"), (0.2, "block8"))):
        x = L.Concatenate(name=f"mixed_{6 + stage}a")([conv2d_bn(x, 32, 3, strides=2, padding="valid"),
                                                      L.MaxPooling2D(3, strides=2)(x)])
        x = inception_resnet_block(x, scale=scale, block_type=block, block_idx=1)
    x = inception_resnet_block(x, scale=1.0, activation=None, block_type="block8", block_idx=10)
    x = L.GlobalAveragePooling2D(name="avg_pool")(conv2d_bn(x, 64, 1, name="conv_7b"))
    return keras.Model(img, L.Dense(classes, activation="softmax", name="predictions")(x),
                       name="inception_resnet_v2_mini")


def _builder(name, builder=None):
    if builder is None:
        return getattr(_keras().applications, name)
    module, _, func = builder.rpartition(".")
    if module == "zoo":
        return globals()[func]
    return getattr(importlib.import_module(f"keras.src.applications.{module}"), func)


def build(app, size=None, seed=SEED, builder=None, **kwargs):
    """``keras.applications.<app>(weights=None, input_shape=(size, size, 3), **kwargs)``, randomized.

    ``builder`` (``"nasnet.NASNet"``) calls a family's generic builder instead (``REDUCED``).
    """
    keras = _keras()
    size = size or min_size(app)
    keras.utils.set_random_seed(seed)
    model = _builder(app, builder)(weights=None, input_shape=(size, size, 3), **kwargs)
    rng = np.random.default_rng(seed)
    randomize(model, rng)
    calibrate(model, sample_inputs(app, size), rng)
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
        if type(layer).__name__ == "Normalization":
            # Normalization computes with mean/variance copies it takes from its weights in
            # finalize_state (Keras calls it after loading a file); without it the in-memory model
            # would keep using the values it was built with, unlike the file it saves.
            layer.finalize_state()
    return redrawn


# BatchNormalization calibration (``calibrate``): with s2 the mean square of the layer's input over
# every element, channel c gets moving_variance u_c * s2 (u_c ~ U(VAR_FACTOR)) and moving_mean
# MEAN_JITTER * sqrt(s2) * N(0, 1).
VAR_FACTOR = (0.5, 2.0)
MEAN_JITTER = 0.1


def _is_nested(op):
    return hasattr(op, "_run_through_graph") and hasattr(op, "layers")


def calibrate(model, x, rng):
    """Set every BatchNormalization's moving statistics from the scale of its own input on ``x``.

    Random moving statistics do not normalize: each BatchNormalization scales its input by an
    arbitrary factor, and through a deep net (EfficientNetV2M/L: ~300 of them) those factors
    compound until activations reach 1e4-1e7 and the net is chaotic: Keras float32 itself misses
    Keras float64 by 50-4500x the tolerance. Here each BatchNormalization sees its actual input, on
    the zoo's own sample ``x``, with every upstream BatchNormalization already calibrated (one eager
    pass through the graph, in graph order), and normalizes the layer to about unit scale as a
    trained one would: with s2 the mean square of its input over all elements,

    - moving_variance[c] = u_c * s2, u_c ~ U(0.5, 2);
    - moving_mean[c] = 0.1 * sqrt(s2) * N(0, 1).

    gamma and beta stay ``randomize``'s draws (U(0.5, 1.5), N(0, 0.1)) and the per-channel u_c and
    mean are random, so no BatchNormalization is an identity or an exact whitening.

    Why one pooled scale and not each channel's own mean and variance (measured, Keras float32 vs
    float64 at EfficientNetV2B1's and V2M's worst node, max error / max value): the sample is two
    photos, and at 32 px the deepest stages are 1 x 1, so a channel's statistics come from two
    numbers. Dividing by a channel's own variance stretches the channels that are small on these
    two photos by chance, with their rounding (1e-3 to 1 relative error, chaotic again); centering
    on a channel's own mean leaves only the two photos' difference, a cancellation that amplifies
    rounding by |mean| / |difference| (the finding that broke EfficientNetV2B1 when V2M was
    calibrated on plain batch statistics; a pooled scale with per-channel centering still reached
    5e-3 on V2M). The pooled scale, uncentered, gives 4e-6 (V2B1) and 9e-5 (V2M).
    Returns how many BatchNormalization layers were calibrated.
    """
    from keras.src.models.functional import operation_fn

    count = [0]

    def wrap(op):
        if _is_nested(op):
            return lambda inputs, *a, **k: _run(op, inputs)
        call = operation_fn(op, training=False)
        if type(op).__name__ != "BatchNormalization":
            return call

        def calibrated(inputs, *args, **kwargs):
            _set_statistics(op, np.asarray(inputs, np.float64), rng)
            count[0] += 1
            return call(inputs, *args, **kwargs)

        return calibrated

    def _run(m, inputs):
        out = m._run_through_graph(m._standardize_inputs(inputs), operation_fn=wrap)
        return out[0] if len(out) == 1 else out

    _run(model, _keras().ops.convert_to_tensor(x))
    return count[0]


def _set_statistics(bn, x, rng):
    channels = bn.moving_mean.shape
    s2 = float(np.mean(np.square(x))) or 1.0   # an all-zero input (a dead ReLU) keeps unit scale
    dtype = bn.moving_mean.dtype
    bn.moving_mean.assign((MEAN_JITTER * np.sqrt(s2) * rng.standard_normal(channels)).astype(dtype))
    bn.moving_variance.assign((rng.uniform(*VAR_FACTOR, channels) * s2).astype(dtype))


def sample_inputs(name, size):
    """The two scikit-learn photos at ``size`` x ``size``, through ``name``'s own ``preprocess_input``."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images   # china.jpg, flower.jpg
    x = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in photos])
    preprocess = importlib.import_module(_builder(name).__module__).preprocess_input
    return np.asarray(preprocess(x.astype("float32")), dtype="float32")


def save(model, folder, stem, formats=("keras", "h5")):
    """``{format: path}`` for the model saved as ``.keras`` and/or legacy ``.h5``."""
    paths = {fmt: os.path.join(folder, f"{stem}.{fmt}") for fmt in formats}
    for path in paths.values():
        model.save(path)
    return paths
