"""Training loops and the Keras-side test metrics recorded in the MANIFEST.

Classifiers: Adam, sparse categorical cross-entropy, early stopping on validation loss (best weights
restored). Metrics: macro-F1 and accuracy from scikit-learn on the test split.

Captioners: teacher forcing with a masked loss (sample weight = target != <pad>, on top of the mask
Keras derives from ``Embedding(mask_zero=True)``). For the embedded digit scenes the CNN is pre-trained
once (``pretrain_scene_encoder``), frozen, and each captioner trains the layers above it on the cached
CNN features; for real datasets the whole training model trains end to end. Metrics: corpus BLEU-1..4
(nltk, no smoothing) of greedy captions against all references.

Inference for metrics always calls the model directly, ``model(x, training=False)``, in batches of
``EVAL_BATCH`` (recorded in the MANIFEST as ``keras_inference``).
"""

import time
import warnings

import numpy as np
from tqdm.auto import tqdm

EVAL_BATCH = 256
KERAS_INFERENCE = f"model(x, training=False), batches of {EVAL_BATCH}"


def epoch_bar(lib, desc, epochs, progress=True):
    """A Keras callback showing one tqdm bar per fit, advanced per epoch, with the logged metrics."""

    class EpochBar(lib.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs, desc=desc, unit="epoch", disable=not progress, leave=False)

        def on_epoch_end(self, epoch, logs=None):
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in (logs or {}).items() if "loss" in k or "acc" in k})

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()


def _history(h):
    return {k: [float(v) for v in vals] for k, vals in h.history.items()}


def set_seed(lib, seed):
    lib.utils.set_random_seed(int(seed))


def predict(model, x, batch_size=EVAL_BATCH):
    """``model(x, training=False)`` in batches, concatenated as a NumPy array."""
    outs = [np.asarray(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(outs)


def fit(lib, model, x, y, val, *, epochs, patience, batch_size, lr, desc, sample_weight=None, progress=True):
    """Compile with Adam and fit with early stopping; returns (history dict, seconds, epochs run)."""
    start = time.perf_counter()
    stop = lib.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    h = model.fit(x, y, sample_weight=sample_weight, validation_data=val, epochs=epochs, batch_size=batch_size,
                  shuffle=True, verbose=0, callbacks=[stop, epoch_bar(lib, desc, epochs, progress)])
    return _history(h), time.perf_counter() - start, len(h.history["loss"])


def compile_classifier(lib, model, lr, steps_per_execution=1):
    model.compile(optimizer=lib.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)


def classification_metrics(y_true, y_pred):
    from sklearn.metrics import accuracy_score, f1_score

    return {"macro_f1": float(f1_score(y_true, y_pred, average="macro")),
            "accuracy": float(accuracy_score(y_true, y_pred))}


def evaluate_classifier(model, x, y):
    return classification_metrics(y, predict(model, x).argmax(axis=-1))


def bleu_scores(references, hypotheses):
    """Corpus BLEU-1..4 (nltk, uniform weights, no smoothing) on token lists."""
    from nltk.translate.bleu_score import corpus_bleu

    weights = {1: (1.0,), 2: (0.5, 0.5), 3: (1 / 3,) * 3, 4: (0.25,) * 4}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # nltk warns (and returns 0) when an order has no overlap at all
        return {f"bleu{n}": float(corpus_bleu(references, hypotheses, weights=w)) for n, w in weights.items()}


def caption_arrays(vocab, tokens_per_image, features=None):
    """Flatten (image, caption) pairs: (image index, inputs, targets, weights) for teacher forcing."""
    index, pairs = [], []
    for i, caps in enumerate(tokens_per_image):
        for tokens in caps:
            index.append(i)
            pairs.append(tokens)
    inputs, targets = vocab.encode_batch(pairs)
    weights = (targets != vocab.pad).astype(np.float32)
    return np.asarray(index), inputs, targets, weights


def pretrain_scene_encoder(data, *, image_shape, crop_count=20000, crop_epochs=5, epochs=30, patience=4,
                           batch_size=64, lr=2e-3, seed=0, progress=True):
    """Pre-train the small CNN on digit scenes; the captioners reuse it frozen.

    Stage 1 teaches digit shapes on single-glyph crops (``digit_crops``: cheap, and a direct signal)
    through all but the last conv block. Stage 2 trains the whole CNN on the scenes with two kinds of
    heads: a 1x1 convolution per attribute on the last conv's map names the digit/color/size under each
    cell (local supervision), and linear "slot" heads on the flattened features name the digit, color
    and size of the 1st/2nd/3rd digit from the left (the order captions use). The slot heads become the
    CNN's last layer, ``enc_features``: one Dense whose kernel is the heads' kernels side by side, so the
    captioner reads slot logits rather than raw activations. The cell heads are dropped.

    Returns ``(cnn, heads, history, seconds, epochs)``: ``cnn`` maps images to ``enc_features``,
    ``heads`` is the whole pre-training model (image -> every head's logits).
    """
    import tf_keras as keras

    from keras_ref.captioner import small_cnn, small_cnn_layers
    from keras_ref.scenes import cell_targets, digit_crops, slot_targets

    set_seed(keras, seed)
    L = keras.layers
    cnn = small_cnn_layers(keras)
    start = time.perf_counter()
    crops_x, crops_y = digit_crops(crop_count, "train", seed=seed)
    val_x, val_y = digit_crops(crop_count // 10, "val", seed=seed)
    crop_in = L.Input(shape=(None, None, 3), name="crop")
    x = crop_in
    for layer in cnn[:-3]:                              # up to the last conv block
        x = layer(x)
    crop_out = L.Dense(10, name="crop_digit")(L.GlobalMaxPooling2D(name="crop_gmp")(x))
    crop_model = keras.Model(crop_in, crop_out, name="digit_crops")
    crop_model.compile(optimizer=keras.optimizers.Adam(lr), metrics=["accuracy"],
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    crop_hist, _, _ = fit(keras, crop_model, crops_x, crops_y, (val_x, val_y), epochs=crop_epochs,
                          patience=crop_epochs, batch_size=batch_size, lr=lr, desc="digit crops", progress=progress)

    image, flat, _ = small_cnn(keras, image_shape, cnn)
    fmap = cnn[-3].output                               # last conv's feature map, before its pool
    grid = int(fmap.shape[1])

    def targets(split):
        scenes = data[split]["scenes"]
        t = {f"cell_{k}": v for k, v in cell_targets(scenes, image_shape[0], grid).items()}
        return {**t, **slot_targets(scenes)}

    train_t, val_t = targets("train"), targets("val")
    heads = {}
    for k, v in train_t.items():
        n_classes = int(max(v.max(), val_t[k].max())) + 1
        heads[k] = (L.Conv2D(n_classes, 1, name=k)(fmap) if k.startswith("cell_")
                    else L.Dense(n_classes, name=k)(flat))
    model = keras.Model(image, heads, name="scene_attributes")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss={k: loss for k in heads})
    history, _, n = fit(keras, model, data["train"]["images"], train_t, (data["val"]["images"], val_t),
                        epochs=epochs, patience=patience, batch_size=batch_size, lr=lr,
                        desc="scene encoder", progress=progress)
    history.update({f"crops_{k}": v for k, v in crop_hist.items()})
    slot_layers = [model.get_layer(k) for k in train_t if not k.startswith("cell_")]
    kernels, biases = zip(*(layer.get_weights() for layer in slot_layers))
    features = L.Dense(sum(b.shape[0] for b in biases), name="enc_features")
    out = features(flat)
    features.set_weights([np.concatenate(kernels, axis=1), np.concatenate(biases)])
    return keras.Model(image, out, name="scene_cnn"), model, history, time.perf_counter() - start, n


def train_captioner(cap, vocab, data, *, features=None, epochs=30, patience=3, batch_size=64, lr=2e-3, desc="",
                    progress=True):
    """Teacher-forced training with the masked loss.

    ``features``: optional ``{split: cached CNN features}``; if given, only the layers above the CNN
    train (through ``cap.features``), otherwise ``cap.train`` trains end to end.
    """
    import tf_keras as keras

    model = cap.features if features is not None else cap.train
    source = features if features is not None else {s: data[s]["images"] for s in ("train", "val")}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, weighted_metrics=["accuracy"])
    idx, x_tok, y, w = caption_arrays(vocab, data["train"]["tokens"])
    vidx, vx_tok, vy, vw = caption_arrays(vocab, data["val"]["tokens"])
    return fit(keras, model, [source["train"][idx], x_tok], y, ([source["val"][vidx], vx_tok], vy, vw),
               sample_weight=w, epochs=epochs, patience=patience, batch_size=batch_size, lr=lr, desc=desc,
               progress=progress)


def evaluate_captioner(cap, vocab, split, n_samples=2):
    """BLEU-1..4 of greedy captions on ``split`` plus ``n_samples`` example captions."""
    from keras_ref.captioner import greedy_decode

    hyps = greedy_decode(cap.encoder, cap.step, split["images"], vocab, batch_size=EVAL_BATCH)
    refs = split["tokens"]
    samples = [{"id": split["ids"][i], "generated": " ".join(hyps[i]),
                "references": [" ".join(r) for r in refs[i]]} for i in range(min(n_samples, len(hyps)))]
    return bleu_scores(refs, hyps), samples
