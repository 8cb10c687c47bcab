#!/usr/bin/env python
"""Training throughput (images/s) of BAS vs the CAM baseline on the same backbone; prints JSON.

    python benchmarks/train_throughput.py                       # CPU: bas_resnet50 @224 b8 + the default
    python benchmarks/train_throughput.py --device cuda --bf16 --channels-last --batch-size 64

One optimizer step is what train.py does per batch: BAS = forward_bas + BASLoss (the background
branch re-runs f2 and the head on the erased features), CAM = plain forward + cross-entropy with the
generator frozen; SGD Nesterov, backward, step. Inputs are random tensors, so the numbers measure the
model step, not the data pipeline (see benchmarks/data.py for that).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import bas_zoo

# (model, image size, batch size, model kwargs): the paper-scale case and the synthetic default.
CASES = [
    ("bas_resnet50", 224, 8, {"num_classes": 200}),
    ("bas_resnet18", 64, 32, {"num_classes": 4, "head_chs": 256}),
]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    return f"cpu: {model} ({torch.get_num_threads()} threads)"


def measure(name: str, size: int, batch: int, kwargs: dict, method: str, args: argparse.Namespace) -> dict:
    """Median seconds per optimizer step after warm-up steps, and images per second."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).to(device).train()
    if method == "cam":
        model.generator.requires_grad_(False)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    criterion = bas_zoo.BASLoss()
    x = torch.randn(batch, 3, size, size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, kwargs["num_classes"], (batch,), device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else nullcontext()
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast:
            if method == "bas":
                loss = criterion(model.forward_bas(x, target=y), y)["loss"]
            else:
                loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    step = sorted(times)[len(times) // 2]
    return {
        "model": name,
        "image_size": size,
        "batch_size": batch,
        "method": method,
        "step_s": round(step, 4),
        "images_per_s": round(batch / step, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int, help="override every case's batch size")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    results = []
    for name, size, batch, kwargs in CASES:
        pair = [measure(name, size, args.batch_size or batch, kwargs, m, args) for m in ("bas", "cam")]
        pair[0]["bas_over_cam_time"] = round(pair[0]["step_s"] / pair[1]["step_s"], 2)
        results += pair
    report = {
        "device": device_name(torch.device(args.device)),
        "torch": torch.__version__,
        "dtype": "bfloat16 autocast" if args.bf16 else "float32",
        "channels_last": args.channels_last,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
