"""The ``bas-zoo`` command: localize images, convert official checkpoints, evaluate, push, list.

Each subcommand is a thin layer over the library (pipeline, hub, timm registry) so the command line
and the Python API cannot drift apart. User errors print one line and exit with status 1 (2 for bad
arguments, as argparse does); ``--traceback`` shows the full trace when debugging.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
LOCALIZE_DOC = (
    "Localize objects in images with a BAS model: per image, an overlay PNG (map and boxes) and a JSON "
    "file (label, score, boxes in original pixels)."
)
RUN_CONFIG_NAMES = ("config.yaml", "config.yml", "config.json", "train_config.yaml", "resolved_config.yaml")


class CLIError(Exception):
    """A user error: printed without a traceback."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that describe a user mistake (bad path, bad id, bad value), not a bug."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    from .hub import CheckpointMismatchError

    return (
        CLIError,
        OSError,  # FileNotFoundError, NotADirectoryError, PermissionError, ...
        ValueError,
        ImportError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        CheckpointMismatchError,
    )


# ---- localize ------------------------------------------------------------------------------------
def _expand_images(inputs: Iterable[str]) -> list[Path]:
    """Files as given; a folder expands to the images directly inside it (sorted)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise CLIError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            paths.extend(found)
        elif not path.exists():
            raise CLIError(f"No such image: {path}")
        else:
            paths.append(path)
    return paths


def _output_stems(paths: Sequence[Path]) -> list[str]:
    """One output name per image; clashing stems (a/x.jpg, b/x.png) get a numeric suffix."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def _json_result(path: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The JSON-friendly part of a pipeline result (the map and mask stay in the PNG)."""
    mask = result.get("mask")
    height, width = mask.shape[:2] if mask is not None else (None, None)
    return {
        "image": str(path),
        "width": width,
        "height": height,
        "label": result.get("label"),
        "label_id": int(result["label_id"]) if result.get("label_id") is not None else None,
        "score": float(result["score"]) if result.get("score") is not None else None,
        "boxes": [[float(v) for v in box] for box in result.get("boxes", [])],
        "mask_area": int(mask.sum()) if mask is not None else None,
    }


def cmd_localize(args: argparse.Namespace) -> int:
    paths = _expand_images(args.images)
    from tqdm.auto import tqdm

    from .pipeline import overlay, pipeline

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model: Any = args.model
    if args.revision or args.token:  # pipeline() resolves plain ids itself; these need the hub loader
        from . import hub

        model = hub.from_pretrained(args.model, revision=args.revision, token=args.token)
    pipe = pipeline(
        model,
        device=args.device,
        threshold=args.threshold,
        top_k=args.top_k,
        mode=args.mode,
        errors="skip",
    )
    failures = 0
    stems = _output_stems(paths)
    with tqdm(total=len(paths), unit="img", desc="localize", disable=args.quiet) as bar:
        for start in range(0, len(paths), args.batch_size):
            chunk = paths[start : start + args.batch_size]
            results = pipe([str(p) for p in chunk], batch_size=args.batch_size)
            for path, stem, result in zip(chunk, stems[start : start + len(chunk)], results, strict=True):
                if "error" in result:
                    failures += 1
                    tqdm.write(f"bas-zoo: skipped {path}: {result['error']}", file=sys.stderr)
                    continue
                overlay(str(path), result).save(out / f"{stem}.png")
                record = _json_result(path, result)
                (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            bar.update(len(chunk))
    done = len(paths) - failures
    print(f"wrote {done} overlay(s) and JSON file(s) to {out}" + (f"; {failures} failed" if failures else ""))
    return 1 if failures else 0


# ---- convert-official ----------------------------------------------------------------------------
def cmd_convert_official(args: argparse.Namespace) -> int:
    import timm

    from . import hub

    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise CLIError(f"No such checkpoint file: {ckpt}")
    if not timm.is_model(args.arch) or not args.arch.startswith("bas_"):
        raise CLIError(f"Unknown BAS architecture {args.arch!r}; see `bas-zoo list`.")
    overrides = {"loc_threshold": args.threshold, "loc_top_k": args.top_k}
    # timm reads the file with weights_only=True and maps official keys through the model's filter.
    try:
        model = timm.create_model(
            args.arch,
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(ckpt), num_classes=args.num_classes),
            num_classes=args.num_classes,
            head_relu=args.head_relu,
            **{k: v for k, v in overrides.items() if v is not None},
        )
    except (RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as e:
        raise CLIError(f"cannot load {ckpt} as {args.arch} with {args.num_classes} classes: {e}") from e
    hub.save_pretrained(model, args.out, dataset=args.dataset, label_names=_read_labels(args.labels))
    print(f"wrote {args.out} ({args.arch}, {args.num_classes} classes, head_relu={args.head_relu})")
    return 0


def _read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"No such label file: {file}")
    return [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- evaluate ------------------------------------------------------------------------------------
def _evaluation_fn() -> Callable[..., dict[str, Any]]:
    """dataset spec -> metrics through the package's evaluation code (the one train.py uses)."""
    try:
        from .data.loading import load_wsol_dataset
        from .data.transforms import eval_transform, with_transform
        from .evaluation import evaluate_wsol
    except ImportError as e:
        raise CLIError(
            f"`bas-zoo evaluate` needs bas_zoo's evaluation code, which this install lacks ({e})."
        ) from e

    def evaluate(model: Any, dataset: str, *, split: str, image_size: int | None = None, **options: Any):
        size = image_size or int((model.pretrained_cfg.get("input_size") or (3, 224, 224))[-1])
        data = with_transform(load_wsol_dataset(dataset, split), eval_transform(size))
        options.setdefault("top_k", model.loc_top_k)
        options.setdefault("threshold", model.loc_threshold)
        return evaluate_wsol(model, data, **options)

    return evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    evaluate = _evaluation_fn()
    from . import hub

    model = hub.from_pretrained(args.model, revision=args.revision)
    options = {
        "split": args.split,
        "batch_size": args.batch_size,
        "device": args.device,
        "threshold": args.threshold,
        "top_k": args.top_k,
        "image_size": args.image_size,
        "gt_class": args.gt_known or None,
        "method": args.method,
    }
    metrics = evaluate(model, args.dataset, **{k: v for k, v in options.items() if v is not None})
    text = json.dumps(metrics, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


# ---- push ----------------------------------------------------------------------------------------
def _read_run_config(run_dir: Path) -> dict[str, Any] | None:
    for name in RUN_CONFIG_NAMES:
        path = run_dir / name
        if path.is_file():
            if path.suffix == ".json":
                return json.loads(path.read_text(encoding="utf-8"))
            import yaml

            return yaml.safe_load(path.read_text(encoding="utf-8"))
    return None


def _model_folder(run_dir: Path) -> Path:
    """RUN_DIR/model (as training writes it), or RUN_DIR itself when it is the Hub-ready folder."""
    if not run_dir.is_dir():
        raise CLIError(f"No such run folder: {run_dir}")
    for folder in (run_dir / "model", run_dir):
        if (folder / "config.json").is_file():
            return folder
    raise CLIError(f"{run_dir} has no model/config.json: is it a finished training run?")


def cmd_push(args: argparse.Namespace) -> int:
    from . import hub

    run_dir = Path(args.run_dir)
    folder = _model_folder(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not (folder / hub.CARD_NAME).is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else None
        config = _read_run_config(run_dir)
        model = hub.from_pretrained(folder)  # also checks the folder loads before anything is sent
        hub.write_model_card(hub.build_model_card(model, metrics, None, config, repo_id=args.repo_id), folder)
    info = hub.push_folder(
        folder,
        args.repo_id,
        private=args.private,
        token=args.token,
        revision=args.revision,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
    )
    print(f"pushed {folder} to {args.repo_id}: {info.pr_url or info.commit_url}")
    return 0


# ---- list ----------------------------------------------------------------------------------------
def _tag_text(name: str) -> str:
    """Pretrained tags of one architecture; tags with downloadable weights are marked '(weights)'."""
    from timm.models import get_arch_pretrained_cfgs

    tags = [
        f"{full.split('.', 1)[1]}{' (weights)' if cfg.has_weights else ''}"
        for full, cfg in get_arch_pretrained_cfgs(name).items()
        if "." in full
    ]
    return ", ".join(tags) or "-"


def cmd_list(args: argparse.Namespace) -> int:
    import timm

    names = timm.list_models(args.filter or "bas_*")
    print(f"{'model':32s} pretrained tags")
    for name in names:
        print(f"{name:32s} {_tag_text(name)}")
    if not names:
        print(f"no registered models match {args.filter!r}", file=sys.stderr)
        return 1
    return 0


# ---- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bas-zoo",
        description="Background Activation Suppression (BAS) models: localize, convert, evaluate, publish.",
    )
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("localize", help="boxes, maps and overlays for images", description=LOCALIZE_DOC)
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument(
        "--model", required=True, help="Hub id (ORG/NAME), saved folder, or hf-hub:/local-dir: name"
    )
    p.add_argument("--out", required=True, help="output folder (NAME.png overlay + NAME.json per image)")
    p.add_argument("--threshold", type=float, help="map threshold for boxes (default: stored with the model)")
    p.add_argument("--top-k", type=int, help="classes averaged into the map (default: stored with the model)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda when available)")
    p.add_argument("--mode", choices=("largest", "all"), default="largest", help="one box, or one per region")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    p.add_argument("--token", help="Hub token for a private --model (default: saved login / HF_TOKEN)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_localize)

    p = sub.add_parser(
        "convert-official",
        help="official BAS release checkpoint -> Hub-ready folder",
        description="Turn a checkpoint of the official BAS code (CVPR or IJCV release) into config.json, "
        "model.safetensors and README.md. The releases share key names, so name the conference one "
        "with --head-relu.",
    )
    p.add_argument("checkpoint", help="official .pth / .pth.tar file")
    p.add_argument("--arch", required=True, help="registered model, e.g. bas_resnet50 (see `bas-zoo list`)")
    p.add_argument("--num-classes", type=_positive_int, default=200, help="classes of the checkpoint (200)")
    p.add_argument(
        "--head-relu", action="store_true", help="conference (CVPR) release: head ends with a ReLU"
    )
    p.add_argument("--threshold", type=float, help="box threshold stored with the model")
    p.add_argument("--top-k", type=_positive_int, help="map top-k stored with the model")
    p.add_argument("--dataset", help="dataset the checkpoint was trained on, e.g. cub (for the card)")
    p.add_argument("--labels", help="text file with one class name per line")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_convert_official)

    p = sub.add_parser("evaluate", help="WSOL metrics of a model on a dataset")
    p.add_argument("--model", required=True, help="Hub id or saved folder")
    p.add_argument("--dataset", required=True, help="dataset spec, e.g. synthetic, cub:DIR, a Hub dataset id")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.add_argument("--batch-size", type=_positive_int, help="images per batch")
    p.add_argument("--device", help="torch device")
    p.add_argument("--threshold", type=float, help="override the stored box threshold")
    p.add_argument("--top-k", type=_positive_int, help="override the stored map top-k")
    p.add_argument("--gt-known", action="store_true", help="maps of the ground-truth class (GT-known)")
    p.add_argument("--method", choices=("bas", "cam"), help="generator maps (bas, default) or CAM baseline")
    p.add_argument(
        "--image-size", type=_positive_int, help="evaluation size (default: the model's input size)"
    )
    p.add_argument("--out", help="also write the metrics JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "push",
        help="upload a finished training run to the Hub",
        description="Upload RUN_DIR/model (config.json, model.safetensors, README.md) in one commit; "
        "the card is built from RUN_DIR/metrics.json when missing. Pickle files are never uploaded.",
    )
    p.add_argument("run_dir", help="training output folder (with model/ and metrics.json)")
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--token", help="Hub token (default: the saved login / HF_TOKEN)")
    p.add_argument("--revision", "--branch", dest="revision", help="branch to commit to (created if missing)")
    p.add_argument("--commit-message", help="commit message")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("list", help="registered BAS models and their pretrained tags")
    p.add_argument("filter", nargs="?", help="wildcard filter (default bas_*)")
    p.set_defaults(func=cmd_list)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bas-zoo`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("bas-zoo: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        if args.traceback:
            raise
        print(f"bas-zoo {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
