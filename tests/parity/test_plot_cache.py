"""The report's figures are drawn once per distinct input (parity/suite_plot_cache.py)."""

import numpy as np

from parity import suite_plot_cache as pc


def _counting(tmp_path):
    calls = []

    def plot_thing(path, values, title, flag=True):
        calls.append(title)
        with open(path, "wb") as f:
            f.write(repr(values).encode() + title.encode())
        return None if flag else False

    (tmp_path / "img").mkdir()
    return pc.cached(plot_thing), calls, str(tmp_path / "img" / "x.png")


def test_the_same_inputs_copy_the_figure_other_inputs_draw_it(tmp_path):
    draw, calls, path = _counting(tmp_path)
    values = dict(steps=[dict(loss=1.5, w=np.arange(3, dtype=np.float32))])
    assert draw(path, values, "t") is None and len(calls) == 1
    first = open(path, "rb").read()
    open(path, "wb").write(b"")
    assert draw(path, values, "t") is None and len(calls) == 1 and open(path, "rb").read() == first
    bumped = dict(steps=[dict(loss=np.nextafter(1.5, 2.0), w=np.arange(3, dtype=np.float32))])
    draw(path, bumped, "t")
    draw(path, dict(steps=[dict(loss=1.5, w=np.arange(3, dtype=np.float64))]), "t")   # another dtype
    draw(path, dict(steps=[dict(loss=1.5, w=np.array([0, 1, 3], np.float32))]), "t")   # one element
    draw(path, values, "t2")
    assert len(calls) == 5
    assert draw(path, values, "t", flag=False) is False and draw(path, values, "t", flag=False) is False
    assert len(calls) == 6


def test_a_damaged_or_missing_copy_is_drawn_again(tmp_path):
    draw, calls, path = _counting(tmp_path)
    draw(path, [1.0], "t")
    folder = tmp_path / pc.FOLDER
    (meta,) = folder.glob("*.json")
    meta.write_text("{not json")
    draw(path, [1.0], "t")
    (png,) = folder.glob("*.png")
    png.unlink()
    draw(path, [1.0], "t")
    assert len(calls) == 3 and draw(path, [1.0], "t") is None and len(calls) == 3


def test_an_argument_it_cannot_fingerprint_is_drawn_every_time(tmp_path):
    draw, calls, path = _counting(tmp_path)
    draw(path, [1.0], "t", flag=object())
    draw(path, [1.0], "t", flag=object())
    assert len(calls) == 2
