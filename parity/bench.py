"""Scratch vs Keras speed on realistic conv/pool shapes (``make bench``; prints, asserts nothing).

For each layer: median wall time of the forward pass and of the backward pass (dx and weight
gradients; Keras's via ``tf.GradientTape``), the largest im2col patch matrix the scratch layer
built, and the forward max |scratch - Keras| as a sanity check. Grouped convs are left out: Keras compiles them with XLA on every call on CPU, so its time
would measure compilation. Then the scratch time of every
Conv2D/pooling/padding layer of ResNet50 on 2 images of 224x224, against Keras's whole-model call.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

from scratch.layers import conv, pooling, windows# noqa: E402

REPEATS = 3

CASES = [
    ("Conv2D 3x3 s1 same 64->64", keras.layers.Conv2D(64, 3, padding="same"), conv.Conv2D, (8, 56, 56, 64)),
    ("Conv2D 7x7 s2 same 3->64", keras.layers.Conv2D(64, 7, strides=2, padding="same"), conv.Conv2D,
     (2, 224, 224, 3)),
    ("Conv2D 1x1 s1 256->64", keras.layers.Conv2D(64, 1), conv.Conv2D, (8, 56, 56, 256)),
    ("Conv2D 3x3 s2 same 128->128", keras.layers.Conv2D(128, 3, strides=2, padding="same"), conv.Conv2D,
     (8, 56, 56, 128)),
    ("LocallyConnected2D 3x3 16->16", tf_keras.layers.LocallyConnected2D(16, 3), conv.LocallyConnected2D,
     (8, 16, 16, 16)),
    ("MaxPooling2D 3x3 s2 same", keras.layers.MaxPooling2D(3, 2, padding="same"), pooling.MaxPooling2D,
     (8, 112, 112, 64)),
    ("AveragePooling2D 2x2 same", keras.layers.AveragePooling2D(2, padding="same"), pooling.AveragePooling2D,
     (8, 55, 55, 64)),
    ("GlobalAveragePooling2D", keras.layers.GlobalAveragePooling2D(), pooling.GlobalAveragePooling2D,
     (8, 7, 7, 2048)),
]


def median_time(fn, repeats=REPEATS):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def keras_backward(layer, x, dout):
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        y = layer(xv)
    return tape.gradient(y, [xv] + list(layer.trainable_weights), output_gradients=tf.constant(dout))


def bench_layer(label, keras_layer, scratch_cls, shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    keras_layer.build(shape)
    layer = scratch_cls(**keras_layer.get_config())
    layer.build(shape)
    if keras_layer.get_weights():
        layer.set_weights(keras_layer.get_weights())
    desired = np.asarray(keras_layer(x))  # warm-up, and the reference output
    dout = rng.normal(size=desired.shape).astype(np.float32)
    keras_backward(keras_layer, x, dout)
    windows.reset_peak_patch_bytes()
    actual = layer.forward(x)
    layer.backward(dout)
    peak = windows.peak_patch_bytes()
    row = dict(
        label=label, shape=shape,
        keras_fwd=median_time(lambda: np.asarray(keras_layer(x))),
        scratch_fwd=median_time(lambda: layer.forward(x)),
        keras_bwd=median_time(lambda: keras_backward(keras_layer, x, dout)),
        scratch_bwd=median_time(lambda: layer.backward(dout)),
        peak_mb=peak / 2**20,
        max_abs=float(np.max(np.abs(actual - desired))),
    )
    return row


def bench_resnet50(rng, batch=2):
    """Scratch time of ResNet50's conv/pool/padding layers on their real input shapes."""
    model = keras.applications.ResNet50(weights=None)
    x = rng.normal(size=(batch, 224, 224, 3)).astype(np.float32)
    np.asarray(model(x[:1]))
    keras_time = median_time(lambda: np.asarray(model(x)), repeats=2)
    kinds = {"Conv2D": conv.Conv2D, "ZeroPadding2D": conv.ZeroPadding2D, "MaxPooling2D": pooling.MaxPooling2D,
             "GlobalAveragePooling2D": pooling.GlobalAveragePooling2D}
    total, count = 0.0, 0
    windows.reset_peak_patch_bytes()
    for k_layer in model.layers:
        cls = kinds.get(type(k_layer).__name__)
        if cls is None:
            continue
        in_shape = (batch,) + tuple(k_layer.input.shape[1:])
        layer = cls(**k_layer.get_config())
        layer.build(in_shape, rng=rng)
        inp = rng.normal(size=in_shape).astype(np.float32)
        start = time.perf_counter()
        layer.forward(inp)
        total += time.perf_counter() - start
        count += 1
    return count, total, keras_time, windows.peak_patch_bytes() / 2**20


def main():
    rng = np.random.default_rng(0)
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy {np.__version__}; "
          f"oneDNN: {onednn}; float32; median of {REPEATS}; patch-matrix bound "
          f"{windows.MAX_PATCH_BYTES / 2**20:.0f} MB")
    head = (f"{'layer':32s} {'input':>18s} {'keras fwd':>10s} {'mine fwd':>10s} {'keras bwd':>10s} "
            f"{'mine bwd':>10s} {'patch MB':>9s} {'max|diff|':>10s}")
    print(head)
    print("-" * len(head))
    for case in CASES:
        r = bench_layer(*case, rng)
        print(f"{r['label']:32s} {'x'.join(map(str, r['shape'])):>18s} {1e3 * r['keras_fwd']:8.1f}ms "
              f"{1e3 * r['scratch_fwd']:8.1f}ms {1e3 * r['keras_bwd']:8.1f}ms {1e3 * r['scratch_bwd']:8.1f}ms "
              f"{r['peak_mb']:9.1f} {r['max_abs']:10.2e}")
    count, total, keras_time, peak = bench_resnet50(rng)
    print(f"\nResNet50, 2 images 224x224: scratch forward of its {count} conv/pool/padding layers "
          f"{total:.2f} s (peak patch matrix {peak:.1f} MB); Keras whole-model call {keras_time:.2f} s")


if __name__ == "__main__":
    main()
