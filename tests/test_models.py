"""BAS models: METHOD.md shapes, the copy-free background branch, timm conventions."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F

import bas_zoo
from bas_zoo.models._bas import BASOutput

PAPER_MODELS = ["bas_vgg16", "bas_resnet50", "bas_inception_v3", "bas_mobilenetv1_100"]
REGISTERED = [*PAPER_MODELS, "bas_resnet18", "bas_efficientnet_lite0"]
ATTACH_CHS = {"bas_vgg16": 512, "bas_resnet50": 1024, "bas_inception_v3": 768, "bas_mobilenetv1_100": 512}


def small(name: str, **kw) -> bas_zoo.BASModel:
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=3, head_chs=16, **kw)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_layout_shapes_at_224(name: str) -> None:
    # Meta tensors give the shapes of a full-size pass without computing it.
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=200)
        out = model.forward_bas(torch.empty(2, 3, 224, 224), torch.tensor([0, 199]))
    assert model.attach_chs == ATTACH_CHS[name]
    assert out.fpm.shape == (2, 200, 28, 28)
    assert out.cam.shape == (2, 200, 14, 14)
    assert out.logits.shape == out.fg_logits.shape == (2, 200)
    assert out.score.shape == out.bg_score.shape == (2,)
    assert model.pretrained_cfg["crop_pct"] == 1.0
    assert set(model.pretrained_cfg["classifier"]) == {"classifier", "generator"}


def test_registry_lists_every_model() -> None:
    assert set(REGISTERED) <= set(timm.list_models("bas_*"))


def test_paper_loc_defaults_ride_with_the_model() -> None:
    with torch.device("meta"):
        assert timm.create_model("bas_vgg16").loc_top_k == 80
        assert timm.create_model("bas_resnet50").loc_top_k == 200


def _deepcopy_forward_bas(model: bas_zoo.BASModel, x: torch.Tensor, y: torch.Tensor) -> BASOutput:
    """The official formulation: a fresh deep copy of f2 + head runs the background branch."""
    attach = model.f1(x)
    cam = model.forward_cam(model.f2(attach))
    logits = cam.mean((2, 3))
    fpm = torch.sigmoid(model.generator(attach))
    fg = fpm[torch.arange(len(y)), y][:, None]
    f2_copy, ext_copy, cls_copy = (copy.deepcopy(m) for m in (model.f2, model.extractor, model.classifier))
    bg_cam = model.head_act(cls_copy(ext_copy(f2_copy(attach.detach() * (1 - fg)))))
    bg = bg_cam.mean((2, 3))
    fg_logits = (cam * F.avg_pool2d(fg, 2)).mean((2, 3))
    idx = y[:, None]
    return BASOutput(
        logits, fg_logits, cam, fpm, logits.gather(1, idx)[:, 0], bg.gather(1, idx)[:, 0], fg[:, 0]
    )


@pytest.mark.parametrize("variant", ["ijcv", "cvpr"])
def test_background_branch_matches_deep_copy(variant: str) -> None:
    x = torch.randn(4, 3, 64, 64)
    y = torch.tensor([0, 1, 2, 1])
    ours = small("bas_resnet18", head_relu=variant == "cvpr")
    ref = copy.deepcopy(ours)
    loss = bas_zoo.BASLoss(alpha=0.5, beta=1.5, variant=variant)
    out_ours, out_ref = ours.forward_bas(x, y), _deepcopy_forward_bas(ref, x, y)
    for a, b in zip(out_ours, out_ref, strict=True):
        torch.testing.assert_close(a, b)
    loss(out_ours, y)["loss"].backward()
    loss(out_ref, y)["loss"].backward()
    grads_ref = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads_ref[name].grad, msg=name)
    # Running statistics move with the main pass only, exactly like the discarded copy.
    for (name, b), b_ref in zip(ours.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(b, b_ref, msg=name)


def test_background_branch_gradients_reach_generator_and_f1_only() -> None:
    model = small("bas_resnet18")
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    out = model.forward_bas(x, y)
    out.bg_score.sum().backward()
    assert model.generator.weight.grad.abs().sum() > 0
    assert model.f1.conv1.weight.grad.abs().sum() > 0
    for module in (model.f2, model.extractor, model.classifier):
        assert all(p.grad is None for p in module.parameters())


def test_running_stats_ignore_background_branch() -> None:
    model = small("bas_resnet18")
    plain = copy.deepcopy(model)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 2])
    model.forward_bas(x, y)
    plain(x)
    for b, b_plain in zip(model.buffers(), plain.buffers(), strict=True):
        torch.testing.assert_close(b, b_plain)


def test_localize_range_size_topk_and_target() -> None:
    model = small("bas_resnet18").eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        maps = model.localize(x, top_k=2)
        gt = model.localize(x, target=torch.tensor([1, 2]))
        every = model.localize(x, top_k=50)
        _, fpm = model.forward_maps(x, with_logits=False)
    assert maps.shape == gt.shape == (2, 64, 48)
    assert maps.min() >= 0 and maps.max() <= 1 and maps.amax((1, 2)).gt(0.9).all()
    expected = bas_zoo.normalize_maps(fpm.mean(1), model.norm_eps)
    expected = F.interpolate(expected[:, None], size=(64, 48), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(every, expected)
    expected_gt = bas_zoo.normalize_maps(fpm[torch.arange(2), torch.tensor([1, 2])], model.norm_eps)
    torch.testing.assert_close(gt, F.interpolate(expected_gt[:, None], size=(64, 48), mode="bilinear")[:, 0])


def test_localize_constant_and_nan_maps_are_zero() -> None:
    model = small("bas_resnet18").eval()
    torch.nn.init.zeros_(model.generator.weight)
    torch.nn.init.zeros_(model.generator.bias)
    with torch.no_grad():
        assert model.localize(torch.randn(1, 3, 32, 32)).eq(0).all()
        model.generator.bias.fill_(float("nan"))
        maps = model.localize(torch.randn(1, 3, 32, 32), target=torch.tensor([0]))
    assert not maps.isnan().any() and maps.eq(0).all()


def test_normalize_maps_convention() -> None:
    m = torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])
    torch.testing.assert_close(bas_zoo.normalize_maps(m), torch.tensor([[[0.0, 0.5], [0.25, 1.0]]]))
    torch.testing.assert_close(bas_zoo.normalize_maps(m, 1e-5), (m - 1) / (4 + 1e-5))


def _fake_output(score: list[float], bg: list[float], fg_mean: float = 0.25) -> BASOutput:
    b = len(score)
    logits = torch.zeros(b, 3)
    return BASOutput(
        logits, logits.clone(), torch.zeros(b, 3, 2, 2), torch.full((b, 3, 4, 4), fg_mean),
        torch.tensor(score), torch.tensor(bg), torch.full((b, 4, 4), fg_mean),
    )  # fmt: skip


def test_bas_loss_terms_by_hand() -> None:
    y = torch.tensor([0, 1, 2, 0])
    out = _fake_output(score=[2.0, 1.0, -1.0, 1.0], bg=[1.0, 3.0, -2.0, 1.0])
    ijcv = bas_zoo.BASLoss(alpha=0.5, beta=2.0, variant="ijcv")(out, y)
    # relu: (1/2), (3 > 1 -> 1), (0/0 -> 0), (1/1, not strictly greater -> 1.0)
    torch.testing.assert_close(ijcv["bas"], torch.tensor((0.5 + 1 + 0 + 1.0) / 4), atol=1e-6, rtol=0)
    assert ijcv["cls"].item() == pytest.approx(torch.log(torch.tensor(3.0)).item())
    assert ijcv["ac"].item() == pytest.approx(0.25)
    expected = ijcv["cls"] + 0.5 * ijcv["frg"] + ijcv["bas"] + 2.0 * 0.25
    torch.testing.assert_close(ijcv["loss"], expected)
    cvpr = bas_zoo.BASLoss(alpha=0.5, beta=2.0, variant="cvpr")(out, y)
    # raw: 1/2, (3 >= 1 -> 0), (-2 < -1: -2/-1 = 2), (1 >= 1 -> 0)
    torch.testing.assert_close(cvpr["bas"], torch.tensor((0.5 + 0 + 2 + 0) / 4), atol=1e-6, rtol=0)
    vgg = bas_zoo.BASLoss(variant="ijcv", clamp_value=0)(out, y)
    # ijcv with the VGG constant: only the strictly-greater image changes (1 -> 0).
    torch.testing.assert_close(vgg["bas"], torch.tensor((0.5 + 0 + 0 + 1.0) / 4), atol=1e-6, rtol=0)


def test_bas_loss_rejects_unknown_variant() -> None:
    with pytest.raises(ValueError, match="ijcv"):
        bas_zoo.BASLoss(variant="eccv")


def test_paper_defaults_table() -> None:
    d = bas_zoo.paper_defaults("bas_resnet50", "cub", "ijcv")
    assert (d.alpha, d.beta, d.top_k, d.threshold, d.clamp_value) == (0.5, 1.5, 200, 0.1, 1.0)
    d = bas_zoo.paper_defaults("vgg16", "cub", "cvpr")
    assert (d.alpha, d.beta, d.top_k, d.threshold, d.clamp_value) == (0.0, 0.7, 80, 0.15, 0.0)
    d = bas_zoo.paper_defaults("bas_inception_v3", "cub", "cvpr")
    assert (d.top_k, d.threshold) == (200, 0.1)
    assert bas_zoo.paper_defaults("bas_mobilenetv1_100", "cub", "ijcv").top_k == 80
    assert bas_zoo.paper_defaults("bas_vgg16", "ilsvrc", "ijcv").to_dict()["clamp_value"] == 0.0
    d = bas_zoo.paper_defaults("bas_resnet50", "ilsvrc", "cvpr")
    assert (d.alpha, d.beta, d.top_k) == (1.0, 2.0, 1)
    assert bas_zoo.paper_defaults("bas_resnet50", "openimages", "ijcv").beta == 1.5
    other = bas_zoo.paper_defaults("bas_resnet18", "voc", "ijcv")
    assert (other.alpha, other.beta, other.top_k, other.threshold) == (0.5, 1.5, 200, 0.1)


@pytest.mark.parametrize("name", REGISTERED)
def test_timm_conventions(name: str) -> None:
    model = small(name)
    x = torch.randn(2, 3, 64, 64)
    logits = model(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    feats = model.forward_features(x)
    assert feats.shape[1] == model.trunk_chs
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    assert model.get_classifier() is model.classifier
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.generator.out_channels == 5
    assert model.forward_bas(x, torch.tensor([4, 0])).fpm.shape[1] == 5
    model.eval()
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize("name", REGISTERED)
def test_features_only(name: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, features_only=True, head_chs=16)
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == model.feature_info.channels()
    assert [64 // o.shape[-1] for o in outs] == pytest.approx(model.feature_info.reduction(), rel=0.25)


GENERIC = ["resnet10t", "resnext50_32x4d", "regnetx_002", "convnext_atto", "efficientnet_b0",
           "tf_efficientnet_lite0", "mobilenetv3_small_050", "vgg11"]  # fmt: skip


@pytest.mark.parametrize("backbone", GENERIC)
def test_create_bas_model_generic_families(backbone: str) -> None:
    model = bas_zoo.create_bas_model(backbone, num_classes=3, head_chs=16)
    out = model.forward_bas(torch.randn(2, 3, 64, 64), torch.tensor([0, 2]))
    # Generic layout: the generator sits at stride 8 when the backbone has a stride-8 stage.
    assert out.fpm.shape[-2:] == (8, 8)
    assert out.cam.shape[:2] == (2, 3)
    assert timm.create_model("bas_generic", backbone=backbone, num_classes=3, head_chs=16).layout == "generic"


def test_create_bas_model_rejects_unsupported_family() -> None:
    with pytest.raises(ValueError, match="Supported families: convnext.*resnet / resnext.*vgg"):
        bas_zoo.create_bas_model("vit_tiny_patch16_224")
    with pytest.raises(ValueError, match="Unknown timm model"):
        bas_zoo.create_bas_model("not_a_model")


def test_selected_class_maps_equal_full_generator() -> None:
    torch.manual_seed(0)
    model = timm.create_model("bas_resnet18", num_classes=10, head_chs=16).eval()
    x = torch.randn(3, 3, 64, 64)
    index = torch.tensor([[1, 7], [0, 9], [4, 4]])
    with torch.no_grad():
        attach = model.f1(x)
        _, fpm = model.forward_maps(x, with_logits=False)
        selected = model.class_maps(attach, index)  # grouped conv over 2 of 10 filters
        everything = model.class_maps(attach, torch.arange(10).repeat(3, 1))
    torch.testing.assert_close(selected, fpm.gather(1, index[:, :, None, None].expand(-1, -1, 8, 8)))
    torch.testing.assert_close(everything, fpm)


def test_wsss_network_layout() -> None:
    with torch.device("meta"):
        model = timm.create_model("bas_resnet50_wsss")
        out = model.forward_bas(torch.empty(2, 3, 448, 448), torch.tensor([0, 19]))
    assert model.num_classes == 20 and model.classifier.bias is None and model.generator.bias is None
    assert model.classifier.in_channels == 2048 and model.generator.in_channels == 1024
    assert out.cam.shape == out.fpm.shape == (2, 20, 28, 28)  # output stride 16


def test_wsss_foreground_loss_only_trains_the_generator() -> None:
    torch.manual_seed(0)
    model = bas_zoo.create_bas_model("resnet10t", num_classes=3, head_chs=0, head_bias=False, multilabel=True)
    out = model.forward_bas(torch.randn(2, 3, 64, 64), torch.tensor([0, 2]))
    torch.nn.functional.cross_entropy(out.fg_logits, torch.tensor([0, 2])).backward()
    assert model.classifier.weight.grad is None and model.generator.weight.grad.abs().sum() > 0
