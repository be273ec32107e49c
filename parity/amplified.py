"""The amplified-rounding judge applied end to end, as ``make zoo`` and ``parity check`` both use it.

A model that amplifies its own rounding (EfficientNetV2 with random weights, a difference of two
large nearly equal sums) makes Keras float32 itself miss Keras float64 by more than the forward
rule, so a correct scratch can fail the direct comparison. ``compare_end_to_end`` runs the direct
rule first; only when a node fails it does it ask for Keras's float64 twin (``parity.keras_truth``;
a model that passes pays nothing) and judge the failing nodes again by
``parity.tolerance.compare_to_truth`` (scratch no further from the twin than Keras float32 is, plus
the rule). ``truth_summary`` and ``truth_text`` are the numbers and the words every report gives.
"""

from .compare import compare_layers, tolerance_overrides


def compare_end_to_end(keras_outputs, scratch_outputs, infos=None, *, keras_truth=None, truth=None, atol=None,
                       rtol=None):
    """``compare_layers`` by the direct rule; if it fails, again with the amplified-rounding judge.

    ``keras_truth`` is a callable returning Keras's float64 twin's outputs ({name: array}); it is
    called only when the direct rule fails, never with ``atol``/``rtol`` overrides (they replace the
    policy, the judge extends it). ``result["keras_truth"]`` says whether the judge was used and,
    when it could not be (the callable raised: a tf_keras model has no Keras 3 twin), why; when
    used it holds ``truth_summary``. ``truth`` (scratch rerun in float64) is ``compare_layers``'s.
    """
    result = compare_layers(keras_outputs, scratch_outputs, infos, truth=truth, atol=atol, rtol=rtol)
    if result["passed"]:
        return result
    if keras_truth is None:
        result["keras_truth"] = dict(used=False, reason="turned off (--no-keras-truth)")
        return result
    if tolerance_overrides(atol, rtol):
        result["keras_truth"] = dict(used=False, reason="not with --atol/--rtol overrides (they replace the policy)")
        return result
    try:
        twin = keras_truth()
    except Exception as exc:  # noqa: BLE001 - no twin: the direct verdict stands, and the report says why
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        result["keras_truth"] = dict(used=False, reason=f"Keras could not build its float64 twin: {reason}")
        return result
    result = compare_layers(keras_outputs, scratch_outputs, infos, truth=truth, keras_truth=twin)
    result["keras_truth"] = dict(used=True, **truth_summary(result))
    return result


def truth_summary(result):
    """The failing nodes the judge saw (``truth_judged``), how many of them Keras float32 itself
    misses its float64 twin at beyond the rule (``truth_amplified``), and the worst of them against
    the twin (``truth_worst_*``, with Keras float32's own err/tol there)."""
    judged = [r for r in result["layers"] if "vs_truth" in r]
    amplified = [r for r in judged if r["vs_truth"]["amplified"]]
    top = max(judged, key=lambda r: r["vs_truth"]["headroom"], default=None)
    return dict(truth_judged=len(judged), truth_amplified=len(amplified),
                truth_worst_layer=top and top["name"], truth_worst_ratio=top and top["vs_truth"]["headroom"],
                truth_worst_keras_ratio=top and top["vs_truth"]["keras_headroom"])


def truth_text(summary):
    """'vs Keras's float64 twin (N nodes, Keras float32 beyond the rule at M): R (layer; Keras float32 K)'."""
    return (f"vs Keras's float64 twin ({summary['truth_judged']} nodes, Keras float32 beyond the rule at "
            f"{summary['truth_amplified']}): {summary['truth_worst_ratio']:.3f} ({summary['truth_worst_layer']}; "
            f"Keras float32 {summary['truth_worst_keras_ratio']:.3g})")


def row_text(row):
    """A judged row's words: 'passed by ...' or 'failed ...', scratch's err/tol against the twin and
    Keras float32's own beside it ('' for a row the judge did not see)."""
    v = row.get("vs_truth")
    if not v:
        return ""
    verdict = "passed by the amplified-rounding judge" if row.get("judged_by") else "fails the float64-truth judge too"
    return (f"{verdict}: vs Keras float64 err/tol scratch {v['headroom']:.3g}, Keras float32 {v['keras_headroom']:.3g}"
            f"{' (amplified)' if v['amplified'] else ''}")


def judge_line(result):
    """One line for every report on the amplified-rounding judge ('' when the direct rule decided alone
    because everything passed it)."""
    kt = result.get("keras_truth")
    if not kt:
        return ""
    if not kt["used"]:
        return f"amplified-rounding judge: not used, {kt['reason']}; the direct rule decides"
    return f"amplified-rounding judge (Keras's float64 twin) used on the nodes failing the direct rule: {truth_text(kt)}"
