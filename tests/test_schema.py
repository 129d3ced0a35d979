"""Real Hydra composition of the shipped config tree, and validation into a Job."""

import pytest
from omegaconf.errors import OmegaConfBaseException, ValidationError

from medbench.errors import ConfigError
from medbench.config.schema import Job, parse_imgsz, to_job


def test_default_config_composes_to_the_default_job(compose_cfg):
    job = to_job(compose_cfg())
    assert isinstance(job, Job)
    assert (job.device, job.imgsz, job.batch, job.seed, job.scope) == ("auto", (640, 640), 1, 42, "forward")
    assert job.model.name == "baseline" and job.model.cfg == "yolov8n.yaml" and job.model.weights is None
    assert job.input.kind == "synthetic"
    assert (job.iters.warmup, job.iters.iters) == (50, 300)
    assert job.runtime.precision == "fp32"


def test_overrides_and_groups(compose_cfg):
    job = to_job(compose_cfg("device=0", "imgsz=[480,640]", "batch=8", "iters=quick", "model.weights=x.pt"))
    assert job.device == "0" and job.imgsz == (480, 640) and job.batch == 8
    assert job.iters.iters == 10 and job.model.weights == "x.pt"


def test_imgsz_follows_the_model_kind(compose_cfg):
    assert to_job(compose_cfg("model=resnet50")).imgsz == (224, 224)
    assert to_job(compose_cfg("model=resnet50", "imgsz=160")).imgsz == (160, 160)


@pytest.mark.parametrize("override", ["batch=abc", "iters.iters=many", "runtime.channels_last=maybe"])
def test_wrong_types_fail_at_composition(compose_cfg, override):
    with pytest.raises(Exception) as err:
        compose_cfg(override)
    assert isinstance(err.value.__cause__ or err.value, (ValidationError,)) or "could not be converted" in str(err.value)


def test_typo_key_fails_at_composition(compose_cfg):
    with pytest.raises(Exception) as err:
        compose_cfg("runtime.precison=fp16")
    assert isinstance(err.value.__cause__, OmegaConfBaseException) and "precison" in str(err.value.__cause__)


@pytest.mark.parametrize(("override", "match"), [("+runtime.precison=fp16", "runtime.precision"), ("+bacth=2", "batch")])
def test_appended_unknown_keys_are_refused_with_a_hint(compose_cfg, override, match):
    with pytest.raises(ConfigError, match=f"unknown config key .*did you mean {match}"):
        to_job(compose_cfg(override))


@pytest.mark.parametrize(
    ("override", "match"),
    [("batch=0", "batch must be >= 1"), ("imgsz=-1", "imgsz must be positive"), ("imgsz=abc", "imgsz must be"),
     ("imgsz=[1,2,3]", "imgsz must be an int or"), ("runtime.precision=fp8", "runtime.precision must be one of"),
     ("scope=everything", "scope must be one of"), ("iters.iters=0", "iters.iters must be >= 1"),
     ("input.kind=webcam", "input.kind must be one of")],
)
def test_bad_values_are_one_line_config_errors(compose_cfg, override, match):
    with pytest.raises(ConfigError, match=match) as err:
        to_job(compose_cfg(override))
    assert "\n" not in str(err.value)


def test_parse_imgsz():
    assert parse_imgsz(320) == (320, 320)
    assert parse_imgsz([480, 640]) == (480, 640)
    assert parse_imgsz("256") == (256, 256)
