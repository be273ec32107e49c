"""The model config a saved file carries, and the layer classes in it.

This reads the config the file itself stores (``model_config`` in a legacy .h5, ``config.json`` in a
.keras zip, or a ``model.to_json()`` file), so it sees what a loader sees. Which classes the engine
supports is not known here (keras_ref never imports scratch): the one table is scratch's
``LAYER_MODULES``, and the tests check every reference model against the engine's own check.
"""

import json
import zipfile

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
