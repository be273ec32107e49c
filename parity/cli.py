"""Command line: ``parity run`` (the main job, ``make parity``) and ``parity check MODEL``.

Exit codes of ``parity check`` and ``parity run``:
  0  parity holds: every layer's output is within tolerance;
  1  parity was computed and fails: the per-layer table names the first diverging layer;
  2  anything else: an unreadable, corrupt or refused file, an unsupported layer, bad ``--inputs``
     or arguments, a file beyond ``--max-memory``, and also an internal error (a bug, said so).
     One line on stderr, no traceback unless ``--debug`` is given.

The file is read and the inputs are checked by the scratch loader before TensorFlow is imported,
so a bad input is reported in well under a second. Keras only ever loads a copy of the file that
the scratch loader has cleared (``keras_runner.load_model``), so no entry point hands Keras a
Lambda layer or a module named in a file.
"""

import argparse
import os
import re
import sys
import time
import traceback
import warnings

import scratch

from . import __version__
from .cli_inputs import (DEFAULT_MAX_MEMORY, BadInput, load_scratch, nonfinite_line, one_line, random_inputs,
                         read_inputs)
from .cli_train import add_subcommands
from .compare_table import LEGEND, format_table, overrides_line
from .extras import MissingExtra, require_keras
from .quiet import VERBOSE_ENV
from .suite import run_suite

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse would print the usage block; the contract is one line and exit code 2.
        raise BadInput(message)


def memory_size(text):
    """``--max-memory`` values: bytes, or with a K/M/G suffix (powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"expected bytes or a size like 512M or 2G. Received: {text!r}")
    n = float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " ")
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be positive. Received: {text!r}")
    return int(n)


def _common():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print the traceback of an error")
    common.add_argument("--max-memory", type=memory_size, default=DEFAULT_MAX_MEMORY, metavar="SIZE",
                        help="memory budget a file may claim: weights, activations, archive members "
                             "(bytes, or 512M, 2G; default 2G)")
    return common

EXIT_CODES = """exit codes (check, run, grad, train):
  0  parity holds
  1  parity was computed and fails (the tables name the first diverging layer, step or weight)
  2  bad input: unreadable or unsupported file, bad --inputs or arguments, or an internal error;
     one line on stderr (--debug adds the traceback)"""


def build_parser():
    parser = _Parser(prog="parity", description="Keras vs scratch NumPy parity checks.", epilog=EXIT_CODES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"parity {__version__} (scratch engine {__version__})")
    parser.add_argument("--verbose", action="store_true",
                        help="let TensorFlow's own start-up lines (absl, oneDNN, CUDA) through to stderr")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common = _common()
    run = sub.add_parser("run", help="every model in weights/MANIFEST.json, with reports/", parents=[common],
                         description="The main job (make parity): every reference model in the MANIFEST, checked per "
                                     "layer, step by step while decoding captions, and in the task metrics against "
                                     "the MANIFEST's Keras numbers (the gate). Writes parity.json, parity.md and "
                                     "index.html to --report. Run it from the project's checkout.",
                         epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--weights", default="weights", help="folder holding MANIFEST.json (default: weights)")
    run.add_argument("--report", default="reports", help="output folder (default: reports)")
    run.add_argument("--models", default=None, help="comma-separated fnmatch patterns of model names")
    run.add_argument("--samples", type=int, default=None, help="limit every test split to N samples")
    run.add_argument("--trace-samples", type=int, default=64,
                     help="samples in the per-layer trace and float64 truth run (default: 64)")
    run.add_argument("--beam-width", type=int, default=3)
    run.add_argument("--beam-samples", type=int, default=None,
                     help="beam-search only the first N test images (default: all)")
    run.add_argument("--tokenizer", choices=("auto", "ptb", "simple"), default="auto",
                     help="caption tokenization: coco's PTB jar (auto when Java exists) or pure Python")
    run.add_argument("--no-meteor", action="store_true", help="skip METEOR (saves the Java start-up)")
    run.add_argument("--no-html", action="store_true", help="write parity.json/md only, no plots")
    run.add_argument("--no-cache", action="store_true",
                     help="recompute Keras's reference outputs instead of reading REPORT/.keras-cache")
    run.add_argument("--no-training", action="store_true",
                     help="skip the per-model gradient and training-parity sections (they are gated when run)")
    run.add_argument("--train-steps", type=int, default=None, metavar="N",
                     help="training-parity steps per model (default: parity.suite_training.STEPS = 10)")
    run.set_defaults(func=_run)

    check = sub.add_parser("check", help="per-layer parity of one Keras model file (.h5 or .keras)",
                           description="Runs the same inputs through Keras and the scratch engine and compares every "
                                       "node of the graph, layers and operations, and the model's outputs.",
                           epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
                           parents=[common])
    check.add_argument("model", help="a Keras model file: legacy .h5 or .keras (with --config: the weights)")
    check.add_argument("--config", metavar="JSON",
                       help="model.to_json() architecture; MODEL then holds its weights: a weights file, or a "
                            "full .h5 of a larger model whose same-named layers hold them")
    check.add_argument("--inputs", help=".npz with one array per model input (by input name, or arr_0, arr_1, ...)")
    check.add_argument("--samples", type=int, default=8, help="random samples (or the first N of --inputs); default 8")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--atol", type=float, default=None, help="absolute tolerance (overrides the policy)")
    check.add_argument("--rtol", type=float, default=None, help="relative tolerance (overrides the policy)")
    check.add_argument("--float64-truth", action="store_true",
                       help="also run scratch in float64 and say which side is further from it")
    check.add_argument("--no-keras-truth", action="store_true",
                       help="judge by the direct rule alone; by default, when an end-to-end node fails it, Keras's "
                            "float64 twin of the model is run and the node passes if scratch is no further from it "
                            "than Keras float32 is, plus the rule (models that amplify their own rounding); "
                            "never with --atol/--rtol")
    check.add_argument("--report", metavar="DIR", help="write parity.json, parity.md and index.html to DIR")
    check.add_argument("--junit", metavar="FILE", help="write a JUnit XML file (one test case per layer)")
    check.add_argument("--fail-fast", action="store_true", help="stop at the first diverging layer")
    check.set_defaults(func=_check)

    layers = sub.add_parser("layers", help="every layer class the engine runs, its settings, and what it refuses")
    layers.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    layers.add_argument("--update-readme", metavar="README",
                        help="rewrite the generated layer table in this README (with --format markdown)")
    layers.set_defaults(func=_layers)

    add_subcommands(sub)   # parity grad, parity train
    return parser


def _layers(args):
    """``parity layers``: needs the engine only, never TensorFlow."""
    import json
    from pathlib import Path

    from scratch.layers.catalog import catalog

    from .layer_table import format_markdown, format_text, replace_readme_section

    entries = catalog()
    if args.update_readme:
        path = Path(args.update_readme)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadInput(f"{path}: cannot read it: {exc.strerror}")
        path.write_text(replace_readme_section(text, entries), encoding="utf-8")
        print(f"{path}: layer table updated ({len(entries)} classes)")
        return 0
    if args.format == "json":
        print(json.dumps(entries, indent=1, default=str))
    else:
        print(format_markdown(entries) if args.format == "markdown" else format_text(entries))
    return 0


# ---- parity check -------------------------------------------------------------------------------
def _check(args):
    from .amplified import compare_end_to_end, judge_line

    if args.samples is not None and args.samples < 1:
        raise BadInput(f"--samples must be >= 1. Received: {args.samples}")
    t0 = time.perf_counter()
    smodel = load_scratch(args.model, args.config, args.max_memory)
    scratch_s = time.perf_counter() - t0   # the scratch side's own time: loading and the traces
    xs = read_inputs(args.inputs, smodel, args.samples, args.max_memory) if args.inputs else None
    n = len(xs[0]) if xs else args.samples
    need = (4 * smodel.count_params() + n * smodel.bytes_per_sample) * (2 if args.float64_truth else 1)
    if need > args.max_memory:
        raise BadInput(f"{args.model}: {n} sample(s) need about {need} bytes, beyond --max-memory {args.max_memory}")

    require_keras()
    from . import keras_runner as kr   # TensorFlow starts here, after every cheap check
    from . import keras_truth as kt

    try:
        kmodel = kr.load_model(args.model, args.config, max_bytes=args.max_memory)
    except scratch.ScratchError as exc:
        raise BadInput(one_line(exc)) from None
    except Exception as exc:  # noqa: BLE001 - Keras's own refusal of the file is a bad input
        raise BadInput(one_line(f"{args.model}: Keras cannot load it: {type(exc).__name__}: {exc}")) from None
    infos = kr.layer_infos(kmodel)
    if xs is None:
        xs = random_inputs(smodel, infos, args.samples, args.seed)
    feed = xs if len(xs) > 1 else xs[0]
    keras_out = kr.intermediate_outputs(kmodel, feed)
    try:
        with warnings.catch_warnings():   # overflow is reported per node below (nonfinite_line)
            warnings.simplefilter("ignore", RuntimeWarning)
            t1 = time.perf_counter()
            scratch_out = smodel.trace(feed)
            truth = None
            if args.float64_truth:
                truth = load_scratch(args.model, args.config, args.max_memory).to_dtype("float64").trace(feed)
            scratch_s += time.perf_counter() - t1
    except scratch.ScratchError as exc:   # the engine refuses these inputs: no parity was computed
        raise BadInput(one_line(f"{args.model}: scratch cannot run it: {exc}")) from None
    result = compare_end_to_end(keras_out, scratch_out, infos, truth=truth, atol=args.atol, rtol=args.rtol,
                                keras_truth=None if args.no_keras_truth else lambda: kt.truth_outputs(kmodel, feed))
    if args.fail_fast and result["first_diverging"]:
        cut = next(i for i, r in enumerate(result["layers"]) if not r["passed"])
        result["layers"] = result["layers"][:cut + 1]
        result["stopped_early"] = True
    elapsed = time.perf_counter() - t0
    print(f"parity check {args.model}: {len(xs[0])} sample(s), inputs "
          f"{'from ' + args.inputs if args.inputs else f'random (seed {args.seed})'}")
    print(format_table(result))
    print(LEGEND)
    print(overrides_line(result["tolerance_overrides"]))
    if judge_line(result):
        print(judge_line(result))
    result["nonfinite"] = nonfinite_line(keras_out, scratch_out)
    if result["nonfinite"]:
        print(result["nonfinite"])
    status = "PASS" if result["passed"] else "FAIL"
    print(f"{status}: {sum(r['passed'] for r in result['layers'])}/{len(result['layers'])} layers and operations within "
          f"tolerance ({result['compared']} of the graph's {result['graph_nodes']} nodes compared, {elapsed:.1f} s; "
          f"the scratch side {scratch_s:.3f} s)")
    result["scratch_s"] = scratch_s
    env = kr.environment()
    if args.junit:
        from .report import write_junit

        write_junit(args.junit, args.model, result, elapsed)
    if args.report:
        from .report import write_check_report

        write_check_report(args.report, args.model, result, env, inputs=args.inputs or f"random seed {args.seed}",
                           samples=len(xs[0]))
    return 0 if result["passed"] else 1


# ---- parity run ---------------------------------------------------------------------------------
def _run(args):
    manifest = os.path.join(args.weights, "MANIFEST.json")
    if not os.path.exists(manifest):
        if not os.path.isdir(args.weights):
            raise BadInput(f"no {args.weights}/ folder in the working directory {os.getcwd()}: run `parity run` from "
                           f"the project's checkout (make parity does), or give --weights DIR")
        raise BadInput(f"{manifest}: no such file (run `make weights` to train and export the models)")
    if args.train_steps is not None and args.train_steps < 1:
        raise BadInput(f"--train-steps must be >= 1. Received: {args.train_steps}")
    require_keras()
    return run_suite(args)


def main(argv=None):
    """Exit 0 (parity holds), 1 (parity computed and fails) or 2 (everything else, one line)."""
    parser = build_parser()
    argv = [os.fspath(a) for a in (sys.argv[1:] if argv is None else argv)]
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
        if args.verbose:
            os.environ[VERBOSE_ENV] = "1"
        return args.func(args)
    except (BadInput, MissingExtra) as exc:
        _report(f"parity: error: {one_line(exc)}", debug)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("parity: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `parity layers | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the contract: one line and exit 2, even for a bug
        if isinstance(exc, scratch.ScratchError):
            _report(f"parity: error: {one_line(exc)}", debug)
        else:
            _report(f"parity: internal error (a bug in parity or scratch, not in your input): "
                    f"{type(exc).__name__}: {one_line(exc)}{'' if debug else ' (rerun with --debug for the traceback)'}",
                    debug)
        return USAGE_ERROR


def _report(line, debug):
    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc()
    print(line[:2000], file=sys.stderr)
