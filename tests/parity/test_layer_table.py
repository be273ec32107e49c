"""``parity layers`` and the README's generated table come from the engine's one class table."""

import functools
from pathlib import Path

import scratch.layers
from parity import cli
from parity.layer_table import README_END, README_START, readme_section
from scratch.layers import LAYER_MODULES, catalog

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_layer_table_is_current():
    text = README.read_text(encoding="utf-8")
    assert README_START in text and README_END in text
    current = README_START + text.split(README_START, 1)[1].split(README_END, 1)[0] + README_END
    assert current == readme_section(catalog.catalog()), (
        "README's layer table is stale: run `parity layers --format markdown --update-readme README.md`")


def test_namespace_loader_and_catalog_list_the_same_classes():
    listed = {e["class"] for e in catalog.catalog()}
    assert listed == set(LAYER_MODULES) == set(scratch.layers.__all__)
    for name in LAYER_MODULES:
        assert getattr(scratch.layers, name).__name__ == name


def test_a_refused_setting_is_listed_with_its_reason(monkeypatch):
    # Make Conv2D refuse 'same': the catalog must move it to the refused list with the constructor's message.
    conv = scratch.layers.Conv2D
    original = conv.__init__

    @functools.wraps(original)   # keeps the signature the catalog reads
    def refuse_same(self, *args, padding="valid", **kwargs):
        if padding == "same":
            raise scratch.LayerError("padding='same' is switched off for this test")
        original(self, *args, padding=padding, **kwargs)

    monkeypatch.setattr(conv, "__init__", refuse_same)
    entry = catalog.describe("Conv2D")
    assert "same" not in entry["settings"]["padding"]
    assert entry["refused"]["padding"]["same"] == "padding='same' is switched off for this test"


def test_cli_layers_prints_every_class(capsys):
    assert cli.main(["layers"]) == 0
    out = capsys.readouterr().out
    for name in LAYER_MODULES:
        assert f"\n{name}  (" in "\n" + out
