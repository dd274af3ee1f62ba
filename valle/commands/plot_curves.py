"""Draw loss and top-10 accuracy (train and valid, every run under EXP_DIR: AR, NAR) into one PNG, and the
evaluation probe's series (eval/sim, eos_rate, duration_ratio, flagged) when the runs have them."""

from __future__ import annotations

from pathlib import Path

from valle.cli import ArgumentParser, UserError


def read_scalars(tb_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """tag -> (steps, values) from the event files in one tensorboard folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: ([e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)])
            for tag in acc.Tags()["scalars"]}


# eval/<name> series of the trainer's evaluation probe (valle/eval/probe.py) -> line style
EVAL_SERIES = {"sim": "o-", "eos_rate": "s--", "duration_ratio": "^:", "flagged": "x-."}


def plot(exp_dir: Path, output: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted(exp_dir.rglob("tensorboard"))
    if not runs:
        raise UserError(f"no tensorboard folder under {exp_dir}: train first (./train.sh)")
    series = {tb_dir: read_scalars(tb_dir) for tb_dir in runs}
    with_eval = any(tag.startswith("eval/") for scalars in series.values() for tag in scalars)
    fig, axes = plt.subplots(1, 3 if with_eval else 2, figsize=(18 if with_eval else 12, 4.5))
    for tb_dir, scalars in series.items():
        run = str(tb_dir.parent.relative_to(exp_dir)) if tb_dir.parent != exp_dir else exp_dir.name
        for name, style in EVAL_SERIES.items():  # --eval-interval: the evaluation probe, all in [0, ~2]
            if f"eval/{name}" in scalars:
                steps, values = scalars[f"eval/{name}"]
                axes[2].plot(steps, values, style, label=f"{run} {name}", markersize=4)
        for ax, metric in zip(axes, ("loss", "top10_acc")):
            for split, style in (("train", "-"), ("valid", "o--")):
                if f"{split}/{metric}" in scalars:
                    steps, values = scalars[f"{split}/{metric}"]
                    ax.plot(steps, values, style, label=f"{run} {split}", markersize=3)
    for ax, title in zip(axes, ("loss", "top-10 accuracy", "evaluation probe (--eval-interval)")):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    return output


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("exp_dir", type=Path, help="experiment folder (searched for tensorboard/ folders)")
    parser.add_argument("--output", type=Path, default=None, help="PNG path (default: EXP_DIR/curves.png)")
    args = parser.parse_args(argv)
    if not args.exp_dir.is_dir():
        raise UserError(f"{args.exp_dir} is not a folder")
    print(plot(args.exp_dir, args.output or args.exp_dir / "curves.png"))
