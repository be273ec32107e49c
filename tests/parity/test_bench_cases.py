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
