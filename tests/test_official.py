"""Official BAS checkpoints (both releases, four backbones) and our own safetensors load through timm.

Checkpoints are synthesised from the official key lists (shared/official_keys) with random tensors
and saved the way each release's training script saves them. The value checks do not reuse the
converter's tables: the official models and ours register their tensors in the same module order,
so the i-th official tensor must land in the i-th entry of ``model.state_dict()``; a few hand-written
anchors pin names on top of that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import load_pretrained

import bas_zoo  # noqa: F401  (registers the models)
from bas_zoo.models._official import (
    checkpoint_filter_fn,
    convert_official_state_dict,
    load_official_checkpoint,
)

# The official state-dict key lists (copied from the project's shared notes, see its README).
KEYS_DIR = Path(__file__).resolve().parent / "data" / "official_keys"


MODELS = {
    "vgg16": "bas_vgg16",
    "resnet50": "bas_resnet50",
    "inceptionv3": "bas_inception_v3",
    "mobilenetv1": "bas_mobilenetv1_100",
}
RELEASES = ("cvpr", "ijcv")
CASES = [(b, r) for b in MODELS for r in RELEASES]

# Official key -> our key, written out by hand from the two model definitions.
TRUNK_ANCHORS = {
    "vgg16": {
        "conv1_1.weight": "f1.features_0.weight",
        "conv3_3.bias": "f1.features_14.bias",
        "conv4_3.weight": "f1.features_21.weight",
        "conv5_1.weight": "f2.features_24.weight",
        "conv5_3.bias": "f2.features_28.bias",
    },
    "resnet50": {
        "conv1.weight": "f1.conv1.weight",
        "layer3.5.bn3.running_var": "f1.layer3.5.bn3.running_var",
        "layer4.0.downsample.0.weight": "f2.layer4.0.downsample.0.weight",
    },
    "inceptionv3": {
        "Conv2d_1a_3x3.conv.weight": "f1.Conv2d_1a_3x3.conv.weight",
        "Mixed_6e.branch_pool.bn.running_mean": "f1.Mixed_6e.branch_pool.bn.running_mean",
        "Mixed_7a.branch3x3_2.conv.weight": "f2.Mixed_7a.branch3x3_2.conv.weight",
    },
    "mobilenetv1": {
        "model.0.0.weight": "f1.conv_stem.weight",
        "model.0.1.running_mean": "f1.bn1.running_mean",
        "model.1.0.weight": "f1.blocks_0.0.conv_dw.weight",
        "model.3.4.bias": "f1.blocks_1.1.bn2.bias",
        "model.6.3.weight": "f1.blocks_3.0.conv_pw.weight",  # the 256 -> 512 block run at stride 1
        "model.11.4.weight": "f1.blocks_3.5.bn2.weight",
        "model.12.0.weight": "f2.blocks_4.0.conv_dw.weight",
        "model.13.4.num_batches_tracked": "f2.blocks_4.1.bn2.num_batches_tracked",
    },
}
HEAD_ANCHORS = {
    "{cls}.0.weight": "extractor.conv1.weight",
    "{cls}.2.bias": "extractor.conv2.bias",
    "{cls}.4.weight": "classifier.weight",
    "{cls}.4.bias": "classifier.bias",
    "classifier_loc.0.weight": "generator.weight",
}
# Registered f2 copies of the conference ImageNet models (besides classifier_cls_copy).
F2_COPIES = {
    "vgg16": {"conv5_1": "conv_copy_5_1", "conv5_2": "conv_copy_5_2", "conv5_3": "conv_copy_5_3"},
    "resnet50": {"layer4": "layer4_copy"},
    "inceptionv3": {"Mixed_7a": "Mixed_7a_copy", "Mixed_7b": "Mixed_7b_copy", "Mixed_7c": "Mixed_7c_copy"},
    "mobilenetv1": {"model.12": "erase_branch.0", "model.13": "erase_branch.1"},
}


def key_list(backbone: str, release: str) -> list[tuple[str, list[int]]]:
    return [(k, s) for k, s in json.loads((KEYS_DIR / f"{backbone}_{release}.json").read_text())]


def head_name(keys: list[str]) -> str:
    """The extractor's official name: ``classifier`` in the conference InceptionV3."""
    return "classifier" if any(k.startswith("classifier.0.") for k in keys) else "classifier_cls"


def random_state_dict(keys: list[tuple[str, list[int]]], seed: int) -> dict[str, torch.Tensor]:
    """Distinct random values per tensor, scaled so that a forward pass stays finite."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in keys:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.randint(1, 10**6, shape, generator=g)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.1
    return sd


def imagenet_style(sd: dict[str, torch.Tensor], backbone: str, head: str) -> dict[str, torch.Tensor]:
    """DataParallel keys plus the stale registered copies of the conference ImageNet models."""
    copies = {**F2_COPIES[backbone], head: f"{head}_copy"}
    out = {f"module.{k}": v for k, v in sd.items()}
    for key, value in sd.items():
        for src, dst in copies.items():
            if key.startswith(src + "."):
                # Stale values (zeros, stored as one element) must not load over the real ones.
                out[f"module.{dst}{key[len(src) :]}"] = torch.zeros((), dtype=value.dtype).expand_as(value)
    return out


def save_official(sd: dict[str, torch.Tensor], path: Path, release: str) -> None:
    """As the release's training script writes it (legacy serialization in both)."""
    obj = sd if release == "cvpr" else {"model": sd, "best_thr": 0.1, "epoch": 3}
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def assert_loaded(model: torch.nn.Module, official: list[str], sd: dict[str, torch.Tensor]) -> None:
    ours = model.state_dict()
    assert len(ours) == len(official), "every official tensor must have exactly one place in the model"
    for off_key, (our_key, value) in zip(official, ours.items(), strict=True):
        assert value.shape == sd[off_key].shape, (off_key, our_key)
        same = torch.equal(value, sd[off_key])
        assert same, f"{off_key} did not land in {our_key}"


@dataclass
class Case:
    backbone: str
    release: str
    keys: list[str]
    sd: dict[str, torch.Tensor]
    model: bas_zoo.BASModel


@pytest.fixture(scope="module", params=CASES, ids=[f"{b}-{r}" for b, r in CASES])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    backbone, release = request.param
    keys = key_list(backbone, release)
    sd = random_state_dict(keys, seed=CASES.index(request.param))
    path = tmp_path_factory.mktemp("official") / f"{backbone}_{release}.pth.tar"
    save_official(sd, path, release)
    model = timm.create_model(
        MODELS[backbone],
        num_classes=200,
        head_relu=release == "cvpr",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path), num_classes=200),
    )
    path.unlink()
    return Case(backbone, release, [k for k, _ in keys], sd, model)


@pytest.fixture(scope="module")
def meta_models() -> dict[str, bas_zoo.BASModel]:
    """Shape-only models: enough for the converter's validation, built in milliseconds."""
    with torch.device("meta"):
        return {b: timm.create_model(name, num_classes=200) for b, name in MODELS.items()}


def test_release_checkpoint_loads_every_tensor(case: Case) -> None:
    assert_loaded(case.model, case.keys, case.sd)
    ours = case.model.state_dict()
    anchors = {k.format(cls=head_name(case.keys)): v for k, v in HEAD_ANCHORS.items()}
    for off_key, our_key in {**TRUNK_ANCHORS[case.backbone], **anchors}.items():
        same = torch.equal(ours[our_key], case.sd[off_key])
        assert same, f"{off_key} did not land in {our_key}"
    assert case.model.head_relu == (case.release == "cvpr")


def test_release_checkpoint_forward(case: Case) -> None:
    model = case.model.eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64))
        maps = model.localize(torch.randn(1, 3, 64, 64), top_k=5)
    assert logits.shape == (1, 200) and torch.isfinite(logits).all()
    assert maps.shape == (1, 64, 64) and torch.isfinite(maps).all()


def test_imagenet_checkpoint_drops_copies(case: Case, tmp_path: Path) -> None:
    """DataParallel/DDP keys and *_copy / erase_branch tensors; cvpr zip file, ijcv wrapped dict."""
    wrapped = imagenet_style(case.sd, case.backbone, head_name(case.keys))
    assert len(wrapped) > len(case.sd)
    path = tmp_path / "imagenet.pth.tar"
    if case.release == "cvpr":  # DataParallel, default (zip) serialization
        torch.save(wrapped, path)
    else:  # DDP, the journal's wrapped legacy file
        torch.save({"model": wrapped, "epoch": 9}, path, _use_new_zipfile_serialization=False)
    with torch.no_grad():
        for t in case.model.state_dict().values():
            t.zero_()
    cfg = dict(case.model.pretrained_cfg, file=str(path))
    load_pretrained(case.model, pretrained_cfg=cfg, num_classes=200, filter_fn=checkpoint_filter_fn)
    assert_loaded(case.model, case.keys, case.sd)


def test_converter_accounts_for_every_tensor(case: Case, meta_models: dict) -> None:
    model = meta_models[case.backbone]
    out = convert_official_state_dict(case.sd, model)
    assert list(out) == list(model.state_dict())
    extra = dict(case.sd, **{"extra_branch.weight": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"unmapped checkpoint tensors: extra_branch\.weight"):
        convert_official_state_dict(extra, model)
    missing = dict(case.sd)
    dropped = case.keys[len(case.keys) // 2]
    del missing[dropped]
    with pytest.raises(ValueError, match="missing from the checkpoint") as err:
        convert_official_state_dict(missing, model)
    assert list(model.state_dict())[len(case.keys) // 2] in str(err.value)


def test_converter_rejects_other_architectures(case: Case, meta_models: dict) -> None:
    for backbone, model in meta_models.items():
        if backbone == case.backbone:
            continue
        with pytest.raises(ValueError, match="Keys look like an official BAS") as err:
            convert_official_state_dict(case.sd, model)
        msg = str(err.value)
        assert f"model is {MODELS[backbone]}" in msg and repr(MODELS[case.backbone]) in msg


def test_converter_rejects_other_class_count(case: Case, meta_models: dict) -> None:
    sd = dict(case.sd)
    for key, value in case.sd.items():
        if key.split(".")[0] in ("classifier", "classifier_cls", "classifier_loc") and value.shape[0] == 200:
            sd[key] = torch.zeros(()).expand(1000, *value.shape[1:])
    with pytest.raises(ValueError, match="has 1000 classes, model bas_.* has 200: pass num_classes=1000"):
        convert_official_state_dict(sd, meta_models[case.backbone])


# ---- single checks -------------------------------------------------------------------------


def test_wrong_architecture_through_timm(tmp_path: Path) -> None:
    sd = {k: torch.zeros(()).expand(s) for k, s in key_list("vgg16", "ijcv")}  # tiny on disk
    path = tmp_path / "vgg.pth.tar"
    save_official(sd, path, "ijcv")
    with torch.device("meta"), pytest.raises(ValueError) as err:
        timm.create_model(
            "bas_resnet50", pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=200)
        )
    assert "look like an official BAS VGG16 checkpoint, model is bas_resnet50" in str(err.value)
    assert "'bas_vgg16'" in str(err.value)


def test_official_checkpoint_into_generic_layout_names_the_layout() -> None:
    sd = {k: torch.zeros(()).expand(s) for k, s in key_list("resnet50", "cvpr")}
    with torch.device("meta"):
        model = bas_zoo.create_bas_model("resnet50", num_classes=200)
    with pytest.raises(ValueError, match="paper layout; this model has layout 'generic'"):
        convert_official_state_dict(sd, model)


def test_load_official_checkpoint_unwraps_every_format(tmp_path: Path) -> None:
    sd = {"conv1_1.weight": torch.randn(2, 3), "erase_branch.0.weight": torch.randn(2)}
    formats = {
        "cvpr.pth.tar": (sd, False),
        "ijcv.pth.tar": ({"model": sd, "best_thr": 0.1, "epoch": 3}, False),
        "ddp.pth.tar": ({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1}, True),
        "nested.pth": ({"state_dict": {"model": {f"module.{k}": v for k, v in sd.items()}}}, True),
    }
    for name, (obj, zipfile) in formats.items():
        torch.save(obj, tmp_path / name, _use_new_zipfile_serialization=zipfile)
        loaded = load_official_checkpoint(tmp_path / name)
        assert list(loaded) == list(sd), name
        assert all(torch.equal(loaded[k], sd[k]) for k in sd), name
    torch.save({"model": sd, "optimizer": "sgd"}, tmp_path / "x.pth")  # metadata beside: fine
    assert list(load_official_checkpoint(tmp_path / "x.pth")) == list(sd)
    torch.save({"weights": sd}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="'weights' is a dict, not a tensor"):
        load_official_checkpoint(tmp_path / "bad.pth")


def small(num_classes: int, **kw) -> bas_zoo.BASModel:
    return timm.create_model("bas_mobilenetv1_100", num_classes=num_classes, head_chs=16, **kw)


@pytest.fixture(scope="module")
def own_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = small(7)
    with torch.no_grad():  # non-default running stats, so a skipped buffer would show
        for name, t in model.state_dict().items():
            if t.is_floating_point() and "running" in name:
                t.copy_(torch.rand_like(t) + 0.5)
    path = tmp_path_factory.mktemp("own") / "model.safetensors"
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    return path, sd


def test_own_safetensors_round_trip(own_checkpoint: tuple[Path, dict]) -> None:
    path, sd = own_checkpoint
    model = small(7, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=7))
    loaded = model.state_dict()
    assert list(loaded) == list(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    assert set(load_official_checkpoint(path)) == set(sd)  # safetensors stores keys sorted


def test_own_checkpoint_fine_tune_to_new_classes(own_checkpoint: tuple[Path, dict]) -> None:
    """Declared count = checkpoint's, model's differs: trunk loads, timm re-initialises the heads."""
    path, sd = own_checkpoint
    model = small(3, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=7))
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], sd[k]) for k in sd if k.startswith(("f1.", "f2.", "extractor.")))
    assert loaded["classifier.weight"].shape[0] == loaded["generator.weight"].shape[0] == 3


def test_own_checkpoint_wrong_class_count(own_checkpoint: tuple[Path, dict]) -> None:
    path, _ = own_checkpoint
    with torch.device("meta"):
        with pytest.raises(
            ValueError, match="Checkpoint has 7 classes, model bas_mobilenetv1_100 has 3: pass num_classes=7"
        ):
            small(3, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=3))
        with pytest.raises(ValueError, match=r"pretrained_cfg says 200.*num_classes=7"):
            small(7, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_own_checkpoint_of_another_model(own_checkpoint: tuple[Path, dict]) -> None:
    path, _ = own_checkpoint
    with (
        torch.device("meta"),
        pytest.raises(
            ValueError, match=r"does not fit bas_resnet18: unmapped .*f1\.blocks_0.*another backbone"
        ),
    ):
        timm.create_model(
            "bas_resnet18", num_classes=7, head_chs=16, pretrained=True,
            pretrained_cfg_overlay=dict(file=str(path), num_classes=7),
        )  # fmt: skip
