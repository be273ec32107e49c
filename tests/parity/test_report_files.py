"""Report artifacts are readable by other users (an artifact server), whatever the umask."""

import os
import stat

from parity.report import write_atomic, write_junit

def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)

def test_atomic_writes_are_0644_even_under_a_strict_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "parity.md", "# report\n")
        result = {"passed": True, "layers": [{"name": "dense", "class_name": "Dense", "depth": 1, "passed": True}],
                  "first_diverging": None}
        write_junit(tmp_path / "parity.xml", "m.h5", result, 0.1)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "parity.md") == 0o644
    assert _mode(tmp_path / "parity.xml") == 0o644
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_the_suite_page_shows_the_latest_bench(tmp_path):
    import json

    from parity.suite_page import bench_section

    assert "run <code>make bench</code>" in "".join(bench_section(str(tmp_path / "bench.json"), None))
    (tmp_path / "bench.json").write_text(json.dumps({"mode": "default", "cases": [
        {"case": "conv", "scratch_s": 0.5, "keras_s": 1.0, "ratio": 0.5, "target": 0.8, "met": True},
        {"case": "vgg16", "scratch_s": 2.0, "keras_s": 1.0, "ratio": 2.0, "target": 0.8, "met": False}]}))
    table = lambda headers, rows, classes: repr((rows, classes))   # noqa: E731
    html = "".join(bench_section(str(tmp_path / "bench.json"), table))
    assert "1 of 2 cases meet their target" in html
    assert "'2.00', '0.80'" in html and "'not met'" in html and "['ok', 'fail']" in html


def test_the_bench_section_writes_load_averages_as_numbers(tmp_path):
    import json

    from parity.report import html_table
    from parity.suite_page import bench_section

    (tmp_path / "bench.json").write_text(json.dumps({"mode": "default", "cases": [],
        "load_before": {"load1": 0.98779296875, "load5": 1.0185546875, "load15": 2.16455078125, "cpus": 2},
        "load_after": {"load1": 1.2211914, "load5": 1.1088867, "load15": 2.0878906, "cpus": 2}}))
    html = "".join(bench_section(str(tmp_path / "bench.json"), html_table))
    assert "0.99 / 1.02 / 2.16 on 2 CPUs before and 1.22 / 1.11 / 2.09 on 2 CPUs after" in html
    assert "{" not in html and "load1" not in html
