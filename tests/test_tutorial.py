"""docs/TUTORIAL.md runs as written: every python block, in order, in one namespace."""

import re
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "TUTORIAL.md"


def test_every_code_block_of_the_tutorial_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 4
    namespace = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{TUTORIAL.name} block {i + 1}", "exec"), namespace)   # the tutorial's asserts run
    printed = capsys.readouterr().out
    assert printed.count("PASS") == 2 and "FAIL" not in printed
