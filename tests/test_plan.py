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


# ------------------------------------------------------------------- the trainer's side: valle/commands/train.py

def tiny_manifest(folder, seconds_by_speaker: dict) -> None:
    """cuts_train.jsonl.gz with one cut per (speaker, seconds) and the tokenizer file; no audio is needed."""
    import json

    from lhotse import CutSet, MonoCut, SupervisionSegment

    cuts = [MonoCut(f"{spk}-{i}", 0, s, 0, supervisions=[SupervisionSegment(f"{spk}-{i}", f"{spk}-{i}", 0, s,
                                                                             speaker=spk)])
            for spk, durations in seconds_by_speaker.items() for i, s in enumerate(durations)]
    folder.mkdir(parents=True)
    CutSet.from_cuts(cuts).to_file(folder / "cuts_train.jsonl.gz")
    (folder / "text_tokenizer.json").write_text(json.dumps({"name": "vallex", "vocab": {}}))


def parsed(tokenized, exp, *flags):
    from valle.commands.train import parse_args

    return parse_args(["--manifest-dir", str(tokenized), "--exp-dir", str(exp), "--init-checkpoint", "vallex",
                       *flags])


def test_trainer_plans_from_the_cuts_and_keeps_the_flags_given(tmp_path):
    import json

    from valle.commands.train import settle

    tiny_manifest(tmp_path / "data" / "tokenized", {"a": [6.0] * 50, "b": [6.0] * 50})  # 10 min, 2 speakers
    cfg, _, given = parsed(tmp_path / "data" / "tokenized", tmp_path / "exp", "--max-steps", "50", "--shuffle", "no")
    assert given == {"max_steps": 50}
    plan, source = settle(cfg, given)
    assert (plan.minutes, plan.num_speakers) == (pytest.approx(10.0), 2)
    assert source == f"the training cuts in {tmp_path / 'data' / 'tokenized'}"
    assert (cfg.adapter.adapter, cfg.optim.base_lr, cfg.train.max_steps, cfg.train.valid_interval) == \
        ("lora", 0.01, 50, 10)
    assert cfg.train.eval_interval == 0  # no --codec-weights: no probe

    # the data check's usable minutes and the speakers who have any win over the cuts
    speakers = {"a": {"minutes": 70.0, "usable_minutes": 60.5}, "b": {"minutes": 30.0, "usable_minutes": 30.0},
                "c": {"minutes": 2.0, "usable_minutes": 0.0}}
    (tmp_path / "data" / "check.json").write_text(json.dumps({"verdict": "...", "speakers": speakers}))
    cfg, _, given = parsed(tmp_path / "data" / "tokenized", tmp_path / "exp", "--codec-weights", "random")
    plan, source = settle(cfg, given)
    assert (plan.minutes, plan.num_speakers) == (90.5, 2)
    assert source == f"usable speech in {tmp_path / 'data' / 'check.json'}"
    assert (cfg.adapter.adapter, cfg.train.eval_interval) == ("none", 2 * cfg.train.valid_interval)


def test_resumed_run_keeps_its_plan_and_scratch_runs_have_none(tmp_path):
    from valle.commands.train import plan_record, settle
    from valle.training import run_folder

    tokenized, exp = tmp_path / "data" / "tokenized", tmp_path / "exp"
    tiny_manifest(tokenized, {"a": [6.0] * 10})
    exp.mkdir()
    run_folder.write_json(exp / "plan.json", plan_record(choose_settings(33, 1), "earlier"))
    cfg, _, given = parsed(tokenized, exp, "--resume", "true", "--base-lr", "0.02")
    plan, source = settle(cfg, given)
    assert plan.minutes == 33 and source == f"this run's {exp / 'plan.json'}"
    assert (cfg.train.max_steps, cfg.optim.base_lr, plan.base_lr.reason) == (1500, 0.02, "(your flag)")

    cfg, _, given = parsed(tokenized, tmp_path / "scratch", "--init-checkpoint", "none")
    assert settle(cfg, given) is None and cfg.train.valid_interval == 500  # the flags' defaults
