"""The per-layer table as text (terminal, parity.md): one row per compared layer or operation of a
``compare.compare_layers`` result, the legend that explains its columns, and the line that says which
tolerance was in force."""

import math

from .amplified import row_text


def overrides_line(overrides):
    """One line for every report: the tolerance in force is never silent."""
    if not overrides:
        return "tolerance: the policy (parity/tolerance.py), no overrides"
    given = ", ".join(f"--{k} {v:g}" for k, v in overrides.items())
    return f"tolerance: OVERRIDDEN by {given} (the policy's values were not used for these)"


def format_table(result, *, max_name=36):
    """The per-layer table printed by the CLI."""
    head = (f"{'#':>3} {'layer':<{max_name}} {'class':<20} {'shape':<18} {'red':>6} "
            f"{'max abs':>10} {'max rel':>10} {'eps':>8} {'%beyond':>8} {'atol':>9} {'err/tol':>8}  status")
    lines = [head, "-" * len(head)]
    truthy = any("truth" in r for r in result["layers"])
    if truthy:
        lines[0] += "  truth: keras / scratch err (further)"
    for r in result["layers"]:
        name = r["name"] if len(r["name"]) <= max_name else "…" + r["name"][-max_name + 1:]
        shape = "x".join("?" if d is None else str(d) for d in r["shape"])
        if "max_abs" in r:
            line = (f"{r['depth']:>3} {name:<{max_name}} {r['class_name'][:20]:<20} {shape[:18]:<18} "
                    f"{r['reduction']:>6} {r['max_abs']:>10.3e} {_fmt_rel(r['max_rel']):>10} "
                    f"{r['eps_units']:>8.1f} {100 * r['frac_beyond']:>8.3f} {r['atol']:>9.2e} "
                    f"{_fmt_rel(r.get('headroom', 0.0)):>8}  "
                    f"{'ok' if r['passed'] else 'FAIL'}")
            t = r.get("truth")
            if t:
                line += f"  {t['keras_max_abs']:.2e} / {t['scratch_max_abs']:.2e} ({t['further']})"
            if "vs_truth" in r:
                line += f"  {row_text(r)}"
        else:
            line = (f"{r['depth']:>3} {name:<{max_name}} {r['class_name'][:20]:<20} {shape[:18]:<18} "
                    f"{r['reduction']:>6}  FAIL: {r['reason']}")
        lines.append(line)
    if result["first_diverging"]:
        lines.append(f"first diverging layer: {result['first_diverging']}: {result['first_diverging_reason']}")
    else:
        lines.append("first diverging layer: none (every layer within tolerance)")
    return "\n".join(lines)


def _fmt_rel(x):
    return "inf" if not math.isfinite(x) else f"{x:.3e}" if x < 1e6 else ">1e6"


# What every column of the per-layer tables means, printed under each (terminal, parity.md, index.html).
LEGEND = ("reduction (red): the longest chain of sums behind one element; atol grows with its square root. "
          "max abs / max rel / mean abs: scratch vs Keras. eps (units): max abs in machine epsilons of the dtype "
          "times max(1, largest |Keras value|). % beyond: elements outside tolerance. atol (used): the absolute "
          "tolerance for that layer. err/tol: the largest error / (atol + rtol*|Keras|); below 1 passes, and how "
          "far below is the headroom. Keras / scratch vs f64: each float32 side's max abs error against scratch "
          "rerun in float64 (the truth run); further from truth: which side is further.")
