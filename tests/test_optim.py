"""ScaledAdam, Eden and the optimizer builders (valle/training/optim.py)."""

import io
import json
import logging
import math
from pathlib import Path

import pytest
import scaled_adam_problem
import torch

from valle.config import OptimConfig
from valle.errors import UserError
from valle.training.optim import ClippedAdamW, ScaledAdam, build_optimizer, build_scheduler
from valle.training.schedule import Eden

ICEFALL = Path(__file__).parent / "data" / "icefall_scaled_adam.json"

D = 8


class Toy(torch.nn.Module):
    """Two linear layers and a scalar gain: y = gain * head(tanh(encoder(x)))."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(D, 16)
        self.head = torch.nn.Linear(16, D)
        self.gain = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.gain * self.head(torch.tanh(self.encoder(x)))


def make_batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    w_true = torch.randn(D, D, generator=g) * 0.3
    xs = [torch.randn(32, D, generator=g) for _ in range(n)]  # each (32, D)
    return [(x, x @ w_true.T + 0.5) for x in xs]


def train(model, opt, batches, sched=None):
    losses = []
    for x, y in batches:
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step_batch()
        losses.append(loss.item())
    return losses


def toy_model(seed=0):
    torch.manual_seed(seed)
    return Toy()


def rms(t):
    return t.detach().pow(2).mean().sqrt().item()


# ------------------------------------------------------------------------------- ScaledAdam


def test_toy_regression_converges(single_thread):
    model = toy_model()
    opt = ScaledAdam(list(model.named_parameters()), lr=0.05)
    sched = Eden(opt, lr_batches=1000, lr_epochs=4, warmup_batches=20)
    losses = train(model, opt, make_batches(300), sched)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first / 50, (first, last)
    assert model.gain.item() != 1.0  # the scalar was trained too
    assert opt.last_grad_norm is not None and opt.last_grad_norm > 0


def test_first_update_is_lr_times_param_rms_times_sign():
    # Step 0: exp_avg_sq = (1-b2) g^2, bias-corrected to g^2, so grad/denom = sign(g) and the update is
    # -lr * (1 - beta1) * max(rms, param_min_rms) * sign(g) element-wise.
    lr, beta1, min_rms = 0.05, 0.9, 1e-3
    big = torch.nn.Parameter(torch.randn(4, 5) * 0.7)
    tiny = torch.nn.Parameter(torch.randn(4, 5) * 1e-7)
    before_big, before_tiny = big.detach().clone(), tiny.detach().clone()
    opt = ScaledAdam([("big", big), ("tiny", tiny)], lr=lr, betas=(beta1, 0.98), param_min_rms=min_rms)
    g = torch.randn(4, 5)
    big.grad, tiny.grad = g.clone(), g.clone()
    opt.step()
    expect_big = -lr * (1 - beta1) * rms(before_big) * g.sign()
    expect_tiny = -lr * (1 - beta1) * min_rms * g.sign()
    torch.testing.assert_close(big.detach() - before_big, expect_big, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(tiny.detach() - before_tiny, expect_tiny, rtol=1e-4, atol=1e-12)


def fit_scaled_identity(max_rms, steps=300):
    """Fit w to 5 * I (rms 5/sqrt(8) = 1.77); returns the largest rms seen and the final rms."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(D, D) * 0.1)
    opt = ScaledAdam([("w", w)], lr=0.05, param_max_rms=max_rms, clipping_scale=None)
    seen = []
    for _ in range(steps):
        x = torch.randn(32, D)
        loss = ((x @ w.T - 5.0 * x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(rms(w))
    return max(seen), seen[-1]


def test_param_max_rms_limits_growth(single_thread):
    free_max, free_last = fit_scaled_identity(max_rms=3.0)
    assert free_last == pytest.approx(5 / math.sqrt(D), rel=0.02)  # converges when the cap is not binding
    capped_max, capped_last = fit_scaled_identity(max_rms=0.5)
    assert capped_max < 0.5 * 1.15 and capped_last > 0.45, (capped_max, capped_last)


def test_scalar_learns_and_is_clamped(single_thread):
    def run(scalar_max):
        a = torch.nn.Parameter(torch.tensor(1.0))
        opt = ScaledAdam([("a", a)], lr=0.2, scalar_max=scalar_max)
        for _ in range(300):
            x = torch.randn(64)
            loss = ((a * x - 2.5 * x) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return a.item()

    assert run(10.0) == pytest.approx(2.5, abs=0.05)
    assert run(1.5) == 1.5


def test_clipping_scales_a_gradient_spike_and_names_the_dominant_tensor(caplog):
    model = toy_model()
    opt = ScaledAdam(list(model.named_parameters()), lr=0.05, clipping_update_period=50)
    train(model, opt, make_batches(120))
    threshold = opt._clip["threshold"]
    assert threshold is not None and threshold > 0
    x, y = make_batches(1, seed=7)[0]
    second_moment = opt.state[model.encoder.weight]["exp_avg_sq"].max().item()
    loss = ((model(x) - y) ** 2).mean() + 1e4 * model.encoder.weight.pow(2).sum()
    opt.zero_grad()
    loss.backward()
    # last_grad_norm is the norm of each tensor's gradient times its rms (scalars: times scalar_lr_scale).
    expected = math.sqrt(sum(
        ((p.grad * (0.1 if p.numel() == 1 else opt.state[p]["param_rms"])) ** 2).sum().item()
        for p in model.parameters()))
    with caplog.at_level(logging.WARNING, logger="valle.training.optim"):
        opt.step()
    assert opt.last_grad_norm == pytest.approx(expected, rel=1e-4)
    assert opt.last_grad_norm > 100 * threshold
    assert opt.last_clip_factor < 0.01
    assert opt.last_grad_norm * opt.last_clip_factor <= threshold * (1 + 1e-6)
    assert "clipping threshold" in caplog.text
    assert "tensors dominating the gradient norm: encoder.weight (100.0%), " in caplog.text
    # The clipped spike did not blow up the Adam statistics (unclipped it would, by ~1e8).
    assert opt.state[model.encoder.weight]["exp_avg_sq"].max().item() < 2 * second_moment


def test_clipping_threshold_is_clipping_scale_times_median(caplog):
    w = torch.nn.Parameter(torch.ones(3, 3))
    opt = ScaledAdam([("w", w)], lr=0.0, clipping_scale=2.0, clipping_update_period=100)
    with caplog.at_level(logging.INFO, logger="valle.training.optim"):
        for step in range(11):  # the first estimate is at step 10
            w.grad = torch.full((3, 3), float(step + 1))  # norm: |grad| * rms(w)=1 over 9 elements = 3 (step + 1)
            opt.step()
            assert opt._clip["threshold"] is None or step == 10
    # As icefall: the norms of steps 1..10 (step 0's is never recorded: 6 9 ... 33), "median" = the 5th of 10
    # (index 10 // 4 * 2), doubled for an early estimate.
    assert opt._clip["threshold"] == pytest.approx(2.0 * 18.0 * 2.0)
    assert "grad-norm quartiles 6.000e+00 1.200e+01 1.800e+01 2.400e+01 3.000e+01" in caplog.text


@pytest.mark.parametrize("run", range(len(scaled_adam_problem.RUNS)),
                         ids=[f"accum{a}-beta2_{b[1]}-period{p}" for a, b, p in scaled_adam_problem.RUNS])
def test_scaled_adam_and_eden_match_icefall_step_for_step(single_thread, run):
    # Recorded with icefall's own ScaledAdam/Eden (tests/data/SOURCES.md): 200 steps at lr 0.05 with warmup, epochs,
    # gradient spikes that are clipped, beta2 0.95 (bias correction dropped from step 90) and gradient accumulation.
    reference = json.loads(ICEFALL.read_text())
    ref = reference["runs"][run]
    ours = scaled_adam_problem.run(ScaledAdam, Eden, reference["init"], ref["accum_grad"], tuple(ref["betas"]),
                                   ref["clipping_update_period"])
    assert ours["lr"] == pytest.approx(ref["lr"], rel=1e-10)
    for step, params in ref["params"].items():
        want = torch.cat([torch.tensor(v) for v in params.values()])
        got = torch.cat([torch.tensor(v) for v in ours["params"][step].values()])
        assert (got - want).abs().max() <= 1e-5 * want.abs().max(), f"step {step}"
    assert (got - torch.cat([torch.tensor(v) for v in reference["init"].values()])).abs().max() > 0.1  # it trained


def test_a_tensor_without_gradient_still_moves_with_its_momentum():
    # icefall steps every parameter of the optimizer: a missing gradient counts as zero.
    a, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2, 2))
    opt = ScaledAdam([("a", a), ("b", b)], lr=0.1, clipping_scale=None)
    a.grad, b.grad = torch.ones(2, 2), torch.ones(2, 2)
    opt.step()
    before, momentum = b.detach().clone(), opt.state[b]["delta"].clone()
    a.grad, b.grad = torch.ones(2, 2), None
    opt.step()
    assert (momentum < 0).all()
    torch.testing.assert_close(b.detach() - before, 0.9 * momentum)  # beta1 x the last update


def test_unnamed_params_get_positional_names(caplog):
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = ScaledAdam([w], lr=0.01, clipping_update_period=20)
    for _ in range(12):
        w.grad = torch.ones(2, 2)
        opt.step()
    w.grad = torch.full((2, 2), 1e6)
    with caplog.at_level(logging.WARNING, logger="valle.training.optim"):
        opt.step()
    assert "param_groups[0].params[0] (100.0%)" in caplog.text


def test_parameters_names_argument():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    opt = ScaledAdam([a, b], parameters_names=[["a", "b"]])
    assert opt._param_name(0, 1) == "b"
    with pytest.raises(ValueError, match="2 names for a group of 1"):
        ScaledAdam([a], parameters_names=[["a", "b"]])


def test_nonfinite_gradient_skips_the_update(caplog):
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = ScaledAdam([("w", w)])
    w.grad = torch.tensor([[1.0, float("inf")], [0.0, 1.0]])
    with caplog.at_level(logging.WARNING, logger="valle.training.optim"):
        opt.step()
    assert torch.equal(w.detach(), torch.ones(2, 2))
    assert math.isinf(opt.last_grad_norm) and opt.last_clip_factor == 0.0
    assert "skipping this update" in caplog.text


def test_grad_scaler_unscales_before_scaled_adam():
    batches = make_batches(20)
    plain = toy_model()
    train(plain, ScaledAdam(list(plain.named_parameters())), batches)
    scaled = toy_model()
    opt = ScaledAdam(list(scaled.named_parameters()))
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for x, y in batches:
        opt.zero_grad()
        scaler.scale(((scaled(x) - y) ** 2).mean()).backward()
        scaler.step(opt)
        scaler.update()
    for p, q in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def roundtrip(obj_state):
    buf = io.BytesIO()
    torch.save(obj_state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_state_dict_round_trip_resumes_bit_exactly():
    batches = make_batches(40)

    def fresh():
        model = toy_model()
        opt = ScaledAdam(list(model.named_parameters()), lr=0.05, clipping_update_period=25)
        return model, opt, Eden(opt, lr_batches=30, lr_epochs=2, warmup_batches=10)

    model, opt, sched = fresh()
    full = train(model, opt, batches, sched)

    model, opt, sched = fresh()
    first = train(model, opt, batches[:17], sched)
    saved = roundtrip({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()})
    del model, opt, sched
    model, opt, sched = fresh()
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    rest = train(model, opt, batches[17:], sched)

    assert first + rest == full  # identical losses, float for float
    reference = toy_model()
    ref_opt = ScaledAdam(list(reference.named_parameters()), lr=0.05, clipping_update_period=25)
    train(reference, ref_opt, batches, Eden(ref_opt, lr_batches=30, lr_epochs=2, warmup_batches=10))
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(opt._clip.pop("norms"), ref_opt._clip.pop("norms")) and opt._clip == ref_opt._clip


def test_load_state_dict_from_another_optimizer_is_refused():
    w = torch.nn.Parameter(torch.ones(2))
    adamw_state = torch.optim.AdamW([w]).state_dict()
    with pytest.raises(UserError, match="not saved by ScaledAdam"):
        ScaledAdam([w]).load_state_dict(adamw_state)


# ------------------------------------------------------------------------------------ Eden


def eden_formula(base, step, epoch, B, E, warmup, start):
    w = 1.0 if step >= warmup else start + (1 - start) * step / warmup
    return base * ((step ** 2 + B ** 2) / B ** 2) ** -0.25 * ((epoch ** 2 + E ** 2) / E ** 2) ** -0.25 * w


@pytest.mark.parametrize("step,epoch", [(0, 0), (1, 0), (100, 0), (199, 1), (200, 1), (5000, 3), (20000, 10)])
def test_eden_matches_formula(step, epoch):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.05)
    sched = Eden(opt, lr_batches=5000, lr_epochs=4, warmup_batches=200, warmup_start=0.5)
    sched.step_epoch(epoch)
    sched.step_batch(step)
    expected = eden_formula(0.05, step, epoch, 5000, 4, 200, 0.5)
    assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)


def test_eden_golden_values_and_counting():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
    sched = Eden(opt, lr_batches=100, lr_epochs=2, warmup_batches=10, warmup_start=0.2)
    assert sched.get_last_lr() == [pytest.approx(0.2)]  # set at construction
    for _ in range(5):
        sched.step_batch()
    assert sched.batch == 5
    assert sched.get_last_lr()[0] == pytest.approx(0.6 * (1.0025 ** -0.25))
    sched.step_batch(100)
    sched.step_epoch()
    sched.step_epoch()
    # step 100 = B and epoch 2 = E: each decay factor is 2^-0.25, no warmup
    assert sched.get_last_lr()[0] == pytest.approx(2 ** -0.5)
    assert opt.param_groups[0]["initial_lr"] == 1.0


def test_eden_state_dict_and_multiple_groups():
    a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    sched = Eden(opt, lr_batches=50, lr_epochs=3, warmup_batches=5)
    sched.step_batch(30)
    sched.step_epoch(1)
    state = roundtrip(sched.state_dict())
    lrs = sched.get_last_lr()
    assert lrs[0] == pytest.approx(10 * lrs[1])
    opt2 = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    sched2 = Eden(opt2, lr_batches=50, lr_epochs=3, warmup_batches=5)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == lrs and (sched2.batch, sched2.epoch) == (30, 1)


@pytest.mark.parametrize("field,value,flag", [
    ("lr_steps", 0, "--lr-steps"), ("lr_epochs", -1, "--lr-epochs"),
    ("warmup_steps", -5, "--warmup-steps"), ("warmup_start", 1.5, "--warmup-start"),
])
def test_eden_rejects_bad_values_and_the_builder_names_the_flag(field, value, flag):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    name = {"lr_steps": "lr_batches", "warmup_steps": "warmup_batches"}.get(field, field)
    with pytest.raises(ValueError, match=f"Eden: {name} must be"):
        Eden(opt, **{"lr_batches": 10, "lr_epochs": 2, name: value})
    # the config's own bounds (check_fields) or the scheduler's check: either way one line naming the flag
    with pytest.raises(UserError, match=rf"^({flag} {value}: need .*|Eden: {name} must be .*: change {flag})$"):
        build_scheduler(opt, OptimConfig(**{field: value}))


@pytest.mark.parametrize("field,value,flag", [
    ("base_lr", -1.0, "--base-lr"), ("clipping_scale", -2.0, "--clipping-scale"),
    ("clipping_update_period", 0, "--clipping-update-period"),
])
def test_scaled_adam_rejects_bad_values_and_the_builder_names_the_flag(field, value, flag):
    kwarg = {"base_lr": "lr"}.get(field, field)
    with pytest.raises(ValueError, match=f"ScaledAdam: {kwarg} must be"):
        ScaledAdam([torch.nn.Parameter(torch.ones(2))], **{kwarg: value})
    with pytest.raises(UserError, match=rf"^({flag} {value}: need .*|ScaledAdam: {kwarg} must be .*: change {flag})$"):
        build_optimizer(toy_model().named_parameters(), OptimConfig(**{field: value}))


# -------------------------------------------------------------------------------- builders


def test_build_scaled_adam_uses_only_trainable_params():
    model = toy_model()
    model.head.requires_grad_(False)
    opt = build_optimizer(model.named_parameters(), OptimConfig(clipping_update_period=1000))
    assert isinstance(opt, ScaledAdam)
    assert opt.param_groups[0]["param_names"] == ["gain", "encoder.weight", "encoder.bias"]
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["betas"] == (0.9, 0.95)
    assert (opt.clipping_scale, opt.clipping_update_period) == (2.0, 1000)
    assert build_optimizer(model.named_parameters(), OptimConfig(base_lr=0.05)).param_groups[0]["lr"] == 0.05


def test_build_adamw_trains_with_eden_and_clips(single_thread):
    model = toy_model()
    opt = build_optimizer(model.named_parameters(), OptimConfig(optimizer="adamw", base_lr=3e-3, weight_decay=0.01))
    assert isinstance(opt, ClippedAdamW)
    decay, no_decay = opt.param_groups
    assert decay["param_names"] == ["encoder.weight", "head.weight"] and decay["weight_decay"] == 0.01
    assert no_decay["param_names"] == ["gain", "encoder.bias", "head.bias"]
    assert no_decay["weight_decay"] == 0.0
    sched = build_scheduler(opt, OptimConfig(lr_steps=1000, lr_epochs=4, warmup_steps=20))
    losses = train(model, opt, make_batches(300), sched)
    assert sum(losses[-10:]) < sum(losses[:10]) / 20
    assert sched.get_last_lr()[0] == pytest.approx(eden_formula(3e-3, 300, 0, 1000, 4, 20, 0.5))
    # a spike is clipped to max_grad_norm
    x, y = make_batches(1, seed=3)[0]
    opt.zero_grad()
    (1e6 * ((model(x) - y) ** 2).mean()).backward()
    opt.step()
    assert opt.last_grad_norm > 1e3 and opt.last_clip_factor == pytest.approx(1.0 / opt.last_grad_norm)
    saved = roundtrip(opt.state_dict())
    opt2 = build_optimizer(model.named_parameters(), OptimConfig(optimizer="adamw", base_lr=3e-3))
    opt2.load_state_dict(saved)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


def test_build_optimizer_errors():
    model = toy_model()
    with pytest.raises(UserError, match="--optimizer sgd: use scaled_adam or adamw"):
        build_optimizer(model.named_parameters(), OptimConfig(optimizer="sgd"))
    model.requires_grad_(False)
    with pytest.raises(UserError, match="no trainable parameters"):
        build_optimizer(model.named_parameters(), OptimConfig())
