"""The layer classes the scratch engine supports, and a check of saved model configs against them.

Every exported model must stay within ``SUPPORTED_LAYERS``: no Lambda, no custom layers and no
operation layers (``TFOpLambda``, Keras 3 ``keras.ops`` nodes), which a functional graph grows when a
raw tensor op is applied to a symbolic tensor. The check reads the config the file itself stores
(``model_config`` in a legacy .h5, ``config.json`` in a .keras zip, or a ``model.to_json()`` file), so it
sees what a loader sees.
"""

import json
import zipfile

SUPPORTED_LAYERS = frozenset({
    "InputLayer", "Dense", "Conv2D", "LocallyConnected2D", "MaxPooling2D", "AveragePooling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Reshape", "ZeroPadding2D",
    "BatchNormalization", "Dropout", "Activation", "ReLU", "Softmax", "Add", "Concatenate", "Embedding",
    "SimpleRNN", "LSTM", "GRU", "Bidirectional", "TimeDistributed", "Masking", "RepeatVector",
})
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})


def layer_classes(config):
    """Class names of every layer in a model config (nested models and wrapped layers included).

    The top-level model class itself is not counted; a nested model is (as ``Functional`` etc.),
    because a loader would have to support it.
    """
    found = []

    def visit(node, top):
        if not isinstance(node, dict):
            return
        cls = node.get("class_name")
        cfg = node.get("config", {})
        if cls is None:
            return
        if not top:
            found.append(cls)
        if isinstance(cfg, dict):
            for layer in cfg.get("layers", []) or []:
                visit(layer, False)
            for key in ("layer", "backward_layer", "cell"):
                if isinstance(cfg.get(key), dict):
                    visit(cfg[key], False)

    if "class_name" not in config and "layers" in config:
        config = {"class_name": "Model", "config": config}   # model.get_config() has no wrapper
    visit(config, True)
    return found


def unsupported_layers(config):
    """Sorted class names in ``config`` that the scratch engine does not support."""
    return sorted({c for c in layer_classes(config) if c not in SUPPORTED_LAYERS})


def saved_model_config(path):
    """The model config a saved file carries: .h5 ``model_config`` attribute, .keras ``config.json``,
    or a ``.json`` file holding ``model.to_json()``."""
    path = str(path)
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs["model_config"]
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def check_saved_model(path):
    """Raise ValueError if the saved model at ``path`` uses a layer class outside SUPPORTED_LAYERS."""
    bad = unsupported_layers(saved_model_config(path))
    if bad:
        raise ValueError(f"{path} uses layers the scratch engine does not support: {bad}")
