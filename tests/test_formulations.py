"""Formulations: templates, lettered options, k-shot exemplars from a seeded non-overlapping pool, BIG-bench's own
few-shot convention, triggers and chain-of-thought settings, and one-line errors."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from logprob.formulations import BUILT_IN, Formulation, FormulationError, load_formulations, render, resolve
from logprob.tasks import Item, Task, load_jsonl, load_task

FIXTURES = Path(__file__).parent / "fixtures"


def jsonl(path: Path, rows) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sums(tmp_path):
    rows = [{"id": f"q{i}", "context": f"{i}+{i}=", "choices": [f" {2 * i}", f" {2 * i + 1}"], "target": 0}
            for i in range(6)]
    return load_jsonl(jsonl(tmp_path / "sums.jsonl", rows))


@pytest.fixture
def pool(tmp_path):
    rows = [{"id": f"p{i}", "context": f"{i}+1=", "choices": [f" {i + 1}", f" {i + 2}"], "target": 0}
            for i in range(10, 20)]
    return jsonl(tmp_path / "pool.jsonl", rows)


def test_template_instruction_and_trigger_by_hand(sums):
    f = Formulation("qa", template="Q: {context}\nA:", instruction="Add.", trigger=" Think.", separator="\n\n")
    item = render(sums, f).items[1]
    assert item.context == "Add.\n\nQ: 1+1=\nA: Think."
    assert item.choices == (" 2", " 3") and item.target == (0,)


def test_letters_list_the_choices_and_score_letters(sums):
    item = render(sums, BUILT_IN["letters"]).items[2]
    assert item.context == "2+2=\nA. 4\nB. 5\nAnswer:"
    assert item.choices == (" A", " B") and item.target == (0,)


def test_k_shot_exemplars_are_seeded_from_the_pool_and_never_an_evaluated_item(sums, pool):
    f = Formulation("qa-3shot", template="{context}", shots=3, pool=str(pool), seed=7, separator="\n")
    rendered = render(sums, f)
    pool_items = load_jsonl(pool).items
    for item in rendered.items:
        # independent reference: the documented draw, numpy's default_rng seeded by (seed, crc32(item id))
        rng = np.random.default_rng([7, zlib.crc32(item.item_id.encode())])
        chosen = [pool_items[j] for j in rng.choice(len(pool_items), size=3, replace=False)]
        expected = "\n".join(ex.context + ex.choices[0] for ex in chosen) + "\n" + \
            next(it.context for it in sums.items if it.item_id == item.item_id)
        assert item.context == expected
        evaluated = {it.context for it in sums.items}
        shots = item.context.split("\n")[:-1]
        assert not any(shot.startswith(c) for shot in shots for c in evaluated)
    assert render(sums, f).items == rendered.items  # reproducible
    assert render(sums, replace_seed(f, 8)).items != rendered.items


def replace_seed(f, seed):
    from dataclasses import replace
    return replace(f, seed=seed)


def test_a_pool_overlapping_the_evaluated_items_is_refused(sums, tmp_path):
    overlapping = jsonl(tmp_path / "bad_pool.jsonl", [{"id": "x", "context": "3+3=", "choices": [" 6"], "target": 0}])
    with pytest.raises(FormulationError, match="must not overlap the evaluated items"):
        render(sums, Formulation("k", shots=1, pool=str(overlapping)))
    with pytest.raises(FormulationError, match="needs a pool file"):
        render(sums, Formulation("k", shots=1))


def test_bigbench_k_shot_draws_from_the_task_itself_never_the_example_itself():
    task = load_task(FIXTURES / "bigbench" / "emoji_movie")
    rendered = render(task, Formulation("bb-2shot", shots=2, seed=1))
    data = json.loads((FIXTURES / "bigbench" / "emoji_movie" / "task.json").read_text())
    separator = data.get("few_shot_example_separator", "\n")
    by_id = {it.item_id: it for it in task.items}
    for item in rendered.items[:40]:
        original = by_id[item.item_id]
        assert item.context.endswith(original.context)
        shots = item.context[: -len(original.context)]
        example = item.item_id.split("/")[0]
        # the example's own prompt (its /mc or /gen twin shares it) never appears among its exemplars
        assert original.context + (original.continuations[0]) not in shots
        assert all(not other.item_id.startswith(example + "/") or other.context not in shots
                   for other in task.items)
        assert shots.endswith(separator) and shots.count("\nA: ") == 2
        if item.choices:
            assert item.choices == original.choices


def test_chain_of_thought_settings_travel_with_the_task(sums):
    rendered = render(sums, BUILT_IN["zero-shot-cot"])
    assert rendered.formulation == "zero-shot-cot" and rendered.answer_regex == r"(?i)answer is:?\s*(\S+)"
    assert rendered.items[0].context.endswith(" Let's think step by step.")
    assert render(sums, BUILT_IN["default"]).items == sums.items


@pytest.mark.parametrize("text, message", [
    ('[[formulation]]\nname = "a"\ntemplate = "no placeholder"\n', "field 'template'"),
    ('[[formulation]]\nname = "a"\nshots = -1\n', "field 'shots'"),
    ('[[formulation]]\nname = "a"\nanswer_regex = "no group"\n', "field 'answer_regex'"),
    ('[[formulation]]\nname = "a"\nchoices = "letters"\n', "needs {options}"),
    ('[[formulation]]\nname = "a"\ncolour = "red"\n', "unknown field 'colour'"),
    ('[[formulation]]\ntemplate = "{context}"\n', "missing field 'name'"),
    ('[[formulation]]\nname = "a"\n[[formulation]]\nname = "a"\n', "defined twice"),
    ("not toml [", "not valid TOML"),
])
def test_bad_formulation_files_are_one_line(tmp_path, text, message):
    path = tmp_path / "f.toml"
    path.write_text(text)
    with pytest.raises(FormulationError, match=message) as err:
        load_formulations(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_resolve_names_and_files(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[[formulation]]\nname = "qa"\ntemplate = "Q: {context}"\n')
    assert [f.name for f in resolve(["default", str(path), "letters"])] == ["default", "qa", "letters"]
    with pytest.raises(FormulationError, match="given twice"):
        resolve(["letters", "letters"])
    with pytest.raises(FormulationError, match="not a built-in"):
        resolve(["nonsense"])


def test_python_api_items_are_checked_too():
    with pytest.raises(FormulationError, match="field 'name'"):
        Formulation("bad name")
    task = Task("t", (Item("a", "x", references=("y",)),))
    assert render(task, Formulation("q", template="Q: {context}")).items[0].context == "Q: x"
