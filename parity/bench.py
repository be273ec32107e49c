"""``make bench``: scratch against Keras, side by side in one process, as ratios (asserts nothing).

Each case (parity.bench_cases) runs its scratch and Keras sides, warm-ups first, then interleaved
``A B A B`` and the medians are compared (parity.bench_timing). The table gives scratch s, Keras s,
the ratio scratch / Keras against the issue's target, each side's peak memory for one call, and for
single Conv2D/Dense layers their GFLOP/s against numpy's sgemm on a product of the same size
(timed right after the pairs: see ``run_case``). The load average before and after says how busy the machine was.

Environment: ``BENCH=full`` adds the larger cases (ResNet50, VGG19, every captioner, more conv
shapes); ``BENCH_ONLY=glob,glob`` picks cases by name; ``BENCH_BUSY=1`` runs a second CPU-bound
process beside the benchmark. Writes ``reports/bench.json`` (``BENCH_REPORT`` overrides the path).
"""

import fnmatch
import json
import os
import platform
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import bench_timing as bt  # noqa: E402
from .bench_cases import NotRunnable, cases, sgemm_side  # noqa: E402

REPORT = os.environ.get("BENCH_REPORT", os.path.join("reports", "bench.json"))


def run_case(case):
    row = dict(case=case.name, group=case.group, target=case.target, note=case.note)
    try:
        sides = case.build()
    except NotRunnable as exc:
        row.update(status="not runnable yet", reason=str(exc))
        return row
    except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return row
    times = bt.interleaved(sides, warmups=case.warmups, pairs=case.pairs)
    if case.sgemm:
        # Timed after the pairs, never between them: numpy's threaded sgemm leaves OpenBLAS's worker
        # spinning on a core for ~0.1 s after each call (its THREAD_TIMEOUT), which halved the rate of
        # whichever side ran next (measured: the engine's Dense product 129 -> 69 GFLOP/s).
        times.update(bt.interleaved({"sgemm": sgemm_side(*case.sgemm)}, warmups=case.warmups, pairs=case.pairs))
        bt.let_blas_threads_sleep()   # ... and before the next case's first call
    med = {k: bt.median(v) for k, v in times.items()}
    row.update(status="ok", scratch_s=med["scratch"], keras_s=med["keras"], ratio=med["scratch"] / med["keras"],
               times=times, pairs=case.pairs, warmups=case.warmups)
    row["met"] = row["ratio"] <= case.target
    row["scratch_peak_mb"] = bt.scratch_peak_mb(sides["scratch"])
    row["keras_peak_mb"] = bt.keras_peak_mb(sides["keras"])
    if case.flops:
        row["scratch_gflops"] = case.flops / med["scratch"] / 1e9
        row["sgemm_gflops"] = case.flops / med["sgemm"] / 1e9
        row["sgemm_fraction"] = row["scratch_gflops"] / row["sgemm_gflops"]
        row["sgemm_shape"] = case.sgemm
        row["met"] = row["met"] and row["sgemm_fraction"] >= 0.7
    return row


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


HEADER = (f"{'case':40s} {'scratch s':>9s} {'Keras s':>8s} {'ratio':>6s} {'target':>7s} {'met':>4s} "
          f"{'scr MB':>7s} {'Keras MB':>8s}  GFLOP/s scratch/sgemm")


def format_row(row):
    if row["status"] != "ok":
        return f"{row['case']:40s} {row['status']}: {row['reason']}"
    flops = ""
    if "scratch_gflops" in row:
        flops = f"  {row['scratch_gflops']:.1f}/{row['sgemm_gflops']:.1f} ({100 * row['sgemm_fraction']:.0f}%, target 70%)"
    return (f"{row['case']:40s} {row['scratch_s']:9.3f} {row['keras_s']:8.3f} {row['ratio']:6.2f} "
            f"{'<= ' + format(row['target'], '.1f'):>7s} {'yes' if row['met'] else 'NO':>4s} "
            f"{_fmt(row['scratch_peak_mb'], '7.1f')} {_fmt(row['keras_peak_mb'], '8.1f')}{flops}")


def write_report(path, data):
    """Atomic write (a reader never sees half a file), world-readable like the other reports."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-bench-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=str)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def environment():
    from . import keras_runner as kr

    env = kr.environment()
    import tensorflow as tf

    env.update(python=platform.python_version(), machine=platform.machine(),
               tf_intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
               tf_inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads())
    env.update(bt.blas_info())
    return env


def selected(all_cases):
    only = [p.strip() for p in os.environ.get("BENCH_ONLY", "").split(",") if p.strip()]
    return [c for c in all_cases if not only or any(fnmatch.fnmatchcase(c.name, p) for p in only)]


def main():
    full = os.environ.get("BENCH", "").lower() == "full"
    busy = os.environ.get("BENCH_BUSY", "") not in ("", "0")
    t0 = time.perf_counter()
    env = environment()
    load_before = bt.load()
    todo = selected(cases(full=full))
    print(f"make bench ({'full' if full else 'default'}{', with a busy neighbour' if busy else ''}): "
          f"{len(todo)} cases; load average {load_before['load1']:.2f} on {load_before['cpus']} CPUs; "
          f"BLAS {os.path.basename(env.get('engine_blas') or '?')} ({env.get('engine_blas_threads')} threads, "
          f"the engine runs it single-threaded from {env['engine_pool_workers']} pool threads); "
          f"oneDNN {'on' if env.get('onednn_enabled') else 'off'}", flush=True)
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    rows = []
    neighbour = bt.BusyNeighbour() if busy else None
    if neighbour:
        neighbour.__enter__()
    try:
        for case in todo:
            row = run_case(case)
            rows.append(row)
            print(format_row(row), flush=True)
    finally:
        if neighbour:
            neighbour.__exit__(None, None, None)
    load_after = bt.load()
    wall = time.perf_counter() - t0
    ok = [r for r in rows if r["status"] == "ok"]
    print(f"\n{sum(r['met'] for r in ok)}/{len(ok)} measured cases meet their target; "
          f"{len(rows) - len(ok)} not measured. Load average {load_before['load1']:.2f} before, "
          f"{load_after['load1']:.2f} after; {wall:.0f} s.")
    data = dict(mode="full" if full else "default", busy_neighbour=busy, wall_s=wall, load_before=load_before,
                load_after=load_after, environment=env, command=" ".join(sys.argv),
                method=dict(timing=bt.__doc__.split("\n\n")[1], memory=bt.__doc__.split("\n\n")[2]),
                predict_mode="unfused (the path the tests verify)",
                cases=rows, time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_report(REPORT, data)
    print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
