"""``make bench``'s case list builds from the committed manifest, and its data loader still finds
the test split (a refactor that moved the loader once broke every committed-model case)."""

import numpy as np

from parity import bench, bench_cases


def test_the_default_cases_cover_every_committed_model_and_the_layer_cases():
    manifest = bench_cases._manifest()
    names = [c.name for c in bench_cases.cases()]
    classifiers = [n for n in manifest.names() if manifest.entry(n).kind == "classifier"]
    assert set(classifiers) <= set(names)
    assert any(n.startswith("Conv2D 3x3 64->64") for n in names) and any(n.startswith("Dense") for n in names)
    assert len(set(names)) == len(names)


def test_a_committed_classifier_gets_its_test_split():
    manifest = bench_cases._manifest()
    name = next(n for n in manifest.names() if manifest.entry(n).kind == "classifier")
    x = bench_cases._test_split(manifest.entry(name))["x"]
    assert isinstance(x, np.ndarray) and x.ndim == 4 and len(x) > 0


def test_a_case_that_fails_to_build_is_reported_not_raised():
    def broken():
        raise ImportError("cannot import name '_load_dataset'")

    row = bench.run_case(bench_cases.Case("broken", "layer forward", 0.8, broken))
    assert row["status"] == "error" and "_load_dataset" in row["reason"]
    assert "broken" in bench.format_row(row)


def test_no_side_is_timed_while_the_sgemm_references_blas_threads_still_spin(monkeypatch):
    """numpy's threaded sgemm leaves OpenBLAS's workers spinning after each call; a side timed in
    that window ran at half speed. The reference is timed after the pairs, then the bench waits."""
    calls = []
    monkeypatch.setattr(bench, "sgemm_side", lambda *shape: lambda: calls.append("sgemm"))
    monkeypatch.setattr(bench.bt, "let_blas_threads_sleep", lambda: calls.append("sleep"))
    monkeypatch.setattr(bench.bt, "scratch_peak_mb", lambda fn: 0.0)
    monkeypatch.setattr(bench.bt, "keras_peak_mb", lambda fn: 0.0)
    sides = dict(scratch=lambda: calls.append("scratch"), keras=lambda: calls.append("keras"))
    case = bench_cases.Case("layer", "layer forward", 0.8, lambda: sides, pairs=3, warmups=1, flops=1e9,
                            sgemm=(4, 4, 4))
    row = bench.run_case(case)
    assert row["status"] == "ok" and len(row["times"]["sgemm"]) == 3
    first_sgemm = calls.index("sgemm")
    assert "sgemm" in calls and set(calls[:first_sgemm]) == {"scratch", "keras"}
    assert set(calls[first_sgemm:-1]) == {"sgemm"} and calls[-1] == "sleep"
