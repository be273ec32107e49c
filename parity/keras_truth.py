"""Keras's own float64 twin of a model: the end-to-end truth that does not share scratch's semantics.

``parity.compare``'s older ``truth`` is scratch rerun in float64: it arbitrates which float32 side
rounded more, but a semantic bug in scratch moves it too, so it can never clear scratch of one.
``float64_twin(model)`` is the *Keras* model rebuilt from its own config with every float dtype
policy (and every float32 InputLayer) set to float64 and the same weights cast to float64
(exact: float32 -> float64 loses nothing). Keras's semantics, float64 rounding: the reference for
``parity.tolerance.compare_to_truth``, the rule for models that amplify their own rounding.

Keras 3 models only (``serialize_keras_object`` / ``deserialize_keras_object``); the config is the
in-memory model's own, so nothing new is deserialized beyond what the model already holds.
"""

import numpy as np

from . import keras_runner as kr

# Float dtypes (and mixed policies) the twin computes in float64; integer inputs and lookups stay.
_FLOAT = {"float16", "bfloat16", "float32", "mixed_float16", "mixed_bfloat16"}


def _retype(obj):
    """``obj`` (a serialized config) with every float dtype and dtype policy name set to float64."""
    if isinstance(obj, list):
        return [_retype(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for key, value in obj.items():
        if key == "dtype" and isinstance(value, str) and value in _FLOAT:
            value = "float64"
        elif key == "name" and obj.get("class_name") is None and value in _FLOAT and "dtype" not in obj:
            value = "float64"   # the {"name": "float32"} config of a DTypePolicy
        out[key] = _retype(value)
    return out


def float64_twin(model):
    """``model`` rebuilt in float64 with the same weights (see the module docstring)."""
    keras, _ = kr._import()
    if kr._model_api(model) is not keras:
        raise ValueError(f"a float64 twin needs a Keras 3 model. Received: {type(model).__module__}.{type(model).__name__}")
    config = _retype(keras.saving.serialize_keras_object(model))
    twin = keras.saving.deserialize_keras_object(config)
    twin.set_weights([np.asarray(w, np.float64) if np.asarray(w).dtype.kind == "f" else w
                      for w in model.get_weights()])
    for layer in twin._flatten_layers(include_self=False):
        if hasattr(layer, "finalize_state"):   # Normalization's mean/variance copies (Keras does it on load)
            layer.finalize_state()
    return twin


def truth_outputs(model, x):
    """Every graph node's float64 output of ``model``'s twin on ``x`` (float inputs cast to float64),
    named as ``keras_runner.intermediate_outputs`` names ``model``'s (the twin's layers and
    operations keep the names its config gives them)."""
    twin = float64_twin(model)
    xs = [np.asarray(v, np.float64) if np.asarray(v).dtype.kind == "f" else v for v in kr.as_list(x)]
    return kr.intermediate_outputs(twin, xs[0] if len(xs) == 1 else xs)
