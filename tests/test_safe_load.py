"""Checkpoints load without running their code: real trained files load by default, malicious ones are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from medbench.config.schema import ModelConfig
from medbench.errors import ModelError
from medbench.models import build_model
from medbench.models.safe_load import allowed_globals


def spec(weights: Path, **kw) -> ModelConfig:
    return ModelConfig(name="ckpt", weights=str(weights), **kw)


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("name", ["best.pt", "last.pt"])
def test_real_trained_checkpoints_load_by_default(trained_eca: Path, name: str) -> None:
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(trained_eca / name))
    assert "medbench.models.modules.ECA" in unsafe and "ultralytics.nn.tasks.DetectionModel" in unsafe
    lm = build_model(spec(trained_eca / name))  # default: weights_only=True with the allow-list
    assert lm.task == "detect" and lm.num_classes == 1 and lm.class_names == {0: "lesion"}
    assert sum(type(m).__name__ == "ECA" for m in lm.module.modules()) == 3
    y = lm.module(torch.rand(1, 3, 64, 64))[0]
    assert y.shape == (1, 5, 84)  # 4 box + 1 class, 64 + 16 + 4 anchors at strides 8/16/32


def test_allow_list_is_computed_from_the_module_tree() -> None:
    names = {f"{g.__module__}.{g.__qualname__}" for g in allowed_globals() if isinstance(g, type)}
    assert {"medbench.models.modules.ECA", "ultralytics.nn.modules.block.C2f", "torch.nn.modules.conv.Conv2d",
            "torchvision.models.resnet.ResNet"} <= names
    assert not any(n.startswith(("os.", "posix.", "subprocess.", "builtins.", "ultralytics.nn.autobackend")) for n in names)


def test_a_checkpoint_cannot_construct_a_loader_class(tmp_path: Path) -> None:
    # the restricted unpickler calls allowed classes (REDUCE): AutoBackend(path) would load a second file unsafely
    import pickle

    class Call:
        def __reduce__(self):
            from ultralytics.nn.autobackend import AutoBackend
            return (AutoBackend, (str(tmp_path / "second.pt"),))

    ckpt = tmp_path / "chain.pt"
    with open(ckpt, "wb") as fh:
        pickle.dump({"model": Call()}, fh, protocol=2)
    with pytest.raises(ModelError) as err:
        build_model(spec(ckpt))
    assert "AutoBackend" in str(err.value) and "model.trust_weights" in str(err.value)


def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "best.pt"
    proc = run_python(f"""
        import os, torch
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save({{"model": Payload(), "train_args": {{}}}}, {str(ckpt)!r})
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(ModelError) as err:
        build_model(spec(ckpt))
    msg = str(err.value)
    assert "\n" not in msg and "system" in msg and "model.trust_weights=true" in msg, msg
    assert not marker.exists()


def test_malicious_checkpoint_via_cli_fails_with_a_record(tmp_path: Path, medbench_cli) -> None:
    import json

    marker = tmp_path / "pwned"
    proc = run_python(f"""
        import os, torch
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        torch.save({{"ema": Payload()}}, "evil.pt")
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = medbench_cli("model.weights=evil.pt", "iters=quick", "imgsz=64", "hydra.run.dir=run")
    assert out.returncode == 1 and not marker.exists()
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["status"] == "failed" and record["error"]["type"] == "model"
    assert record["metadata"]["trust_weights"] is False
    assert "model.trust_weights=true" in out.stderr


def _custom_layer_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "mb_user_layers.py").write_text(
        "import torch\nclass FancyAttention(torch.nn.Module):\n"
        "    def forward(self, x):\n        return x * 2\n")
    ckpt = tmp_path / "custom.pt"
    proc = run_python(f"""
        import sys, torch
        sys.path.insert(0, {str(pkg)!r})
        from mb_user_layers import FancyAttention
        torch.save({{"model": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), FancyAttention())}}, {str(ckpt)!r})
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    return ckpt, pkg


def test_custom_layer_needs_imports_or_trust(tmp_path: Path, monkeypatch) -> None:
    ckpt, pkg = _custom_layer_checkpoint(tmp_path)
    monkeypatch.syspath_prepend(str(pkg))
    try:
        with pytest.raises(ModelError) as err:  # importable, but not allowed by default
            build_model(spec(ckpt, kind="torchvision"))
        msg = str(err.value)
        assert "mb_user_layers.FancyAttention" in msg and "model.imports" in msg and "model.trust_weights" in msg
        for kw in ({"imports": ["mb_user_layers"]}, {"trust_weights": True}):
            lm = build_model(spec(ckpt, kind="torchvision", **kw))
            assert type(lm.module[1]).__name__ == "FancyAttention"
            assert torch.equal(lm.module[1](torch.ones(1)), torch.full((1,), 2.0))
    finally:
        sys.modules.pop("mb_user_layers", None)


def test_unimportable_model_imports_is_one_line() -> None:
    with pytest.raises(ModelError) as err:
        build_model(ModelConfig(name="x", cfg="yolov8n.yaml", imports=["no_such_pkg_mb.layers"]))
    assert "model.imports: cannot import no_such_pkg_mb.layers" in str(err.value) and "\n" not in str(err.value)


def test_import_medbench_models_registers_eca_for_ultralytics(tmp_path: Path) -> None:
    proc = run_python("""
        import medbench.models
        from pathlib import Path
        from ultralytics import YOLO
        m = YOLO(str(Path(medbench.models.__file__).parent / "cfg" / "yolov8n-eca.yaml"))
        print(sum(type(x).__name__ == "ECA" for x in m.model.modules()))
        """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "3"


def test_legacy_ultralytics_names_load_as_todays_classes(tmp_path: Path) -> None:
    """Ultralytics 8.0.x pickled ``ultralytics.nn.modules.Conv`` and ``ultralytics.yolo.utils.*``: aliases, no import."""
    from ultralytics.nn.modules.conv import Conv

    path = tmp_path / "old.pt"
    Conv.__module__ = "ultralytics.nn.modules"  # pickle it under the old package-level name
    try:
        torch.save({"model": torch.nn.Sequential(Conv(3, 8))}, path)
    finally:
        Conv.__module__ = "ultralytics.nn.modules.conv"
    assert "ultralytics.nn.modules.Conv" in torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    lm = build_model(spec(path, kind="torchvision"))
    assert type(lm.module[0]) is Conv
