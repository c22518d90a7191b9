"""metrics.ladders: every known model's counts, computed from its config without torch (metrics.param_count), equal
what transformers builds from the same config (counted by logprob.model.count_parameters, the project's rule), and
the totals equal the sizes the model cards publish."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from logprob.model import count_parameters
from metrics.ladders import LADDERS, KnownModel, known_model, ladder, parse_step
from metrics.param_count import count_from_config

ALL = [m for models in LADDERS.values() for m in models]


@pytest.mark.parametrize("model", ALL, ids=[m.hub_id for m in ALL])
def test_counts_from_the_config_equal_transformers_on_the_meta_device(model: KnownModel):
    config = dict(model.config)
    kind = config.pop("model_type")
    with torch.device("meta"):  # shapes only: no memory, no download
        built = AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, **config))
    assert count_parameters(built) == (model.params, model.non_embedding_params)


#: Published sizes: the Pythia model cards' table (total and non-embedding, both suites), the parameter counts
#: transformers reports for GPT-2 (124,439,808; 354,823,168; 774,030,080) and OPT-125M (125,239,296).
PUBLISHED = {
    "EleutherAI/pythia-70m": (70_426_624, 18_915_328),
    "EleutherAI/pythia-160m": (162_322_944, 85_056_000),
    "EleutherAI/pythia-410m": (405_334_016, 302_311_424),
    "EleutherAI/pythia-1b": (1_011_781_632, 805_736_448),
    "EleutherAI/pythia-1.4b": (1_414_647_808, 1_208_602_624),
    "EleutherAI/pythia-2.8b": (2_775_208_960, 2_517_652_480),
    "EleutherAI/pythia-6.9b": (6_857_302_016, 6_444_163_072),
    "EleutherAI/pythia-12b": (11_846_072_320, 11_327_027_200),
    "openai-community/gpt2": (124_439_808, None),
    "openai-community/gpt2-medium": (354_823_168, None),
    "openai-community/gpt2-large": (774_030_080, None),
    "facebook/opt-125m": (125_239_296, None),
}


@pytest.mark.parametrize(("hub_id", "counts"), PUBLISHED.items())
def test_totals_equal_the_published_sizes(hub_id, counts):
    model = known_model(hub_id)
    assert model.params == counts[0]
    if counts[1] is not None:
        assert model.non_embedding_params == counts[1]
    if hub_id.startswith("EleutherAI/pythia"):
        deduped = known_model(hub_id + "-deduped")
        assert (deduped.params, deduped.non_embedding_params) == (model.params, model.non_embedding_params)


def test_ladders_are_smallest_first_and_carry_their_source():
    assert set(LADDERS) == {"pythia", "pythia-deduped", "gpt2", "opt", "qwen2.5", "smollm2", "olmo-2", "cerebras-gpt"}
    for name, models in LADDERS.items():
        sizes = [m.params for m in models]
        assert sizes == sorted(sizes), name
        assert all(m.ladder == name and m.source.startswith("https://") for m in models)


def test_pythia_tokens_per_step_and_training_tokens():
    model = known_model("EleutherAI/pythia-410m")
    assert model.tokens_per_step == 1024 * 2048 == 2_097_152
    assert model.training_tokens == 143_000 * 2_097_152 == 299_892_736_000  # the model card's count


def test_lookup_by_alias_case_and_revision():
    assert known_model("EleutherAI/pythia-v1.1-70m").hub_id == "EleutherAI/pythia-70m"
    assert known_model("eleutherai/PYTHIA-70M@step3000").hub_id == "EleutherAI/pythia-70m"
    assert known_model("gpt2").hub_id == "openai-community/gpt2"
    assert known_model("my-org/my-model") is None
    with pytest.raises(ValueError, match="known ladders: pythia, pythia-deduped, gpt2, opt, qwen2.5"):
        ladder("llama")
    assert parse_step("step143000") == 143_000 and parse_step("main") is None and parse_step("step") is None


def test_an_architecture_not_counted_is_refused():
    with pytest.raises(ValueError, match="model_type 'mamba' is not one scalelens counts"):
        count_from_config({"model_type": "mamba", "hidden_size": 8})
    with pytest.raises(ValueError, match="the config has no 'vocab_size'"):
        count_from_config({"model_type": "gpt_neox", "hidden_size": 8, "num_hidden_layers": 1})
