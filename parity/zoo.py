"""``make zoo``: every keras.applications model, per-layer parity end to end and layer by layer.

    python -m parity.zoo [--models GLOB[,GLOB...]] [--out reports] [--rebuild]

For each model (keras_ref/zoo.py builds it offline, randomized with a fixed seed, at its smallest
input size, and saves it as ``.keras`` and legacy ``.h5``), on scikit-learn's two photos:

- the Keras reference is every graph node's output (layers and operations) of the in-memory
  model that was saved, ``model(x, training=False)``. (Keras 3 cannot load a legacy ``.h5`` that
  holds operation nodes with constants, MobileNetV3's ``x + 3.0``: "Only input tensors may be
  passed as positional arguments"; the in-memory model is the model both files hold.)
- **end to end**: scratch loads each file and runs the whole net; each node's tolerance uses the
  longest chain of sums behind it (``parity.compare.effective_reductions``);
- **layer by layer**: each scratch node reads Keras's own outputs of the nodes feeding it
  (``Model.trace(x, feed=...)``) and its tolerance uses its own reduction alone;
- both are judged by ``parity.tolerance``'s rule, unchanged. A row's *error / tol* is its
  ``headroom``, the largest ``|scratch - keras| / (atol_eff + rtol |keras|)`` over its elements:
  below 1 passes. When the end-to-end check fails, Keras's float64 twin of the model is run
  (``keras_truth``, cached) and the failing nodes are judged again by the amplified-rounding
  rule of ``parity.tolerance`` (``parity.amplified``, which ``parity check`` uses the same way:
  scratch no further from the twin than Keras float32 is, plus the
  rule); the table gives both.

A model scratch cannot load is listed as refused, with the classes and reasons. Builds, the
reference outputs and the Keras timing are cached under ``<out>/zoo_models/<name>/`` (keyed by
Keras version, seed and size), so a rerun after an engine change costs only the scratch side;
``--rebuild`` starts over; ``--jobs N`` runs N models at once in worker processes. The folder's
``inputs.npz`` is the zoo's sample for ``python -m parity check FILE --inputs inputs.npz``: the
models are calibrated on these photos (keras_ref.zoo.calibrate), and parity check's default N(0, 1)
"pixels" are far outside that (a near-constant image after the model's own rescaling).
``reports/zoo.json`` and ``reports/zoo.md`` are rewritten after each model.
"""

import argparse
import fnmatch
import json
import os
import shutil
import sys
import time

import numpy as np

from . import compare as cmp
from .amplified import compare_end_to_end, truth_summary, truth_text
from .report import to_json, write_atomic

FORMATS = ("keras", "h5")
NESTED = ("Sequential", "Functional", "Model")


# ---- the Keras side, cached ---------------------------------------------------------------------------
def prepare(app, folder, size=None, rebuild=False, formats=FORMATS, **kwargs):
    """Build + save + probe ``app`` into ``folder`` (or reuse a matching cache); returns the metadata.

    ``kwargs`` go to ``keras_ref.zoo.build`` (``builder=`` picks a family's generic builder).
    """
    from importlib.metadata import version

    from keras_ref import zoo as kzoo

    size = size or kzoo.min_size(app)
    # the installed Keras's version, read without importing it: a cache hit needs no TensorFlow at all
    key = dict(name=app, size=size, seed=kzoo.SEED, randomization=kzoo.RANDOMIZATION, kwargs=kwargs,
               keras=version("keras"))
    meta_path = os.path.join(folder, "meta.json")
    if not rebuild and os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("key") == key and all(os.path.exists(meta["paths"].get(f, "")) for f in formats):
            return meta
    from . import keras_runner as kr

    keras, _ = kr._import()
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    t0 = time.perf_counter()
    model = kzoo.build(app, size, **kwargs)
    paths = kzoo.save(model, folder, app, formats)
    build_s = time.perf_counter() - t0
    x = kzoo.sample_inputs(app, size)
    reference = cmp.flatten_outputs(kr.intermediate_outputs(model, x))
    kr.call(model, x)   # warm-up: the timed calls measure inference, not tracing
    keras_s = min(kr.predict(model, x)[1] for _ in range(2))
    names = list(reference)
    np.savez(os.path.join(folder, "reference.npz"), x=x, **{f"n{i}": reference[n] for i, n in enumerate(names)})
    meta = dict(key=key, paths=paths, names=names, infos=kr.layer_infos(model), layers=len(model.layers),
                params=kr.count_params(model), keras_seconds=keras_s, build_seconds=build_s)
    write_atomic(meta_path, to_json(meta))
    keras.backend.clear_session()
    return meta


def _reference(folder, meta):
    with np.load(os.path.join(folder, "reference.npz")) as data:
        return data["x"], {n: data[f"n{i}"] for i, n in enumerate(meta["names"])}


def keras_truth(folder, meta):
    """Every node's output of Keras's float64 twin of the saved model (``parity.keras_truth``), cached.

    Only asked for when an end-to-end check fails the direct rule (``run_format``): it decides the
    nodes where the model amplifies rounding beyond what the rule allows Keras itself."""
    path = os.path.join(folder, "truth.npz")
    if not os.path.exists(path):
        from . import keras_runner as kr
        from . import keras_truth as kt

        keras, _ = kr._import()
        x, _ = _reference(folder, meta)
        model = keras.models.load_model(meta["paths"].get("keras") or meta["paths"]["h5"], compile=False)
        truth = cmp.flatten_outputs(kt.truth_outputs(model, x))
        if list(truth) != meta["names"]:
            raise ValueError(f"the float64 twin's nodes differ from the reference's: {sorted(set(truth) ^ set(meta['names']))[:5]}")
        np.savez(path, **{f"n{i}": truth[n] for i, n in enumerate(meta["names"])})
        keras.backend.clear_session()
    with np.load(path) as data:
        return {n: data[f"n{i}"] for i, n in enumerate(meta["names"])}


# ---- the scratch side -------------------------------------------------------------------------------
def own_reductions(infos):
    """{name: the node's own reduction} (a nested model's output is its last inner node's)."""
    own, last = {}, 1
    for info in infos:
        if info["class_name"] in NESTED:
            own[info["name"]] = last
            continue
        own[info["name"]] = last = max(1, cmp.own_reduction(info["class_name"], info.get("config"),
                                                            info.get("input_shape"), op=info.get("op", False)))
    return own


def _judge(result):
    """The compare_layers verdict plus the worst float node by error / tolerance (``headroom``)."""
    worst = (None, 0.0)
    for row in result["layers"]:
        if row.get("status") in ("ok", "diverged") and row.get("atol", 0.0) > 0 and row["headroom"] >= worst[1]:
            worst = (row["name"], row["headroom"])
    return dict(passed=result["passed"], compared=result["compared"], graph_nodes=result["graph_nodes"],
                worst_layer=worst[0], worst_ratio=worst[1], first_diverging=result["first_diverging"],
                first_diverging_reason=result["first_diverging_reason"], **truth_summary(result),
                truth_not_used=(result.get("keras_truth") or {}).get("reason"))


def run_format(path, x, reference, infos, truth=None):
    """One file through scratch: refused (with the reason), or the end-to-end and layer-by-layer verdicts.

    ``truth()`` (when given) returns Keras's float64 twin's outputs; it is called only when the
    end-to-end check fails the direct rule, which is then rerun with the amplified-rounding rule."""
    import scratch

    try:
        smodel = scratch.load(path)
    except scratch.UnsupportedLayerError as exc:
        return dict(status="refused", reason=_refusal(exc.problems))
    except (scratch.ScratchError, ValueError, KeyError, OSError) as exc:
        return dict(status="refused", reason=f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:400])
    out = dict(scratch_params=smodel.count_params())
    try:
        t0 = time.perf_counter()
        smodel.predict(x)
        out["scratch_seconds"] = time.perf_counter() - t0
        trace = smodel.trace(x)
        out["end_to_end"] = _judge(compare_end_to_end(reference, trace, infos, keras_truth=truth))
        del trace
        own = own_reductions(infos)
        fed = smodel.trace(x, feed=reference)
        out["layer_by_layer"] = _judge(cmp.compare_layers(reference, fed, infos, reductions=own))
    except Exception as exc:  # noqa: BLE001 - scratch crashing on a model it loaded is a failure to report
        return dict(out, status="fail", reason=f"scratch failed to run it: {type(exc).__name__}: {exc}"[:400])
    out["status"] = "pass" if out["end_to_end"]["passed"] and out["layer_by_layer"]["passed"] else "fail"
    return out


def _refusal(problems):
    """'DepthwiseConv2D x11 (no scratch implementation of this layer type); ...' grouped by class and reason."""
    groups = {}
    for _, cls, reason in problems:
        groups[(cls, reason)] = groups.get((cls, reason), 0) + 1
    return "; ".join(f"{cls} x{n} ({reason})" for (cls, reason), n in sorted(groups.items()))


def run_model(app, folder, size=None, rebuild=False, formats=FORMATS, **kwargs):
    """The zoo row of one application (each of ``formats``)."""
    t0 = time.perf_counter()
    meta = prepare(app, folder, size=size, rebuild=rebuild, formats=formats, **kwargs)
    x, reference = _reference(folder, meta)
    inputs = os.path.join(folder, "inputs.npz")
    if not os.path.exists(inputs):   # the zoo's own sample: python -m parity check FILE --inputs inputs.npz
        np.savez(inputs, arr_0=x)
    row = dict(model=app, size=meta["key"]["size"], kwargs=kwargs, layers=meta["layers"],
               nodes=sum(len(i["nodes"]) for i in meta["infos"]), params=meta["params"],
               keras_seconds=meta["keras_seconds"], formats={})
    cached = {}

    def truth():
        if "truth" not in cached:
            cached["truth"] = keras_truth(folder, meta)
        return cached["truth"]

    for fmt in formats:
        res = run_format(meta["paths"][fmt], x, reference, meta["infos"], truth=truth)
        if "scratch_params" in res and res["scratch_params"] != meta["params"]:
            res.update(status="fail", reason=f"parameter count: Keras {meta['params']:,}, scratch {res['scratch_params']:,}")
        row["formats"][fmt] = res
    statuses = {r["status"] for r in row["formats"].values()}
    row["status"] = "pass" if statuses == {"pass"} else "fail" if "fail" in statuses else "refused"
    row["seconds"] = time.perf_counter() - t0
    return row


# ---- reports ----------------------------------------------------------------------------------------
def _cell(res, part):
    if res["status"] == "refused" or part not in res:
        return "—"
    j = res[part]
    cell = f"{j['worst_ratio']:.3f} ({j['worst_layer']})" if j["worst_layer"] else "—"
    if j.get("truth_judged"):
        cell += "; " + truth_text(j)
    elif j.get("truth_not_used"):
        cell += f"; amplified-rounding judge not used: {j['truth_not_used']}"
    return cell


def markdown(data):
    lines = [f"# keras.applications zoo: {data['passed']}/{data['total']} pass, {data['refused']} refused, "
             f"{data['failed']} fail", "",
             f"Keras {data['environment'].get('keras')}, TensorFlow {data['environment'].get('tensorflow')}, "
             f"oneDNN {'on' if data['environment'].get('onednn_enabled') else 'off'}; inputs: scikit-learn's two "
             f"photos at the smallest size each model accepts, through its preprocess_input; weights random "
             f"(seed {data['seed']}). error / tol: the worst node's largest |scratch - Keras| / (atol + rtol |Keras|) "
             f"under parity.tolerance (< 1 passes), end to end (e2e) and layer by layer (lbl), from the .keras file; "
             f"an e2e node failing it is judged again against Keras's own float64 twin (scratch no further from it "
             f"than Keras float32 is, plus the rule: parity.tolerance, amplified rounding). "
             f"Wall time {data['wall_seconds']:.0f} s.", "",
             "| model | px | layers | nodes | params | .keras | .h5 | worst e2e: error / tol (node) | "
             "worst lbl: error / tol (node) | scratch s | Keras s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for row in data["models"]:
        k, h = row["formats"]["keras"], row["formats"]["h5"]
        secs = f"{k['scratch_seconds']:.2f}" if "scratch_seconds" in k else "—"
        lines.append(f"| {row['model']} | {row['size']} | {row['layers']} | {row['nodes']} | {row['params']:,} | "
                     f"{k['status']} | {h['status']} | {_cell(k, 'end_to_end')} | {_cell(k, 'layer_by_layer')} | "
                     f"{secs} | {row['keras_seconds']:.2f} |")
        for fmt, res in row["formats"].items():
            reason = res.get("reason") or next((res[p]["first_diverging_reason"] for p in ("end_to_end", "layer_by_layer")
                                                if p in res and not res[p]["passed"]), None)
            if reason:
                notes.append(f"- **{row['model']}** (.{fmt}, {res['status']}): {reason}")
    if notes:
        lines += ["", "## Refusals and failures", ""] + notes
    return "\n".join(lines) + "\n"


def write_reports(out, data):
    write_atomic(os.path.join(out, "zoo.json"), to_json(data))
    write_atomic(os.path.join(out, "zoo.md"), markdown(data))


def _safe_row(name, folder, rebuild):
    """``run_model``, or a failing row naming the exception (one model must not hide the others)."""
    from keras_ref import zoo as kzoo

    try:
        return run_model(name, folder, rebuild=rebuild)
    except Exception as exc:  # noqa: BLE001
        return dict(model=name, size=kzoo.min_size(name), layers=0, nodes=0, params=0, keras_seconds=0.0,
                    status="fail", formats={f: dict(status="fail", reason=f"{type(exc).__name__}: {exc}"[:400])
                                           for f in FORMATS})


def _rows(names, cache, rebuild, jobs):
    """Yield each model's row as it finishes; ``jobs`` > 1 runs models in fresh worker processes."""
    if jobs <= 1:
        for name in names:
            yield _safe_row(name, os.path.join(cache, name), rebuild)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_safe_row, name, os.path.join(cache, name), rebuild) for name in names]
        for future in as_completed(futures):
            yield future.result()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="parity.zoo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated fnmatch patterns of application names (default: all)")
    parser.add_argument("--out", default="reports", help="report folder (default: reports)")
    parser.add_argument("--cache", help="folder of cached builds and references (default: OUT/zoo_models)")
    parser.add_argument("--rebuild", action="store_true", help="ignore cached builds and reference outputs")
    parser.add_argument("--jobs", type=int, default=1, help="models run at once, each in its own process")
    args = parser.parse_args(argv)
    from keras_ref import zoo as kzoo

    from . import keras_runner as kr

    names = kzoo.names()
    if args.models:
        globs = [g.strip() for g in args.models.split(",") if g.strip()]
        names = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in globs)]
    t0 = time.perf_counter()
    data = dict(environment=kr.environment(), seed=kzoo.SEED, models=[])
    for row in _rows(names, args.cache or os.path.join(args.out, "zoo_models"), args.rebuild, args.jobs):
        data["models"] = sorted(data["models"] + [row], key=lambda r: names.index(r["model"]))
        statuses = [r["status"] for r in data["models"]]
        data.update(total=len(statuses), passed=statuses.count("pass"), refused=statuses.count("refused"),
                    failed=statuses.count("fail"), wall_seconds=time.perf_counter() - t0)
        write_reports(args.out, data)
        print(f"  {row['model']:<20} {row['status']:<8} ({row.get('seconds', 0):.0f} s)", flush=True)
    print(f"zoo: {data['passed']}/{data['total']} pass, {data['refused']} refused, {data['failed']} fail; "
          f"{args.out}/zoo.md ({time.perf_counter() - t0:.0f} s)")
    return 0 if data["failed"] == 0 and data["refused"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
