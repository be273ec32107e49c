"""One function per model family: build, train, evaluate, save, verify, and return the MANIFEST entry."""

from pathlib import Path

import numpy as np

from keras_ref import cnn as cnn_mod
from keras_ref import train as T
from keras_ref.captioner import build_captioner, captioner_configs
from keras_ref.datasets import dataset_record
from keras_ref.manifest import save_atomic
from keras_ref.vocab import Vocabulary

SEED = 0
# steps_per_execution: for these small CNNs Keras's per-batch Python overhead dominates on 2 cores;
# running 32 batches per call makes the same updates (the saved weights are byte-identical) ~30% sooner.
# unroll: tf_keras runs an unrolled RNN as straight-line ops instead of a while loop, ~20% faster
# training on CPU; the same math up to float rounding (the saved config says unroll=True, which the
# scratch engine accepts).
CNN_TRAINING = {"optimizer": "adam", "learning_rate": 3e-3, "batch_size": 64, "max_epochs": 30, "patience": 4,
                "monitor": "val_loss", "restore_best_weights": True, "loss": "sparse_categorical_crossentropy",
                "steps_per_execution": 32}
CAPTION_TRAINING = {"optimizer": "adam", "learning_rate": 3e-3, "batch_size": 128, "max_epochs": 25, "patience": 3,
                    "monitor": "val_loss", "restore_best_weights": True,
                    "loss": "sparse_categorical_crossentropy(from_logits=True), weight = target != <pad>",
                    "captions_per_image": "all"}
CAPTION_MODEL = {"units": 128, "embed_dim": 64, "unroll": True}
ENCODER_PRETRAINING = {"crop_count": 20000, "crop_epochs": 5, "epochs": 30, "patience": 4, "batch_size": 64,
                       "learning_rate": 2e-3}


def _epochs(settings, smoke):
    return 1 if smoke else settings["max_epochs"]


def save_and_verify(model, path, lib, probe):
    """Save ``model`` (no optimizer) atomically, reload it with ``lib`` and demand identical outputs."""
    if str(path).endswith(".h5"):
        save_atomic(path, lambda tmp: model.save(tmp, include_optimizer=False) if lib.__name__ == "tf_keras"
                    else model.save(tmp))
    else:
        save_atomic(path, model.save)
    _same_outputs(model, lib.models.load_model(path, compile=False), probe, path)


def save_graph_and_verify(model, path, weights_path, lib, probe):
    """Save the architecture of ``model`` (a graph over layers of the model saved at ``weights_path``)
    as ``model.to_json()`` text; rebuild it with ``lib``, load the weights by layer name from
    ``weights_path`` and demand identical outputs. One weights file then serves every graph."""
    text = model.to_json()
    save_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    loaded = lib.models.model_from_json(Path(path).read_text(encoding="utf-8"))
    loaded.load_weights(str(weights_path), by_name=True)
    _same_outputs(model, loaded, probe, path)


def _same_outputs(model, loaded, probe, path):
    want = model(probe, training=False)
    got = loaded(probe, training=False)
    for a, b in zip(want if isinstance(want, list) else [want], got if isinstance(got, list) else [got]):
        if not np.array_equal(np.asarray(a), np.asarray(b)):
            raise RuntimeError(f"{path}: the reloaded model computes something else")


def _classifier_entry(family, framework, model, files, meta, data, hp, history, seconds, epochs, test_metrics,
                      val_f1):
    x_test, _, ids_test = data["test"]
    return {"task": "classification", "family": family, "framework": framework, "files": files,
            "dataset": dataset_record(meta, x_test, ids_test), "hyper_parameters": hp,
            "params": int(model.count_params()), "train_seconds": round(seconds, 2), "epochs": epochs,
            "history": history, "metrics": {**test_metrics, "val_macro_f1": val_f1},
            "keras_inference": T.KERAS_INFERENCE}


def _train_classifier(lib, build, data, smoke, desc, progress, steps_per_execution):
    T.set_seed(lib, SEED)
    model = build()
    T.compile_classifier(lib, model, CNN_TRAINING["learning_rate"], steps_per_execution)
    (x, y, _), (vx, vy, _) = data["train"], data["val"]
    history, seconds, epochs = T.fit(lib, model, x, y, (vx, vy), epochs=_epochs(CNN_TRAINING, smoke),
                                     patience=CNN_TRAINING["patience"], batch_size=CNN_TRAINING["batch_size"],
                                     lr=CNN_TRAINING["learning_rate"], desc=desc, progress=progress)
    fresh = build()                                   # uncompiled twin: files carry no optimizer state
    fresh.set_weights(model.get_weights())
    val_f1 = T.evaluate_classifier(fresh, vx, vy)["macro_f1"]
    return fresh, history, seconds, epochs, T.evaluate_classifier(fresh, *data["test"][:2]), val_f1


def export_grid_model(name, data, meta, out, smoke=False, progress=True):
    import keras

    config = cnn_mod.grid_configs()[name]
    shape, n_classes = tuple(meta["input_shape"]), meta["n_classes"]
    model, history, seconds, epochs, test_metrics, val_f1 = _train_classifier(
        keras, lambda: cnn_mod.build_cnn(config, shape, n_classes, name=name), data, smoke, name, progress,
        CNN_TRAINING["steps_per_execution"])
    files = {"h5": f"{name}.h5", "keras": f"{name}.keras"}
    probe = data["test"][0][:8]
    for fname in files.values():
        save_and_verify(model, out / fname, keras, probe)
    hp = {**config, "input_shape": list(shape), "n_classes": n_classes, "dense_units": cnn_mod.DENSE_UNITS,
          "dropout": cnn_mod.DROPOUT, "conv_padding": "valid", "pool_padding": "same", "seed": SEED,
          **CNN_TRAINING, "max_epochs": _epochs(CNN_TRAINING, smoke)}
    return _classifier_entry("cnn_grid", "keras", model, files, meta, data, hp, history, seconds, epochs,
                             test_metrics, val_f1)


def export_twin(data, meta, out, known, smoke=False, progress=True):
    """The LocallyConnected2D twin of the best eligible grid model (scores: val macro-F1, same dataset)."""
    import tf_keras

    configs = cnn_mod.grid_configs()
    shape, n_classes = tuple(meta["input_shape"]), meta["n_classes"]
    scores = {n: e["metrics"]["val_macro_f1"] for n, e in known.items()
              if n in configs and e["dataset"]["name"] == meta["name"]}
    if not scores:
        raise SystemExit("lc2d_twin needs trained grid models on the same dataset: run --models 'cnn_*' first")
    twin_of, best = cnn_mod.pick_twin(scores, configs, shape, n_classes)
    config = configs[twin_of]
    # One batch per call: tf_keras's multi-batch loop made the twin's training ~2x slower (55 s -> 106 s).
    model, history, seconds, epochs, test_metrics, val_f1 = _train_classifier(
        tf_keras, lambda: cnn_mod.build_lc2d_twin(config, shape, n_classes, name="lc2d_twin"), data, smoke,
        "lc2d_twin", progress, steps_per_execution=1)
    files = {"h5": "lc2d_twin.h5"}
    save_and_verify(model, out / files["h5"], tf_keras, data["test"][0][:8])
    hp = {**config, "input_shape": list(shape), "n_classes": n_classes, "dense_units": cnn_mod.DENSE_UNITS,
          "dropout": cnn_mod.DROPOUT, "implementation": 1, "seed": SEED, **CNN_TRAINING,
          "steps_per_execution": 1, "max_epochs": _epochs(CNN_TRAINING, smoke)}
    entry = _classifier_entry("lc2d_twin", "tf_keras", model, files, meta, data, hp, history, seconds, epochs,
                              test_metrics, val_f1)
    entry.update({"twin_of": twin_of, "conv_twin_params": known[twin_of]["params"],
                  "selection": f"highest val macro-F1 among grid models whose twin has <= "
                               f"{cnn_mod.LC2D_MAX_PARAMS:,} parameters",
                  "unconstrained_best": best, "unconstrained_best_twin_params":
                  cnn_mod.lc2d_param_count(configs[best], shape, n_classes)})
    return entry


def _pretrained_features(data, meta, smoke, progress):
    settings = dict(ENCODER_PRETRAINING)
    if smoke:
        settings.update(crop_count=200, crop_epochs=1, epochs=1)
    enc, _, history, seconds, epochs = T.pretrain_scene_encoder(
        data, image_shape=tuple(meta["image_shape"]), crop_count=settings["crop_count"],
        crop_epochs=settings["crop_epochs"], epochs=settings["epochs"], patience=settings["patience"],
        batch_size=settings["batch_size"], lr=settings["learning_rate"], seed=SEED, progress=progress)
    feats = {s: T.predict(enc, data[s]["images"]) for s in ("train", "val")}
    kept = ("loss", "val_loss", "crops_accuracy", "crops_val_accuracy")   # the per-head losses stay out
    info = {**settings, "seconds": round(seconds, 2), "epochs": epochs,
            "history": {k: v for k, v in history.items() if k in kept}}
    return enc, feats, info


def export_captioners(names, data, meta, out, smoke=False, progress=True):
    """Yield ``(name, entry)`` per captioner; the digit-scene CNN is pre-trained once and shared."""
    import tf_keras

    tokens = [t for caps in data["train"]["tokens"] for t in caps]
    longest = 1 + max(len(t) for t in tokens)
    max_len = longest if meta["max_words"] is None else min(longest, meta["max_words"] + 1)
    vocab = Vocabulary.build(tokens, min_count=meta["min_count"], max_len=max_len)
    enc, feats, pretrain = _pretrained_features(data, meta, smoke, progress) if meta["attributes"] else (None, None, None)
    test = data["test"]
    record = dataset_record(meta, test["images"], test["ids"])
    for name in names:
        cfg = captioner_configs()[name]
        T.set_seed(tf_keras, SEED)

        def build():
            return build_captioner(len(vocab), vocab.max_len, image_shape=tuple(meta["image_shape"]), name=name,
                                   feature_dim=None if enc is None else enc.output_shape[-1],
                                   **CAPTION_MODEL, **cfg)

        cap = build()
        if enc is not None:
            for layer_name in cap.cnn_layer_names:
                cap.train.get_layer(layer_name).set_weights(enc.get_layer(layer_name).get_weights())
        history, seconds, epochs = T.train_captioner(
            cap, vocab, data, features=feats, epochs=_epochs(CAPTION_TRAINING, smoke),
            patience=CAPTION_TRAINING["patience"], batch_size=CAPTION_TRAINING["batch_size"],
            lr=CAPTION_TRAINING["learning_rate"], desc=name, progress=progress)
        fresh = build()
        fresh.train.set_weights(cap.train.get_weights())
        bleu, samples = T.evaluate_captioner(fresh, vocab, test)
        files = {"h5": f"{name}.h5", "encoder_json": f"{name}.encoder.json", "step_json": f"{name}.step.json",
                 "vocab": f"{name}.vocab.json"}
        probe_tokens = vocab.encode_batch(test["tokens"][0][:1] * 2)[0]
        probe_img = test["images"][:2]
        save_and_verify(fresh.train, out / files["h5"], tf_keras, [probe_img, probe_tokens])
        save_graph_and_verify(fresh.encoder, out / files["encoder_json"], out / files["h5"], tf_keras, probe_img)
        states = fresh.encoder(probe_img, training=False)
        states = [np.asarray(s) for s in (states if isinstance(states, list) else [states])]
        save_graph_and_verify(fresh.step, out / files["step_json"], out / files["h5"], tf_keras,
                              [np.full((2, 1), vocab.start, dtype=np.int32), *states])
        vocab.save(out / files["vocab"])
        hp = {**fresh.hyper_parameters, "encoder": "small CNN " + str(list(
            l.filters for l in fresh.train.layers if l.name.startswith("enc_conv"))),
            "encoder_training": ("pre-trained on digit crops then scene attributes (keras_ref.train."
                                 "pretrain_scene_encoder), frozen; enc_features = the slot heads' logits"
                                 if enc is not None else "end to end"),
            "vocab_min_count": vocab.min_count, "seed": SEED, **CAPTION_TRAINING,
            "max_epochs": _epochs(CAPTION_TRAINING, smoke)}
        entry = {"task": "captioning", "family": "captioner", "framework": "tf_keras", "files": files,
                 "dataset": record, "hyper_parameters": hp, "params": int(fresh.train.count_params()),
                 "train_seconds": round(seconds, 2), "epochs": epochs, "history": history,
                 "metrics": {**bleu, "decoding": "greedy, encoder + step models, max_len tokens"},
                 "keras_inference": T.KERAS_INFERENCE, "samples": samples,
                 "state_sizes": fresh.state_sizes}
        if pretrain is not None:
            entry["encoder_pretraining"] = pretrain
            entry["encoder_pretrain_seconds"] = pretrain["seconds"]
        yield name, entry
