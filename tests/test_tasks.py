"""Task loading: real BIG-bench files, JSONL round trip, and one clear error per kind of bad input.

Expected prompts and targets below were written out by hand from the fixture files and BIG-bench's rule
(`bigbench/api/json_task.py`, bigbench 1.0.0): choices are listed in the order
`numpy.random.RandomState(42).permutation(sorted(choices))`, which for 4 choices is sorted indices [1, 3, 0, 2]
and for 5 choices [1, 4, 2, 0, 3]. They were cross-checked against BIG-bench's own `default_format_fn`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from logprob.tasks import Item, Task, TaskError, load_bigbench, load_jsonl, load_task, parse_bigbench, write_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "bigbench"
EMOJI = FIXTURES / "emoji_movie" / "task.json"
HINDU = FIXTURES / "hindu_knowledge" / "task.json"


# ------------------------------------------------------------------------------------------ real BIG-bench files


def test_emoji_movie_counts_and_ids():
    task = load_bigbench(EMOJI)
    assert task.name == "emoji_movie"
    assert task.source == str(EMOJI)
    assert len(task.items) == 200  # 100 examples, each with target_scores and target
    mc = [it for it in task.items if it.kind == "multiple_choice"]
    gen = [it for it in task.items if it.kind == "generative"]
    assert len(mc) == 100 and len(gen) == 100
    assert [it.item_id for it in task.items[:4]] == ["0/mc", "0/gen", "1/mc", "1/gen"]
    assert task.items[-1].item_id == "99/gen"
    assert all(len(it.choices) == 5 and len(it.target) == 1 for it in mc)


def test_emoji_movie_example_0_prompt_and_targets():
    mc, gen = load_bigbench(EMOJI).items[:2]
    # sorted: finding nemo, mr. smith goes to washington, se7en, the shining, the wolf of wall street
    # permutation [1, 4, 2, 0, 3] → mr. smith, the wolf, se7en, finding nemo, the shining
    prompt = (
        "\nQ: What movie does this emoji describe? 👧🐟🐠🐡"
        "\n  choice: mr. smith goes to washington"
        "\n  choice: the wolf of wall street"
        "\n  choice: se7en"
        "\n  choice: finding nemo"
        "\n  choice: the shining"
        "\nA: "
    )
    assert mc.context == prompt
    assert gen.context == prompt  # BIG-bench generates from the same input, choices listed
    assert mc.choices == ("finding nemo", "the wolf of wall street", "se7en", "the shining",
                          "mr. smith goes to washington")  # file order
    assert mc.target == (0,)
    assert gen.references == ("finding nemo",)
    assert gen.targets == (0,)


def test_emoji_movie_example_7_target_not_first():
    mc = load_bigbench(EMOJI).items[14]
    assert mc.item_id == "7/mc"
    assert mc.choices[mc.target[0]] == "the lord of the rings"
    # sorted: dial m for murder, gone girl, rebecca, schindler's list, the lord of the rings
    assert mc.context.endswith(
        "\n  choice: gone girl\n  choice: the lord of the rings\n  choice: rebecca"
        "\n  choice: dial m for murder\n  choice: schindler's list\nA: "
    )


def test_hindu_knowledge_counts_and_prompt():
    task = load_bigbench(HINDU)
    assert task.name == "hindu_knowledge"
    assert len(task.items) == 175
    assert all(it.kind == "multiple_choice" for it in task.items)
    # 169 examples with 4 choices, 5 with 5, one (example 13) with 6
    assert sorted(len(it.choices) for it in task.items) == [4] * 169 + [5] * 5 + [6]
    assert len(task.items[13].choices) == 6
    assert [it.item_id for it in task.items[:3]] == ["0", "1", "2"]
    first = task.items[0]
    # sorted: Brahma, Indra, Shiva, Vishnu; permutation [1, 3, 0, 2] → Indra, Vishnu, Brahma, Shiva
    assert first.context == (
        "\nQ: Which of the following Hindu deities do not belong to the group of three supreme divinities "
        "known as the Trimurti?\n  choice: Indra\n  choice: Vishnu\n  choice: Brahma\n  choice: Shiva\nA: "
    )
    assert first.choices == ("Vishnu", "Shiva", "Indra", "Brahma")
    assert first.target == (2,)  # "Indra": 1
    # example 86 has two correct answers: "Merchants": 1, "Artisans": 1
    two = task.items[86]
    assert two.choices == ("Teachers and priests", "Warriors", "Merchants", "Artisans")
    assert two.target == (2, 3)
    # sorted: Artisans, Merchants, Teachers and priests, Warriors → [1, 3, 0, 2]
    assert two.context.endswith("\n  choice: Merchants\n  choice: Warriors\n  choice: Artisans"
                                "\n  choice: Teachers and priests\nA: ")
    last = task.items[-1]
    assert last.item_id == "174"
    assert last.choices == ("Sunaina", "Sita", "Urmila", "Durga") and last.target == (0,)


def test_load_task_dispatch(tmp_path):
    assert load_task(HINDU).name == "hindu_knowledge"
    assert load_task(HINDU.parent).items == load_bigbench(HINDU).items  # a folder holding task.json
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": 1, "context": "c", "references": ["r"]}\n')
    assert load_task(path).items == (Item("1", "c", references=("r",)),)


def test_fixture_bytes_unchanged():
    import hashlib

    digests = {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (EMOJI, HINDU)}
    assert digests == {
        "emoji_movie": "cbcc9f1ff55bfa88815af3a68ac4db8d13cecb5a22cf70d05054f93facf71f50",
        "hindu_knowledge": "33dafd981a47604da25b382859bda9162bd39bef2a5134dc4f4d972c8bdfc402",
    }


# ---------------------------------------------------------------------------------------- BIG-bench formatting


def test_bigbench_custom_prefixes_and_no_appended_choices():
    data = {
        "name": "t",
        "task_prefix": "Solve.",
        "example_input_prefix": "\nIn: ",
        "example_output_prefix": "\nOut:",
        "append_choices_to_input": False,
        "examples": [{"input": "x", "target_scores": {"b": 0, "a": 1, "c": 1}}],
    }
    (item,) = parse_bigbench(data).items
    assert item.context == "Solve.\nIn: x\nOut:"
    assert item.choices == ("b", "a", "c") and item.target == (1, 2)  # both max-score choices are targets
    assert item.target_scores == (0.0, 1.0, 1.0)  # every score kept, in file order


def test_bigbench_custom_choice_prefix_three_choices():
    # 3 choices: RandomState(42).permutation(3) is [0, 1, 2], so the sorted order is kept.
    data = {"choice_prefix": " | ", "examples": [{"input": "q", "target_scores": {"z": 1, "y": 0, "x": 0.5}}]}
    (item,) = parse_bigbench(data, default_name="folder").items
    assert item.context == "\nQ: q | x | y | z\nA: "
    assert item.target == (0,) and item.target_scores == (1.0, 0.0, 0.5)  # graded: "x" earns half


def test_bigbench_generative_only_list_target_and_name_from_folder(tmp_path):
    folder = tmp_path / "my_task"
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps({"examples": [{"input": "hi", "target": ["a", "b"]}]}))
    task = load_task(folder)
    assert task.name == "my_task"
    (item,) = task.items
    assert item.item_id == "0" and item.references == ("a", "b") and item.targets == (0, 1)
    assert item.context == "\nQ: hi\nA: "


def test_bigbench_drops_exact_duplicates_keeping_indices():
    ex = {"input": "q", "target": "a"}
    task = parse_bigbench({"name": "t", "examples": [ex, dict(ex), {"input": "r", "target": "b"}]})
    assert [it.item_id for it in task.items] == ["0", "2"]


# ------------------------------------------------------------------------------------------------------ JSONL


def test_jsonl_round_trip(tmp_path):
    task = load_bigbench(EMOJI)
    path = write_jsonl(task, tmp_path / "emoji.jsonl")
    back = load_jsonl(path, task_name="emoji_movie")
    assert back.items == task.items
    assert back.name == "emoji_movie" and back.source == str(path)
    assert load_jsonl(path).name == "emoji"  # default: file stem


def test_jsonl_fields(tmp_path):
    path = tmp_path / "mix.jsonl"
    path.write_text(
        '{"id": 3, "context": "A", "choices": [" x", " y", " z"], "target": [2, 0]}\n'
        "\n"
        '{"id": "g", "context": "", "references": ["ok"]}\n',
        encoding="utf-8",
    )
    a, b = load_jsonl(path).items
    assert a == Item(item_id="3", context="A", choices=(" x", " y", " z"), target=(2, 0))
    assert a.continuations == (" x", " y", " z") and a.targets == (2, 0)
    assert b.kind == "generative" and b.continuations == ("ok",) and b.target == ()
    assert a.target_scores is None and b.target_scores is None


def test_jsonl_target_scores(tmp_path):
    """Graded credit per choice; without `target`, the targets are the highest-scoring choices (BIG-bench's rule)."""
    path = _jsonl(tmp_path, '{"id": "a", "context": "c", "choices": ["x", "y", "z"], "target_scores": [0.5, 1, 1]}',
                  '{"id": "b", "context": "c", "choices": ["x", "y"], "target": 1, "target_scores": [0, 2.5]}')
    a, b = load_jsonl(path).items
    assert (a.target, a.target_scores) == ((1, 2), (0.5, 1.0, 1.0))
    assert (b.target, b.target_scores) == ((1,), (0.0, 2.5))
    back = load_jsonl(write_jsonl(load_jsonl(path), tmp_path / "back.jsonl"))
    assert back.items == (a, b)


# ------------------------------------------------------------------------------------------ Item / Task in Python


def test_item_normalises_int_target_and_lists():
    item = Item(item_id="a", context="x", choices=["p", "q"], target=1)
    assert item.choices == ("p", "q") and item.target == (1,)
    assert Item(item_id="a", context="x", references=["r"]).references == ("r",)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"choices": ("a", "b"), "target": (5,)}, "'target': index 5 out of range for 2 choices"),
        ({"choices": ("a", "b"), "target": (-1,)}, "'target': index -1 out of range"),
        ({"choices": ("a", "b"), "target": ()}, "'target'"),
        ({"choices": ("a", "b"), "target": (True,)}, "'target'"),
        ({"choices": ("a", "a"), "target": 0}, "'choices': duplicate"),
        ({"choices": ("a", ""), "target": 0}, "'choices': entry 1"),
        ({"choices": "ab", "target": 0}, "'choices': expected a list"),
        ({}, "'choices'/'references'"),
        ({"choices": ("a",), "target": 0, "references": ("r",)}, "'choices' and 'references'"),
        ({"references": ("r",), "target": 0}, "'target': must be empty"),
        ({"choices": ("a", "b"), "target": 0, "target_scores": (1.0,)}, "'target_scores': expected a list of 2"),
        ({"choices": ("a", "b"), "target": 0, "target_scores": (1.0, float("nan"))}, "'target_scores': expected finite"),
        ({"choices": ("a", "b"), "target": 0, "target_scores": (0.0, 1.0)}, "'target': must be the choices with the "
                                                                             "highest target score [1], got [0]"),
        ({"references": ("r",), "target_scores": (1.0,)}, "'target_scores': only for multiple-choice items"),
    ],
)
def test_item_rejects(kwargs, field):
    with pytest.raises(TaskError, match="item 'a': fields? " + re.escape(field)):
        Item(item_id="a", context="x", **kwargs)


def test_item_rejects_bad_id_and_context():
    with pytest.raises(TaskError, match="field 'item_id'"):
        Item(item_id="", context="x", references=("r",))
    with pytest.raises(TaskError, match="item 'a': field 'context'"):
        Item(item_id="a", context=None, references=("r",))


def test_task_rejects_duplicate_ids_and_no_items():
    item = Item("a", "x", references=("r",))
    with pytest.raises(TaskError, match=r"items\[1\]: field 'item_id': duplicate id 'a'"):
        Task(name="t", items=(item, item))
    with pytest.raises(TaskError, match="no items"):
        Task(name="t", items=())


# ------------------------------------------------------------------------------------------------ bad JSONL


def _jsonl(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = '{"id": "a", "context": "c", "choices": ["x", "y"], "target": 0}'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target": 0', "not valid JSON"),
        ('["b"]', "expected a JSON object"),
        ('{"context": "c", "references": ["r"]}', "missing field 'id'"),
        ('{"id": "b", "references": ["r"]}', "missing field 'context'"),
        ('{"id": "b", "context": "c"}', "missing field 'choices' (with 'target') or 'references'"),
        ('{"id": "b", "context": "c", "choices": ["x"]}', "missing field 'target'"),
        ('{"id": 1.5, "context": "c", "references": ["r"]}', "field 'id': expected a string or an int"),
        ('{"id": "b", "context": 3, "references": ["r"]}', "field 'context': expected a string"),
        ('{"id": "b", "context": "c", "choices": "xy", "target": 0}', "field 'choices': expected a list"),
        ('{"id": "b", "context": "c", "choices": [], "target": 0}', "field 'choices': empty list"),
        ('{"id": "b", "context": "c", "choices": ["x", 2], "target": 0}', "field 'choices': entry 1"),
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target": 2}', "field 'target': index 2 out of range"),
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target": [0, 7]}', "field 'target': index 7"),
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target": []}', "field 'target': expected an int"),
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target": "0"}', "field 'target': expected an int"),
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target": 0.0}', "field 'target': expected an int"),
        ('{"id": "b", "context": "c", "references": []}', "field 'references': empty list"),
        ('{"id": "b", "context": "c", "references": [""]}', "field 'references': entry 0"),
        ('{"id": "b", "context": "c", "references": ["r"], "target": 0}', "field 'target': not allowed"),
        ('{"id": "b", "context": "c", "references": ["r"], "choices": ["x"]}', "'choices' and 'references'"),
        ('{"id": "b", "context": "c", "refs": ["r"]}', "unknown field 'refs'"),
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target_scores": [1]}', "'target_scores': expected a list"),
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target_scores": [1, "0"]}', "expected finite numbers"),
        ('{"id": "b", "context": "c", "choices": ["x", "y"], "target_scores": [0, 1], "target": 0}',
         "field 'target': must be the choices with the highest target score [1], got [0]"),
        ('{"id": "b", "context": "c", "references": ["r"], "target_scores": [1]}', "'target_scores': not allowed"),
        ('{"id": "a", "context": "c", "references": ["r"]}', "field 'id': duplicate id 'a' (first on line 1)"),
    ],
)
def test_jsonl_rejects(tmp_path, line, message):
    path = _jsonl(tmp_path, GOOD, "", line)  # the bad line is line 3
    with pytest.raises(TaskError) as err:
        load_jsonl(path)
    assert str(err.value).startswith(f"{path}: line 3: ")
    assert message in str(err.value)


def test_jsonl_int_and_string_ids_collide(tmp_path):
    path = _jsonl(tmp_path, '{"id": 1, "context": "c", "references": ["r"]}',
                  '{"id": "1", "context": "c", "references": ["r"]}')
    with pytest.raises(TaskError, match=r"line 2: field 'id': duplicate id '1' \(first on line 1\)"):
        load_jsonl(path)


def test_jsonl_empty_missing_and_not_utf8(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(TaskError, match=re.escape(str(empty)) + ": no items"):
        load_jsonl(empty)
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(TaskError, match=re.escape(str(missing)) + ": no such file"):
        load_jsonl(missing)
    with pytest.raises(TaskError, match=re.escape(str(missing)) + ": no such file"):
        load_task(missing)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"id": "a", "context": "caf\xe9", "references": ["r"]}\n')
    with pytest.raises(TaskError, match=re.escape(str(latin)) + ": not UTF-8"):
        load_jsonl(latin)


# -------------------------------------------------------------------------------------------- bad BIG-bench


def _bigbench(tmp_path: Path, examples, **fields) -> Path:
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"name": "t", **fields, "examples": examples}), encoding="utf-8")
    return path


OK_EXAMPLE = {"input": "q", "target_scores": {"a": 1, "b": 0}}


@pytest.mark.parametrize(
    ("example", "message"),
    [
        ("q", "expected a JSON object"),
        ({"target": "a"}, "missing field 'input'"),
        ({"input": 3, "target": "a"}, "field 'input': expected a string"),
        ({"input": "q"}, "missing field 'target_scores' or 'target'"),
        ({"input": "q", "target_scores": {}}, "field 'target_scores': expected a non-empty object"),
        ({"input": "q", "target_scores": ["a"]}, "field 'target_scores': expected a non-empty object"),
        ({"input": "q", "target_scores": {"a": "1"}}, "field 'target_scores': score of 'a' must be a number"),
        ({"input": "q", "target_scores": {"a": True}}, "field 'target_scores': score of 'a' must be a number"),
        ({"input": "q", "target_scores": {"a": 0, "b": 0}}, "field 'target_scores': the maximum score must be > 0"),
        ({"input": "q", "target_scores": {"a": -1, "b": -2}}, "field 'target_scores': the maximum score must be > 0"),
        ({"input": "q", "target_scores": {"a": 1, "b": 1}}, "field 'target_scores': every choice has score 1"),
        ({"input": "q", "target_scores": {"a": 1, "": 0}}, "field 'choices': entry 1 must be a non-empty string"),
        ({"input": "q", "target": []}, "field 'target': expected a non-empty string or a non-empty list"),
        ({"input": "q", "target": ""}, "field 'target': expected a non-empty string"),
        ({"input": "q", "target": ["a", 1]}, "field 'target': expected a non-empty string"),
        ({"input": "q", "target": 7}, "field 'target': expected a non-empty string"),
    ],
)
def test_bigbench_rejects_example(tmp_path, example, message):
    path = _bigbench(tmp_path, [OK_EXAMPLE, example])
    with pytest.raises(TaskError) as err:
        load_bigbench(path)
    assert str(err.value).startswith(f"{path}: example 1: ")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"examples": []}, "field 'examples': expected a non-empty list"),
        ({"examples": {"input": "q"}}, "field 'examples': expected a non-empty list"),
        ({"example_input_prefix": 1}, "field 'example_input_prefix': expected a string"),
        ({"choice_prefix": None}, "field 'choice_prefix': expected a string"),
        ({"append_choices_to_input": 0}, "field 'append_choices_to_input': expected true or false"),
        ({"examples": None}, "field 'examples': expected a non-empty list"),
        ({"name": ""}, "field 'name': expected a non-empty string"),
        ({"subtasks": [{}]}, "field 'subtasks': tasks with subtasks are not supported"),
    ],
)
def test_bigbench_rejects_task_fields(tmp_path, fields, message):
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"name": "t", "examples": [OK_EXAMPLE], **fields}))
    with pytest.raises(TaskError) as err:
        load_bigbench(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_bigbench_string_false_appends_choices_like_bigbench(caplog):
    # identify_odd_metaphor, logic_grid_puzzle and real_or_fake_text/easy write "false" as a string;
    # BIG-bench's `if append_choices_to_input:` is then true, so their prompts list the choices.
    data = {"append_choices_to_input": "false", "examples": [{"input": "q", "target_scores": {"b": 0, "a": 1}}]}
    (item,) = parse_bigbench(data, default_name="t").items
    assert item.context == "\nQ: q\n  choice: b\n  choice: a\nA: "  # 2 choices: permutation [1, 0]
    assert "append_choices_to_input" in caplog.text


def test_bigbench_parent_task_without_examples(tmp_path):
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"name": "parent", "description": "d"}))
    with pytest.raises(TaskError, match=re.escape(str(path)) + ": missing field 'examples'.*sub-folders"):
        load_bigbench(path)


def test_bigbench_rejects_malformed_json_and_top_level(tmp_path):
    path = tmp_path / "task.json"
    path.write_text('{"name": "t",\n "examples": [}')
    with pytest.raises(TaskError, match=re.escape(str(path)) + ": not valid JSON .*line 2"):
        load_bigbench(path)
    path.write_text("[1, 2]")
    with pytest.raises(TaskError, match=re.escape(str(path)) + ": expected a JSON object at the top level"):
        load_task(path)


def test_load_task_unknown_format_and_empty_folder(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n")
    with pytest.raises(TaskError, match=re.escape(str(csv)) + ": unknown task format '.csv'"):
        load_task(csv)
    with pytest.raises(ValueError, match="unknown task format"):  # TaskError is a ValueError
        load_task(tmp_path / "noext")
    with pytest.raises(TaskError, match=re.escape(str(tmp_path)) + ": folder has no task.json"):
        load_task(tmp_path)
