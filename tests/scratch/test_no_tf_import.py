"""Loading and running a model must not import TensorFlow or Keras (checked in a fresh interpreter)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import json, sys
import numpy as np
import scratch
paths = json.loads(sys.argv[1])
outs = []
for p in paths:
    model = scratch.load(p)
    x = [np.ones((2,) + tuple(s[1:]), dtype=d) for s, d in zip(model.input_shapes, model.input_dtypes)]
    y = model.predict(x if len(x) > 1 else x[0])
    model.trace(x if len(x) > 1 else x[0])
    outs.append(float(np.sum(y)))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "torch"))
print(json.dumps({"heavy": heavy, "outs": outs}))
"""


def test_load_and_run_import_neither_tensorflow_nor_keras(tmp_path):
    seq = keras.Input((5,), dtype="int32", name="ids")
    img = keras.Input((6, 6, 1), name="img")
    e = keras.layers.LSTM(3)(keras.layers.Embedding(7, 2, mask_zero=True)(seq))
    c = keras.layers.Flatten()(keras.layers.Conv2D(2, 3)(img))
    model = keras.Model([img, seq], keras.layers.Dense(2)(keras.layers.Concatenate()([c, e])))
    model.save(tmp_path / "m.h5")
    model.save(tmp_path / "m.keras")
    paths = [str(tmp_path / "m.h5"), str(tmp_path / "m.keras")]
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(paths)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    x = [np.ones((2, 6, 6, 1), "float32"), np.ones((2, 5), "int32")]
    expected = float(np.sum(model.predict(x, verbose=0)))
    assert report["outs"] == pytest.approx([expected, expected], rel=1e-5)   # it really ran the model
