#!/usr/bin/env python
"""Train BAS (or the CAM baseline) with Accelerate, evaluate it and export a Hub-ready folder.

    accelerate launch train/train.py                       # the synthetic default: BAS and CAM, compared
    accelerate launch train/train.py --config hub_configs/cub/bas_resnet50.yaml \\
        [--method bas|cam|both] [--output-dir DIR] [--resume] [key=value ...]

The script reads top to bottom like accelerate's examples: config -> Accelerator -> data -> model ->
optimizer groups and a per-iteration schedule -> prepare -> (resume) -> epochs of accumulate /
backward / clip / step with validation every N epochs (the best checkpoint by a metric is kept) ->
test metrics -> export. ``--method cam`` trains the same model with cross-entropy only and localizes
with the classifier's class activation maps; ``both`` runs BAS then CAM into DIR/bas and DIR/cam and
prints them side by side.

Reproducibility: the sampler draws one permutation per epoch from (seed, epoch), and each example's
crop and flip come from (seed, epoch, index). What a step sees therefore never depends on the global
RNG, the worker count or where a run was interrupted, so ``--resume`` (weights, optimizer, scheduler,
position in the epoch via ``skip_first_batches``) ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
import yaml
from accelerate import Accelerator, skip_first_batches
from accelerate.utils import is_tensorboard_available, set_seed
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

import bas_zoo
from bas_zoo._io import atomic_target, write_text_atomic
from bas_zoo.config import ConfigError, TrainConfig, config_to_dict, load_config
from bas_zoo.data.loading import load_wsol_dataset
from bas_zoo.data.transforms import collate, eval_transform, train_transform, with_transform
from bas_zoo.evaluation import GridColumn, evaluate_wsol, metrics_markdown, save_grid
from bas_zoo.hub import load_state_dict_strict, read_state_dict, save_pretrained
from bas_zoo.losses import BASMultiLabelLoss, multilabel_ce, sample_positive
from bas_zoo.wsss import SeedColumn, evaluate_seeds, save_seed_grid

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "hub_configs" / "synthetic" / "bas_resnet18.yaml"
COLOURS = {"bas": (255, 40, 40), "cam": (40, 120, 255)}
# Metrics printed in the BAS-vs-CAM summary (all of them go to metrics.json).
SUMMARY_KEYS = (
    "miou",
    "gt_known_loc",
    "top1_loc",
    "maxboxacc_v2",
    "maxboxacc_v1",
    "pxap",
    "piou",
    "top1_cls",
)


# ------------------------------------------------------------------------------------ data order
def _seed_of(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class EpochSampler(Sampler[int]):
    """A permutation of the dataset drawn from (seed, epoch): the same order on every run and resume."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(_seed_of(self.seed, self.epoch))
        return iter(torch.randperm(self.size, generator=generator).tolist())


class SeededAugment(Dataset):
    """Draws each example's random crop and flip from (seed, epoch, index), not the global RNG."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_of(self.seed, self.epoch, index))
            return self.dataset[index]


# ------------------------------------------------------------------------------------ model side
class TrainStep(nn.Module):
    """The module accelerate wraps (DDP, FSDP): its forward returns the loss terms.

    Calling ``model.forward_bas`` on an unwrapped model would bypass DDP's forward and its gradient
    synchronisation, so the whole training computation lives in this forward.
    """

    def __init__(self, model: bas_zoo.BASModel, method: str, criterion: bas_zoo.BASLoss) -> None:
        super().__init__()
        self.model, self.method, self.criterion = model, method, criterion

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor, label_vector: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        if label_vector is not None:  # multi-label (WSSS): labels holds each image's drawn positive class
            if self.method == "cam":
                cls = multilabel_ce(self.model(pixel_values), label_vector, reduction="mean")
                return {"loss": cls, "cls": cls}
            return self.criterion(self.model.forward_bas(pixel_values, target=labels), label_vector, labels)
        if self.method == "cam":
            cls = F.cross_entropy(self.model(pixel_values), labels)
            return {"loss": cls, "cls": cls}
        return self.criterion(self.model.forward_bas(pixel_values, target=labels), labels)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """METHOD.md groups: backbone (f1, f2) weights lr, biases 2 lr; new heads 10 lr / 20 lr.

    "Weights" are all non-bias tensors (BatchNorm scales included), as in the official code.
    """
    mult = config.lr_mult
    rates = {
        "backbone_weight": mult.backbone_weight,
        "backbone_bias": mult.backbone_bias,
        "head_weight": mult.head_weight,
        "head_bias": mult.head_bias,
    }
    groups: dict[str, list[nn.Parameter]] = {name: [] for name in rates}
    for name, param in model.named_parameters():
        if param.requires_grad:
            part = "backbone" if name.startswith(("f1.", "f2.")) else "head"
            groups[f"{part}_{'bias' if name.endswith('bias') else 'weight'}"].append(param)
    return [
        {"params": params, "lr": config.lr * rates[name], "name": name}
        for name, params in groups.items()
        if params
    ]


def lr_factor(config: TrainConfig, steps_per_epoch: int):
    """Per-iteration multiplier of every group's lr: linear warm-up, then step (milestones) or cosine."""
    schedule = config.schedule
    total = config.epochs * steps_per_epoch
    warmup = schedule.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule.name == "poly":
            return (1.0 - min(step, total) / total) ** schedule.power
        if schedule.name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        epoch = step // steps_per_epoch
        return schedule.gamma ** sum(epoch >= m for m in schedule.milestones)

    return factor


def check_finite(terms: dict[str, torch.Tensor], step: int, epoch: int, batch: int) -> list[float]:
    """Loss term values; a NaN or inf stops the run naming the step and the term (one sync per step)."""
    values = torch.stack([t.detach().float() for t in terms.values()]).tolist()
    for name, value in zip(terms, values, strict=True):
        if not math.isfinite(value):
            raise FloatingPointError(
                f"Loss term {name!r} is {value} at optimizer step {step + 1} (epoch {epoch}, batch {batch}). "
                "Lower lr, set max_grad_norm (e.g. 5.0), or use mixed_precision=bf16 instead of fp16."
            )
    return values


# ------------------------------------------------------------------------------------ checkpoints
def checkpoints(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("step_*") if p.is_dir()) if root.is_dir() else []


def save_checkpoint(accelerator: Accelerator, root: Path, state: dict[str, Any], keep_last: int) -> None:
    """``save_state`` into a temporary folder, then one rename: a checkpoint is complete or absent."""
    final = root / f"step_{state['step']:09d}"
    tmp = root / f".tmp-{final.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every process writes its RNG state; the main one the rest
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        for old in checkpoints(root)[:-keep_last]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


def save_best(accelerator: Accelerator, step_module: nn.Module, path: Path) -> None:
    """The full model weights (gathered under FSDP / DeepSpeed), written atomically by the main process."""
    state = accelerator.get_state_dict(step_module)  # a collective under FSDP / DeepSpeed
    if accelerator.is_main_process:
        weights = {
            k.removeprefix("model."): v.contiguous() for k, v in state.items() if k.startswith("model.")
        }
        with atomic_target(path) as tmp:
            save_file(weights, str(tmp), metadata={"format": "pt"})


# ------------------------------------------------------------------------------------ one run
def train(config: TrainConfig, method: str, accelerator: Accelerator, output_dir: Path, resume: bool) -> dict:
    """Train one method into ``output_dir``; returns {"test": metrics, "val": best val metrics, ...}."""
    main = accelerator.is_main_process
    set_seed(config.seed)

    # Data: train with seeded augmentation and a seeded per-epoch order; val / test resized only.
    names = {"train": config.train_split, "val": config.eval.val_split, "test": config.eval.test_split}
    with accelerator.local_main_process_first():  # one process per node builds a dataset cache
        raw = {role: load_wsol_dataset(config.dataset, split) for role, split in names.items()}
    class_names = raw["train"].features["label"].names
    train_transforms = train_transform(config.resize_size, config.image_size)
    train_data = SeededAugment(with_transform(raw["train"], train_transforms), config.seed)
    val_data = with_transform(raw["val"], eval_transform(config.image_size))
    test_data = with_transform(raw["test"], eval_transform(config.image_size))
    per_step = accelerator.num_processes * config.gradient_accumulation_steps
    if config.batch_size % per_step:
        raise ConfigError(
            f"batch_size={config.batch_size} (global) must be divisible by processes x accumulation steps "
            f"({accelerator.num_processes} x {config.gradient_accumulation_steps})."
        )
    sampler = EpochSampler(len(train_data), config.seed)
    train_loader = DataLoader(
        train_data,
        batch_size=config.batch_size // per_step,
        sampler=sampler,
        collate_fn=collate,
        num_workers=config.num_workers,
        drop_last=True,  # full batches only: BatchNorm statistics and equal shards across processes
    )

    # Model: the BAS wrapper in both methods; CAM freezes the generator (no loss reaches it).
    model = timm.create_model(
        config.model,
        num_classes=len(class_names),
        loc_top_k=config.localization.top_k,
        loc_threshold=config.localization.threshold,
        **config.model_args,
    )
    if config.init_from:  # e.g. a warm-up run: the weights every method starts from, loaded strictly
        weights = Path(config.init_from)
        weights = weights / "model.safetensors" if weights.is_dir() else weights
        load_state_dict_strict(model, read_state_dict(weights), source=str(weights))
    if method == "cam":
        model.generator.requires_grad_(False)
    if config.sync_batchnorm and accelerator.num_processes > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    multilabel = bool(getattr(model, "multilabel", False))  # WSSS: multi-hot labels, seeds, mIoU
    if multilabel and "labels" not in train_data.dataset.column_names:
        raise ConfigError(f"{config.model} is multi-label but {config.dataset} has no 'labels' column.")
    criterion = (BASMultiLabelLoss if multilabel else bas_zoo.BASLoss)(**vars(config.loss))
    optimizer = torch.optim.SGD(
        parameter_groups(model, config),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    step_module, optimizer, train_loader = accelerator.prepare(
        TrainStep(model, method, criterion), optimizer, train_loader
    )
    steps_per_epoch = math.ceil(len(train_loader) / config.gradient_accumulation_steps)
    scheduler = accelerator.prepare(
        torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
    )

    # Resume: weights, optimizer, scheduler and RNG from accelerate; our position from trainer_state.
    ckpt_root = output_dir / "checkpoints"
    state: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "batch": 0,
        "best": None,
        "best_epoch": None,
        "history": [],  # validation metrics per evaluation
        "train_log": [],  # mean loss terms per logging window (this process's batches)
    }
    if resume and checkpoints(ckpt_root):
        latest = checkpoints(ckpt_root)[-1]
        accelerator.load_state(str(latest))
        state = json.loads((latest / "trainer_state.json").read_text())
        accelerator.print(f"[{method}] resumed from {latest} (step {state['step']}, epoch {state['epoch']})")
    elif main and ckpt_root.exists():
        shutil.rmtree(ckpt_root)  # a fresh run must not mix with an older run's checkpoints
    run_config = config_to_dict(config) | {"method": method, "num_classes": len(class_names)}
    if main:
        write_text_atomic(output_dir / "train_config.yaml", yaml.safe_dump(run_config, sort_keys=False))
    best_path = output_dir / "best" / "model.safetensors"
    every = config.checkpoint.every_steps
    metric = config.eval.metric
    images_per_step = config.batch_size

    progress = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=state["step"],
        desc=method,
        disable=not accelerator.is_local_main_process,
        dynamic_ncols=True,
    )
    for epoch in range(state["epoch"], config.epochs):
        for part in (sampler, train_data, train_loader):
            part.set_epoch(epoch)
        skip = state["batch"] if epoch == state["epoch"] else 0
        loader = skip_first_batches(train_loader, skip) if skip else train_loader
        loader.set_epoch(epoch)
        step_module.train()
        window, window_start, window_steps = np.zeros(0), time.perf_counter(), 0
        for batch_index, batch in enumerate(loader, start=skip):
            with accelerator.accumulate(step_module):
                labels, label_vector = batch["labels"], batch.get("label_vector") if multilabel else None
                if multilabel:  # one positive class per image, drawn from (seed, epoch, batch, process)
                    seed = _seed_of(config.seed, epoch, batch_index, accelerator.process_index)
                    labels = sample_positive(label_vector, torch.Generator().manual_seed(seed))
                terms = step_module(batch["pixel_values"], labels, label_vector)
                values = check_finite(terms, state["step"], epoch, batch_index)
                accelerator.backward(terms["loss"])
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(step_module.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            window = window + np.asarray(values) if window.size else np.asarray(values)
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            state["step"] += 1
            window_steps += 1
            progress.update(1)
            if state["step"] % config.log_every_steps == 0 or batch_index + 1 == len(train_loader):
                means = dict(
                    zip(terms, window / (window_steps * config.gradient_accumulation_steps), strict=True)
                )
                speed = window_steps * images_per_step / (time.perf_counter() - window_start)
                progress.set_postfix({k: f"{v:.3f}" for k, v in means.items()} | {"img/s": f"{speed:.1f}"})
                state["train_log"].append({"step": state["step"], "epoch": epoch, **means})
                accelerator.log(
                    {f"{method}/train/{k}": v for k, v in means.items()}
                    | {f"{method}/train/lr": scheduler.get_last_lr()[0], f"{method}/train/img_per_s": speed},
                    step=state["step"],
                )
                window, window_start, window_steps = np.zeros(0), time.perf_counter(), 0
            if every and state["step"] % every == 0 and batch_index + 1 < len(train_loader):
                save_checkpoint(
                    accelerator,
                    ckpt_root,
                    state | {"epoch": epoch, "batch": batch_index + 1},
                    config.checkpoint.keep_last,
                )

        # End of epoch: validate every N epochs; keep the best weights by the chosen val metric.
        state.update(epoch=epoch + 1, batch=0)
        if (epoch + 1) % config.eval.every_epochs == 0 or epoch + 1 == config.epochs:
            val = evaluate(model, val_data, config, method, accelerator, desc=f"{method} val")
            if metric not in val:
                raise ConfigError(f"eval.metric={metric!r} is not computed; choose one of {sorted(val)}.")
            state["history"].append({"epoch": epoch + 1, "step": state["step"], **val})
            accelerator.log({f"{method}/val/{k}": v for k, v in val.items()}, step=state["step"])
            line = ", ".join(f"{k} {val[k]:.2f}" for k in SUMMARY_KEYS if k in val)
            if main:
                progress.write(f"[{method}] epoch {epoch + 1}/{config.epochs} val: {line}")
            if state["best"] is None or val[metric] > state["best"][metric]:
                state["best"], state["best_epoch"] = val, epoch + 1
                save_best(accelerator, step_module, best_path)
        save_checkpoint(accelerator, ckpt_root, state, config.checkpoint.keep_last)
    progress.close()

    # Test: the best-on-validation weights; the box threshold is the config's or calibrated on val.
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(step_module).model
    model.load_state_dict(load_file(str(best_path)))
    threshold = config.localization.threshold
    if multilabel:  # the seeds' background threshold: the best of the sweep on val
        threshold = float(state["best"]["best_bg_threshold"])
    elif config.localization.threshold_from_val:
        threshold = float(state["best"]["best_threshold_v1"])
    test = evaluate(model, test_data, config, method, accelerator, desc=f"{method} test", threshold=threshold)
    result = {"test": test, "val": state["best"], "best_epoch": state["best_epoch"], "threshold": threshold}
    if main:
        run_config["threshold"] = threshold
        write_text_atomic(output_dir / "train_config.yaml", yaml.safe_dump(run_config, sort_keys=False))
        write_text_atomic(output_dir / "metrics.json", json.dumps(test, indent=1) + "\n")
        write_text_atomic(output_dir / "metrics.md", metrics_markdown({f"{method.upper()} (test)": test}))
        write_text_atomic(
            output_dir / "history.json",
            json.dumps(result | {k: state[k] for k in ("history", "train_log")}, indent=1),
        )
        # The exported model carries what the pipeline needs: threshold, top-k and the trained input size.
        model.loc_threshold, model.loc_top_k = threshold, config.localization.top_k
        model.pretrained_cfg = {
            **model.pretrained_cfg,
            "input_size": (3, config.image_size, config.image_size),
        }
        save_pretrained(
            model,
            output_dir / "model",
            metrics=test,
            config=run_config,
            dataset=config.dataset,
            label_names=class_names,
        )
        if config.eval.grid_images:
            grid(
                output_dir / "grid.png",
                test_data,
                config,
                [GridColumn(method.upper(), model, method, threshold, COLOURS[method])],
                accelerator,
            )
    accelerator.wait_for_everyone()
    result["model"], result["test_data"] = model, test_data
    return result


def evaluate(
    model,
    data,
    config: TrainConfig,
    method: str,
    accelerator: Accelerator,
    desc: str,
    threshold: float | None = None,
) -> dict[str, float]:
    loc = config.localization
    if getattr(model, "multilabel", False):  # seed mIoU over the background-threshold sweep
        seeds = config.seeds
        return evaluate_seeds(
            model,
            data,
            method=method,
            scales=seeds.scales,
            flip=seeds.flip,
            fuse_cam=seeds.fuse_cam and method == "bas",
            bg_thresholds=seeds.bg_thresholds,
            bg_threshold=threshold,
            class_names=data.features["label"].names,
            batch_size=config.eval.batch_size,
            num_workers=config.num_workers,
            accelerator=accelerator,
            desc=desc,
        )
    return evaluate_wsol(
        model,
        data,
        method=method,
        top_k=loc.top_k,
        gt_class=loc.gt_class,
        threshold=loc.threshold if threshold is None else threshold,
        iou_strict=loc.iou_strict,
        cam_curve_interval=loc.cam_curve_interval,
        batch_size=config.eval.batch_size,
        num_workers=config.num_workers,
        accelerator=accelerator,
        desc=desc,
    )


def grid(path: Path, data, config: TrainConfig, columns: list[GridColumn], accelerator: Accelerator) -> None:
    loc = config.localization
    if getattr(columns[0].model, "multilabel", False):  # image / ground truth / seed masks
        seeds = [
            SeedColumn(c.title, c.model, c.method, c.threshold, config.seeds.fuse_cam and c.method == "bas")
            for c in columns
        ]
        save_seed_grid(
            path,
            data,
            seeds,
            config.eval.grid_images,
            config.seeds.scales,
            config.seeds.flip,
            accelerator.device,
        )
        return
    save_grid(
        path,
        data,
        columns,
        config.eval.grid_images,
        top_k=loc.top_k,
        gt_class=loc.gt_class,
        device=accelerator.device,
    )


# ------------------------------------------------------------------------------------ entry point
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"YAML config (default: {DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[2])})",
    )
    parser.add_argument(
        "--method", choices=["bas", "cam", "both"], default=None, help="override the config's method"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="default: runs/<dataset dir>-<config name>"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in the output dir"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="force the CPU (needed for torchrun on CPU: multi-process gloo)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, dotted for nested keys"
    )
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    config_path = args.config or DEFAULT_CONFIG
    overrides = list(args.overrides) + ([f"method={args.method}"] if args.method else [])
    try:
        config = load_config(config_path, overrides)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    output_dir = args.output_dir or Path("runs") / f"{config_path.parent.name}-{config_path.stem}"

    accelerator = Accelerator(
        cpu=args.cpu,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        step_scheduler_with_optimizer=False,  # we step the per-iteration schedule once per optimizer step
        log_with="tensorboard" if is_tensorboard_available() else None,
        project_dir=str(output_dir),
    )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
    if is_tensorboard_available():
        accelerator.init_trackers("tensorboard", config=_flat(config_to_dict(config)))
    accelerator.print(
        f"Training {config.model} on {config.dataset} ({config.method}) -> {output_dir} on {accelerator.num_processes} x {accelerator.device}"
    )

    methods = ["bas", "cam"] if config.method == "both" else [config.method]
    results: dict[str, dict] = {}
    for method in methods:
        run_dir = output_dir / method if len(methods) > 1 else output_dir
        start = time.perf_counter()
        results[method] = train(config, method, accelerator, run_dir, args.resume)
        results[method]["seconds"] = time.perf_counter() - start
        accelerator.free_memory()

    tests = {m.upper(): r["test"] for m, r in results.items()}
    accelerator.print(
        "\nTest metrics (" + ", ".join(f"{m.upper()} {r['seconds']:.0f} s" for m, r in results.items()) + ")"
    )
    table = metrics_markdown(tests)
    if len(methods) > 1:
        table = _comparison(tests["BAS"], tests["CAM"])
    accelerator.print(table)
    if accelerator.is_main_process and len(methods) > 1:
        summary = {
            m: {"test": r["test"], "val": r["val"], "threshold": r["threshold"], "seconds": r["seconds"]}
            for m, r in results.items()
        }
        write_text_atomic(output_dir / "comparison.json", json.dumps(summary, indent=1) + "\n")
        write_text_atomic(output_dir / "comparison.md", table)
        if config.eval.grid_images:
            columns = [
                GridColumn(m.upper(), r["model"], m, r["threshold"], COLOURS[m]) for m, r in results.items()
            ]
            grid(output_dir / "bas_vs_cam.png", results["bas"]["test_data"], config, columns, accelerator)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {m: {k: v for k, v in r.items() if k not in ("model", "test_data")} for m, r in results.items()}


def _comparison(bas: dict[str, float], cam: dict[str, float]) -> str:
    lines = ["| metric (test) | BAS | CAM | BAS - CAM |", "|---|---:|---:|---:|"]
    for key in [k for k in bas if k in cam and "threshold" not in k]:
        lines.append(f"| {key} | {bas[key]:.2f} | {cam[key]:.2f} | {bas[key] - cam[key]:+.2f} |")
    return "\n".join(lines) + "\n"


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> flat scalar dict (tensorboard hparams take scalars and strings only)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
