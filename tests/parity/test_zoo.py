"""A bounded slice of ``make zoo`` in every test run: one model of each family that scratch refused before.

Each model is built offline (``weights=None``) at its smallest input with random weights
(keras_ref/zoo.py), saved, and must pass per-layer parity end to end and layer by layer
(parity/zoo.py) under the unchanged tolerance policy. To fit ``make test``'s budget the wide
families run reduced: MobileNetV3Small at ``alpha=0.5``; NASNetMobile, ConvNeXtTiny and
EfficientNetB0 through their family's generic builder with fewer blocks and narrower stages
(``keras_ref.zoo.REDUCED``: the same cells, layer types and graph patterns). Xception and
InceptionResNetV2 have no width knob and run whole. Each model is proven from one format, the two
formats alternating (``make zoo`` proves both for every model).
"""

import pytest

from keras_ref import zoo as kzoo
from parity.zoo import run_model

pytest.importorskip("keras")
pytestmark = pytest.mark.slow



def reduced(name):
    builder, kwargs = kzoo.REDUCED[name]
    return dict(builder=builder, **kwargs)


SUBSET = {
    # name: (format, keras_ref.zoo.build kwargs)
    "MobileNetV3Small": ("h5", dict(alpha=0.5)),
    "EfficientNetB0": ("keras", reduced("EfficientNetB0")),
    "Xception": ("h5", {}),
    "NASNetMobile": ("keras", reduced("NASNetMobile")),
    "ConvNeXtTiny": ("h5", reduced("ConvNeXtTiny")),
    "InceptionResNetV2": ("keras", {}),
}


def _explain(row):
    lines = []
    for fmt, res in row["formats"].items():
        lines.append(f".{fmt}: {res['status']}: {res.get('reason', '')}")
        for part in ("end_to_end", "layer_by_layer"):
            if part in res and not res[part]["passed"]:
                lines.append(f"  {part}: first diverging {res[part]['first_diverging']}: "
                             f"{res[part]['first_diverging_reason']}")
    return "\n".join(lines)


@pytest.mark.parametrize("name", sorted(SUBSET))
def test_application_passes_per_layer_parity(name, tmp_path):
    fmt, kwargs = SUBSET[name]
    row = run_model(name, str(tmp_path / name), formats=(fmt,), **kwargs)
    res = row["formats"][fmt]
    assert row["status"] == "pass", f"{name}:\n{_explain(row)}"
    for part in ("end_to_end", "layer_by_layer"):
        # every node of the graph was compared, and the worst stays inside its tolerance
        assert res[part]["compared"] == res[part]["graph_nodes"] == row["nodes"]
        assert res[part]["worst_ratio"] < 1.0
    assert res["scratch_params"] == row["params"]
