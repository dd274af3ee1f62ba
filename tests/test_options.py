"""Options check themselves: the command's flags and the page's fields go through the same check and say the
same line (training, synthesis, evaluation)."""

from __future__ import annotations

import pytest

from valle.app import compare, synthesis, training
from valle.app.workspace import Workspace
from valle.commands import evaluate, infer, train
from valle.config import AdapterConfig, DataConfig, TrainConfig
from valle.errors import UserError


def one_line(call) -> str:
    with pytest.raises(UserError) as e:
        call()
    return str(e.value)


@pytest.mark.parametrize(("flags", "fields", "message"), [
    (["--num-epochs", "0"], {"num_epochs": 0}, "--num-epochs 0: need 1 or more"),
    (["--valid-interval", "-5"], {"valid_interval": -5}, "--valid-interval -5: need 1 or more"),
    (["--max-duration", "nan"], {"max_duration": float("nan")}, "--max-duration nan: need a value > 0"),
    (["--lora-rank", "0", "--adapter", "lora"], {"lora_rank": 0, "adapter": "lora"}, "--lora-rank 0: need 1 or more"),
])
def test_training_options_say_the_same_from_the_flags_and_the_page(tmp_path, flags, fields, message):
    assert one_line(lambda: train.parse_args(flags)) == message
    ws = Workspace(tmp_path, 1.0)
    assert one_line(lambda: training.trainer_argv(ws, training.TrainOptions(**fields))) == message


def test_the_page_model_half_is_checked_by_the_trainer_config(tmp_path):
    options = training.TrainOptions(model_name="all")
    assert one_line(lambda: training.trainer_argv(Workspace(tmp_path, 1.0), options)) == \
        "--model-name all: use ar, nar or both"


def test_training_defaults_are_written_once():
    page = training.TrainOptions()
    assert (page.num_epochs, page.valid_interval, page.max_duration, page.lora_rank) == \
        (TrainConfig.num_epochs, TrainConfig.valid_interval, DataConfig.max_duration, AdapterConfig.lora_rank)


@pytest.mark.parametrize(("flags", "fields", "message"), [
    (["--language", "fr"], {"language": "fr"}, "--language: unknown language 'fr'; use one of en, zh, ja, mix"),
    (["--prompt-language", "mix"], {"prompt_language": "mix"},
     "--prompt-language 'mix': a transcript has one language, one of en, zh, ja"),
    (["--top-p", "0"], {"top_p": 0.0}, "--top-p 0.0: need a value in (0, 1] (1 = off)"),
])
def test_synthesis_options_say_the_same_from_the_flags_and_the_page(flags, fields, message):
    args = infer.build_parser().parse_args(["--text", "Hello.", *flags])
    assert one_line(lambda: infer.check_args(args)) == message
    assert one_line(lambda: synthesis.check_options(synthesis.SynthOptions("vallex", "Hello.", **fields))) == message


def test_evaluation_options_say_the_same_from_the_flags_and_the_page(tmp_path):
    args = evaluate.build_parser().parse_args(["--checkpoint", "vallex", "--num-utterances", "-1"])
    message = "--num-utterances -1: need 0 (all) or more"
    assert one_line(lambda: evaluate.check_args(args)) == message
    options = compare.CompareOptions(["vallex"], num_utterances=-1)
    assert one_line(lambda: compare.run_compare(Workspace(tmp_path, 1.0), options)) == message
