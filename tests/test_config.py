"""Training configs: schema validation, overrides and the shipped hub_configs (no training here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bas_zoo import paper_defaults
from bas_zoo.config import ConfigError, apply_overrides, config_from_dict, load_config, parse_override

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "hub_configs").rglob("*.yaml"))
PAPER_ARCHS = {"bas_vgg16", "bas_resnet50", "bas_inception_v3", "bas_mobilenetv1_100"}


def test_every_dataset_and_release_has_a_config() -> None:
    names = {str(p.relative_to(p.parents[1]).with_suffix("")) for p in CONFIGS}
    for dataset in ("cub", "ilsvrc"):
        for arch in PAPER_ARCHS:
            assert f"{dataset}/{arch}" in names and f"{dataset}/{arch}_cvpr" in names
    assert "openimages/bas_resnet50" in names
    assert "synthetic/bas_resnet18" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_hub_config_is_valid_and_matches_the_paper(path: Path) -> None:
    config = load_config(path)
    assert config.card.license and config.card.tags and config.card.citation
    assert config.eval.val_split != config.eval.test_split
    if config.model not in PAPER_ARCHS:
        return
    variant = config.loss.variant
    assert path.stem.endswith("_cvpr") == (variant == "cvpr")
    assert config.model_args["head_relu"] == (variant == "cvpr")
    expected = paper_defaults(config.model, path.parent.name, variant)
    assert (config.loss.alpha, config.loss.beta, config.loss.clamp_value) == (
        expected.alpha,
        expected.beta,
        expected.clamp_value,
    )
    assert config.localization.threshold == expected.threshold
    if path.parent.name != "openimages":
        assert config.localization.top_k == expected.top_k
    assert (config.lr, config.momentum, config.weight_decay, config.nesterov) == (1e-3, 0.9, 5e-4, True)
    mult = config.lr_mult
    assert (mult.backbone_weight, mult.backbone_bias, mult.head_weight, mult.head_bias) == (1, 2, 10, 20)


def test_overrides_are_typed_and_dotted() -> None:
    config = load_config(
        None,
        [
            "dataset=synthetic:size=32",
            "lr=1e-2",
            "epochs=3",
            "loss.alpha=1",
            "schedule.milestones=[2, 3]",
            "model_args.head_chs=64",
            "localization.gt_class=true",
            "loss.clamp_value=null",
        ],
    )
    assert config.dataset == "synthetic:size=32"
    assert config.lr == 0.01 and isinstance(config.lr, float)
    assert config.loss.alpha == 1.0 and isinstance(config.loss.alpha, float)
    assert config.schedule.milestones == [2, 3]
    assert config.model_args == {"head_chs": 64}
    assert config.localization.gt_class is True and config.loss.clamp_value is None
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


def test_yaml_reads_exponent_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("dataset: synthetic\nlr: 1e-3\nweight_decay: 5.0e-4\n")
    config = load_config(path)
    assert config.lr == 1e-3 and config.weight_decay == 5e-4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss.alpah=1"], "'loss.alpha'"),
        (["epoch=3"], "did you mean 'epochs'"),
        (["localisation.top_k=3"], "did you mean 'localization'"),
        (["model_args.head_ch=8"], "did you mean 'model_args.head_chs'"),
        (["lr=fast"], "'lr' must be float"),
        (["epochs=2.5"], "'epochs' must be int"),
        (["nesterov=1"], "'nesterov' must be bool"),
        (["schedule.milestones=3"], "must be a list"),
        (["method=bass"], "did you mean 'bas'"),
        (["loss=0.5"], "must be a mapping"),
        (["eval.val_split=test"], "never on the test split"),
        (["epochs=0"], "'epochs' must be >= 1"),
        (["oops"], "expected key=value"),
    ],
)
def test_bad_configs_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["dataset=synthetic", *overrides])
    assert message in str(err.value)


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: bas_resnet18\n")
    with pytest.raises(ConfigError, match=r"c.yaml: Missing required config key 'dataset'"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_apply_overrides_does_not_touch_the_input() -> None:
    raw = {"dataset": "synthetic", "loss": {"alpha": 0.5}}
    out = apply_overrides(raw, ["loss.beta=2"])
    assert raw == {"dataset": "synthetic", "loss": {"alpha": 0.5}}
    assert config_from_dict(out).loss.beta == 2.0
