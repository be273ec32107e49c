"""What the engine computes on fixed inputs: run by tests/test_interpreters.py under every Python it claims.

``python engine_probe.py WEIGHTS_DIR OUT.npz`` loads committed models in both file formats, predicts on
seeded inputs in float32 and float64, and takes one training step; every result goes into OUT.npz. The
same function runs inside the test process, so any interpreter's results can be compared array by array.
It imports nothing but numpy and the engine.
"""

import sys
from pathlib import Path

import numpy as np

MODELS = ("cnn_b3_f32_k5_max.h5", "cnn_b2_f16_k3_avg.keras", "lc2d_twin.h5", "cap_lstm1_init.h5",
          "cap_rnn2_pre.h5")


def _inputs(model, rng, batch=4):
    """Seeded inputs for every model input: token ids for integer inputs, normal floats otherwise."""
    feeds = []
    for shape, dtype in zip(model.input_shapes, model.input_dtypes):
        full = (batch,) + tuple(9 if d is None else d for d in shape[1:])
        if np.issubdtype(np.dtype(dtype), np.integer):
            feeds.append(rng.integers(0, 5, size=full).astype(dtype))
        else:
            feeds.append(rng.normal(size=full).astype(dtype))
    return feeds


def probe(weights_dir):
    """Map 'model/what' to the arrays the engine computes for each committed model."""
    import scratch
    from scratch.trainer import Trainer

    results = {}
    for name in MODELS:
        rng = np.random.default_rng(0)
        model = scratch.load(Path(weights_dir) / name)
        feeds = _inputs(model, rng)
        results[f"{name}/predict"] = model.predict(feeds if len(feeds) > 1 else feeds[0])
        results[f"{name}/predict64"] = model.to_dtype(np.float64).predict(
            [f.astype(np.float64) if f.dtype.kind == "f" else f for f in feeds] if len(feeds) > 1
            else feeds[0].astype(np.float64))
        if name.startswith("cnn"):
            model = scratch.load(Path(weights_dir) / name)
            trainer = Trainer(model)
            trainer.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
            y = rng.integers(0, 10, size=len(feeds[0]))
            # fit(seed=...) reseeds every Dropout layer; a bare train_on_batch would draw OS entropy.
            history = trainer.fit(feeds[0], y, batch_size=2, epochs=2, seed=0)
            results[f"{name}/loss"] = np.asarray(history["loss"])
            for i, w in enumerate(model.get_weights()):
                results[f"{name}/trained_weight_{i}"] = w
    return results


if __name__ == "__main__":
    import scratch
    out = probe(sys.argv[1])
    out["__python__"] = np.asarray(sys.version.split()[0])
    out["__engine__"] = np.asarray(scratch.__file__)
    np.savez(sys.argv[2], **{k.replace("/", "|"): v for k, v in out.items()})
