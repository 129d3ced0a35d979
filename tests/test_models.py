"""medbench.models: the six ablation variants, ECA, checkpoints (good and bad), GFLOPs, fusing, torchvision.

Real models and real files only; the checkpoint tests that need a fresh interpreter run one with sys.executable.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach for the network (set before ultralytics is imported)

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from medbench.errors import ModelError
from medbench.models import (
    ECA,
    GFLOPsWarning,
    LoadedModel,
    build_model,
    compute_gflops,
    count_params,
    prepare_for_inference,
    register_modules,
)
from medbench.models.modules import eca_kernel_size
from medbench.config.schema import ModelConfig

REPO = Path(__file__).resolve().parents[1]
CONF_MODEL = REPO / "conf" / "model"
VARIANTS = ("baseline", "ghost", "eca", "p2", "ghost_eca", "ghost_eca_p2")
SUBPROCESS_ENV = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def model_spec(name: str, **overrides) -> ModelConfig:
    """The ModelConfig that Hydra would compose from conf/model/<name>.yaml (schema-checked the same way)."""
    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF_MODEL / f"{name}.yaml"), overrides)
    return OmegaConf.to_object(node)


@pytest.fixture(scope="module")
def variants() -> dict[str, LoadedModel]:
    """All six ablation models, built once for the module (about a second in total)."""
    return {name: build_model(model_spec(name)) for name in VARIANTS}


def ultralytics_params(cfg: str) -> int:
    """Parameter count of Ultralytics' own DetectionModel for a YAML, independent of medbench's build path."""
    from ultralytics.nn.tasks import DetectionModel

    register_modules()  # only needed for medbench's ECA YAMLs
    return sum(p.numel() for p in DetectionModel(cfg, verbose=False).parameters())


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=SUBPROCESS_ENV, capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def assert_one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg


# ---------------------------------------------------------------------------------------------- the six variants


@pytest.mark.parametrize("name", VARIANTS)
def test_conf_file_matches_schema(name: str) -> None:
    spec = model_spec(name)
    assert spec.name == name and spec.kind == "ultralytics" and spec.task == "detect"
    assert spec.weights is None and spec.default_imgsz == 640 and spec.cfg.endswith(".yaml")


def test_variant_params_equal_ultralytics(variants: dict[str, LoadedModel]) -> None:
    assert variants["baseline"].params == 3_157_200
    for name, cfg in (("baseline", "yolov8n.yaml"), ("ghost", "yolov8n-ghost.yaml"), ("p2", "yolov8n-p2.yaml")):
        assert variants[name].params == ultralytics_params(cfg) == count_params(variants[name].module)
    for name in ("eca", "ghost_eca", "ghost_eca_p2"):
        assert variants[name].params == ultralytics_params(variants[name].cfg)


def test_variant_ordering_and_eca_cost(variants: dict[str, LoadedModel]) -> None:
    p = {name: lm.params for name, lm in variants.items()}
    assert p["ghost"] < p["baseline"] < p["p2"]
    ghost_p2 = ultralytics_params("yolov8n-ghost-p2.yaml")
    for with_eca, parent in ((p["eca"], p["baseline"]), (p["ghost_eca"], p["ghost"]), (p["ghost_eca_p2"], ghost_p2)):
        assert 0 < with_eca - parent < 100
        assert with_eca - parent == 3 + 5 + 5  # ECA kernels at 64, 128, 256 channels (scale n)


def test_variants_are_scale_n_random_init_detect(variants: dict[str, LoadedModel]) -> None:
    for name, lm in variants.items():
        m = lm.module
        assert m.yaml["scale"] == "n", name
        assert lm.name == name and lm.kind == "ultralytics" and lm.task == "detect" and lm.random_init
        assert lm.weights is None and lm.weights_sha256 is None and lm.num_classes == 80 and lm.stride == 32
        assert not m.training and all(not q.requires_grad for q in m.parameters())
        assert all(q.dtype == torch.float32 and q.device.type == "cpu" for q in m.parameters())
    assert variants["p2"].module.stride.tolist() == [4.0, 8.0, 16.0, 32.0]
    assert variants["eca"].cfg == str(REPO / "medbench" / "models" / "cfg" / "yolov8n-eca.yaml")


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_gives_detect_output(variants: dict[str, LoadedModel], name: str) -> None:
    lm = variants[name]
    with torch.inference_mode():
        out = lm.module(torch.rand(2, 3, 64, 64))
    pred = out[0] if isinstance(out, (tuple, list)) else out
    strides = lm.module.stride.tolist()
    anchors = sum((64 // int(s)) ** 2 for s in strides)
    assert pred.shape == (2, 4 + 80, anchors)


def test_eca_channels_equal_preceding_layer_output(variants: dict[str, LoadedModel]) -> None:
    """The `[c2]` YAML trick: each ECA's channel count is what the layer before it really outputs."""
    for name in ("eca", "ghost_eca", "ghost_eca_p2"):
        layers = variants[name].module.model
        seen: dict[int, int] = {}
        hooks = [
            layers[i - 1].register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(i, out.shape[1]))
            for i, layer in enumerate(layers)
            if isinstance(layer, ECA)
        ]
        try:
            with torch.inference_mode():
                variants[name].module(torch.rand(1, 3, 64, 64))
        finally:
            for h in hooks:
                h.remove()
        ecas = {i: layer for i, layer in enumerate(layers) if isinstance(layer, ECA)}
        assert sorted(ecas) == [5, 8, 11], name  # after backbone P3, P4, P5; SPPF is 12
        assert {i: e.c1 for i, e in ecas.items()} == seen == {5: 64, 8: 128, 11: 256}, name
        assert layers[12].f == -1 and layers[14].f == [-1, 8] and layers[17].f == [-1, 5], name  # neck reads ECA


# ---------------------------------------------------------------------------------------------- ECA unit


@pytest.mark.parametrize("channels, k", [(16, 3), (32, 3), (64, 3), (128, 5), (256, 5)])
def test_eca_kernel_size_shape_and_params(channels: int, k: int) -> None:
    assert eca_kernel_size(channels) == k
    eca = ECA(channels)
    assert eca.k == k and eca.conv.kernel_size == (k,) and eca.conv.padding == (k // 2,)
    assert count_params(eca) == k
    x = torch.rand(2, channels, 7, 5)
    y = eca(x)
    assert y.shape == x.shape
    # attention weights are a sigmoid: the output is the input scaled channel-wise by (0, 1)
    ratio = y / x
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)
    assert bool(((ratio > 0) & (ratio < 1)).all())


def test_register_modules_is_idempotent() -> None:
    import ultralytics.nn.tasks as tasks

    register_modules()
    register_modules()
    assert tasks.ECA is ECA and ECA.__module__ == "medbench.models.modules"


# ---------------------------------------------------------------------------------------------- checkpoints


def save_like_trainer(model: nn.Module, path: Path) -> None:
    """What ultralytics' trainer.save_model writes: a half-precision deepcopy under 'ema', 'model' None."""
    ckpt = {"epoch": -1, "best_fitness": None, "model": None, "ema": copy.deepcopy(model).half(), "train_args": {}}
    torch.save(ckpt, path)


@pytest.fixture(scope="module")
def eca_checkpoint(tmp_path_factory) -> tuple[Path, nn.Module]:
    """A trained-style ECA checkpoint with 3 named classes, and the fp32 reference it should load back as."""
    lm = build_model(model_spec("eca", num_classes=3))
    lm.module.names = {0: "lesion", 1: "polyp", 2: "cyst"}
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_like_trainer(lm.module, path)
    reference = copy.deepcopy(lm.module).half().float().eval()
    return path, reference


def test_checkpoint_loads_as_float_with_its_classes(eca_checkpoint, monkeypatch) -> None:
    path, reference = eca_checkpoint
    monkeypatch.chdir(path.parent)
    lm = build_model(model_spec("eca", weights="best.pt"))  # relative to CWD; class count from the checkpoint
    assert lm.weights == str(path) and not lm.random_init and lm.cfg is None
    assert lm.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert lm.task == "detect" and lm.num_classes == 3 and lm.class_names == {0: "lesion", 1: "polyp", 2: "cyst"}
    assert lm.params == count_params(reference) < 3_157_213  # a 3-class head is smaller than the 80-class one
    assert all(q.dtype == torch.float32 and not q.requires_grad for q in lm.module.parameters())
    assert not lm.module.training


def test_eca_checkpoint_round_trip_in_fresh_process(eca_checkpoint, tmp_path: Path) -> None:
    path, reference = eca_checkpoint
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    run_python(
        f"""
        import torch
        torch.set_num_threads(1)
        from medbench.models import build_model
        from medbench.config.schema import ModelConfig
        lm = build_model(ModelConfig(name="eca", weights={str(path)!r}, task="detect"))
        x = torch.load({str(tmp_path / "x.pt")!r})
        with torch.inference_mode():
            y = lm.module(x)[0]
        torch.save({{"params": lm.params, "y": y}}, {str(tmp_path / "y.pt")!r})
        """,
        cwd=tmp_path,
    )
    got = torch.load(tmp_path / "y.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            want = reference(x)[0]
    finally:
        torch.set_num_threads(threads)
    assert got["params"] == count_params(reference)
    assert torch.equal(got["y"], want)


def test_missing_weights_names_path_and_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as err:
        build_model(model_spec("ghost", weights="runs/ghost/seed0/weights/best.pt"))
    assert_one_line(err, "weights file not found", str(tmp_path / "runs/ghost/seed0/weights/best.pt"), f"cwd: {tmp_path}")


@pytest.mark.parametrize("kind", ["text", "zip", "empty", "directory"])
def test_not_a_checkpoint(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "best.pt"
    if kind == "text":
        path.write_text("epoch,loss\n1,0.5\n")
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "not a model")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.mkdir()
    with pytest.raises(ModelError) as err:
        build_model(model_spec("baseline", weights=str(path)))
    assert_one_line(err, "not a PyTorch checkpoint", str(path))


def _save_custom_layer_checkpoint(tmp_path: Path, module_name: str) -> tuple[Path, Path]:
    """In a subprocess, pickle a model whose layer class lives in a throw-away module file."""
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / f"{module_name}.py").write_text("import torch\nclass FancyAttention(torch.nn.Module):\n    pass\n")
    ckpt = tmp_path / "best.pt"
    run_python(
        f"""
        import sys, torch
        sys.path.insert(0, {str(mod_dir)!r})
        from {module_name} import FancyAttention
        torch.save({{"model": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), FancyAttention())}}, {str(ckpt)!r})
        """,
        cwd=tmp_path,
    )
    return ckpt, mod_dir


def test_checkpoint_with_unimportable_module(tmp_path: Path) -> None:
    ckpt, _ = _save_custom_layer_checkpoint(tmp_path, "medbench_gone_layers")
    assert "medbench_gone_layers" not in sys.modules  # that module is not importable from this process
    with pytest.raises(ModelError) as err:  # by default nothing is imported: the class is named, with the opt-ins
        build_model(model_spec("eca", weights=str(ckpt)))
    assert_one_line(err, f"checkpoint {ckpt} needs medbench_gone_layers.FancyAttention", "model.trust_weights=true")
    with pytest.raises(ModelError) as err:
        build_model(model_spec("eca", weights=str(ckpt), trust_weights=True))
    assert_one_line(err, f"checkpoint {ckpt} needs module 'medbench_gone_layers' which cannot be imported here")


def test_checkpoint_with_missing_class(tmp_path: Path, monkeypatch) -> None:
    ckpt, mod_dir = _save_custom_layer_checkpoint(tmp_path, "medbench_renamed_layers")
    (mod_dir / "medbench_renamed_layers.py").write_text("import torch\n")  # the class was renamed away since
    monkeypatch.syspath_prepend(str(mod_dir))
    try:
        with pytest.raises(ModelError) as err:
            build_model(model_spec("eca", weights=str(ckpt), trust_weights=True))
    finally:
        sys.modules.pop("medbench_renamed_layers", None)  # unpickling imported it; leave no trace for other tests
    assert_one_line(err, "needs module 'medbench_renamed_layers.FancyAttention'")


def test_classify_checkpoint_for_detect_config(tmp_path: Path) -> None:
    from ultralytics.nn.tasks import ClassificationModel

    path = tmp_path / "cls.pt"
    save_like_trainer(ClassificationModel("yolov8n-cls.yaml", nc=4, verbose=False), path)
    with pytest.raises(ModelError) as err:
        build_model(model_spec("baseline", weights=str(path)))
    assert_one_line(err, f"checkpoint {path} is a classify model but model.task is detect")
    lm = build_model(model_spec("baseline", weights=str(path), task="classify"))
    assert lm.task == "classify" and lm.num_classes == 4


def test_state_dict_is_not_an_ultralytics_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "sd.pt"
    torch.save(nn.Conv2d(3, 4, 1).state_dict(), path)
    with pytest.raises(ModelError) as err:
        build_model(model_spec("baseline", weights=str(path)))
    assert_one_line(err, "state_dict")


# ---------------------------------------------------------------------------------------------- cfg resolution


def test_cfg_relative_to_cwd_wins(tmp_path: Path, monkeypatch) -> None:
    src = REPO / "medbench" / "models" / "cfg" / "yolov8n-eca.yaml"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolov8n-mine.yaml").write_text(src.read_text())
    monkeypatch.chdir(tmp_path)
    lm = build_model(model_spec("baseline", cfg="models/yolov8n-mine.yaml", num_classes=2))
    assert lm.cfg == str(tmp_path / "models" / "yolov8n-mine.yaml")
    assert lm.num_classes == 2 and lm.module.yaml["scale"] == "n"


@pytest.mark.parametrize(
    "cfg, message",
    [
        ("yolov8n-nonexistent.yaml", "model cfg not found: yolov8n-nonexistent.yaml"),
        ("yolov8n.pt", "model.weights"),
        ("yolov8n-cls.yaml", "is a classify model but model.task is detect"),
    ],
)
def test_bad_cfg(cfg: str, message: str) -> None:
    with pytest.raises(ModelError) as err:
        build_model(model_spec("baseline", cfg=cfg))
    assert_one_line(err, message)


def test_unknown_layer_in_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "yolov8n-bad.yaml"
    bad.write_text((REPO / "medbench/models/cfg/yolov8n-eca.yaml").read_text().replace("ECA, [c2]]", "CBAM2, [c2]]"))
    with pytest.raises(ModelError) as err:
        build_model(model_spec("baseline", cfg=str(bad)))
    assert_one_line(err, "unknown layer", "CBAM2")


# ---------------------------------------------------------------------------------------------- GFLOPs and fusing


def test_gflops_match_ultralytics(variants: dict[str, LoadedModel]) -> None:
    from ultralytics.utils.torch_utils import get_flops

    m = variants["baseline"].module
    gflops = compute_gflops(m, (640, 640))
    assert isinstance(gflops, float) and gflops == pytest.approx(get_flops(m, 640), rel=1e-6)
    assert 8.5 < gflops < 9.2  # "8.9 GFLOPs" in Ultralytics' yolov8n summary
    assert compute_gflops(m, (1280, 1280)) == pytest.approx(4 * gflops, rel=0.02)
    assert count_params(m) == 3_157_200  # profiling leaves the model as it was


class FixedSizeMLP(nn.Module):
    """A model that only accepts 32x32 inputs (flatten + Linear): thop's small stride-aligned probes fail on it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_gflops_none_with_warning_when_profiling_fails() -> None:
    with pytest.warns(GFLOPsWarning, match="GFLOPs unavailable"):
        assert compute_gflops(FixedSizeMLP(), (32, 32)) is None


def test_fuse_after_counting(variants: dict[str, LoadedModel]) -> None:
    lm = build_model(model_spec("eca"))
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        before = lm.module(x)[0]
    module, fused = prepare_for_inference(lm.module, fuse=True)
    assert fused and module.is_fused() and lm.params == 3_157_213 > count_params(module)
    with torch.inference_mode():
        after = module(x)[0]
    assert torch.allclose(before, after, rtol=1e-3, atol=1e-3)
    unfused, flag = prepare_for_inference(variants["ghost"].module, fuse=False)
    assert flag is False and count_params(unfused) == variants["ghost"].params


# ---------------------------------------------------------------------------------------------- torchvision


def test_resnet50_random_init() -> None:
    spec = model_spec("resnet50")
    assert spec.kind == "torchvision" and spec.task == "classify" and spec.default_imgsz == 224
    lm = build_model(spec)
    assert lm.params == 25_557_032 and lm.num_classes == 1000 and lm.random_init and lm.stride is None
    assert lm.task == "classify" and lm.cfg == "resnet50"
    module, fused = prepare_for_inference(lm.module, fuse=True)
    assert fused is False and count_params(module) == 25_557_032
    gflops = compute_gflops(module, (224, 224))
    assert gflops is not None and 7.5 < gflops < 9.0  # 4.1 GMACs


def test_vit_conf_file() -> None:
    spec = model_spec("vit_b_16")
    assert (spec.kind, spec.cfg, spec.task, spec.default_imgsz) == ("torchvision", "vit_b_16", "classify", 224)


def test_torchvision_num_classes_and_state_dict_weights(tmp_path: Path) -> None:
    lm = build_model(model_spec("resnet50", cfg="resnet18", num_classes=7))
    assert lm.num_classes == 7
    path = tmp_path / "r18.pt"
    torch.save(lm.module.state_dict(), path)
    loaded = build_model(model_spec("resnet50", cfg="resnet18", num_classes=7, weights=str(path)))
    assert not loaded.random_init and loaded.weights == str(path)
    assert all(torch.equal(a, b) for a, b in zip(lm.module.state_dict().values(), loaded.module.state_dict().values()))


def test_unknown_torchvision_factory() -> None:
    with pytest.raises(ModelError) as err:
        build_model(model_spec("resnet50", cfg="resnet5O"))
    assert_one_line(err, "unknown torchvision classification model 'resnet5O'", "resnet50")


def test_warnings_module_untouched() -> None:
    """compute_gflops warns through `warnings`, so callers can capture the text into the result's warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compute_gflops(FixedSizeMLP(), (64, 64))
    assert len(caught) == 1 and issubclass(caught[0].category, GFLOPsWarning)


def test_model_cache_hands_out_seeded_independent_copies():
    """A sweep reuses a built model: same seed → same weights, each job gets its own module to fuse/cast."""
    from medbench.models import ModelCache

    cache = ModelCache(capacity=2)
    spec = ModelConfig(name="baseline", cfg="yolov8n.yaml")
    first, hit1 = cache.get(spec, seed=1)
    second, hit2 = cache.get(ModelConfig(name="renamed", cfg="yolov8n.yaml"), seed=1)
    assert (hit1, hit2) == (False, True)
    assert second.name == "renamed" and second.module is not first.module
    for a, b in zip(first.module.state_dict().values(), second.module.state_dict().values()):
        assert torch.equal(a, b)
    second.module.fuse(verbose=False)  # what a job does to its copy must not reach the cache
    third, _ = cache.get(spec, seed=1)
    assert not third.module.is_fused() and count_params(third.module) == 3_157_200
    other, hit = cache.get(spec, seed=2)
    assert not hit
    w1, w2 = (next(iter(m.module.state_dict().values())) for m in (first, other))
    assert not torch.equal(w1, w2)  # another seed, other random-init weights
    cache.get(ModelConfig(name="ghost", cfg="yolov8n-ghost.yaml"), seed=1)
    assert len(cache.models) == 2  # capacity: the least recently used build went out
