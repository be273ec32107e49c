"""The training setup a Keras file records, as a scratch loss and optimizer.

- A legacy ``.h5`` written by a compiled model holds the file attribute ``training_config``
  (JSON): ``loss`` (a name or ``{class_name, config}``) and ``optimizer_config`` (``{class_name,
  config}``; tf_keras writes ``Custom>Adam``).
- A ``.keras`` archive holds ``compile_config`` in ``config.json``: ``loss`` and ``optimizer``
  (``{module, class_name, config}``). When the optimizer is absent (seen in Keras 3.15 when the
  same model was saved to a legacy ``.h5`` first), only the loss is known.

Both map to the same scratch objects. tf_keras's loss reduction ``auto`` is
``sum_over_batch_size``. What scratch cannot reproduce is refused by name: several losses (a list
or dict, one per output), ``loss_weights``, a legacy (v1) optimizer, an unknown loss or optimizer
class, EMA or gradient accumulation. Metrics are not part of training and are ignored.
"""

import inspect
import json
import zipfile
from pathlib import Path

import h5py

from .. import losses as losses_mod
from .. import optimizers as optimizers_mod
from ..errors import ScratchError


class TrainingConfigError(ScratchError, ValueError):
    """The file's training setup uses something scratch does not train with."""


def read_training_config(path):
    """``{"loss": Loss|None, "optimizer": Optimizer|None, "where": str}`` from a model file.

    Both are None when the model was saved without being compiled.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04":
        with zipfile.ZipFile(path) as zf:
            cfg = json.loads(zf.read("config.json"))
        compile_cfg = cfg.get("compile_config") or {}
        where = f"{path}: compile_config"
        loss_cfg, opt_cfg = compile_cfg.get("loss"), compile_cfg.get("optimizer")
        loss_weights = compile_cfg.get("loss_weights")
    else:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("training_config")
        where = f"{path}: training_config"
        if raw is None:
            return {"loss": None, "optimizer": None, "where": where}
        tc = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        loss_cfg, opt_cfg, loss_weights = tc.get("loss"), tc.get("optimizer_config"), tc.get("loss_weights")
    if loss_weights is not None:
        raise TrainingConfigError(f"{where}: loss_weights={loss_weights!r} is not supported (one output, one loss)")
    return {"loss": loss_from_config(loss_cfg, where), "optimizer": optimizer_from_config(opt_cfg, where),
            "where": where}


def loss_from_config(cfg, where="config"):
    """A scratch Loss from a Keras loss name or ``{class_name, config}``; None for None."""
    if cfg is None:
        return None
    if isinstance(cfg, (list, dict)) and not (isinstance(cfg, dict) and "class_name" in cfg):
        raise TrainingConfigError(f"{where}: one loss per output ({cfg!r}) is not supported; scratch trains "
                                  "single-output models")
    if isinstance(cfg, str):
        name, kwargs = cfg, {}
    else:
        name, conf = cfg["class_name"], cfg.get("config")
        # a loss function rather than a class: {"class_name": "function", "config": "mean_squared_error"}
        name, kwargs = (conf, {}) if isinstance(conf, str) else (name, dict(conf or {}))
    canonical = losses_mod.ALIASES.get(name, name)
    if canonical not in losses_mod.LOSSES:
        raise TrainingConfigError(f"{where}: loss {name!r} is not supported. Supported: "
                                  f"{sorted(losses_mod.LOSSES)}")
    if kwargs.get("reduction") == "auto":
        kwargs["reduction"] = "sum_over_batch_size"
    cls = losses_mod.LOSSES[canonical]
    accepted = set(inspect.signature(cls).parameters)
    unknown = {k: v for k, v in kwargs.items() if k not in accepted and k not in ("fn",)}
    if unknown:
        raise TrainingConfigError(f"{where}: loss {name!r} setting(s) {unknown} are not supported")
    try:
        return cls(**{k: v for k, v in kwargs.items() if k in accepted})
    except losses_mod.LossError as exc:
        raise TrainingConfigError(f"{where}: {exc}") from None


def optimizer_from_config(cfg, where="config"):
    """A scratch Optimizer from ``{class_name, config}`` (Keras 3 or tf_keras); None for None."""
    if cfg is None:
        return None
    if isinstance(cfg, str):
        cfg = {"class_name": cfg, "config": {}}
    name = str(cfg.get("class_name", "")).removeprefix("Custom>")
    kwargs = dict(cfg.get("config") or {})
    if kwargs.pop("is_legacy_optimizer", False):
        raise TrainingConfigError(f"{where}: the legacy (v1) optimizer {name!r} is not supported")
    match = {k.lower(): k for k in optimizers_mod.OPTIMIZERS}.get(name.lower())
    if match is None:
        raise TrainingConfigError(f"{where}: optimizer {name!r} is not supported. Supported: "
                                  f"{sorted(optimizers_mod.OPTIMIZERS)}")
    kwargs.pop("name", None)
    lr = kwargs.get("learning_rate")
    try:
        if isinstance(lr, dict):
            kwargs["learning_rate"] = optimizers_mod.schedule_from_config(lr)
        return optimizers_mod.OPTIMIZERS[match](**kwargs)
    except (optimizers_mod.OptimizerError, TypeError) as exc:
        raise TrainingConfigError(f"{where}: optimizer {name!r}: {exc}") from None
