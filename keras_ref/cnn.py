"""The CNN classifier grid of the course projects, and its LocallyConnected2D twin.

Grid: conv blocks {2, 3} x filter sets {(16, 32, 64), (32, 64, 128)} x kernel {3, 5} x pooling
{max, avg} = 16 models, named ``cnn_b{blocks}_f{first filters}_k{kernel}_{pool}`` (``cnn_b3_f32_k5_avg``).

Each model (Keras 3, functional):
``Input -> [Conv2D(f, k, 'valid') -> ReLU -> Pool(2, padding='same')] x blocks -> GlobalAveragePooling2D
-> Dense(64, relu) -> Dropout(0.3) -> Dense(n_classes, softmax)``.

Why 'valid' convolutions and 'same' pooling: LocallyConnected2D only has 'valid' padding, so the twin
is a layer-for-layer copy only if the grid uses 'valid' too; 'same' pooling keeps every configuration
valid on 32x32 inputs (3 blocks of 5x5 kernels end on a 1x1 map) and puts odd-sized 'same' pools
(15 -> 8, 13 -> 7, 5 -> 3) into trained models, where padded cells must never win a max and must not
count in an average.

Twin (tf_keras, the only Keras with LocallyConnected2D): the same graph with
``LocallyConnected2D(f, k, implementation=1)`` in place of each Conv2D. Unshared weights multiply the
parameters by the number of output positions, so the twin is built for the best grid configuration
whose twin stays within ``LC2D_MAX_PARAMS`` (see ``pick_twin``).
"""

import fnmatch
import itertools

BLOCKS = (2, 3)
FILTER_SETS = ((16, 32, 64), (32, 64, 128))
KERNELS = (3, 5)
POOLS = ("max", "avg")
DENSE_UNITS = 64
DROPOUT = 0.3
# Twins of the (16, 32, 64) configurations have 0.9-1.7 M parameters (4-7 MB as .h5); those of the
# (32, 64, 128) ones 3.4-6.0 M, which would break the ~25 MB budget of the committed weights/.
LC2D_MAX_PARAMS = 2_000_000


def grid_configs():
    """The 16 grid configurations, in a fixed order: ``{name: {blocks, filters, kernel, pool}}``."""
    configs = {}
    for blocks, filters, kernel, pool in itertools.product(BLOCKS, FILTER_SETS, KERNELS, POOLS):
        name = f"cnn_b{blocks}_f{filters[0]}_k{kernel}_{pool}"
        configs[name] = {"blocks": blocks, "filters": list(filters[:blocks]), "kernel": kernel, "pool": pool}
    return configs


def feature_map_sizes(input_size, blocks, kernel):
    """Spatial side after each conv and pool: valid conv ``n - k + 1``, same pool ``ceil(n / 2)``."""
    sizes, n = [], int(input_size)
    for _ in range(blocks):
        n = n - kernel + 1
        if n < 1:
            raise ValueError(f"{blocks} blocks of {kernel}x{kernel} 'valid' convs do not fit a {input_size}px input")
        conv = n
        n = -(-n // 2)
        sizes.append((conv, n))
    return sizes


def _build(lib, config, input_shape, n_classes, name, locally_connected=False):
    L = lib.layers
    feature_map_sizes(input_shape[0], config["blocks"], config["kernel"])
    x = inputs = L.Input(shape=tuple(input_shape), name="image")
    for i, f in enumerate(config["filters"], start=1):
        k = config["kernel"]
        if locally_connected:
            x = L.LocallyConnected2D(f, k, padding="valid", implementation=1, name=f"lc{i}")(x)
        else:
            x = L.Conv2D(f, k, padding="valid", name=f"conv{i}")(x)
        x = L.ReLU(name=f"relu{i}")(x)
        pool = L.MaxPooling2D if config["pool"] == "max" else L.AveragePooling2D
        x = pool(pool_size=2, padding="same", name=f"pool{i}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(config.get("dense_units", DENSE_UNITS), activation="relu", name="dense")(x)
    x = L.Dropout(config.get("dropout", DROPOUT), name="dropout")(x)
    outputs = L.Dense(n_classes, activation="softmax", name="predictions")(x)
    return lib.Model(inputs, outputs, name=name)


def build_cnn(config, input_shape=(32, 32, 1), n_classes=10, name="cnn"):
    """A grid model in Keras 3 (see the module docstring for the graph)."""
    import keras

    return _build(keras, config, input_shape, n_classes, name)


def build_lc2d_twin(config, input_shape=(32, 32, 1), n_classes=10, name="lc2d_twin"):
    """The same graph in tf_keras with LocallyConnected2D (implementation 1) in place of Conv2D."""
    import tf_keras

    return _build(tf_keras, config, input_shape, n_classes, name, locally_connected=True)


def lc2d_param_count(config, input_shape=(32, 32, 1), n_classes=10):
    """Parameters of the twin, computed from shapes (no model is built)."""
    total, cin, n = 0, input_shape[-1], input_shape[0]
    k = config["kernel"]
    for f, (conv, pooled) in zip(config["filters"], feature_map_sizes(n, config["blocks"], k)):
        total += conv * conv * (k * k * cin * f + f)   # kernel (oh*ow, k*k*cin, f) + bias (oh, ow, f)
        cin = f
    units = config.get("dense_units", DENSE_UNITS)
    return total + cin * units + units + units * n_classes + n_classes


def pick_twin(scores, configs, input_shape=(32, 32, 1), n_classes=10, max_params=LC2D_MAX_PARAMS):
    """Best grid model (highest score, ties to fewer parameters, then name) whose twin fits ``max_params``.

    ``scores`` maps grid names to a validation score. Returns ``(name, unconstrained_best_name)``.
    """
    ranked = sorted(scores, key=lambda n: (-scores[n], lc2d_param_count(configs[n], input_shape, n_classes), n))
    if not ranked:
        raise ValueError("pick_twin needs at least one scored grid model")
    eligible = [n for n in ranked if lc2d_param_count(configs[n], input_shape, n_classes) <= max_params]
    if not eligible:
        raise ValueError(f"no grid configuration has a LocallyConnected2D twin within {max_params} parameters")
    return eligible[0], ranked[0]


def select(names, patterns):
    """Names matching any of the comma-separated glob ``patterns`` (all names if ``patterns`` is empty)."""
    if not patterns:
        return list(names)
    globs = [p.strip() for p in patterns.split(",") if p.strip()]
    return [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]
