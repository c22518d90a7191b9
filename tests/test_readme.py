"""The README is the user's reference: every built-in metric must appear there with its kind and direction."""

import re
from pathlib import Path

from metrics.registry import METRIC_REGISTRY

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_metric_table_matches_registry():
    text = README.read_text(encoding="utf-8")
    rows = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(r"^\| `(\w+)` \| (\w+) \| (\w+) \|", text, re.M)}
    expected = {name: (info.kind, info.direction) for name, info in METRIC_REGISTRY.items()}
    assert rows == expected


def test_readme_commands_are_the_makefile_targets():
    text = README.read_text(encoding="utf-8")
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert f"make {target}" in text
        assert re.search(rf"^{target}:", makefile, re.M)
    assert re.search(r"^make test$", ci, re.M)
