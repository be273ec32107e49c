"""CNN -> RNN/LSTM image captioners (tf_keras): a teacher-forced training graph plus an encoder/step pair.

All three models are built from the same layer objects, so they share weights:

- **training model** ``[image (H,W,C), tokens (T,) int32] -> logits (T, V)``; tokens are
  ``<start> w1 .. wn`` 0-padded, ``Embedding(mask_zero=True)`` masks the padding (the RNNs carry their
  state over masked steps), logits are float32 pre-softmax; step t predicts word t+1.
- **encoder model** ``image -> [*states]``: the decoder's initial states.
  init-inject: ``tanh(Dense(image vector))`` per state (h, and c for LSTM) per RNN layer.
  pre-inject: the states after the RNN stack has consumed the image vector as its first step
  (from zero states). The training graph feeds the words from exactly these states, which equals
  running the stack over ``[image vector, <start>, w1, ...]``.
- **step model** ``[token (1,) int32, *states] -> [logits (V,), *new_states]``, one decoding step.

States are ordered layer by layer: ``[h1]``/``[h1, c1]`` then layer 2's. Greedy decoding:
states = encoder(image); token = <start>; up to ``max_len`` times: logits, *states = step([token, *states]);
token = argmax(logits); stop at <end>. Every RNN layer has ``return_sequences=True, return_state=True``.

Graph: ``image -> CNN -> Flatten [-> enc_features] -> Dense(E) -> BatchNormalization -> decoder``, where
``enc_features`` is the linear layer of the digit scenes' pre-trained CNN (see ``keras_ref.train``); the
decoder is
``Embedding(V, E, mask_zero=True) -> {SimpleRNN|LSTM}(units) x layers -> Dense(V)``.

Why tf_keras and not Keras 3: Keras 3 (3.15) records a propagated mask as operation nodes
(``NotEqual``, ``Any``, ...) in the functional config, which the scratch engine does not support and
which Keras 3 itself cannot load back from a legacy .h5 ("Unknown layer: 'NotEqual'"); and a Keras 3
RNN called with ``initial_state`` receives no mask at all. tf_keras keeps masks implicit (recomputed by
each layer's ``compute_mask``) and applies them inside the RNN, so the models are .h5 only.
"""

from dataclasses import dataclass, field

CELLS = ("rnn", "lstm")
INJECTS = ("pre", "init")
SMALL_ENCODER = (8, 16, 32, 32)   # Conv2D(3x3, same, relu) + MaxPool(2) per entry


@dataclass
class Captioner:
    """The three models sharing one set of layers, plus the pieces training needs."""

    train: object
    encoder: object
    step: object
    features: object            # [features, tokens] -> logits: the training graph above the CNN
    feature_extractor: object   # image -> flattened CNN features
    cnn_layer_names: list = field(default_factory=list)
    state_sizes: list = field(default_factory=list)
    hyper_parameters: dict = field(default_factory=dict)


def captioner_name(cell, layers, inject):
    return f"cap_{cell}{layers}_{inject}"


def captioner_configs():
    """The 8 default captioners: cell {rnn, lstm} x layers {1, 2} x inject {pre, init}."""
    return {captioner_name(c, n, i): {"cell": c, "layers": n, "inject": i}
            for c in CELLS for n in (1, 2) for i in INJECTS}


def _check(cell, layers, inject):
    if cell not in CELLS:
        raise ValueError(f"cell must be 'rnn' or 'lstm'. Received: cell={cell!r}")
    if inject not in INJECTS:
        raise ValueError(f"inject must be 'pre' or 'init'. Received: inject={inject!r}")
    if int(layers) not in (1, 2):
        raise ValueError(f"layers must be 1 or 2. Received: layers={layers!r}")


def small_cnn_layers(keras, filters=SMALL_ENCODER, feature_dim=None):
    """The small scene encoder's layers: [Conv2D(3x3, same, relu), MaxPooling2D(2)] per filter, Flatten,
    and, if ``feature_dim`` is given, a linear ``Dense(feature_dim)`` named ``enc_features``."""
    L = keras.layers
    layers = []
    for i, f in enumerate(filters, start=1):
        layers += [L.Conv2D(f, 3, padding="same", activation="relu", name=f"enc_conv{i}"),
                   L.MaxPooling2D(2, name=f"enc_pool{i}")]
    layers.append(L.Flatten(name="enc_flatten"))
    if feature_dim:
        layers.append(L.Dense(int(feature_dim), name="enc_features"))
    return layers


def small_cnn(keras, image_shape, layers=None, feature_dim=None):
    """(image input, CNN features, layer names) of the small scene encoder."""
    layers = layers or small_cnn_layers(keras, feature_dim=feature_dim)
    image = keras.layers.Input(shape=tuple(image_shape), name="image")
    x = image
    for layer in layers:
        x = layer(x)
    return image, x, [layer.name for layer in layers]


def build_captioner(vocab_size, max_len, *, cell="lstm", layers=1, inject="init", units=128, embed_dim=64,
                    image_shape=(64, 64, 3), feature_dim=None, unroll=False, cnn=None, name="captioner"):
    """Build the training, encoder and step models (see the module docstring).

    ``cnn`` is an optional ``(image_input, features, cnn_layer_names)`` triple, e.g. from
    ``resnet50_cnn``; by default the small scene encoder ``SMALL_ENCODER`` is used, ending in a linear
    ``Dense(feature_dim)`` when ``feature_dim`` is given (the digit scenes' pre-trained slot logits).
    """
    import tf_keras as keras

    _check(cell, layers, inject)
    L = keras.layers
    image, flat, cnn_names = cnn if cnn is not None else small_cnn(keras, image_shape, feature_dim=feature_dim)
    img_dense = L.Dense(embed_dim, name="img_dense")
    img_bn = L.BatchNormalization(name="img_bn")
    embedding = L.Embedding(vocab_size, embed_dim, mask_zero=True, name="embedding")
    rnn_cls = L.LSTM if cell == "lstm" else L.SimpleRNN
    rnns = [rnn_cls(units, return_sequences=True, return_state=True, unroll=unroll, name=f"rnn{i + 1}")
            for i in range(layers)]
    n_states = 2 if cell == "lstm" else 1
    logits_layer = L.Dense(vocab_size, name="logits")
    kinds = ("h", "c")[:n_states]
    if inject == "init":
        init_layers = [L.Dense(units, activation="tanh", name=f"init_{k}{i + 1}")
                       for i in range(layers) for k in kinds]
    else:
        img_step = L.Reshape((1, embed_dim), name="img_step")

    def run_stack(x, states):
        """Run the RNN stack from ``states`` (flat list, layer by layer; None = zeros)."""
        new_states = []
        for i, rnn in enumerate(rnns):
            outs = rnn(x, initial_state=states[i * n_states:(i + 1) * n_states]) if states else rnn(x)
            x, new_states = outs[0], new_states + list(outs[1:])
        return x, new_states

    def initial_states(features):
        vec = img_bn(img_dense(features))
        if inject == "init":
            return [d(vec) for d in init_layers]
        return run_stack(img_step(vec), None)[1]

    def words_graph(states, tokens):
        return logits_layer(run_stack(embedding(tokens), states)[0])

    tokens = L.Input(shape=(max_len,), dtype="int32", name="tokens")
    enc_states = initial_states(flat)
    train = keras.Model([image, tokens], words_graph(enc_states, tokens), name=name)
    encoder = keras.Model(image, enc_states, name=f"{name}_encoder")

    feats_in = L.Input(shape=tuple(flat.shape[1:]), name="features")
    feat_tokens = L.Input(shape=(max_len,), dtype="int32", name="tokens")
    features = keras.Model([feats_in, feat_tokens], words_graph(initial_states(feats_in), feat_tokens),
                           name=f"{name}_features")
    feature_extractor = keras.Model(image, flat, name=f"{name}_cnn")

    token = L.Input(shape=(1,), dtype="int32", name="token")
    state_inputs = [L.Input(shape=(units,), name=f"state_{k}{i + 1}") for i in range(layers) for k in kinds]
    x, new_states = run_stack(embedding(token), state_inputs)
    step_logits = L.Reshape((vocab_size,), name="step_logits")(logits_layer(x))
    step = keras.Model([token, *state_inputs], [step_logits, *new_states], name=f"{name}_step")

    hp = {"cell": cell, "layers": int(layers), "inject": inject, "units": int(units), "embed_dim": int(embed_dim),
          "vocab_size": int(vocab_size), "max_len": int(max_len), "image_shape": list(image_shape),
          "feature_dim": int(flat.shape[-1]), "unroll": bool(unroll)}
    return Captioner(train, encoder, step, features, feature_extractor, cnn_names,
                     [int(units)] * (layers * n_states), hp)


def resnet50_cnn(image_shape=(224, 224, 3), weights=None):
    """ResNet50 (no top, global average pooled) as a captioner encoder: ``(image, features, names)``.

    ``weights`` is None (random init) or the path of a local weights file the user provides
    (``keras.applications`` "notop" weights). Nothing is ever downloaded: 'imagenet' is refused.
    Pass the result as ``build_captioner(..., cnn=resnet50_cnn(...))``. The ResNet50 layers join the
    captioner's graph directly (no nested model), so the saved config lists plain layers.
    """
    import os

    import tf_keras as keras

    if weights is not None:
        if not isinstance(weights, (str, os.PathLike)) or str(weights) == "imagenet":
            raise ValueError("weights must be None or the path of a local weights file (no downloads). "
                             f"Received: weights={weights!r}")
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"ResNet50 weights file not found: {weights}")
    image = keras.layers.Input(shape=tuple(image_shape), name="image")
    base = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=image, pooling="avg")
    if weights is not None:
        base.load_weights(os.fspath(weights))
    names = [layer.name for layer in base.layers if layer.name != "image"]
    return image, base.output, names


def build_resnet50_captioner(vocab_size, max_len, *, weights=None, image_shape=(224, 224, 3), **kwargs):
    """A ResNet50-encoder captioner for real data (not trained by default); see ``resnet50_cnn``."""
    return build_captioner(vocab_size, max_len, image_shape=image_shape,
                           cnn=resnet50_cnn(image_shape, weights), **kwargs)


def greedy_decode(encoder, step, images, vocab, batch_size=256):
    """Greedy captions (token id lists, cut at <end>) using the exported encoder/step models.

    Keras models are called directly (``model(x, training=False)``), not through ``predict``.
    """
    import numpy as np

    results = []
    for lo in range(0, len(images), batch_size):
        batch = images[lo:lo + batch_size]
        states = encoder(batch, training=False)
        states = [np.asarray(s) for s in (states if isinstance(states, (list, tuple)) else [states])]
        token = np.full((len(batch), 1), vocab.start, dtype=np.int32)
        out = np.zeros((len(batch), vocab.max_len), dtype=np.int64)
        done = np.zeros(len(batch), dtype=bool)
        for t in range(vocab.max_len):
            logits, *states = step([token, *states], training=False)
            states = [np.asarray(s) for s in states]
            nxt = np.argmax(np.asarray(logits), axis=-1)
            out[:, t] = nxt
            done |= nxt == vocab.end
            token = nxt[:, None].astype(np.int32)
            if done.all():
                break
        results.extend(vocab.decode(row) for row in out)
    return results
