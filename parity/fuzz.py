"""The project's own fuzzer: hostile files, configs and inputs against ``scratch.load`` and ``parity check``.

``python -m parity.fuzz --cases 2000`` (``make fuzz``) runs the generators of ``parity.fuzz_cases``
round-robin over their classes, each case in its own forked child with an address-space limit
(``RLIMIT_AS``, default 2 GiB) and a wall-clock limit (default 30 s), and prints one table row per
class. Accepted outcomes:

- API cases (``scratch.load(...).predict(x)``): ``ok`` (a successful run) or ``refused`` (a
  ``ScratchError``); for the ``code`` class (Lambda / foreign modules smuggled anywhere into a
  config) only an ``UnsupportedLayerError``: a run that succeeds is a failure too;
- CLI cases (``--cli N``: ``parity.cli.main(["check", ...])``): exit 0, 1 or 2 with no traceback
  on stderr and no "internal error".

Everything else is a failure and is listed with its case, so it can be replayed
(``--only CLASS:INDEX``) and pinned in tests/scratch/test_hostile_*.py: ``foreign`` (another
exception escaped; the site is its innermost frame), ``timeout``, ``memory`` (MemoryError or a
resident size above the limit), ``crash`` (the child died). The exit code is 1 when any case
failed. Cases are deterministic: the same class and index always give the same bytes.
"""

import argparse
import json
import os
import resource
import select
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # forked children must not inherit BLAS threads
os.environ.setdefault("OMP_NUM_THREADS", "1")

from . import fuzz_cases  # noqa: E402

ACCEPTED = ("ok", "refused", "exit0", "exit1", "exit2")
GIB = 1024 ** 3


def run_api(case, folder, max_bytes):
    import numpy as np

    import scratch

    import inspect

    config = str(folder / case.config) if case.config else None
    # (an engine without the budget argument can be fuzzed too: the "before" table of the issue)
    kw = {"max_bytes": max_bytes} if "max_bytes" in inspect.signature(scratch.load).parameters else {}
    try:
        model = scratch.load(folder / case.model, config=config, **kw)
        if case.inputs is not None:
            xs = case.inputs
        else:
            xs = []
            for shape, dtype in zip(model.input_shapes, model.input_dtypes):
                dims = [2] + [3 if d is None else min(int(d), 64) for d in (shape or [None, None])[1:]]
                xs.append(np.ones(dims, dtype=dtype))
        model.predict(xs if len(xs) > 1 else xs[0])
        if case.expect == "refusal":   # code in the config that loads is a path around the safety check
            return dict(outcome="foreign", site="code in the config was not refused")
        return dict(outcome="ok")
    except scratch.ScratchError as exc:
        if case.expect == "refusal" and not isinstance(exc, scratch.UnsupportedLayerError):
            return dict(outcome="foreign", site=f"{type(exc).__name__} instead of UnsupportedLayerError",
                        message=str(exc)[:300])
        return dict(outcome="refused", error=type(exc).__name__, message=str(exc)[:300])
    except MemoryError:
        return dict(outcome="memory", site="MemoryError")
    except RecursionError:
        return dict(outcome="foreign", site="RecursionError")
    except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return dict(outcome="foreign", site=f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}",
                    message=str(exc)[:300])


def run_cli(case, folder, max_bytes):
    import contextlib
    import io

    from . import cli

    main = cli.main
    argv = ["check", str(folder / case.model), "--samples", "2"]
    if hasattr(cli, "memory_size"):   # (an older CLI without --max-memory can be fuzzed too)
        argv += ["--max-memory", str(max_bytes)]
    if case.config:
        argv += ["--config", str(folder / case.config)]
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except BaseException as exc:  # noqa: BLE001 - an exception escaping main is a traceback for the user
        return dict(outcome="foreign", site=f"{type(exc).__name__} escaped main: {str(exc)[:120]}")
    text = err.getvalue()
    if "Traceback" in text or "internal error" in text or rc not in (0, 1, 2):
        return dict(outcome="foreign", site=f"exit {rc}: {text.strip().splitlines()[-1:] or ['']}"[:200])
    if rc == 2 and len(text.strip().splitlines()) != 1:
        return dict(outcome="foreign", site=f"exit 2 with {len(text.strip().splitlines())} stderr lines")
    if case.expect == "refusal" and rc != 2:
        return dict(outcome="foreign", site=f"code in the config ran to exit {rc}")
    return dict(outcome=f"exit{rc}")


class _Child:
    """One case running in a forked child: its pipe, deadline and the bytes it has written so far."""

    def __init__(self, case, max_bytes, mem_limit, timeout):
        self.case, self.mem_limit = case, mem_limit
        self.tmp = tempfile.TemporaryDirectory(prefix="fuzz-")
        folder = Path(self.tmp.name)
        for name, data in case.files.items():
            (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
        self.r, w = os.pipe()
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + timeout
        self.chunks = []
        self.pid = os.fork()
        if self.pid == 0:   # the child: limits first, then the case; never returns
            os.close(self.r)
            code = 0
            try:
                limit = mem_limit * (4 if case.cli else 1)   # TensorFlow reserves address space it never touches
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                result = (run_cli if case.cli else run_api)(case, folder, max_bytes)
                os.write(w, json.dumps(result).encode())
            except BaseException:  # noqa: BLE001 - a child must always exit
                code = 3
            finally:
                os._exit(code)
        os.close(w)

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self._close()
        return dict(outcome="timeout", seconds=time.perf_counter() - self.t0)

    def finish(self):
        _, status, usage = os.wait4(self.pid, 0)
        self._close()
        seconds = time.perf_counter() - self.t0
        if not self.chunks:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            return dict(outcome="crash", site=f"child died (signal {sig}, status {status})", seconds=seconds)
        result = json.loads(b"".join(self.chunks))
        rss = usage.ru_maxrss * 1024
        if rss > self.mem_limit and result["outcome"] in ACCEPTED:
            result = dict(outcome="memory", site=f"resident {rss / GIB:.2f} GiB")
        result["seconds"] = seconds
        return result

    def _close(self):
        os.close(self.r)
        self.tmp.cleanup()


def run_cases(cases, max_bytes, mem_limit, timeout, jobs=1):
    """Yield ``(case, result)`` for each case, ``jobs`` children at a time, each under its limits."""
    todo, running = list(cases), {}
    while todo or running:
        while todo and len(running) < jobs:
            case = todo.pop(0)
            child = _Child(case, max_bytes, mem_limit, timeout * (3 if case.cli else 1))
            running[child.r] = child
        now = time.perf_counter()
        wait = max(0.0, min(c.deadline for c in running.values()) - now)
        ready, _, _ = select.select(list(running), [], [], wait)
        for fd in ready:
            child = running[fd]
            chunk = os.read(fd, 1 << 16)
            if chunk:
                child.chunks.append(chunk)
            else:
                del running[fd]
                yield child.case, child.finish()
        now = time.perf_counter()
        for fd in [fd for fd, c in running.items() if c.deadline <= now]:
            child = running.pop(fd)
            yield child.case, child.kill()


def run_case(case, max_bytes, mem_limit, timeout):
    """One case in a forked child under limits: its result dict (with ``seconds``)."""
    return next(run_cases([case], max_bytes, mem_limit, timeout))[1]


def plan(cases, cli, only=None, cli_classes=None):
    """(class, index, cli) triples: round-robin over the classes, then ``cli`` CLI cases."""
    if only:
        out = []
        for item in only.split(","):
            cls, _, idx = item.partition(":")
            out.append((cls.removeprefix("cli-"), int(idx), cls.startswith("cli-")))
        return out
    classes = list(fuzz_cases.GENERATORS)
    api = [(classes[k % len(classes)], k // len(classes), False) for k in range(cases)]
    cli_classes = cli_classes or [c for c in classes if c not in ("inputs", "graph")]
    return api + [(cli_classes[k % len(cli_classes)], 10_000 + k // len(cli_classes), True) for k in range(cli)]


def run(cases=2000, cli=0, max_bytes=512 * 1024 ** 2, mem_limit=2 * GIB, timeout=30.0, only=None, out=print,
        cli_classes=None, jobs=1):
    """Run the plan; returns (table rows per class, failures)."""
    import warnings

    import scratch  # noqa: F401 - imported once here, so that each forked child starts at once
    from . import cli as _cli  # noqa: F401

    warnings.filterwarnings("ignore", message="Duplicate name")   # the zip generator writes them on purpose
    seeds = fuzz_cases.load_seeds()
    table, failures = {}, []
    todo = plan(cases, cli, only, cli_classes)
    t0 = time.perf_counter()
    built = (fuzz_cases.make_case(cls, index, seeds, cli=is_cli) for cls, index, is_cli in todo)
    for done, (case, result) in enumerate(run_cases(built, max_bytes, mem_limit, timeout, jobs), 1):
        key = ("cli-" if case.cli else "") + case.cls
        row = table.setdefault(key, {})
        row[result["outcome"]] = row.get(result["outcome"], 0) + 1
        row["max_s"] = max(row.get("max_s", 0.0), result["seconds"])
        if result["outcome"] not in ACCEPTED:
            failures.append(dict(case=f"{key}:{case.index}", note=case.note, **result))
            print(f"  FAILED {key}:{case.index} ({case.note}): {result['outcome']}: {result.get('site', '')}",
                  file=sys.stderr, flush=True)
        if done % 100 == 0:
            print(f"  {done}/{len(todo)} cases, {len(failures)} failed, {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    out(format_table(table))
    for f in failures:
        out(f"FAILED {f['case']} ({f['note']}): {f['outcome']}: {f.get('site', '')} {f.get('message', '')[:160]}")
    return table, failures


def format_table(table):
    cols = ["ok", "refused", "exit0", "exit1", "exit2", "foreign", "timeout", "memory", "crash"]
    lines = [f"{'class':<20} {'cases':>6} " + " ".join(f"{c:>8}" for c in cols) + f" {'max s':>7}"]
    for key, row in table.items():
        n = sum(v for k, v in row.items() if k != "max_s")
        lines.append(f"{key:<20} {n:>6} " + " ".join(f"{row.get(c, 0):>8}" for c in cols) + f" {row['max_s']:>7.2f}")
    total = {c: sum(r.get(c, 0) for r in table.values()) for c in cols}
    lines.append(f"{'total':<20} {sum(total.values()):>6} " + " ".join(f"{total[c]:>8}" for c in cols))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m parity.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=2000, help="API cases, round-robin over the classes (default 2000)")
    p.add_argument("--cli", type=int, default=0, help="also run N cases through `parity check` (default 0)")
    p.add_argument("--cli-classes", help="comma-separated classes for the CLI cases (default: all file classes)")
    p.add_argument("--only", help="replay cases: CLASS:INDEX[,cli-CLASS:INDEX...]")
    p.add_argument("--jobs", type=int, default=1, help="cases running at once (default 1)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per API case (CLI: 3x; default 30)")
    p.add_argument("--mem-limit", type=float, default=2.0, help="GiB of address space per case (default 2)")
    p.add_argument("--max-bytes", type=int, default=512 * 1024 ** 2, help="scratch.load(max_bytes=) (default 512 MiB)")
    args = p.parse_args(argv)
    classes = args.cli_classes.split(",") if args.cli_classes else None
    _, failures = run(args.cases, args.cli, args.max_bytes, int(args.mem_limit * GIB), args.timeout, args.only,
                      cli_classes=classes, jobs=args.jobs)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
