"""Is the data pipeline fast enough? Synthetic data through the train transform vs a BAS training step.

Measures (and prints as JSON):
- ``synthetic_generate_s`` / ``_cpu_s``: wall / CPU time to generate the default synthetic dataset
  (3 splits) into a fresh cache;
- ``loader_images_per_s``: images/s a torch DataLoader with ``--workers`` workers delivers from the
  synthetic train split through ``train_transform`` at ``--size`` (batch ``--batch``), first batch
  (worker start-up) excluded;
- ``train_images_per_s``: images/s of a ``bas_resnet50`` training step (forward_bas, BASLoss, backward,
  SGD step) at ``--size``, batch ``--model-batch``, on the same CPU;
- ``ratio``: loader / train throughput; the requirement is ``ratio >= 4``.

    python benchmarks/data.py [--workers 2 --batch 32 --size 224 --model-batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import timm
import torch
from torch.utils.data import DataLoader

import bas_zoo
from bas_zoo.data import collate, load_wsol_dataset, make_synthetic, train_transform, with_transform


def generation_seconds() -> tuple[float, float]:
    """(wall, CPU) seconds to generate and cache the default synthetic dataset from scratch."""
    with tempfile.TemporaryDirectory() as cache:
        wall, cpu = time.perf_counter(), time.process_time()
        make_synthetic(cache_dir=cache)
        return time.perf_counter() - wall, time.process_time() - cpu


def loader_throughput(args: argparse.Namespace) -> float:
    ds = load_wsol_dataset("synthetic", "train", cache_dir=args.cache_dir)
    resize = round(args.size * 256 / 224)
    ds = with_transform(ds, train_transform(resize=resize, crop=args.size))
    loader = DataLoader(ds, batch_size=args.batch, shuffle=True, num_workers=args.workers, collate_fn=collate)
    images, start = 0, None
    for index, batch in enumerate(loader):
        if index == 0:  # worker start-up and the first decode are not steady state
            start = time.perf_counter()
            continue
        images += batch["pixel_values"].shape[0]
        if index >= args.batches:
            break
    return images / (time.perf_counter() - start)


def train_throughput(args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = timm.create_model("bas_resnet50", num_classes=4).train()
    criterion = bas_zoo.BASLoss(alpha=0.5, beta=1.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(args.model_batch, 3, args.size, args.size)
    y = torch.randint(0, 4, (args.model_batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = model.forward_bas(x, target=y)
        losses = criterion(out, y)
        losses["loss"].backward()
        optimizer.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    return args.model_batch * args.steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed loader batches")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--model-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()

    wall, cpu = generation_seconds()
    result: dict = {
        "device": f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads",
        "load_average_1min": round(os.getloadavg()[0], 2),  # other processes share the CPU
        "synthetic_generate_s": round(wall, 2),
        "synthetic_generate_cpu_s": round(cpu, 2),
    }
    loader = loader_throughput(args)
    train = train_throughput(args)
    result |= {
        "loader": {"workers": args.workers, "batch": args.batch, "size": args.size, "transform": "train"},
        "loader_images_per_s": round(loader, 1),
        "train": {"model": "bas_resnet50", "batch": args.model_batch, "size": args.size},
        "train_images_per_s": round(train, 2),
        "ratio": round(loader / train, 1),
        "data_at_least_4x_faster": loader >= 4 * train,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
