"""Training in NumPy, the student's way (``make train-demo``, ``python -m parity.train_demo``).

Two models are trained from one fixed random initialization twice, entirely in scratch and in
Keras, with the same batches in the same order (``parity.train_demo_sides`` says how), and their
test metrics are reported side by side:

- the digits CNN: the committed grid architecture ``cnn_b2_f16_k3_max`` (Keras 3) on the
  scikit-learn digits (``keras_ref.data.load_digits_split``), Adam, sparse categorical
  cross-entropy, early stopping on the validation loss; macro-F1 on the test split. Dropout is at
  rate 0 (the committed model has 0.3): Keras's dropout masks cannot be reproduced.
- a small captioner (tf_keras): SimpleRNN, init-inject, 32 units, 16-d embedding, the vocabulary of
  the committed ``cap_rnn1_init``; teacher forcing with the masked loss of the committed captioners
  (``from_logits=True``, sample weight = target != <pad>, on top of the Embedding mask). As for the
  committed captioners the scene CNN is pre-trained and frozen: its features (the committed
  ``cap_rnn1_init``'s ``enc_features``, computed once by Keras) feed both sides; the layers above it
  train from scratch. Greedy captions from both trained models, coco BLEU-1..4 on the test scenes.
  The RNN is not unrolled: a tf_keras ``Sequence`` feed leaves the time axis undefined, which
  ``unroll=True`` refuses (the scratch engine runs either the same way).

Reproducible: one seed gives the initialization (``keras.utils.set_random_seed``), the epoch orders
and so the scratch side bit for bit (tests/parity/test_train_demo.py runs it twice). Bounded: the
full run takes a few minutes on a 2-core machine (``wall_time_s`` in the report); ``--quick`` is the
reduced configuration the tests use. Writes ``REPORT/train_demo.json`` and ``train_demo.md``;
``make parity``'s report shows the latest one (``parity.train_demo_page``). Exit code 1 when the
two sides disagree on epoch 1 (``train_demo_sides.agreement``), 0 otherwise.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import train_demo_sides as sides
from .report import md_table, to_json, write_atomic
from .train_demo_page import markdown

SEED = 0
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
# The committed models' training settings (keras_ref.export_steps): Adam 3e-3, early stopping on val_loss with
# the best weights restored; CNN batch 64, <= 30 epochs, patience 4; captioners batch 128, <= 25 epochs, patience 3.
_TRAINING = dict(learning_rate=3e-3, min_delta=0.0, restore_best_weights=True)
CNN = dict(_TRAINING, model="cnn_b2_f16_k3_max", batch_size=64, max_epochs=30, patience=4,
           n_train=None, n_val=None, n_test=None)
CAPTIONER = dict(_TRAINING, source="cap_rnn1_init", cell="rnn", layers=1, inject="init", units=32, embed_dim=16,
                 batch_size=128, max_epochs=25, patience=3, n_train=3000, n_val=300, n_test=300,
                 captions_per_image=2)
QUICK = {"cnn": dict(CNN, batch_size=32, max_epochs=2, n_train=128, n_val=64, n_test=64),
         "captioner": dict(CAPTIONER, batch_size=64, max_epochs=2, n_train=64, n_val=32, n_test=32)}
FULL = {"cnn": CNN, "captioner": CAPTIONER}


class _Demo:
    """What both demos share: each side trains from the same saved initial weights on the same batches."""

    def keras_side(self):
        self.keras = sides.train_keras(self.lib, self.kmodel, self.data, self.settings, self.seed, self.loss)
        return self.keras

    def scratch_side(self):
        import scratch

        smodel = scratch.load(self.init_path)
        return sides.train_scratch(smodel, self.data, self.settings, self.seed, self.loss), smodel


class CnnDemo(_Demo):
    """The digits CNN: ``keras_side()`` trains the Keras model, ``scratch_side()`` a fresh scratch one."""

    kind = "cnn"

    def __init__(self, settings, seed, folder):
        import keras

        import scratch
        from keras_ref import cnn as cnn_mod
        from keras_ref.data import load_digits_split
        from scratch import losses

        self.settings, self.seed, self.lib = dict(settings), int(seed), keras
        split = load_digits_split(size=32, seed=0)
        n = {s: settings[f"n_{s}"] for s in ("train", "val", "test")}
        self.split = {s: tuple(a[:n[s]] for a in split[s][:2]) for s in n}
        config = dict(cnn_mod.grid_configs()[settings["model"]], dropout=0.0)
        keras.utils.set_random_seed(self.seed)
        self.kmodel = cnn_mod.build_cnn(config, (32, 32, 1), 10, name=settings["model"])
        self.init_path = Path(folder) / f"{settings['model']}.untrained.keras"
        self.kmodel.save(self.init_path)
        self.same_init = sides.same_initial_weights(self.kmodel, scratch.load(self.init_path))
        self.loss = losses.SparseCategoricalCrossentropy()
        self.data = {s: ([self.split[s][0]], self.split[s][1], None) for s in ("train", "val")}

    def result(self, keras, scratch, smodel):
        from keras_ref.train import predict

        from .metrics import macro_f1

        x, y = self.split["test"]
        kpred = predict(self.kmodel, x).argmax(axis=-1)
        spred = smodel.predict(x, batch_size=256).argmax(axis=-1)
        labels = list(range(10))
        k = sides.side_record(keras, macro_f1=macro_f1(y, kpred, labels), accuracy=float(np.mean(kpred == y)))
        s = sides.side_record(scratch, macro_f1=macro_f1(y, spred, labels), accuracy=float(np.mean(spred == y)))
        return dict(model=self.settings["model"], dropout=0.0, settings=self.settings, seed=self.seed,
                    samples={k_: len(v[1]) for k_, v in self.split.items()}, same_initial_weights=self.same_init,
                    keras=k, scratch=s, predictions_agree=float(np.mean(kpred == spred)),
                    agreement=sides.agreement(self.kmodel, smodel, keras, scratch, self.settings,
                                              len(self.split["train"][1])))


class CaptionerDemo(_Demo):
    """The small captioner above the committed, frozen scene CNN (module docstring)."""

    kind = "captioner"

    def __init__(self, settings, seed, folder):
        import tf_keras

        import scratch
        from keras_ref import train as T
        from keras_ref.captioner import build_captioner
        from keras_ref.scenes import load_digit_scenes
        from keras_ref.vocab import Vocabulary
        from scratch import losses

        self.settings, self.seed, self.lib = dict(settings), int(seed), tf_keras
        source = WEIGHTS / f"{settings['source']}.h5"
        self.vocab = Vocabulary.load(WEIGHTS / f"{settings['source']}.vocab.json")
        scenes = load_digit_scenes(n_train=settings["n_train"], n_val=settings["n_val"], n_test=settings["n_test"],
                                   size=64, seed=0, digits_seed=0, progress=False)
        committed = tf_keras.models.load_model(source, compile=False)
        cnn = tf_keras.Model(committed.get_layer("image").input, committed.get_layer("enc_features").output)
        feats = {s: T.predict(cnn, scenes[s]["images"]) for s in ("train", "val", "test")}
        self.test_feats, self.test_tokens = feats["test"], scenes["test"]["tokens"]
        per = int(settings["captions_per_image"])
        self.data = {}
        for s in ("train", "val"):
            idx, tokens, y, w = T.caption_arrays(self.vocab, [caps[:per] for caps in scenes[s]["tokens"]])
            self.data[s] = ((feats[s][idx], tokens), y, w)
        tf_keras.utils.set_random_seed(self.seed)
        fin = tf_keras.layers.Input(shape=(feats["train"].shape[1],), name="scene_features")
        self.cap = build_captioner(len(self.vocab), self.vocab.max_len, cell=settings["cell"], layers=settings["layers"],
                                   inject=settings["inject"], units=settings["units"], embed_dim=settings["embed_dim"],
                                   cnn=(fin, fin, []), unroll=False, name="demo_captioner")
        self.kmodel = self.cap.train
        folder = Path(folder)
        self.init_path = folder / "demo_captioner.untrained.h5"
        self.kmodel.save(self.init_path, include_optimizer=False)
        self.configs = {}
        for part, model in (("encoder", self.cap.encoder), ("step", self.cap.step)):
            self.configs[part] = folder / f"demo_captioner.{part}.json"
            self.configs[part].write_text(model.to_json(), encoding="utf-8")
        self.same_init = sides.same_initial_weights(self.kmodel, scratch.load(self.init_path))
        self.loss = losses.SparseCategoricalCrossentropy(from_logits=True)

    def result(self, keras, scratch, smodel):
        import scratch as engine
        from scratch.models import decode as sdecode

        from .keras_decode import greedy
        from .metrics import bleu

        v = self.vocab
        kw = dict(start=v.start, end=v.end, max_len=v.max_len)
        kcaps = greedy(self.cap.encoder, self.cap.step, self.test_feats, **kw)["captions"]
        parts = {}
        for part, config in self.configs.items():   # the trained weights, layer by layer, into the decoders
            parts[part] = engine.load(self.init_path, config=config)
            for layer in parts[part].layers:
                if layer.get_weights():
                    layer.set_weights(smodel.get_layer(layer.name).get_weights())
        scaps = sdecode.greedy_decode(parts["encoder"], parts["step"], self.test_feats, batch_size=4096,
                                      **kw)["captions"]
        refs = [[" ".join(t) for t in caps] for caps in self.test_tokens]
        words = {side: [" ".join(v.decode(c)) for c in caps] for side, caps in (("keras", kcaps), ("scratch", scaps))}
        k = sides.side_record(keras, bleu=bleu(refs, words["keras"]))
        s = sides.side_record(scratch, bleu=bleu(refs, words["scratch"]))
        shown = [dict(reference=refs[i][0], keras=words["keras"][i], scratch=words["scratch"][i])
                 for i in range(min(4, len(refs)))]
        return dict(model="demo_captioner", settings=self.settings, seed=self.seed,
                    features=f"{self.settings['source']} enc_features (frozen, computed by Keras)",
                    samples={s_: len(d[1]) for s_, d in self.data.items()} | {"test_images": len(refs)},
                    same_initial_weights=self.same_init, keras=k, scratch=s,
                    captions_agree=float(np.mean([a == b for a, b in zip(words["keras"], words["scratch"])])),
                    examples=shown, agreement=sides.agreement(self.kmodel, smodel, keras, scratch, self.settings,
                                                              len(self.data["train"][1])))


DEMOS = {"cnn": CnnDemo, "captioner": CaptionerDemo}


def run_demo(kind, settings, seed, folder):
    """``(demo, result)``: both sides of one demo trained, evaluated and compared."""
    demo = DEMOS[kind](settings, seed, folder)
    keras = demo.keras_side()
    scratch, smodel = demo.scratch_side()
    return demo, demo.result(keras, scratch, smodel)


def run(quick=False, seed=SEED, out="reports", kinds=("cnn", "captioner")):
    """Run the demos, write ``out/train_demo.json`` and ``out/train_demo.md``; returns the report dict."""
    start = time.perf_counter()
    config = QUICK if quick else FULL
    data = header(quick, seed)
    with tempfile.TemporaryDirectory(prefix="train-demo-") as folder:
        for kind in kinds:
            data[kind] = run_demo(kind, config[kind], seed, folder)[1]
    data["wall_time_s"] = time.perf_counter() - start
    return write(data, out)


def header(quick, seed):
    from . import keras_runner as kr

    return dict(schema=1, time=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), quick=bool(quick),
                seed=int(seed), environment=kr.environment())


def write(data, out):
    """Add the verdict and write ``train_demo.json`` (0644, atomically) and ``train_demo.md`` into ``out``."""
    data["passed"] = all(data[k]["agreement"]["passed"] for k in DEMOS if k in data)
    os.makedirs(out, exist_ok=True)
    write_atomic(os.path.join(out, "train_demo.json"), to_json(data))
    write_atomic(os.path.join(out, "train_demo.md"), "\n".join(markdown(data, md_table)) + "\n")
    return data


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m parity.train_demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the reduced configuration the tests use (seconds)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--report", default="reports", help="folder for train_demo.json and train_demo.md")
    args = p.parse_args(argv)
    data = run(quick=args.quick, seed=args.seed, out=args.report)
    print("\n".join(markdown(data, md_table)))
    return 0 if data["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
