"""Cost of one BAS training step against a cross-entropy-only step of the same network.

Prints JSON: median step time of (a) CE only, (b) BAS with the copy-free background branch,
(c) BAS with the official deep-copy-per-step background branch, their ratios to (a), and the peak
memory of each step (each measured in a fresh subprocess: peak RSS on CPU, max allocated on CUDA).

    python benchmarks/train_step.py --models bas_resnet50 bas_mobilenetv1_100 --batch 8 --size 224
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys

import psutil
import timm
import torch
import torch.nn.functional as F
from _common import device_name, interleaved_medians

import bas_zoo
from bas_zoo.models._bas import BASOutput

MODES = ("ce", "bas", "bas_deepcopy")


def deepcopy_forward_bas(model: bas_zoo.BASModel, x: torch.Tensor, y: torch.Tensor) -> BASOutput:
    """The official formulation: deep-copy f2 and the head every step for the background branch."""
    attach = model.f1(x)
    cam = model.forward_cam(model.f2(attach))
    logits = cam.mean((2, 3))
    fpm = torch.sigmoid(model.generator(attach))
    fg = fpm[torch.arange(len(y)), y][:, None]
    f2, extractor, classifier = (copy.deepcopy(m) for m in (model.f2, model.extractor, model.classifier))
    bg = model.head_act(classifier(extractor(f2(attach.detach() * (1 - fg))))).mean((2, 3))
    fg_logits = (cam * F.adaptive_avg_pool2d(fg, cam.shape[-2:])).mean((2, 3))
    idx = y[:, None]
    return BASOutput(
        logits, fg_logits, cam, fpm, logits.gather(1, idx)[:, 0], bg.gather(1, idx)[:, 0], fg[:, 0]
    )


def make_step(mode: str, model: bas_zoo.BASModel, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = bas_zoo.BASLoss(alpha=0.5, beta=1.5)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        if mode == "ce":
            loss = F.cross_entropy(model(x), y)
        else:
            out = model.forward_bas(x, y) if mode == "bas" else deepcopy_forward_bas(model, x, y)
            loss = loss_fn(out, y)["loss"]
        loss.backward()
        opt.step()

    return step


def build(name: str, args: argparse.Namespace, device: torch.device):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=args.num_classes).to(device).train()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.num_classes, (args.batch,), device=device)
    return model, x, y


def peak_memory_mb(name: str, mode: str, args: argparse.Namespace, device: torch.device) -> float:
    """Extra memory one step needs above the model and optimizer state (fresh process per mode)."""
    model, x, y = build(name, args, device)
    step = make_step(mode, model, x, y)
    if device.type == "cuda":
        step()  # optimizer state allocated
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    base = psutil.Process().memory_info().rss
    step()
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return (peak - base) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["bas_resnet50", "bas_mobilenetv1_100"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--memory-probe", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)

    if args.memory_probe:
        print(peak_memory_mb(*args.memory_probe, args, device))
        return

    results = {}
    for name in args.models:
        model, x, y = build(name, args, device)
        times = interleaved_medians(
            {mode: make_step(mode, model, x, y) for mode in MODES}, device, args.repeats
        )
        memory = {}
        for mode in MODES:
            cmd = [sys.executable, __file__, "--memory-probe", name, mode, "--batch", str(args.batch),
                   "--size", str(args.size), "--num-classes", str(args.num_classes), "--device", args.device]  # fmt: skip
            memory[mode] = float(
                subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1]
            )
        results[name] = {
            "step_seconds": {m: round(t, 4) for m, t in times.items()},
            "time_ratio_bas_vs_ce": round(times["bas"] / times["ce"], 3),
            "time_ratio_deepcopy_vs_ce": round(times["bas_deepcopy"] / times["ce"], 3),
            "peak_step_memory_mb": {m: round(v, 1) for m, v in memory.items()},
            "memory_ratio_bas_vs_ce": round(memory["bas"] / memory["ce"], 3),
            "memory_ratio_deepcopy_vs_ce": round(memory["bas_deepcopy"] / memory["ce"], 3),
        }
    print(json.dumps({"device": device_name(device), "batch": args.batch, "size": args.size,
                      "num_classes": args.num_classes, "repeats": args.repeats, "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
