"""valle/plan.py: the settings chosen from the minutes of speech and the number of speakers."""

import pytest

from valle.errors import UserError
from valle.plan import choose_settings


def values(plan) -> dict:
    return {name: choice.value for name, choice in plan.flags().items()}


@pytest.mark.parametrize("minutes, speakers, expected", [
    # 1 min of one voice: adapters at half the rate, the shortest run, validated every 10 steps
    (1, 1, dict(adapter="lora", base_lr=0.005, max_steps=100, num_epochs=50, warmup_steps=10, valid_interval=10,
                eval_interval=20)),
    # 10 min of one voice: adapters at the default rate, 30 passes of 15 batches
    (10, 1, dict(adapter="lora", base_lr=0.01, max_steps=450, num_epochs=30, warmup_steps=45, valid_interval=40,
                 eval_interval=80)),
    # 10 min from 5 voices: 2 min per voice, so half the rate again
    (10, 5, dict(adapter="lora", base_lr=0.005, max_steps=450, num_epochs=30, warmup_steps=45, valid_interval=40,
                 eval_interval=80)),
    # an hour: every weight, at half the default rate, 10 passes of 90 batches
    (60, 1, dict(adapter="none", base_lr=0.005, max_steps=900, num_epochs=10, warmup_steps=90, valid_interval=90,
                 eval_interval=180)),
    (60, 8, dict(adapter="none", base_lr=0.005, max_steps=900, num_epochs=10, warmup_steps=90, valid_interval=90,
                 eval_interval=180)),
    # ten hours from many speakers: the default rate, 5 passes of 900 batches
    (600, 40, dict(adapter="none", base_lr=0.01, max_steps=4500, num_epochs=5, warmup_steps=200, valid_interval=450,
                   eval_interval=900)),
])
def test_settings_for_minutes_and_speakers(minutes, speakers, expected):
    plan = choose_settings(minutes, speakers)
    assert plan.method.value == ("lora" if expected["adapter"] == "lora" else "full")
    assert values(plan) == pytest.approx(expected)
    assert all(choice.reason for choice in plan.flags().values())


def test_lora_runs_are_capped_and_big_batches_mean_fewer_steps():
    assert choose_settings(59, 1).max_steps.value == 2000  # 30 x 89 steps would be 2670
    assert "capped at 2000" in choose_settings(59, 1).max_steps.reason
    assert choose_settings(10, 1, batch_seconds=80).max_steps.value == 240  # 30 x 8
    assert choose_settings(6000, 100).valid_interval.value == 1000


def test_learning_rate_follows_the_optimizer_default():
    assert choose_settings(1, 1, optimizer="adamw").base_lr.value == pytest.approx(5e-5)
    assert "adamw default 0.0001" in choose_settings(1, 1, optimizer="adamw").base_lr.reason


def test_no_codec_no_probe():
    plan = choose_settings(10, 1, has_codec=False)
    assert plan.eval_interval.value == 0
    assert "--codec-weights" in plan.eval_interval.reason


def test_describe_shows_each_choice_with_its_reason():
    lines = choose_settings(10, 1).describe(source="data/check.json").splitlines()
    assert lines[0] == "settings from the data: 10.0 min of speech from 1 speaker (data/check.json):"
    assert len(lines) == 8
    assert lines[1].startswith("  --adapter lora ") and "under 60 min" in lines[1]
    assert lines[2].startswith("  --base-lr 0.01 ")


def test_a_given_flag_wins_and_the_rest_follow_from_it():
    plan = choose_settings(10, 1, given={"max_steps": 100, "adapter": "none"})
    assert values(plan) == pytest.approx(dict(adapter="none", base_lr=0.005, max_steps=100, num_epochs=7,
                                              warmup_steps=10, valid_interval=10, eval_interval=20))
    assert plan.max_steps.reason == plan.method.reason == "(your flag)"
    assert any(line.split()[:4] == ["--max-steps", "100", "(your", "flag)"] for line in plan.describe().splitlines())
    # epochs alone: no step limit, the intervals of a 4-epoch run (60 steps)
    plan = choose_settings(10, 1, given={"num_epochs": 4})
    assert (plan.max_steps.value, plan.valid_interval.value, plan.warmup_steps.value) == (0, 10, 6)
    # --max-steps 0 (no limit) alone: the planned length sets the epochs and the intervals
    plan = choose_settings(10, 1, given={"max_steps": 0})
    assert (plan.num_epochs.value, plan.valid_interval.value) == (30, 40)


@pytest.mark.parametrize("minutes, speakers", [(0, 1), (float("nan"), 1), (5, 0)])
def test_nothing_to_plan_for_is_one_line(minutes, speakers):
    with pytest.raises(UserError, match="prepare the data first"):
        choose_settings(minutes, speakers)
