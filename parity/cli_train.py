"""Command line: ``parity grad MODEL`` (gradient parity) and ``parity train MODEL`` (N-step training parity).

Exit codes, as ``parity check``: 0 parity holds; 1 it fails (the table names the first diverging
weight, or the first failing step); 2 bad input (unreadable file, unsupported layer or training
setup, bad ``--inputs`` or arguments), one line on stderr.

The loss and optimizer come from the file's training config (legacy ``training_config`` or
``.keras`` ``compile_config``) when it has one; ``--loss``/``--optimizer``/``--learning-rate``
override it. Defaults: sparse categorical cross-entropy and Adam(1e-3). A cross-entropy named by
``--loss`` takes ``from_logits=True`` unless the output is what Keras's sigmoid or softmax returned
(then Keras's loss reads the logits behind it either way: ``scratch.keras_logits``).
``--inputs XY.npz`` holds the model inputs as ``parity check --inputs`` takes them, plus
``y`` (and optionally ``sample_weight``); without it, random dtype-aware inputs and targets.
"""

import json
import os
import tempfile
import time

import numpy as np

from .cli_inputs import BadInput, load_scratch, one_line, random_inputs, read_inputs
from .extras import require_keras

_CE = ("SparseCategoricalCrossentropy", "CategoricalCrossentropy", "BinaryCrossentropy")


def add_subcommands(sub):
    grad = sub.add_parser("grad", help="per-weight loss-gradient parity of one model file against tf.GradientTape")
    _common(grad)
    grad.add_argument("--samples", type=int, default=8, help="samples in the batch (default 8)")
    grad.add_argument("--inference", action="store_true", help="run the forward pass with training=False")
    grad.set_defaults(func=run_grad)
    train = sub.add_parser("train", help="N-step training parity (Keras train_on_batch vs scratch)")
    _common(train)
    train.add_argument("--steps", type=int, default=50, help="training steps (default 50)")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--optimizer", default=None, help="SGD, Adam, AdamW, RMSprop, Adagrad or Nadam")
    train.add_argument("--learning-rate", type=float, default=None)
    train.set_defaults(func=run_train)


def _common(p):
    p.add_argument("model", help="a Keras model file: legacy .h5 or .keras (with --config: the weights)")
    p.add_argument("--config", metavar="JSON", help="model.to_json() architecture; MODEL then holds its weights")
    p.add_argument("--inputs", metavar="XY.npz", help=".npz with the model inputs plus 'y' (and 'sample_weight')")
    p.add_argument("--loss", default=None, help="a Keras loss name (overrides the file's training config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-truth", action="store_true", help="skip the float64 scratch run")
    p.add_argument("--report", metavar="DIR", help="write a JSON and Markdown report to DIR")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML file")


# ---- shared set-up ------------------------------------------------------------------------------
def _setup(args):
    """(scratch model, loss, training-config optimizer or None) with exit-2 errors."""
    from scratch import keras_logits
    from scratch import losses as L
    from scratch.saving.training_config import TrainingConfigError, read_training_config

    smodel = load_scratch(args.model, args.config)
    if len(smodel.outputs) != 1:
        raise BadInput(f"{args.model}: {len(smodel.outputs)} outputs; grad/train handle single-output models")
    try:
        tc = read_training_config(args.model) if not args.config else {"loss": None, "optimizer": None}
    except TrainingConfigError as exc:
        raise BadInput(str(exc)) from None
    loss = tc["loss"]
    if args.loss or loss is None:
        name = args.loss or "sparse_categorical_crossentropy"
        try:
            cls = L.LOSSES[L.ALIASES.get(name, name)] if L.ALIASES.get(name, name) in L.LOSSES else None
            if cls is None:
                raise L.LossError(f"Unsupported loss: {name!r}. Supported: {sorted(L.ALIASES)}")
            kwargs = {}
            if cls.__name__ in _CE:   # probabilities when Keras's sigmoid/softmax made the output
                kwargs["from_logits"] = not keras_logits.tags_output(smodel)
            loss = cls(**kwargs)
        except L.LossError as exc:
            raise BadInput(f"--loss: {exc}") from None
    return smodel, loss, tc["optimizer"]


def _targets(smodel, loss, n, rng):
    shape = (n,) + tuple(8 if d is None else int(d) for d in smodel.output_shapes[0][1:])
    kind = type(loss).__name__
    if kind == "SparseCategoricalCrossentropy":
        return rng.integers(0, shape[-1], size=shape[:-1])
    if kind == "CategoricalCrossentropy":
        return np.eye(shape[-1], dtype="float32")[rng.integers(0, shape[-1], size=shape[:-1])]
    if kind == "BinaryCrossentropy":
        return (rng.random(shape) < 0.5).astype("float32")
    return rng.standard_normal(shape).astype("float32")


def _data(args, smodel, loss, kmodel, n, seed):
    """(xs, y, sample_weight) of ``n`` samples: from --inputs, else random."""
    if args.inputs:
        try:
            with np.load(args.inputs, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # noqa: BLE001 - any read failure means "unreadable"
            raise BadInput(f"--inputs {args.inputs}: cannot read as .npz: {type(exc).__name__}: {exc}") from None
        if "y" not in arrays:
            raise BadInput(f"--inputs {args.inputs}: no array 'y' (the targets)")
        y, sw = arrays.pop("y"), arrays.pop("sample_weight", None)
        # the rest are the model inputs, read exactly as `parity check --inputs` reads them
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(os.path.join(tmp, "x.npz"), **arrays)
            xs = read_inputs(os.path.join(tmp, "x.npz"), smodel, None)
        if len(y) != len(xs[0]):
            raise BadInput(f"--inputs {args.inputs}: 'y' has {len(y)} samples, the inputs {len(xs[0])}")
        return xs, y, sw
    from . import keras_runner as kr

    xs = random_inputs(smodel, kr.layer_infos(kmodel), n, seed)
    return xs, _targets(smodel, loss, n, np.random.default_rng(seed + 1)), None


def _keras(args):
    require_keras()   # names the missing [keras] extra (exit 2) before TensorFlow is needed
    from . import keras_runner as kr

    try:
        return kr.load_model(args.model, args.config)
    except Exception as exc:  # noqa: BLE001 - Keras's own refusal of the file is a bad input
        raise BadInput(one_line(f"{args.model}: Keras cannot load it: {type(exc).__name__}: {exc}"))


def _truth(args):
    return None if args.no_truth else load_scratch(args.model, args.config).to_dtype("float64")


# ---- parity grad --------------------------------------------------------------------------------
def run_grad(args):
    from .gradients import compare_gradients, format_gradient_table

    if args.samples < 1:
        raise BadInput(f"--samples must be >= 1. Received: {args.samples}")
    t0 = time.perf_counter()
    smodel, loss, _ = _setup(args)
    kmodel = _keras(args)
    xs, y, sw = _data(args, smodel, loss, kmodel, args.samples, args.seed)
    if args.inputs:
        xs, y, sw = [x[:args.samples] for x in xs], y[:args.samples], None if sw is None else sw[:args.samples]
    try:
        result = compare_gradients(kmodel, smodel, xs, y, loss, sw, training=not args.inference, truth=_truth(args))
    except Exception as exc:  # noqa: BLE001 - scratch failing to differentiate a loadable model is a failure
        print(f"parity grad: FAIL: {type(exc).__name__}: {' '.join(str(exc).split())}")
        return 1
    elapsed = time.perf_counter() - t0
    print(f"parity grad {args.model}: {len(xs[0])} sample(s), loss {loss!r}, "
          f"{'training' if not args.inference else 'inference'} mode")
    print(format_gradient_table(result))
    ok = sum(r["passed"] for r in result["rows"])
    print(f"{'PASS' if result['passed'] else 'FAIL'}: {ok}/{len(result['rows'])} weight gradients within tolerance "
          f"({elapsed:.1f} s)")
    cases = [(r["weight"], r["passed"], f"max abs err {r.get('max_abs')} > {r.get('atol')}") for r in result["rows"]]
    _write_outputs(args, "grad", result, cases, elapsed)
    return 0 if result["passed"] else 1


# ---- parity train -------------------------------------------------------------------------------
def run_train(args):
    from scratch import optimizers as O

    from .training import format_training_table, training_parity

    if args.steps < 1 or args.batch_size < 1:
        raise BadInput(f"--steps and --batch-size must be >= 1. Received: {args.steps}, {args.batch_size}")
    t0 = time.perf_counter()
    smodel, loss, file_opt = _setup(args)
    name, cfg = _optimizer_choice(args, file_opt, O)
    kmodel = _keras(args)
    n = args.steps * args.batch_size
    xs, y, sw = _data(args, smodel, loss, kmodel, n if not args.inputs else 0, args.seed)
    total = len(xs[0])
    batches = []
    for k in range(args.steps):   # in order, wrapping around a small --inputs file
        idx = (np.arange(args.batch_size) + k * args.batch_size) % total
        batches.append(([x[idx] for x in xs], y[idx], None if sw is None else sw[idx]))
    try:
        result = training_parity(kmodel, smodel, batches, loss, name, cfg, truth=_truth(args))
    except Exception as exc:  # noqa: BLE001
        print(f"parity train: FAIL: {type(exc).__name__}: {' '.join(str(exc).split())}")
        return 1
    elapsed = time.perf_counter() - t0
    print(f"parity train {args.model}: {args.steps} step(s) of {args.batch_size}, {name}({cfg}), loss {loss!r}")
    print(format_training_table(result))
    print(f"{'PASS' if result['passed'] else 'FAIL'}: {sum(r['passed'] for r in result['steps'])}/{args.steps} steps "
          f"agree; max weight difference {result['max_weight_diff']:.3e} ({elapsed:.1f} s)")
    cases = [(f"step {r['step']:03d}", r["passed"], f"weight {r['worst_weight']} differs by {r['weight_diff']:.3e} "
              f"> budget {r['weight_budget']:.3e}; loss {r['loss_scratch']} vs {r['loss_keras']}")
             for r in result["steps"]]
    _write_outputs(args, "train", result, cases, elapsed)
    return 0 if result["passed"] else 1


def _optimizer_choice(args, file_opt, O):
    if args.optimizer is None and file_opt is not None:
        name, cfg = type(file_opt).__name__, {k: v for k, v in file_opt.get_config().items() if k != "name"}
        cfg.update({k: getattr(file_opt, k) for k in ("momentum", "nesterov", "beta_1", "beta_2", "epsilon",
                                                        "amsgrad", "rho", "centered", "initial_accumulator_value")
                    if hasattr(file_opt, k)})
        cfg["learning_rate"] = file_opt._learning_rate
    else:
        by_lower = {k.lower(): k for k in O.OPTIMIZERS}
        name = by_lower.get((args.optimizer or "adam").lower())
        if name is None:
            raise BadInput(f"--optimizer {args.optimizer!r} is not supported. Supported: {sorted(O.OPTIMIZERS)}")
        cfg = {}
    if args.learning_rate is not None:
        if not args.learning_rate > 0:
            raise BadInput(f"--learning-rate must be > 0. Received: {args.learning_rate}")
        cfg["learning_rate"] = args.learning_rate
    cfg = {k: v for k, v in cfg.items() if v is not None}
    try:
        O.get(name, **cfg)
    except O.OptimizerError as exc:
        raise BadInput(f"--optimizer: {exc}") from None
    return name, cfg


# ---- outputs ------------------------------------------------------------------------------------
def _write_outputs(args, command, result, cases, elapsed):
    from .report import write_atomic

    label = os.path.basename(str(args.model))
    if args.junit:
        import xml.etree.ElementTree as ET

        failures = sum(not ok for _, ok, _ in cases)
        suite = ET.Element("testsuite", name=f"parity {command} {label}", tests=str(len(cases)),
                           failures=str(failures), errors="0", time=f"{elapsed:.3f}")
        for name, ok, reason in cases:
            case = ET.SubElement(suite, "testcase", classname=f"parity.{command}.{label}", name=name)
            if not ok:
                ET.SubElement(case, "failure", message=f"{name} diverges from Keras").text = reason
        root = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures))
        root.append(suite)
        write_atomic(args.junit, ET.tostring(root, encoding="unicode"))
    if args.report:
        from .gradients import format_gradient_table
        from .training import format_training_table

        os.makedirs(args.report, exist_ok=True)
        write_atomic(os.path.join(args.report, f"{command}.json"), json.dumps(result, indent=1, default=float))
        table = format_gradient_table(result) if command == "grad" else format_training_table(result)
        verdict = "PASS" if result["passed"] else "FAIL"
        write_atomic(os.path.join(args.report, f"{command}.md"),
                     f"# parity {command} {label}: {verdict}\n\n```\n{table}\n```\n")
