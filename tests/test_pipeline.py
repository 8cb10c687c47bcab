"""The localization pipeline: every field at each image's ORIGINAL size, forcing, defaults, bad input."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import timm
import torch
import torch.nn.functional as F

import bas_zoo
from bas_zoo.data.image import ImageLoadError
from bas_zoo.models._inference import WinogradConv2d, inference_copy
from bas_zoo.pipeline import LocalizationPipeline, overlay, pipeline

SIZE = 64  # model input size for the tests: a tiny forward


@pytest.fixture(scope="module")
def base_model() -> bas_zoo.BASModel:
    torch.manual_seed(0)
    model = timm.create_model("bas_resnet18", num_classes=3, head_chs=16).eval()
    model.pretrained_cfg = {
        **model.pretrained_cfg,
        "input_size": (3, SIZE, SIZE),
        "label_names": ["a", "b", "c"],
    }
    return model


@pytest.fixture
def model(base_model: bas_zoo.BASModel) -> bas_zoo.BASModel:
    return copy.deepcopy(base_model)


def _rng_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def mixed(tmp_path: Path) -> tuple[list, list[tuple[int, int]]]:
    """Mixed-size inputs of every accepted kind, and their (H, W)."""
    path = tmp_path / "photo.png"
    PIL.Image.fromarray(_rng_image(37, 64, 1)).save(path)
    gray = np.random.default_rng(2).integers(0, 256, (48, 32), dtype=np.uint8)
    items = [PIL.Image.fromarray(_rng_image(40, 50, 3)), _rng_image(33, 61, 4), gray, str(path), path]
    return items, [(40, 50), (33, 61), (48, 32), (37, 64), (37, 64)]


def _manual_map(model: bas_zoo.BASModel, image: np.ndarray, **kw) -> np.ndarray:
    """Independent reference: PIL resize, normalize, model.forward_localize, torch half-pixel resize."""
    h, w = image.shape[:2]
    small = np.array(PIL.Image.fromarray(image).resize((SIZE, SIZE), PIL.Image.Resampling.BILINEAR))
    x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        _, maps = model.forward_localize((x - mean) / std, **kw)
    return F.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def test_every_field_at_the_original_size(model: bas_zoo.BASModel, mixed) -> None:
    items, sizes = mixed
    results = pipeline(model)(items, batch_size=2)
    assert isinstance(results, list) and len(results) == len(items)
    for res, (h, w) in zip(results, sizes, strict=True):
        assert set(res) == {"label", "label_id", "score", "map", "boxes", "mask"}
        assert isinstance(res["label_id"], int) and 0 <= res["label_id"] < 3
        assert res["label"] == "abc"[res["label_id"]]
        assert isinstance(res["score"], float) and 0.0 < res["score"] <= 1.0
        assert res["map"].dtype == np.float32 and res["map"].shape == (h, w)
        assert res["map"].min() >= 0.0 and res["map"].max() <= 1.0
        assert res["mask"].dtype == np.bool_ and res["mask"].shape == (h, w)
        assert len(res["boxes"]) == 1  # mode "largest"
        for x0, y0, x1, y1 in res["boxes"]:
            assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h
    single = pipeline(model)(items[1])
    assert isinstance(single, dict)
    np.testing.assert_allclose(single["map"], results[1]["map"], atol=1e-5)


def test_map_matches_an_independent_reference(model: bas_zoo.BASModel) -> None:
    image = _rng_image(45, 70, 5)
    res = pipeline(model)([image, _rng_image(64, 64, 6)], batch_size=8)[0]
    np.testing.assert_allclose(res["map"], _manual_map(model, image), atol=2e-5)


def test_cam_source_reads_the_classifier_maps(model: bas_zoo.BASModel) -> None:
    image = _rng_image(45, 70, 5)
    res = pipeline(model, source="cam")(image, target=1)
    small = np.array(PIL.Image.fromarray(image).resize((SIZE, SIZE), PIL.Image.Resampling.BILINEAR))
    x = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(
        model.pretrained_cfg["std"]
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        cam = bas_zoo.normalize_maps(model.forward_cam(model.forward_features(x))[:, 1], model.norm_eps)
    ref = F.interpolate(cam[:, None], size=(45, 70), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(res["map"], ref, atol=2e-5)
    assert res["label_id"] == 1 and res["map"].shape == (45, 70)


def test_batch_size_does_not_change_results(model: bas_zoo.BASModel, mixed) -> None:
    items, _ = mixed
    pipe = pipeline(model)
    for a, b in zip(pipe(items, batch_size=1), pipe(items, batch_size=8), strict=True):
        np.testing.assert_allclose(a["map"], b["map"], atol=1e-5)
        assert a["label_id"] == b["label_id"] and a["boxes"] == b["boxes"]


def test_target_forces_class_score_and_map(model: bas_zoo.BASModel) -> None:
    images = [_rng_image(40, 40, 7), _rng_image(50, 30, 8)]
    pipe = pipeline(model)
    forced = pipe(images, target=2)
    assert [r["label_id"] for r in forced] == [2, 2] and forced[0]["label"] == "c"
    per_image = pipe(images, target=[0, 1])
    assert [r["label_id"] for r in per_image] == [0, 1]
    np.testing.assert_allclose(
        per_image[1]["map"], _manual_map(model, images[1], target=torch.tensor([1])), atol=2e-5
    )
    # The score is the forced class's softmax probability: the three classes sum to one.
    total = sum(pipe(images[0], target=c)["score"] for c in range(3))
    assert total == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        pipe(images, target=3)
    with pytest.raises(ValueError, match="one per image"):
        pipe(images, target=[0])


def test_defaults_come_from_the_model(model: bas_zoo.BASModel) -> None:
    model.loc_threshold, model.loc_top_k = 0.37, 2
    pipe = pipeline(model)
    assert (pipe.threshold, pipe.top_k) == (0.37, 2)
    image = _rng_image(40, 40, 9)
    np.testing.assert_allclose(pipe(image)["map"], _manual_map(model, image, top_k=2), atol=2e-5)
    res = pipe(image)
    np.testing.assert_array_equal(res["mask"], bas_zoo.localize.mask_from_map(res["map"], 0.37))
    explicit = pipeline(model, threshold=0.8, top_k=1)
    assert (explicit.threshold, explicit.top_k) == (0.8, 1)
    assert explicit(image)["mask"].sum() <= pipe(image)["mask"].sum()


def _synthetic_maps(model: bas_zoo.BASModel, spots: list[tuple[slice, slice]]) -> bas_zoo.BASModel:
    """Class 1 wins; its generator map is hot on ``spots`` of the 8 x 8 grid, the others are flat."""

    def class_maps(attach: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        fpm = torch.zeros(attach.shape[0], 3, 8, 8)
        for rows, cols in spots:
            fpm[:, 1, rows, cols] = 1.0
        return fpm.gather(1, index[:, :, None, None].expand(-1, -1, 8, 8))

    def forward_head(features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return torch.tensor([[0.0, 5.0, 0.0]]).expand(features.shape[0], -1)

    model.class_maps = class_maps  # type: ignore[method-assign]
    model.forward_head = forward_head  # type: ignore[method-assign]
    return model


def test_hot_spot_gives_a_box_around_it_in_original_pixels(model: bas_zoo.BASModel) -> None:
    # 8 x 8 generator grid on an 80 (H) x 160 (W) image: a cell is 10 rows x 20 columns.
    _synthetic_maps(model, [(slice(2, 4), slice(4, 6)), (slice(6, 7), slice(0, 1))])
    pipe = pipeline(model, threshold=0.5)
    res = pipe(_rng_image(80, 160))
    assert res["label_id"] == 1 and res["score"] > 0.98
    # top-k averages maps over k classes, but the label is still the top-1 class.
    top2 = pipeline(model, threshold=0.5, top_k=2)(_rng_image(80, 160))
    assert top2["label_id"] == 1 and top2["boxes"] == res["boxes"]
    ((x0, y0, x1, y1),) = res["boxes"]
    assert abs(x0 - 80) <= 6 and abs(x1 - 120) <= 6 and abs(y0 - 20) <= 4 and abs(y1 - 40) <= 4
    assert res["mask"][30, 100] and not res["mask"][5, 5]
    both = pipe(_rng_image(80, 160), mode="all")["boxes"]
    assert len(both) == 2
    assert any(abs(b[0] - 0) <= 6 and abs(b[1] - 60) <= 4 and abs(b[3] - 70) <= 4 for b in both)
    assert pipeline(model, threshold=0.5, mode="all")(_rng_image(80, 160))["boxes"] == both


def test_overlay_is_rgb_at_the_original_size(model: bas_zoo.BASModel, tmp_path: Path) -> None:
    _synthetic_maps(model, [(slice(2, 4), slice(4, 6))])
    image = np.full((80, 160, 3), 128, dtype=np.uint8)
    res = pipeline(model, threshold=0.5)(image)
    out = overlay(image, res)
    assert isinstance(out, PIL.Image.Image) and out.mode == "RGB" and out.size == (160, 80)
    arr = np.asarray(out).astype(int)
    # jet: hot (red) at the spot, cold (blue) far from it.
    assert arr[32, 100, 0] > arr[32, 100, 2] and arr[70, 10, 2] > arr[70, 10, 0]
    path = tmp_path / "o.png"
    overlay(image, res, alpha=0.3, colormap="viridis").save(path)
    assert PIL.Image.open(path).size == (160, 80)
    with pytest.raises(ValueError, match="colormap"):
        overlay(image, res, colormap="nope")
    with pytest.raises(ValueError, match="failed result"):
        overlay(image, {"error": "x"})


@pytest.fixture
def bad_inputs(tmp_path: Path) -> dict[str, object]:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 4)
    full = tmp_path / "full.png"
    PIL.Image.fromarray(_rng_image(60, 60)).save(full)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    return {
        "missing": str(tmp_path / "missing.jpg"),
        "corrupt": str(corrupt),
        "truncated": str(truncated),
        "empty file": str(empty),
        "zero-size array": np.zeros((0, 10, 3), dtype=np.uint8),
        "zero-size PIL": PIL.Image.new("RGB", (0, 0)),
        "directory": str(folder),
    }


@pytest.mark.parametrize(
    "kind", ["missing", "corrupt", "truncated", "empty file", "zero-size array", "zero-size PIL", "directory"]
)
def test_bad_input_raises_naming_it(model: bas_zoo.BASModel, bad_inputs, kind: str) -> None:
    bad = bad_inputs[kind]
    pipe = pipeline(model)
    with pytest.raises(ImageLoadError) as info:
        pipe([_rng_image(40, 40), bad], batch_size=1)
    message = str(info.value)
    assert "images[1]" in message
    if isinstance(bad, str):
        assert bad in message


def test_errors_skip_keeps_the_batch_going(model: bas_zoo.BASModel, bad_inputs) -> None:
    good = _rng_image(40, 50)
    items = [good, *bad_inputs.values(), good]
    results = pipeline(model, errors="skip")(items, batch_size=3)
    assert len(results) == len(items)
    assert "error" not in results[0] and "error" not in results[-1]
    assert results[-1]["map"].shape == (40, 50)
    for res, bad in zip(results[1:-1], bad_inputs.values(), strict=True):
        assert set(res) == {"error", "input"}
        if isinstance(bad, str):
            assert bad in res["error"] and res["input"] == bad
    assert isinstance(pipeline(model, errors="skip")(bad_inputs["missing"]), dict)


def test_16bit_and_cmyk_images_are_handled(model: bas_zoo.BASModel, tmp_path: Path) -> None:
    deep = tmp_path / "deep.png"
    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 65535, (30, 44), dtype=np.uint16)).save(deep)
    cmyk = tmp_path / "cmyk.jpg"
    PIL.Image.new("CMYK", (52, 36), (10, 200, 30, 0)).save(cmyk)
    results = pipeline(model)([str(deep), str(cmyk), np.zeros((30, 20, 3), dtype=np.uint16) + 4000])
    assert [r["map"].shape for r in results] == [(30, 44), (36, 52), (30, 20)]


def test_argument_checks(model: bas_zoo.BASModel) -> None:
    with pytest.raises(ValueError, match="mode"):
        pipeline(model, mode="biggest")
    with pytest.raises(ValueError, match="errors"):
        pipeline(model, errors="ignore")
    with pytest.raises(ValueError, match="source"):
        pipeline(model, source="gradcam")
    with pytest.raises(ValueError, match="mode"):
        pipeline(model)(_rng_image(40, 40), mode="some")
    with pytest.raises(TypeError, match="BAS model"):
        LocalizationPipeline(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="Cannot resolve model"):
        pipeline("definitely_not_a_model")
    with pytest.warns(UserWarning, match="UNTRAINED"):
        pipe = pipeline("bas_resnet18")
    assert pipe.top_k == pipe.model.loc_top_k and pipe.model.num_classes == 200


# ---- the optimized inference copy (optimize=True, the default) ---------------------------------------
def _random_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so that folding them is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.3, 0.3, generator=g)
    return model


def _assert_same_results(fast: list[dict], plain: list[dict]) -> None:
    for a, b in zip(fast, plain, strict=True):
        assert a["label_id"] == b["label_id"]
        assert a["score"] == pytest.approx(b["score"], rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(a["map"], b["map"], atol=1e-5)


@pytest.mark.parametrize("source", ["generator", "cam"])
def test_optimized_copy_matches_the_model_and_leaves_it_untouched(model, mixed, source: str) -> None:
    _random_norms(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = [type(m) for m in model.modules()]
    items, _ = mixed
    for top_k in (1, 3):  # one class: the grouped generator conv; all three: the full generator
        fast = pipeline(model, source=source, top_k=top_k)
        plain = pipeline(model, source=source, top_k=top_k, optimize=False)
        assert plain.inference_model is model and plain.optimizations == []
        _assert_same_results(fast(items), plain(items))
        _assert_same_results(fast(items, target=[2, 0, 1, 2, 0]), plain(items, target=[2, 0, 1, 2, 0]))
    net = fast.inference_model
    assert net is not model
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # all 20 folded
    assert fast.optimizations[0] == "folded 20 BatchNorm layers into their convolutions"
    assert any(isinstance(m, WinogradConv2d) for m in net.modules())
    # The user's model: same weights, same modules, still trainable.
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [type(m) for m in model.modules()] == kinds
    assert all(p.requires_grad for p in model.parameters())


def test_optimized_segmentation_matches_the_model(model, mixed) -> None:
    model.multilabel = True  # segment=True needs a multi-label model; its weights do not matter here
    _random_norms(model)
    items, _ = mixed
    fast = pipeline(model)(items, segment=True, scales=(1.0, 0.5))
    plain = pipeline(model, optimize=False)(items, segment=True, scales=(1.0, 0.5))
    for a, b in zip(fast, plain, strict=True):
        assert [s["label_id"] for s in a["segments"]] == [s["label_id"] for s in b["segments"]]
        assert np.mean(a["segmentation"] != b["segmentation"]) < 1e-3  # a tie may round either way


@pytest.mark.parametrize("name", ["bas_mobilenetv1_100", "bas_efficientnet_lite0"])
def test_every_batchnorm_of_other_families_folds(name: str) -> None:
    """timm's BatchNormAct2d (BatchNorm + act in one module) and Conv2dSame fold too."""
    torch.manual_seed(0)
    model = _random_norms(timm.create_model(name, num_classes=3, head_chs=16).eval())
    net, notes = inference_copy(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert notes[0].startswith("folded ") and int(notes[0].split()[1]) > 20
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.inference_mode():
        (logits, maps), (ref_logits, ref_maps) = net.forward_maps(x), model.forward_maps(x)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(maps, ref_maps, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("hw", [(8, 8), (7, 10), (1, 3)])
def test_winograd_conv_equals_the_direct_convolution(bias: bool, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(24, 40, 3, padding=1, bias=bias)
    x = torch.randn(3, 24, *hw)
    with torch.no_grad():
        ref = conv(x)
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            out = WinogradConv2d(conv)(inp)
            assert out.shape == ref.shape
            torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="3x3, stride-1"):
        WinogradConv2d(torch.nn.Conv2d(4, 4, 3, stride=2, padding=1))


class _Branchy(torch.nn.Module):
    """Conv + BatchNorm with a value-dependent branch: torch.fx cannot trace it."""

    def __init__(self, chs: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(chs, chs, 1)
        self.bn = torch.nn.BatchNorm2d(chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        return y if bool(y.abs().sum() >= 0) else x


def test_untraceable_module_keeps_its_batchnorm_and_says_so(model, mixed) -> None:
    model.f2.add_module("branchy", _Branchy(model.trunk_chs).eval())
    _random_norms(model)
    with pytest.warns(UserWarning, match=r"not folded .*f2\.branchy \(TraceError"):
        fast = pipeline(model)
    norms = [n for n, m in fast.inference_model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms == ["f2.branchy.bn"]  # every other BatchNorm is still folded
    items, _ = mixed
    _assert_same_results(fast(items), pipeline(model, optimize=False)(items))


def test_a_model_that_cannot_be_copied_runs_as_is(model) -> None:
    model.lock = threading.Lock()  # deepcopy refuses locks
    with pytest.warns(UserWarning, match="cannot copy this model"):
        pipe = pipeline(model)
    assert pipe.inference_model is model and pipe.optimizations == []
    assert pipe(_rng_image(40, 40))["map"].shape == (40, 40)
