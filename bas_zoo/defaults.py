"""The papers' per-backbone, per-dataset hyper-parameters (METHOD.md tables)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PaperDefaults", "paper_defaults"]

_ARCHS = ("vgg16", "resnet50", "inception_v3", "mobilenetv1_100")

# (variant, dataset) -> arch -> (alpha, beta)
_ALPHA_BETA: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("cvpr", "cub"): {"vgg16": (0, 0.7), "resnet50": (0.5, 1.2), "inception_v3": (0.5, 1.0), "mobilenetv1_100": (0.5, 1.5)},
    ("cvpr", "ilsvrc"): {"vgg16": (0.05, 1.0), "resnet50": (1, 2), "inception_v3": (1, 2.5), "mobilenetv1_100": (0.5, 1.5)},
    ("ijcv", "cub"): {"vgg16": (0, 0.9), "resnet50": (0.5, 1.5), "inception_v3": (0.5, 1.0), "mobilenetv1_100": (0.5, 1.9)},
    ("ijcv", "ilsvrc"): {"vgg16": (0.05, 1), "resnet50": (1, 2), "inception_v3": (1, 2.5), "mobilenetv1_100": (0.5, 1.5)},
    ("ijcv", "openimages"): {"resnet50": (0.5, 1.5)},
}  # fmt: skip

# ILSVRC localizes the ground-truth class (k = 1) at these thresholds (METHOD.md ranges, lower end).
_ILSVRC_THRESHOLD = {"vgg16": 0.45, "resnet50": 0.25, "inception_v3": 0.25, "mobilenetv1_100": 0.5}


@dataclass(frozen=True)
class PaperDefaults:
    alpha: float
    beta: float
    top_k: int
    threshold: float
    clamp_value: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _arch_key(arch: str) -> str:
    key = arch.removeprefix("bas_")
    aliases = {"vgg": "vgg16", "resnet": "resnet50", "inception": "inception_v3", "mobilenet": "mobilenetv1_100",
               "mobilenetv1": "mobilenetv1_100", "inceptionv3": "inception_v3"}  # fmt: skip
    return aliases.get(key, key)


def paper_defaults(arch: str, dataset: str = "cub", variant: str = "ijcv") -> PaperDefaults:
    """alpha, beta, top-k, threshold and L_bas clamp constant of the given release.

    Datasets the papers did not use (and backbones they did not train) get the
    "other datasets" row: alpha 0.5, beta 1.5, top-k 200, threshold 0.1.
    """
    if variant not in ("ijcv", "cvpr"):
        raise ValueError(f"Unknown variant {variant!r}; use 'ijcv' or 'cvpr'.")
    arch, dataset = _arch_key(arch), dataset.lower()
    clamp = 0.0 if variant == "cvpr" or arch == "vgg16" else 1.0
    table = _ALPHA_BETA.get((variant, dataset), {})
    if arch not in table:
        return PaperDefaults(0.5, 1.5, 200, 0.1, clamp)
    alpha, beta = table[arch]
    if dataset == "cub":
        small_k = arch == "vgg16" or (variant == "ijcv" and arch == "mobilenetv1_100")
        top_k = 80 if small_k else 200
        threshold = 0.1 if variant == "ijcv" or arch == "inception_v3" else 0.15
    elif dataset == "ilsvrc":
        top_k, threshold = 1, _ILSVRC_THRESHOLD[arch]
    else:
        top_k, threshold = 200, 0.1
    return PaperDefaults(float(alpha), float(beta), top_k, threshold, clamp)
