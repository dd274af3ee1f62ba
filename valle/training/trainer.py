"""The fine-tuning loop: AMP, gradient accumulation, validation in optimizer steps, NaN guard,
early stopping, atomic checkpoints with exact resume, tensorboard, DDP under torchrun.

Over 400 lines on purpose: setup, the loop, validation and checkpoints are one class because they share one
state (model, optimizer, progress, ranks) that resume must restore as a whole. What stands alone lives beside
it: objective.py (what is trained), rng.py, samples.py (the validation sample), run_folder.py (the run folder)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from valle.config import ExperimentConfig, ModelConfig
from valle.data.dataset import make_loader, open_split, padding_ratio
from valle.device import device_type, resolve_dtype
from valle.errors import UserError
from valle.locks import folder_lock
from valle.models.adapters import (
    SCALED_ADAM_MIN_RMS,
    AdapterSpec,
    LoRA,
    attach,
    base_identity,
    check_base,
    load_overrides,
    parse_targets,
)
from valle.models.checkpoint import LoadedAdapter, load_adapter, load_model, load_pairs, save_adapter, save_checkpoint
from valle.models.layers import set_activation_checkpointing
from valle.models.valle import VALLE
from valle.storage import check_free_space, disk_full_error, is_disk_full, remove_partials
from valle.text import check_same_tokenizer, get_tokenizer, load_tokenizer_info, tokenizer_from_info
from valle.training import run_folder
from valle.training.distributed import (
    all_ranks_true,
    all_reduce_sum,
    cleanup_distributed,
    lost_rank_error,
    setup_distributed,
)
from valle.training.objective import Objective, select_trainable, trained_halves
from valle.training.optim import build_optimizer, build_scheduler
from valle.training.rng import RngStates
from valle.training.samples import AudioSampleWriter

log = logging.getLogger("valle.trainer")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 1  # current epoch (1-based)
    batches_in_epoch: int = 0  # micro-batches of the current epoch already consumed
    best_valid_loss: float = math.inf
    validations_without_improvement: int = 0
    bad_steps_in_a_row: int = 0
    # --eval-interval: ProbeResult dicts of the first probe (the model training started from), of the one
    # best-eval.pt holds, and of the fine-tuned one with the highest SIM; empty until probed
    baseline_eval: dict = field(default_factory=dict)
    best_eval: dict = field(default_factory=dict)
    closest_eval: dict = field(default_factory=dict)
    eval_probed_at: int = -1  # the step of the last evaluation probe


class Trainer:
    def __init__(self, cfg: ExperimentConfig, model_overrides: dict, eval_probe=None):
        """eval_probe: what speaks and scores at --eval-interval (`run(model, tokenizer, writer, step) ->
        ProbeResult`); None: valle.eval.probe.EvalProbe on the dev cuts."""
        self._held = contextlib.ExitStack()  # the experiment folder's lock, held until fit() ends
        try:
            self._setup(cfg, model_overrides, eval_probe)
        except BaseException:
            self._held.close()  # a run that could not start leaves the folder free at once
            raise

    def _setup(self, cfg: ExperimentConfig, model_overrides: dict, eval_probe) -> None:
        self.cfg, t = cfg, cfg.train
        self.exp_dir = Path(t.exp_dir)
        self.dist = setup_distributed(device_type(t.device), t.dist_timeout)
        self.device = self.dist.device(t.device)
        self.dtype = resolve_dtype(t.dtype, self.device)
        if self.dist.is_main:
            self._held.enter_context(folder_lock(self.exp_dir, "training"))
            run_folder.claim(self.exp_dir, t.resume, t.overwrite)
        all_reduce_sum([0.0], self.device)  # the other ranks wait for the folder to be claimed
        self._setup_logging()
        torch.manual_seed(t.seed + self.dist.rank)
        random.seed(t.seed + self.dist.rank)
        data_dir = cfg.data.shar_dir or cfg.data.manifest_dir
        self.tokenizer = load_tokenizer_info(data_dir)  # name + vocabulary, saved in checkpoints
        self.text_tokenizer = tokenizer_from_info(self.tokenizer, where=data_dir)
        self.model, resume_state = self._build_model(model_overrides)
        self.halves = trained_halves(t.model_name)
        # Before the optimizer exists, so resumed optimizer state lands there too. The half that is not
        # trained stays in host memory (an accelerator holds only what trains); generation brings it over.
        self.model.place(self.device, self.halves)
        self.cfg.model = self.model.config
        self.adapters = self._attach_adapters()  # None: full fine-tuning
        self.trainable = select_trainable(self.model, t.model_name, t.trainable, self.adapters)
        set_activation_checkpointing(self.model, t.activation_checkpointing)
        self.optimizer = build_optimizer(self.trainable, cfg.optim)
        if self.adapters is not None and cfg.optim.optimizer == "scaled_adam":
            for group in self.optimizer.param_groups:  # B starts at zero: see SCALED_ADAM_MIN_RMS
                group["param_min_rms"] = SCALED_ADAM_MIN_RMS
        self.scheduler = build_scheduler(self.optimizer, cfg.optim)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        # What last.pt holds beside the weights and the progress, each part under its name: saved and restored
        # from this one list (state_dict / load_state_dict).
        self.resumable = {"optimizer": self.optimizer, "scheduler": self.scheduler, "grad_scaler": self.scaler,
                          "rng": RngStates(self.dist.rank)}
        self.progress = Progress()
        self._validated_at: int | None = None
        if resume_state is not None:
            self._restore(resume_state)
        self.objective = Objective(self.model, t.model_name, self.adapters)
        if t.compile:
            self.objective.compile()  # in place: DDP wraps the compiled module; generation stays eager
        if self.dist.world_size > 1:
            untrained = [f"model.{n}" for n, _ in self.model.named_parameters() if VALLE.half_of(n) not in self.halves]
            # Not trained, not synchronised (every rank loads the same checkpoint), and maybe on another device
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.objective, untrained)
            self.objective = DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=t.model_name != "ar")
        # Read lazily, never whole: a manifest of any size starts in the same time and memory
        self.train_data = open_split(cfg.data, "train", write_bins=self.dist.is_main)
        self.dev_data = open_split(cfg.data, "dev", write_bins=self.dist.is_main)
        # A resumed run rewrites the steps after its checkpoint: tensorboard drops the old ones (purge_step).
        purge_step = self.progress.step + 1 if t.resume else None
        self.writer = (SummaryWriter(str(self.exp_dir / "tensorboard"), purge_step=purge_step)
                       if self.dist.is_main else None)
        self.sample_writer = AudioSampleWriter(cfg, self.dev_data.cuts, self.device) if self.dist.is_main else None
        self.eval_probe = eval_probe  # --eval-interval: valle/eval/probe.py, run by _run_eval_probe at validations
        if self.dist.is_main and t.eval_interval and eval_probe is None:
            from valle.eval.probe import EvalProbe
            self.eval_probe = EvalProbe(self.dev_data.cuts, self.train_data.cuts + self.dev_data.cuts, t.codec_weights,
                                        self.device, num_utterances=t.eval_utterances, seed=t.seed)
        if self.dist.is_main:
            remove_partials(self.exp_dir)  # a write cut short by a crash (the file itself is intact)
            cfg.save_yaml(self.exp_dir / "config.yaml")
            n = sum(p.numel() for _, p in self.trainable)
            log.info("training %s: %d tensors, %.2fM parameters; cuts from %s; device %s, %s", t.model_name,
                     len(self.trainable), n / 1e6, data_dir, self.device, self.dtype)

    # ---- setup -------------------------------------------------------------------------------

    def _setup_logging(self) -> None:
        log_dir = self.exp_dir / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_dir / f"train-rank{self.dist.rank}.log")]
        if self.dist.is_main:
            handlers.append(logging.StreamHandler())
        logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                            format="%(asctime)s %(levelname)s %(message)s")

    def _build_model(self, overrides: dict) -> tuple[VALLE, dict | None]:
        """From exp_dir/last.pt (--resume), a checkpoint (fine-tuning) or nothing (from scratch)."""
        t = self.cfg.train
        self._resumed_adapter: LoadedAdapter | None = None
        if t.resume:
            last = self.exp_dir / "last.pt"
            if not last.is_file():
                raise UserError(f"--resume true but {last} does not exist: start without --resume")
            if self.cfg.adapter.adapter != "none":  # an adapter run's last.pt holds the adapters; the base is apart
                self._resumed_adapter = load_adapter(last)
                t.init_checkpoint = self._resumed_adapter.base["source"]
                return self._load_init(t.init_checkpoint, overrides), self._resumed_adapter.train_state
            model, loaded = load_model(last, device="cpu")
            return model, loaded.train_state
        if t.init_checkpoint == "auto":
            t.init_checkpoint = starting_point(t.init_checkpoint, self.tokenizer["name"])
            log.info("--init-checkpoint auto: %s (the cuts use the %s tokenizer)", t.init_checkpoint,
                     self.tokenizer["name"])
        if t.init_checkpoint == "none":
            framing = {"text_bos_id": getattr(self.text_tokenizer, "bos_id", -1),
                       "text_eos_id": getattr(self.text_tokenizer, "eos_id", -1)}
            cfg = ModelConfig(**{**asdict(self.cfg.model), **framing, **overrides})
            if self.cfg.adapter.adapter != "none":
                raise UserError(f"--adapter {self.cfg.adapter.adapter} trains adapters on a base model: pass "
                                "--init-checkpoint vallex or PATH (not none)")
            return VALLE(cfg), None
        return self._load_init(t.init_checkpoint, overrides), None

    def _load_init(self, init: str, overrides: dict) -> VALLE:
        """The checkpoint training starts from, its tokenizer checked against the cuts'."""
        model, loaded = load_model(init, nhead=overrides.get("nhead"), device="cpu", flag="--init-checkpoint",
                                   **{k: v for k, v in overrides.items() if k != "nhead"})
        ckpt_tokenizer = loaded.tokenizer
        if ckpt_tokenizer is None and loaded.kind == "released":
            ckpt_tokenizer = get_tokenizer("vallex").to_dict()
        if ckpt_tokenizer is None:
            log.warning("%s records no text tokenizer: cannot check it against the cuts", init)
        else:
            check_same_tokenizer(ckpt_tokenizer, self.tokenizer, where=f"{init} vs the cuts")
        return model

    def _attach_adapters(self) -> LoRA | None:
        """Adapters on the frozen base (--adapter lora): fresh, or those of last.pt when resuming."""
        a, t = self.cfg.adapter, self.cfg.train
        if a.adapter == "none":
            return None
        spec = AdapterSpec(kind=a.adapter, rank=a.lora_rank, alpha=a.lora_alpha, dropout=a.lora_dropout,
                           targets=parse_targets(a.lora_targets), halves=self.halves)
        resumed, where = self._resumed_adapter, str(self.exp_dir / "last.pt")
        if resumed is None:
            source = t.init_checkpoint if t.init_checkpoint == "vallex" else str(Path(t.init_checkpoint).resolve())
            self.adapter_base = base_identity(self.model, self.halves, source)
        else:
            if resumed.spec != spec:
                raise UserError(f"{where}: trains {resumed.spec}, the flags ask for {spec}: resume with the "
                                "run's own --model-name and --adapter/--lora-* flags")
            check_base(self.model, resumed.base, where, t.init_checkpoint)
            load_overrides(self.model, resumed.weights, where)
            self.adapter_base = resumed.base
        lora = attach(self.model, spec)
        if resumed is not None:
            load_pairs(lora, resumed.weights, where)
        log.info("adapters: %s on the %s half; base %s", spec, "+".join(self.halves), self.adapter_base["source"])
        return lora

    def _restore(self, state: dict) -> None:
        for name, part in self.resumable.items():
            part.load_state_dict(state[name])
        self.progress = Progress(**state["progress"])
        # last.pt may be older than best-valid-loss.pt: only a better model may replace that one
        # (rank 0 reads it, every rank gets the same number)
        on_disk = run_folder.best_loss_on_disk(self.exp_dir) if self.dist.is_main else 0.0
        self.progress.best_valid_loss = min(self.progress.best_valid_loss, all_reduce_sum([on_disk], self.device)[0])
        if self.dist.is_main:
            run_folder.truncate_metrics(self.exp_dir, self.progress.step)
        log.info("resumed at step %d, epoch %d, batch %d", self.progress.step, self.progress.epoch,
                 self.progress.batches_in_epoch)

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self) -> Progress:
        t, p = self.cfg.train, self.progress
        self._stop_signal = None
        restore = self._catch_stop_signals()
        try:
            if p.step == 0:
                self._validate()  # the starting point: how the initial checkpoint does on this dev set
            while p.epoch <= t.num_epochs and not self._should_stop():
                self.scheduler.step_epoch(p.epoch - 1)
                self._train_epoch()
                if self._should_stop():
                    break
                self._validate_if_new()
                self._save(self.exp_dir / f"epoch-{p.epoch}.pt", next_epoch=True)
                self._save(self.exp_dir / "last.pt", next_epoch=True)
                self._prune("epoch")
                p.epoch, p.batches_in_epoch = p.epoch + 1, 0
            self._validate_if_new()
            self._save(self.exp_dir / "last.pt")
            self._conclude_eval()
            self._log_final_checksum()
            if self.dist.is_main:
                log.info("%s now holds %s", self.exp_dir, run_folder.folder_size(self.exp_dir))
            if self._stop_signal is not None:
                raise KeyboardInterrupt  # stopped, not finished: exit code 130 (last.pt is written)
        except Exception as e:
            if is_disk_full(e):  # a checkpoint, a log line or tensorboard: earlier checkpoints stay intact
                raise disk_full_error(getattr(e, "filename", None) or self.exp_dir, "training outputs",
                                      "free some space (or lower --keep-last-k), then rerun with "
                                      "--resume true") from None
            lost = lost_rank_error(e, self.dist, self.exp_dir / "log")
            if lost is not None:
                raise lost from None
            raise
        finally:
            if self.writer:
                with contextlib.suppress(Exception):  # a full disk must not hide the message above
                    self.writer.close()
            cleanup_distributed()
            self._held.close()
            for signum, handler in restore.items():
                signal.signal(signum, handler)
        return p

    def _catch_stop_signals(self) -> dict:
        """One process (the CLI, the web app's Stop): SIGINT/SIGTERM finish the current step, validate and write
        last.pt, so that --resume true continues from there; a second signal stops at once. DDP ranks could
        disagree on the step, so there the signals keep their default. Returns the handlers to restore."""
        if self.dist.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return {}

        def request(signum, frame):
            self._stop_signal = signum
            signal.signal(signum, previous[signum])
            log.info("%s: stopping after this step (last.pt is written; --resume true continues)",
                     signal.Signals(signum).name)

        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, request)
        return previous

    def _should_stop(self) -> bool:
        t, p = self.cfg.train, self.progress
        if self._stop_signal is not None:
            return True
        if t.max_steps and p.step >= t.max_steps:
            return True
        if t.early_stop_patience and p.validations_without_improvement >= t.early_stop_patience:
            log.info("early stop: valid loss did not improve in %d validations (best %.4f)",
                     t.early_stop_patience, p.best_valid_loss)
            return True
        return False

    def _train_epoch(self) -> None:
        t, p = self.cfg.train, self.progress
        loader = self._loader(self.train_data, train=True, seed=t.seed, epoch=p.epoch,
                              skip_batches=p.batches_in_epoch)
        batches = iter(loader)
        bar = tqdm(desc=f"epoch {p.epoch}", unit="step", disable=not self.dist.is_main, leave=False)
        steps_before = p.step
        while not self._should_stop():
            micro = [b for b in (next(batches, None) for _ in range(t.accum_grad)) if b is not None]
            if not all_ranks_true(len(micro) == t.accum_grad, self.device):
                break  # an incomplete accumulation at the end of the epoch is dropped on every rank
            p.batches_in_epoch += len(micro)
            self._optimizer_step(micro)
            bar.update(1)
            if p.step % t.valid_interval == 0:
                self._validate()
            if p.step % t.save_every_n == 0:
                self._save(self.exp_dir / f"checkpoint-{p.step}.pt")
                self._save(self.exp_dir / "last.pt")
                self._prune("checkpoint")
        bar.close()
        if p.step == steps_before and p.batches_in_epoch == 0 and self._stop_signal is None:
            hours = sum(c.duration for c in self.train_data.cuts) / 3600
            raise UserError(f"epoch {p.epoch} produced no training batch: the train set ({hours:.3f} h) is "
                            "smaller than one batch; lower --max-duration or pass --drop-last false")

    def _loader(self, split, train: bool, **kw):
        """This rank's batches of `split` (kw: seed, epoch, skip_batches for training)."""
        return make_loader(split, self.cfg.data, self.text_tokenizer.pad_id, self.model.config, train=train,
                           world_size=self.dist.world_size, rank=self.dist.rank, **kw)

    def _optimizer_step(self, micro: list[dict]) -> None:
        t, p = self.cfg.train, self.progress
        start = time.perf_counter()
        self.objective.train()
        totals = {"loss": 0.0, "top10_acc": 0.0, "frames": 0, "padding": 0.0}
        finite = True
        for i, batch in enumerate(micro):
            batch = _to_device(batch, self.device)
            sync = i == len(micro) - 1 or not isinstance(self.objective, DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.objective.no_sync():
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                    out = self.objective(batch)
                loss = out["loss"] / len(micro)
                finite &= bool(torch.isfinite(loss))
                self.scaler.scale(loss if finite else loss * 0.0).backward()
            totals["loss"] += out["loss"].item() / len(micro)
            totals["top10_acc"] += float(out["top10_acc"]) / len(micro)
            totals["frames"] += int(batch["code_lens"].sum())
            totals["padding"] += padding_ratio(batch) / len(micro)
        if not all_ranks_true(finite, self.device):
            self.optimizer.zero_grad(set_to_none=True)
            p.bad_steps_in_a_row += 1
            log.warning("step %d: loss is %s, step skipped (%d in a row)", p.step + 1, totals["loss"],
                        p.bad_steps_in_a_row)
            if p.bad_steps_in_a_row >= t.max_bad_steps:
                raise UserError(f"{p.bad_steps_in_a_row} optimizer steps in a row had a NaN/inf loss: lower "
                                "--base-lr, use --dtype bfloat16 or float32, or check the data")
            return
        p.bad_steps_in_a_row = 0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        p.step += 1
        self.scheduler.step_batch(p.step)
        elapsed = time.perf_counter() - start
        if self.dist.is_main and (p.step % t.log_interval == 0 or p.step == 1):
            self._log_train(totals, elapsed)

    def _log_train(self, totals: dict, elapsed: float) -> None:
        p = self.progress
        metrics = {"loss": totals["loss"], "top10_acc": totals["top10_acc"], "lr": self.scheduler.get_last_lr()[0],
                   "grad_norm": float(getattr(self.optimizer, "last_grad_norm", float("nan"))),
                   "frames_per_s": totals["frames"] / max(elapsed, 1e-9), "padding_ratio": totals["padding"]}
        for k, v in metrics.items():
            self.writer.add_scalar(f"train/{k}", v, p.step)
        self._append_metrics({"split": "train", "step": p.step, "epoch": p.epoch, **metrics})
        log.info("step %d epoch %d: loss %.4f top10 %.3f lr %.2e grad %.3g %.0f frames/s padding %.1f%%",
                 p.step, p.epoch, metrics["loss"], metrics["top10_acc"], metrics["lr"], metrics["grad_norm"],
                 metrics["frames_per_s"], 100 * metrics["padding_ratio"])

    def _append_metrics(self, record: dict) -> None:
        with open(self.exp_dir / "log" / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # ---- validation --------------------------------------------------------------------------

    def _validate_if_new(self) -> None:
        if self._validated_at != self.progress.step:
            self._validate()

    @torch.no_grad()
    def _validate(self) -> None:
        p = self.progress
        self._validated_at = p.step
        objective = self.objective.module if isinstance(self.objective, DistributedDataParallel) else self.objective
        objective.eval()
        loss_sum = acc_sum = frames = 0.0
        loader = self._loader(self.dev_data, train=False)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.cfg.train.seed)  # the same NAR codebooks and prefixes at every validation
            for batch in loader:
                batch = _to_device(batch, self.device)
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                    out = objective(batch)
                n = int(out["num_frames"])
                loss_sum, acc_sum, frames = (loss_sum + out["loss"].item() * n, acc_sum + float(out["top10_acc"]) * n,
                                             frames + n)
        loss_sum, acc_sum, frames = all_reduce_sum([loss_sum, acc_sum, frames], self.device)
        loss, acc = loss_sum / max(frames, 1), acc_sum / max(frames, 1)
        improved = loss < p.best_valid_loss
        if improved:
            p.best_valid_loss, p.validations_without_improvement = loss, 0
        else:
            p.validations_without_improvement += 1
        if self.dist.is_main:
            self.writer.add_scalar("valid/loss", loss, p.step)
            self.writer.add_scalar("valid/top10_acc", acc, p.step)
            self._append_metrics({"split": "valid", "step": p.step, "epoch": p.epoch, "loss": loss, "top10_acc": acc})
            log.info("validation at step %d: loss %.4f top10 %.3f%s", p.step, loss, acc,
                     " (best)" if improved else "")
            if self.sample_writer:
                with self._whole_model():
                    self.sample_writer.write(self.writer, self.model, p.step)
        if improved:
            self._save(self.exp_dir / "best-valid-loss.pt")  # exactly the weights just validated
        if self.cfg.train.eval_interval and (p.eval_probed_at < 0 or
                                             p.step - p.eval_probed_at >= self.cfg.train.eval_interval):
            self._run_eval_probe()

    def _run_eval_probe(self) -> None:
        """Rank 0 speaks and scores the probe sentences; every rank joins the save of best-eval.pt."""
        from valle.eval.probe import ProbeResult

        p = self.progress
        p.eval_probed_at = p.step
        better = False
        if self.eval_probe:
            with self._whole_model():
                result = self.eval_probe.run(self.model, self.text_tokenizer, self.writer, p.step)
            if not p.baseline_eval:  # the model training started from: best-eval.pt until beaten
                p.baseline_eval = p.best_eval = asdict(result)
                better = True
            else:
                if not p.closest_eval or result.sim > p.closest_eval["sim"]:
                    p.closest_eval = asdict(result)
                better = result.beats(ProbeResult(**p.best_eval))
                if better:
                    p.best_eval = asdict(result)
        if all_reduce_sum([float(better)], self.device)[0] > 0:
            self._save(self.exp_dir / "best-eval.pt")  # the weights just probed

    def _conclude_eval(self) -> None:
        """The probe's verdict, in the log and EXP_DIR/verdict.json: did fine-tuning beat its start?"""
        from valle.eval.probe import ProbeResult, verdict

        p, init = self.progress, self.cfg.train.init_checkpoint
        if not (self.dist.is_main and p.baseline_eval):
            return
        start = "the released model" if init == "vallex" else init
        baseline, best = ProbeResult(**p.baseline_eval), ProbeResult(**p.best_eval)
        line = verdict(baseline, best, ProbeResult(**p.closest_eval) if p.closest_eval else None, start)
        log.info(line)
        run_folder.write_json(self.exp_dir / run_folder.VERDICT, {
            "beaten": best.step != baseline.step, "verdict": line, "baseline": p.baseline_eval, "best": p.best_eval,
            "closest": p.closest_eval or None})

    @contextlib.contextmanager
    def _whole_model(self):
        """Both halves on the training device while generating; the untrained one back to the host after."""
        self.model.place(self.device)
        try:
            yield
        finally:
            self.model.place(self.device, self.halves)

    # ---- checkpoints -------------------------------------------------------------------------

    def _save(self, path: Path, next_epoch: bool = False) -> None:
        """Rank 0 writes. last.pt resumes exactly (at the start of the next epoch if `next_epoch`): it alone
        holds the `resumable` parts (optimizer, scheduler, grad scaler, RNG); the other files hold the weights
        and where training stood."""
        p = self.progress
        parts = {name: part.state_dict() for name, part in self.resumable.items()} if path.name == "last.pt" else {}
        if not self.dist.is_main:
            return
        progress = asdict(p)
        if next_epoch:
            progress.update(epoch=p.epoch + 1, batches_in_epoch=0)
        state = {"progress": progress, "experiment": self.cfg.to_dict(), **parts}
        if self.adapters is None:
            weights = self.model.state_dict()
        else:  # the adapters and the base tensors trained with them; the base itself is not copied
            weights = {**self.adapters.adapter_state_dict(),
                       **{n: p.detach() for n, p in self.trainable if ".lora_" not in n}}
        tensors = [*weights.values(), *_tensors_in(state)]  # what the file will hold (tied tensors counted twice)
        needed = sum(x.numel() * x.element_size() for x in tensors) + (16 << 20)
        check_free_space(path.parent, needed, path.name, "free some space (or lower --keep-last-k), then rerun "
                         "with --resume true; the checkpoints already written are intact")
        if self.adapters is None:
            save_checkpoint(path, self.model, tokenizer=self.tokenizer, train_state=state)
        else:
            save_adapter(path, self.adapters.spec, weights, self.adapter_base, tokenizer=self.tokenizer,
                         train_state=state)

    def _prune(self, prefix: str) -> None:
        if self.dist.is_main:
            run_folder.prune(self.exp_dir, prefix, self.cfg.train.keep_last_k)

    def _log_final_checksum(self) -> None:
        """A fingerprint of the weights on every rank: DDP replicas must agree."""
        checksum = sum(float(p.detach().double().sum()) for _, p in self.trainable)
        log.info("final step %d parameter checksum %.10e", self.progress.step, checksum)


def starting_point(init_checkpoint: str, tokenizer_name: str) -> str:
    """--init-checkpoint auto: the released checkpoint (vallex) for vallex-tokenized cuts, else none (scratch)."""
    if init_checkpoint != "auto":
        return init_checkpoint
    return "vallex" if tokenizer_name == "vallex" else "none"


def _tensors_in(obj) -> list[torch.Tensor]:
    """Every tensor inside nested dicts and lists (to size a checkpoint before writing it)."""
    if torch.is_tensor(obj):
        return [obj]
    items = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
    return [x for item in items for x in _tensors_in(item)]


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
