"""The README is the user's reference: its metric table is the registry's, and its claims about the shipped ladder
match the manifest."""

import re
from pathlib import Path

import pytest

from logprob.ladder import load_manifest
from metrics.registry import METRIC_REGISTRY, metric_table_markdown

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBERS = {"six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}


def test_readme_metric_table_is_the_registry():
    """The README's table is exactly `metric_table_markdown()`: every metric, taxonomy, kind, direction, definition
    and source as the registry states them (regenerate with `python -c "from metrics.registry import
    metric_table_markdown as m; print(m())"`)."""
    text = README.read_text(encoding="utf-8")
    table = metric_table_markdown()
    assert table in text
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(r"^\| `(\w+)` \| (\w+) \| (\w+) \| (\w+) \|", text, re.M)}
    assert rows == {name: (i.taxonomy, i.kind, i.direction) for name, i in METRIC_REGISTRY.items()}


def test_readme_counts_the_shipped_ladder():
    text = README.read_text(encoding="utf-8")
    n_models = len(load_manifest()["models"])
    said = re.search(r"scores the (\w+) small language models", text)
    assert said and NUMBERS[said.group(1)] == n_models
    assert f"is {said.group(1)} Llama-architecture" in text


def test_readme_commands_are_the_makefile_targets():
    text = README.read_text(encoding="utf-8")
    makefile = (README.parent / "Makefile").read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    for target in ("demo", "test"):
        assert f"make {target}" in text
        assert re.search(rf"^{target}:", makefile, re.M)
    assert re.search(r"^make test$", ci, re.M)


def test_every_report_option_is_documented(capsys):
    """Each option of `scalelens report` appears in the README (it once had an undocumented --bleu-tokenize)."""
    from logprob.cli import main

    with pytest.raises(SystemExit):
        main(["report", "--help"])
    options = set(re.findall(r"(--[a-z][a-z-]+)", capsys.readouterr().out)) - {"--help"}
    text = README.read_text(encoding="utf-8")
    assert "--bleu-tokenize" in options and sorted(o for o in options if o not in text) == []


def test_every_analyze_option_is_documented(capsys):
    """Each option of `scalelens analyze` appears in the README's section on results you already have."""
    from logprob.cli import main

    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    options = set(re.findall(r"(--[a-z][a-z-]+)", capsys.readouterr().out)) - {"--help"}
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Analyse results you already have"):text.index("## Python API")]
    assert "--x-reverse" in options and sorted(o for o in options if o not in section) == []


def test_every_score_option_is_documented(capsys):
    """Each option of `scalelens score` appears in the README, the scaling-out ones among them."""
    from logprob.cli import main

    with pytest.raises(SystemExit):
        main(["score", "--help"])
    options = set(re.findall(r"(--[a-z][a-z-]+)", capsys.readouterr().out)) - {"--help"}
    text = README.read_text(encoding="utf-8")
    assert {"--ladder", "--device-map", "--max-memory"} <= options
    assert sorted(o for o in options if o not in text) == []
    assert "torchrun --nproc_per_node 8 $(which scalelens) score" in text
