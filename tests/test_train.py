"""train/train.py and train/evaluate.py end to end on tiny synthetic data (32 px, 12 train images).

One uninterrupted reference run (a subprocess, as a user would start it) anchors the checks that
need bit-equality: the same config and seed in another process, and a run killed with SIGKILL after
its first checkpoint and resumed, must both end with exactly its weights.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import timm
import torch
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import set_seed
from safetensors.torch import load_file

import bas_zoo

REPO = Path(__file__).resolve().parents[1]
# 12 train images, batch 4: 3 steps per epoch, 6 in all; checkpoints at steps 2 (mid-epoch), 3, 4, 6.
TINY = [
    "dataset=synthetic:size=32,classes=2,per_class=6",
    "model=bas_resnet18",
    "model_args.head_chs=16",
    "method=bas",
    "image_size=32",
    "resize_size=36",
    "epochs=2",
    "batch_size=4",
    "lr=0.01",
    "schedule.name=step",
    "schedule.milestones=[1]",
    "localization.gt_class=true",
    "localization.threshold_from_val=true",
    "eval.every_epochs=1",
    "eval.batch_size=8",
    "eval.grid_images=2",
    "checkpoint.every_steps=2",
    "checkpoint.keep_last=2",
    "log_every_steps=1",
]
METRIC_KEYS = {"top1_loc", "gt_known_loc", "maxboxacc_v1", "maxboxacc_v2", "maxboxacc_v2@50", "pxap", "piou"}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_script = _load("bas_train_script", REPO / "train" / "train.py")
evaluate_script = _load("bas_evaluate_script", REPO / "train" / "evaluate.py")


def _reset_accelerate() -> None:
    """Accelerate keeps process-wide singletons; every in-process run starts from a clean state."""
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    PartialState._reset_state()


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private dataset cache for this session, also for subprocesses; one thread like the session."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["BAS_ZOO_CACHE"] = str(cache)
    return {**os.environ, "BAS_ZOO_CACHE": str(cache), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "train" / "train.py"), "--output-dir", str(out), *TINY, *extra]


def _run_in_process(out: Path, *extra: str) -> dict:
    _reset_accelerate()
    return train_script.main(["--output-dir", str(out), *TINY, *extra])


def _evaluate_on_tiny_test(model_dir: Path) -> dict:
    """train/evaluate.py's GT-known metrics of a saved model on the tiny dataset's test split, on CPU."""
    _reset_accelerate()
    spec = TINY[0].split("=", 1)[1]
    return evaluate_script.main(
        ["--model", str(model_dir), "--dataset", spec, "--gt-class", "--device", "cpu"]
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model" / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    out = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(_command(out), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_run_writes_metrics_model_and_grid(reference: Path) -> None:
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics.keys() >= METRIC_KEYS
    assert "| gt_known_loc |" in (reference / "metrics.md").read_text()
    assert {p.name for p in (reference / "model").iterdir()} == {
        "config.json",
        "model.safetensors",
        "README.md",
    }
    hub_config = json.loads((reference / "model" / "config.json").read_text())
    history = json.loads((reference / "history.json").read_text())
    assert hub_config["model_args"]["loc_threshold"] == pytest.approx(history["threshold"])
    assert hub_config["model_args"]["loc_top_k"] == 1
    assert hub_config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert f"{metrics['gt_known_loc']:.2f}"[:4] in (reference / "model" / "README.md").read_text()
    assert (reference / "grid.png").stat().st_size > 0
    # Checkpoints: the last two kept, none half-written; best chosen on val, never on test.
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == [
        "step_000000004",
        "step_000000006",
    ]
    assert history["best_epoch"] in (1, 2) and [h["epoch"] for h in history["history"]] == [1, 2]
    # The exported folder reloads and evaluate.py reproduces the test metrics from it.
    model = bas_zoo.BASModel.from_pretrained(reference / "model")
    assert torch.equal(model.state_dict()["generator.weight"], _weights(reference)["generator.weight"])
    again = _evaluate_on_tiny_test(reference / "model")
    assert again == pytest.approx(metrics)


def test_same_seed_gives_bit_identical_weights(reference: Path, env: dict[str, str], tmp_path: Path) -> None:
    _run_in_process(tmp_path)
    _assert_same_weights(reference, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(
        (reference / "metrics.json").read_text()
    )


def test_resume_after_sigkill_is_bit_identical(reference: Path, env: dict[str, str], tmp_path: Path) -> None:
    proc = subprocess.Popen(
        _command(tmp_path), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first = tmp_path / "checkpoints" / "step_000000002"
    deadline = time.monotonic() + 300
    while not first.is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-3000:]
    assert first.is_dir() and not (tmp_path / "model").exists()
    # Resume from the mid-epoch checkpoint (epoch 0, 2 of 3 batches): drop any later one.
    for later in (tmp_path / "checkpoints").glob("step_*"):
        if later != first:
            shutil.rmtree(later)
    assert json.loads((first / "trainer_state.json").read_text())["batch"] == 2
    proc = subprocess.run(
        _command(tmp_path, "--resume"), cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout + proc.stderr
    _assert_same_weights(reference, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(
        (reference / "metrics.json").read_text()
    )


def test_both_methods_train_the_same_way_and_export(env: dict[str, str], tmp_path: Path) -> None:
    results = _run_in_process(tmp_path, "--method", "both", "epochs=1", "checkpoint.every_steps=0")
    assert set(results) == {"bas", "cam"}
    for method in ("bas", "cam"):
        run = tmp_path / method
        assert json.loads((run / "metrics.json").read_text()).keys() >= METRIC_KEYS
        assert (run / "model" / "model.safetensors").is_file() and (run / "grid.png").is_file()
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert comparison["bas"]["test"] == json.loads((tmp_path / "bas" / "metrics.json").read_text())
    assert "BAS - CAM" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "bas_vs_cam.png").stat().st_size > 0
    # Same seed, same initial weights; CAM never trains the generator, BAS does.
    bas_w, cam_w = _weights(tmp_path / "bas"), _weights(tmp_path / "cam")
    set_seed(0)
    init = timm.create_model("bas_resnet18", num_classes=2, head_chs=16).state_dict()
    assert torch.equal(cam_w["generator.weight"], init["generator.weight"])
    assert not torch.equal(bas_w["generator.weight"], init["generator.weight"])
    assert not torch.equal(cam_w["extractor.conv1.weight"], init["extractor.conv1.weight"])


def test_nan_loss_stops_naming_step_and_term(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(
        FloatingPointError, match=r"Loss term 'loss' is nan at optimizer step 1 \(epoch 0, batch 0\)"
    ):
        _run_in_process(tmp_path, "loss.beta=.nan")


def test_config_errors_exit_with_the_key(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="did you mean 'loss.alpha'"):
        train_script.main(["--output-dir", str(tmp_path), *TINY, "loss.alpah=1"])


# Run under torchrun: non-main ranks get every file writer of train.py replaced by a tripwire.
WORKER = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("bas_train_script", sys.argv[1])
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)
rank = int(os.environ["RANK"])

def refuse(*args, **kwargs):
    raise AssertionError(f"rank {rank} tried to write files")

if rank != 0:
    for name in ("write_text_atomic", "save_pretrained", "save_grid", "grid"):
        setattr(train, name, refuse)
train.main(sys.argv[2:])
"""


def test_two_processes_match_one_and_only_main_writes(env: dict[str, str], tmp_path: Path) -> None:
    out, worker = tmp_path / "run", tmp_path / "worker.py"
    worker.write_text(WORKER)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(worker), str(REPO / "train" / "train.py"), "--cpu", "--output-dir", str(out), *TINY]
    command += ["epochs=1", "checkpoint.every_steps=1", "eval.grid_images=0"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 x cpu" in proc.stdout
    # Test metrics of the 2-process run (sharded and reduced) == one process on the same data and model.
    metrics = json.loads((out / "metrics.json").read_text())
    single = _evaluate_on_tiny_test(out / "model")
    assert single == metrics
    # Per-process files are the RNG states in checkpoints, nothing else.
    checkpoint = sorted((out / "checkpoints").glob("step_*"))[-1]
    assert {p.name for p in checkpoint.glob("random_states_*")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }
    names = {p.name for p in out.iterdir()}
    assert names == {
        "checkpoints",
        "best",
        "model",
        "metrics.json",
        "metrics.md",
        "history.json",
        "train_config.yaml",
    }
