"""Regenerate parity/fuzz_seeds/ (the fuzzer's small seed models) with Keras 3 and tf_keras:
``.venv/bin/python scripts/make_fuzz_seeds.py parity/fuzz_seeds``. Needs TensorFlow; the fuzzer itself does not."""
import os, sys, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
out = sys.argv[1]
import keras, tf_keras
keras.utils.set_random_seed(1)
L = keras.layers
inp = keras.Input((4,), name="x")
m = keras.Model(inp, L.Dense(3, name="out")(L.Dense(5, activation="relu", name="hidden")(inp)), name="mlp")
m.save(f"{out}/k3_mlp.h5"); m.save(f"{out}/k3_mlp.keras"); m.save_weights(f"{out}/k3_mlp.weights.h5")
open(f"{out}/k3_mlp.json", "w").write(m.to_json())
tok = keras.Input((6,), dtype="int32", name="tokens")
t = keras.Model(tok, L.Dense(2, name="cls")(L.LSTM(3, name="rnn")(L.Embedding(9, 4, mask_zero=True, name="emb")(tok))), name="text")
t.save(f"{out}/k3_text.keras")
T = tf_keras.layers
tf_keras.utils.set_random_seed(1)
s = tf_keras.Sequential([tf_keras.Input((6, 6, 1)), T.Conv2D(2, 3, name="conv"), T.MaxPooling2D(name="pool"),
                         T.Flatten(name="flat"), T.Dense(2, name="head")], name="tfk_cnn")
s.save(f"{out}/tfk_cnn.h5")
inner = tf_keras.Sequential([tf_keras.Input((3,)), T.Dense(3, name="d1")], name="inner")
x = tf_keras.Input((3,), name="x")
n = tf_keras.Model(x, T.Dense(2, name="head")(inner(x)), name="tfk_nested")
n.save(f"{out}/tfk_nested.h5")
