"""One way to get a speaking model (load_for_inference) and one checked generation config (Sampling), shared by
valle infer, valle evaluate, the page and the trainer."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest
import torch

from valle.app.synthesis import SynthOptions, check_options
from valle.cli import ArgumentParser, add_sampling_arguments, sampling_from_args
from valle.config import MAX_FRAMES, Sampling
from valle.errors import UserError
from valle.inference import load_for_inference
from valle.text import get_tokenizer

TINY = Path(__file__).resolve().parent / "data" / "vallex_tiny"


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield


@pytest.mark.parametrize("change, flag", [
    (dict(top_k=-1), "--top-k -1"), (dict(top_k=2.5), "--top-k 2.5"), (dict(top_k=True), "--top-k True"),
    (dict(top_p=0.0), "--top-p 0.0"), (dict(top_p=1.5), "--top-p 1.5"), (dict(top_p=math.nan), "--top-p nan"),
    (dict(temperature=0.0), "--temperature 0.0"), (dict(temperature=math.inf), "--temperature inf"),
    (dict(temperature=math.nan), "--temperature nan"), (dict(seed=1.5), "--seed 1.5"),
    (dict(max_frames=0), "--max-frames 0"), (dict(max_frames=MAX_FRAMES + 1), f"--max-frames {MAX_FRAMES + 1}"),
    (dict(min_frames=-1), "min_frames -1"),
])
def test_sampling_refuses_out_of_range_values_naming_the_flag(change, flag):
    with pytest.raises(UserError) as e:
        Sampling(**change)
    assert str(e.value).startswith(flag + ":"), str(e.value)


def test_sampling_is_frozen_and_seeds_each_batch():
    s = Sampling(top_k=1, seed=7, max_frames=MAX_FRAMES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.top_k = 2
    assert s.for_batch(3) == dataclasses.replace(s, seed=10) and s.for_batch(0) == s
    assert Sampling().for_batch(3).seed is None  # unseeded stays unseeded
    with pytest.raises(UserError, match="--temperature"):  # a copy is checked too
        dataclasses.replace(s, temperature=-1.0)


def test_the_page_and_the_cli_share_one_check():
    """The page used to take an infinite temperature that valle infer refused: now both ask Sampling."""
    parser = ArgumentParser()
    add_sampling_arguments(parser)
    args = parser.parse_args(["--temperature", "inf", "--seed", "3"])
    with pytest.raises(UserError) as cli:
        sampling_from_args(args)
    with pytest.raises(UserError) as page:
        check_options(SynthOptions("vallex", "Hello.", temperature=math.inf))
    assert str(cli.value) == str(page.value) == "--temperature inf: need a finite temperature > 0"
    assert cli.value.api_message == "temperature inf: need a finite temperature > 0"  # the speech API's JSON field
    page_sampling = check_options(SynthOptions("vallex", "Hello.", top_k=5, seed=3, max_frames=0)).sampling
    assert page_sampling == sampling_from_args(argparse.Namespace(top_k=5, top_p=1.0, temperature=1.0, seed=3,
                                                                  max_frames=None))
    with pytest.raises(UserError, match="text: empty"):
        check_options(SynthOptions("vallex", " "))


def test_load_for_inference_released_layout_dtype_and_tokenizer():
    speaking = load_for_inference(TINY / "tiny.pt", device="cpu", precision="bf16", nhead=4)
    assert not speaking.model.training and speaking.device == "cpu" and speaking.dtype == torch.bfloat16
    assert {p.dtype for p in speaking.model.parameters()} == {torch.bfloat16}
    assert speaking.tokenizer.to_dict() == get_tokenizer("vallex").to_dict()  # the released file stores none
    with pytest.raises(UserError, match="--precision float8: use one of fp32, bf16, fp16, int8"):
        load_for_inference(TINY / "tiny.pt", device="cpu", precision="float8", nhead=4)
