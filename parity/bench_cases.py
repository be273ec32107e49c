"""The cases ``make bench`` times: each builds its scratch and Keras sides on the same weights and input.

A case is a ``Case``; ``build()`` returns its sides (``{"scratch": fn, "keras": fn}``, each running
the whole work once) or raises ``NotRunnable`` (a model the engine cannot load yet). Keras is always
called eagerly, ``model(x, training=False)``, as the parity suite calls it; Keras Applications are
built with ``weights=None`` (nothing is downloaded) and a fixed seed, then saved and loaded by
``scratch.load``. Conv/Dense layer cases also time numpy's float32 matmul on a product of the same
size (``sgemm``: the im2col product (N*oh*ow, kh*kw*C) @ (kh*kw*C, F)).
"""

import os
import tempfile

import numpy as np

WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")


class NotRunnable(Exception):
    """The engine cannot run this case yet (the message says why)."""


class Case:
    def __init__(self, name, group, target, build, *, pairs=3, warmups=1, flops=None, sgemm=None, note=""):
        self.name, self.group, self.target, self.build = name, group, target, build
        self.pairs, self.warmups, self.flops, self.sgemm, self.note = pairs, warmups, flops, sgemm, note


def _keras():
    from . import keras_runner as kr

    return kr


# ---- committed models ------------------------------------------------------------------------------
_DATA = {}


def _manifest():
    from .manifest import Manifest

    return Manifest.load(WEIGHTS)


def _test_split(entry):
    from .suite_context import load_dataset

    key = repr(sorted(entry.dataset.items()))
    if key not in _DATA:
        _DATA[key] = load_dataset(entry.dataset)
    return _DATA[key]


def classifier_case(name, target=0.8):
    def build():
        import scratch

        kr = _keras()
        entry = _manifest().entry(name)
        x = _test_split(entry)["x"]
        smodel, kmodel = scratch.load(entry.model_file()), kr.load_model(entry.model_file())
        return dict(scratch=lambda: smodel.predict(x, batch_size=256), keras=lambda: kr.call(kmodel, x))

    # 7 pairs: a case takes 0.03-0.1 s, and medians of 3 moved its ratio by +-0.15 between runs.
    return Case(name, "committed classifier, whole test split (359 images), batch 256", target, build, pairs=7)


def decoding_case(name, mode, beam_width=3, target=0.5, pairs=3):
    def build():
        import scratch
        from scratch.models import decode as sdecode

        from . import keras_decode

        kr = _keras()
        entry = _manifest().entry(name)
        images = _test_split(entry)["x"]
        vocab = entry.vocab()
        kw = dict(start=vocab["start"], end=vocab["end"], max_len=int(vocab["max_len"]))
        senc, sstep = (scratch.load(*entry.source(p)) for p in ("encoder", "step"))
        kenc, kstep = (kr.load_model(*entry.source(p)) for p in ("encoder", "step"))
        if mode == "greedy":
            return dict(scratch=lambda: sdecode.greedy_decode(senc, sstep, images, batch_size=4096, **kw),
                        keras=lambda: keras_decode.greedy(kenc, kstep, images, **kw))
        return dict(scratch=lambda: sdecode.beam_search(senc, sstep, images, beam_width=beam_width,
                                                        batch_size=4096, **kw),
                    keras=lambda: keras_decode.beam(kenc, kstep, images, beam_width=beam_width, **kw))

    label = "greedy" if mode == "greedy" else f"beam-{beam_width}"
    return Case(f"{name} {label}", "decoding, 300 test images, vs parity.keras_decode", target, build, pairs=pairs)


# ---- Keras Applications ------------------------------------------------------------------------------
def application_case(app, batch, size, target, include_top=True):
    def build():
        import scratch
        import keras

        keras.utils.set_random_seed(0)
        kmodel = getattr(keras.applications, app)(weights=None, input_shape=(size, size, 3), include_top=include_top,
                                                  pooling=None if include_top else "avg")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{app}.keras")
            kmodel.save(path)
            try:
                smodel = scratch.load(path)
            except Exception as exc:  # noqa: BLE001 - any refusal means the engine cannot run it yet
                raise NotRunnable(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from None
        x = np.random.default_rng(0).uniform(-1, 1, size=(batch, size, size, 3)).astype(np.float32)
        return dict(scratch=lambda: smodel.predict(x, batch_size=batch),
                    keras=lambda: np.asarray(kmodel(x, training=False)))

    top = "" if include_top else " no top"
    return Case(f"{app} b{batch} {size}x{size}{top}", "Keras Applications, weights=None", target, build, pairs=3)


# ---- single layers ---------------------------------------------------------------------------------
def conv_case(label, filters, kernel, shape, strides=1, padding="same", target=0.8):
    oh = -(-shape[1] // strides) if padding == "same" else (shape[1] - kernel) // strides + 1
    ow = -(-shape[2] // strides) if padding == "same" else (shape[2] - kernel) // strides + 1
    m, k = shape[0] * oh * ow, kernel * kernel * shape[3]

    def build():
        import keras

        from scratch.layers import conv

        klayer = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding)
        klayer.build(shape)
        layer = conv.Conv2D(**klayer.get_config())
        layer.build(shape)
        layer.set_weights(klayer.get_weights())
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        return dict(scratch=lambda: layer.forward(x), keras=lambda: np.asarray(klayer(x, training=False)))

    return Case(label, "layer forward", target, build, pairs=7, warmups=2, flops=2 * m * k * filters,
                sgemm=(m, k, filters))


def dense_case(label, units, shape, target=0.8):
    def build():
        import keras

        from scratch.layers import core

        klayer = keras.layers.Dense(units)
        klayer.build(shape)
        layer = core.Dense(**klayer.get_config())
        layer.build(shape)
        layer.set_weights(klayer.get_weights())
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        return dict(scratch=lambda: layer.forward(x), keras=lambda: np.asarray(klayer(x, training=False)))

    return Case(label, "layer forward", target, build, pairs=7, warmups=2, flops=2 * shape[0] * shape[1] * units,
                sgemm=(shape[0], shape[1], units))


def sgemm_side(m, k, n):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(m, k)).astype(np.float32)
    b = rng.normal(size=(k, n)).astype(np.float32)
    return lambda: a @ b


# ---- the lists -------------------------------------------------------------------------------------
def cases(full=False):
    manifest = _manifest()
    classifiers = [n for n in manifest.names() if manifest.entry(n).kind == "classifier"]
    captioners = [n for n in manifest.names() if manifest.entry(n).kind == "captioner"]
    out = [classifier_case(n) for n in classifiers]
    out += [conv_case("Conv2D 3x3 64->64 on 8x56x56", 64, 3, (8, 56, 56, 64)),
            conv_case("Conv2D 1x1 256->64 on 8x56x56", 64, 1, (8, 56, 56, 256), padding="valid"),
            conv_case("Conv2D 3x3 s2 128->128 on 8x56x56", 128, 3, (8, 56, 56, 128), strides=2),
            dense_case("Dense 1024->1024 on 512 rows", 1024, (512, 1024))]
    if full:
        out += [conv_case("Conv2D 7x7 s2 3->64 on 8x224x224", 64, 7, (8, 224, 224, 3), strides=2),
                conv_case("Conv2D 3x3 256->256 on 8x28x28", 256, 3, (8, 28, 28, 256))]
    # At 96x96 VGG's classifier head (4608 -> 4096 -> 4096 -> 1000) would be a third of the weights
    # and no convolution: the case is about the conv stack, as the numbers were.
    out += [application_case("VGG16", 8, 96, 0.8, include_top=False)]
    if full:
        out += [application_case("VGG19", 8, 96, 0.8, include_top=False), application_case("ResNet50", 8, 224, 0.8)]
    out += [application_case("MobileNetV2", 8, 224, 1.0), application_case("EfficientNetB0", 8, 224, 1.0)]
    decode_models = captioners if full else [n for n in captioners if n in ("cap_lstm1_init", "cap_rnn2_pre")]
    for name in decode_models:
        out += [decoding_case(name, "greedy", pairs=3 if full else 2),
                decoding_case(name, "beam", pairs=3 if full else 2)]
    return out
