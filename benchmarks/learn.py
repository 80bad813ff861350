"""Does the trainer learn, and does DPO add to SFT where the answer is known? On CPU, in minutes, on tiny twins.

A world of shapes (syngen/devtools/shapes.py: two objects per 64-px picture, three colours × three forms, phrases such
as "green triangle") has exact masks. A weak labeller's masks are the exact ones dilated by 4 px.

1. ``start``: SFT on the noisy (dilated) masks.
2. From that checkpoint, the same steps, batches, optimizer and learning rate for every arm, on the same pairs
   (chosen = the exact mask, rejected = the noisy one):

   - ``control``: SFT continued on the chosen masks (the DPO arms' supervised term alone);
   - ``dpo``: ``syngen train dpo`` at its default settings (``DpoConfig``: β, loss type, ``sft_weight``);
   - the variants in :data:`VARIANTS` (settings that differ from the defaults).

Scored on held-out pictures against the exact masks: mIoU and oIoU (``syngen.metrics``), and the implicit reward
β(log π(m) − log π_start(m)) of each held-out pair (β = the default): reward accuracy (share of pairs whose exact
mask gains more than its noisy one) and mean margin. A curves image shows held-out mIoU against steps.

    python benchmarks/learn.py [--steps 150] [--lr 3e-3] [--seeds 1] [--threads 1] [--curves docs/img/learn-curves.png]

Last line: ``learn: sft mIoU=<start> control mIoU=<c> dpo mIoU=<d>``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from syngen.devtools.shapes import make_world  # noqa: E402
from syngen.eval.evaluate import evaluate_ris  # noqa: E402
from syngen.metrics import intersection_union, ris_metrics  # noqa: E402
from syngen.train.checkpoint import checkpoints  # noqa: E402
from syngen.train.config import DpoConfig, SftConfig  # noqa: E402
from syngen.train.data import PairDataset, RegionDataset, load_split  # noqa: E402
from syngen.train.dpo import DpoObjective, pair_logps  # noqa: E402
from syngen.train.loop import train  # noqa: E402
from syngen.train.policy import TextPromptableSam  # noqa: E402
from syngen.train.sft import SftObjective, mask_loss  # noqa: E402

TINY = {
    "sam_model_name_or_path": "tiny:segmenter",
    "text_encoder_name_or_path": "tiny:text-encoder",
    "prompter_heads": 2,
}
NOISE = 4  # px of dilation in the weak labeller's masks (and in the rejected masks)
# settings that differ from DpoConfig's defaults: pure DPO (no supervised term), and the best variant found
VARIANTS: dict[str, dict[str, Any]] = {"pure-dpo": {"sft_weight": 0.0}, "dpo-beta10": {"beta": 10.0}}


class Control(DpoObjective):
    """SFT continued on the chosen masks: the DPO arms' supervised term alone, on the same pairs and batches."""

    progress_metrics = ("loss", "loss/focal", "loss/dice")

    def prepare(self, model: torch.nn.Module, loader: Any, accelerator: Any) -> None:
        pass  # no reference: the control has no DPO term

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        masks = model(self.embeddings(batch), batch["input_ids"], batch["attention_mask"])[0].float()
        total, focal, dice = (term.mean() for term in mask_loss(masks, batch["chosen"], batch["valid"]))
        return total, {"loss/focal": focal.detach(), "loss/dice": dice.detach()}


def world(root: Path, train_pictures: int, held_out: int) -> dict[str, Path]:
    """The noisy SFT set, the pairs (exact vs dilated) on the same pictures, and held-out pictures with pairs."""
    return {
        "noisy": make_world(root / "noisy", range(train_pictures), label_noise=NOISE),
        "pairs": make_world(root / "pairs", range(train_pictures), fixed_grow=NOISE),
        "held-out": make_world(root / "held-out", range(10_000, 10_000 + held_out), fixed_grow=NOISE),
    }


def label_miou(data: Path, noise: int) -> float:
    """mIoU of the noisy labels themselves against the exact masks (what copying the labeller would score)."""
    from syngen.devtools.shapes import grow

    inter, union = [], []
    for item in RegionDataset(load_split(str(data), "grounding", "train")):
        i, u = intersection_union(grow(item["mask"], noise), item["mask"])
        inter.append(i)
        union.append(u)
    return ris_metrics(inter, union)["mIoU"]


@torch.no_grad()
def rewards(arm: Path, start: Path, data: Path, beta: float) -> dict[str, float]:
    """Held-out implicit rewards β(log π_arm(m) − log π_start(m)): accuracy (chosen > rejected) and mean margin."""
    pairs = PairDataset(load_split(str(data), "preference", "train"))
    margins = []
    objectives = []
    for folder in (arm, start):
        config = DpoConfig(
            dataset_name=str(data), output_dir=tempfile.mkdtemp(), model_name_or_path=str(folder),
            precompute_ref_log_probs=True,
        )  # fmt: skip
        objective = DpoObjective(config)
        objective.policy = TextPromptableSam.load(str(folder)).eval()
        objectives.append(objective)
    for first in range(0, len(pairs), 16):
        items = [pairs[i] for i in range(first, min(first + 16, len(pairs)))]
        logps = []
        for objective in objectives:
            assert objective.policy is not None
            batch = objective.collate(items)
            masks, _ = objective.forward(objective.policy, batch)
            logps.append(pair_logps(masks, batch))
        (chosen, rejected), (ref_chosen, ref_rejected) = logps
        margins.append(beta * ((chosen - ref_chosen) - (rejected - ref_rejected)))
    margin = torch.cat(margins)
    return {"reward_accuracy": float((margin > 0).float().mean()), "margin": float(margin.mean())}


def curve(run: Path, held_out: Path) -> list[tuple[int, float]]:
    """(step, held-out mIoU) at each kept checkpoint and at the end."""
    points = []
    for folder in checkpoints(run):
        step = int(folder.name.rsplit("-", 1)[1])
        points.append((step, evaluate_ris(str(folder), str(held_out), device="cpu")["metrics"]["train"]["mIoU"]))
    return points


def draw(curves: dict[str, list[tuple[int, float]]], baselines: dict[str, float], path: Path) -> None:
    """Held-out mIoU against steps for every arm, with the start and the labels' own mIoU as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for name, points in curves.items():
        ax.plot([s for s, _ in points], [m for _, m in points], marker="o", markersize=3, label=name)
    for (name, value), style in zip(baselines.items(), (":", "--"), strict=False):
        ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=name)
    ax.set_xlabel("steps after the SFT start")
    ax.set_ylabel("held-out mIoU (exact masks)")
    ax.set_title("benchmarks/learn.py: SFT on noisy masks, then each arm")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def arms_from(start: Path, data: Path, out: Path, shared: dict[str, Any]) -> dict[str, Path]:
    """Trains every arm from the ``start`` checkpoint on the pairs ``data``; returns each arm's output folder."""
    arms: dict[str, tuple[type[DpoObjective], dict[str, Any]]] = {"control": (Control, {}), "dpo": (DpoObjective, {})}
    arms.update({name: (DpoObjective, settings) for name, settings in VARIANTS.items()})
    runs = {}
    for name, (objective, settings) in arms.items():
        config = DpoConfig(
            dataset_name=str(data), output_dir=str(out / name), model_name_or_path=str(start), **shared, **settings
        )
        if objective is Control:
            config.precompute_ref_log_probs = True  # no reference model is built
        runs[name] = train(objective(config))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=32, help="training pictures (two regions each)")
    parser.add_argument("--held-out", type=int, default=32, help="held-out pictures")
    parser.add_argument("--start-steps", type=int, default=150, help="SFT steps on the noisy masks")
    parser.add_argument("--steps", type=int, default=150, help="steps of every arm from the start")
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate of the start and of every arm")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=1, help="run every arm with data-order seeds 0..N-1 (mean, range)")
    parser.add_argument("--eval-every", type=int, default=25, help="steps between held-out scores (the curves)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more only contend on a busy CPU)")
    parser.add_argument("--curves", type=Path, default=None, help="write seed 0's held-out mIoU curves here (PNG)")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temp folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    root = args.out or Path(tempfile.mkdtemp(prefix="learn-"))
    shared = {
        "per_device_train_batch_size": args.batch_size, "learning_rate": args.lr, "logging_steps": 10,
        "save_total_limit": 0,
    }  # fmt: skip
    defaults = {
        f.name: f.default for f in dataclasses.fields(DpoConfig) if f.name in ("beta", "loss_type", "sft_weight")
    }
    print(f"world: {args.pictures} training pictures, {args.held_out} held out, 2 objects each; labels +{NOISE} px")
    print(f"start: {args.start_steps} SFT steps on the noisy labels; every arm: {args.steps} steps from it")
    print(f"all: batch {args.batch_size}, lr {args.lr}; dpo defaults: {defaults}; variants: {VARIANTS}")
    with contextlib.redirect_stdout(sys.stderr):  # the Hub mixin prints a line per model load
        data = world(root / "data", args.pictures, args.held_out)
        held_out = str(data["held-out"])
        sft = {
            "dataset_name": str(data["noisy"]), "output_dir": str(root / "start"), "max_steps": args.start_steps,
            "save_steps": 0,
        }  # fmt: skip
        start = train(SftObjective(SftConfig(**sft, **shared, **TINY)))
        first = evaluate_ris(str(start), held_out, device="cpu")["metrics"]["train"]
        seeds = []
        for seed in range(args.seeds):
            arm = {**shared, "seed": seed, "max_steps": args.steps, "save_steps": args.eval_every}
            seeds.append(arms_from(start, data["pairs"], root / f"seed{seed}", arm))
        scores = [
            {name: evaluate_ris(str(run), held_out, device="cpu")["metrics"]["train"] for name, run in runs.items()}
            for runs in seeds
        ]
        held_rewards = [{name: rewards(run, start, data["held-out"], defaults["beta"]) for name, run in runs.items()}
                        for runs in seeds]  # fmt: skip
        curves = {name: [(0, first["mIoU"]), *curve(run, data["held-out"]), (args.steps, scores[0][name]["mIoU"])]
                  for name, run in seeds[0].items() if args.curves}  # fmt: skip
    labels = label_miou(data["held-out"], NOISE)
    print(f"held-out mIoU of the noisy labels themselves: {labels:.3f}")
    print(f"{'arm':<12} {'mIoU':>6} {'range':>13} {'oIoU':>6} {'reward acc':>10} {'margin':>9}"
          f"  (held out, mean over {args.seeds} seed(s); rewards vs start)")  # fmt: skip
    print(f"{'start':<12} {first['mIoU']:>6.3f} {'':>13} {first['oIoU']:>6.3f}")
    mean: dict[str, float] = {}
    for name, run in seeds[0].items():
        miou = [s[name]["mIoU"] for s in scores]
        mean[name] = sum(miou) / len(miou)
        oiou = sum(s[name]["oIoU"] for s in scores) / len(scores)
        accuracy = sum(r[name]["reward_accuracy"] for r in held_rewards) / len(held_rewards)
        margin = sum(r[name]["margin"] for r in held_rewards) / len(held_rewards)
        logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        train_acc = logged[-1].get("rewards/accuracies")
        extra = f"  (training pairs, seed 0: reward acc {train_acc:.2f})" if train_acc is not None else ""
        spread = f"{min(miou):.3f}-{max(miou):.3f}"
        print(f"{name:<12} {mean[name]:>6.3f} {spread:>13} {oiou:>6.3f} {accuracy:>10.2f} {margin:>9.4f}{extra}")
    if args.curves:
        draw(curves, {"start (SFT on noisy labels)": first["mIoU"], "noisy labels": labels}, args.curves)
        print(f"curves: {args.curves}")
    print(f"wall time: {time.perf_counter() - started:.0f} s on {args.threads} torch thread(s)")
    print(f"learn: sft mIoU={first['mIoU']:.3f} control mIoU={mean['control']:.3f} dpo mIoU={mean['dpo']:.3f}")


if __name__ == "__main__":
    main()
