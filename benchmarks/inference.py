"""Cost of ``model.localize`` (top-k maps, normalized, resized) against a plain forward pass.

python benchmarks/inference.py --models bas_resnet50 bas_mobilenetv1_100 --batch 8 --size 224
"""

from __future__ import annotations

import argparse
import json

import timm
import torch
from _common import device_name, interleaved_medians

import bas_zoo  # noqa: F401  (registers the models)


def measure(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=args.num_classes).to(device).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    target = torch.zeros(args.batch, dtype=torch.long, device=device)
    fns = {"forward": lambda: model(x), "localize": lambda: model.localize(x),
           "gt_known": lambda: model.localize(x, target=target)}  # fmt: skip
    with torch.inference_mode():
        t = interleaved_medians(fns, device, args.repeats)
    return {
        "forward_seconds": round(t["forward"], 4),
        "localize_seconds": round(t["localize"], 4),
        "localize_gt_known_seconds": round(t["gt_known"], 4),
        "localize_top_k": model.loc_top_k,
        "ratio_localize_vs_forward": round(t["localize"] / t["forward"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["bas_resnet50", "bas_mobilenetv1_100"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    results = {name: measure(name, args, device) for name in args.models}
    print(json.dumps({"device": device_name(device), "batch": args.batch, "size": args.size,
                      "num_classes": args.num_classes, "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
