"""``python -m medbench``: the Hydra entry point (one job per run, ``-m`` for sweeps).

The task function turns the composed config into a ``Job``, runs it, writes ``result.json`` into
Hydra's output directory (always, also on failure) and prints a one-screen summary. A failed single
run exits 1 after its record is written; in a sweep a failed point is recorded and the sweep goes
on. Errors a user can cause (bad overrides, unknown model, missing GPU) end in one line on stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from medbench.errors import MedbenchError, OutputError
from medbench.cli import signals
from medbench.cli.report import one_line, point_summary, summary_lines
from medbench.cli.signals import Interrupted
from medbench.run.progress import point_line, set_sweep_total
from medbench.text import display_path
from medbench.results.record import Record, failed
from medbench.results.store import collect_env, error_block, provenance, utc_now, write_json_atomic
from medbench.config.given import without_group_defaults
from medbench.config.schema import check_result_file, config_warnings, register_configs, to_job

log = logging.getLogger("medbench")
register_configs()


def register_launchers() -> None:
    """Make medbench's sweeper and ``launcher=isolated`` / ``hydra/launcher=slurm``'s launchers known to Hydra.

    Hydra instantiates launchers only from classes found by scanning the ``hydra_plugins`` package,
    and that scan misses packages of an editable install; registering them by hand works for both
    kinds of install. Without the ``slurm`` extra (hydra-submitit-launcher) there is nothing to do.
    """
    from hydra.core.plugins import Plugins
    from hydra_plugins.medbench_launcher.interleaved_sweeper import InterleavedSweeper

    Plugins.instance().register(InterleavedSweeper)  # hydra/sweeper=interleaved, config.yaml's default
    try:
        from hydra_plugins.medbench_launcher import medbench_submitit
    except ImportError:
        return
    if not medbench_submitit.AVAILABLE:
        return
    for launcher in (medbench_submitit.LocalLauncher, medbench_submitit.SlurmLauncher):
        Plugins.instance().register(launcher)


register_launchers()


OUTCOME_ENV = "MEDBENCH_OUTCOME_FILE"  # where this process tree notes what it wrote (set by ``run_hydra``)


def note_written(kind: str, path: Path | str) -> None:
    """Note a written record (``run``) or a started sweep dir (``sweep``) for the exit status."""
    target = os.environ.get(OUTCOME_ENV)
    if target:
        with open(target, "a") as fh:
            fh.write(json.dumps({kind: str(path)}) + "\n")


def _written(path: Path) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {"run": [], "sweep": []}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        for kind, value in json.loads(line).items():
            out.setdefault(kind, []).append(Path(value))
    return out


def composed_config(cfg: DictConfig) -> dict[str, Any]:
    """The point's full composed config (resolved; the raw tree where an interpolation cannot resolve)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except Exception:
        return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def _config_failure(cfg: DictConfig, exc: Exception, overrides: list[str], choices: dict[str, Any]) -> dict[str, Any]:
    """A failed record for a config that could not become a Job (values out of range)."""
    from medbench.run.telemetry import empty_block

    return failed(error_block(exc), telemetry=empty_block(), env=collect_env(),
                  metadata={"model_name": OmegaConf.select(cfg, "model.name"), "timestamp": utc_now(),
                            "overrides": overrides, "choices": choices, "config": composed_config(cfg)},
                  provenance={**provenance(), "started_at": utc_now(), "ended_at": utc_now()}).to_json()


def run_from_config(cfg: DictConfig) -> dict[str, Any]:
    """Compose → Job → record → ``result.json``; returns a small summary for Hydra's JobReturn."""
    from medbench.inputs.dataset import shared_list_dir
    from medbench.run.runner import run_job  # torch and friends load here, not for --help

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = list(hc.overrides.task)
    choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra")}
    without_group_defaults(cfg, overrides, choices)  # a checkpoint's label and architecture come from itself
    if multirun:
        log.info(point_line(int(hc.job.num) + 1, overrides))
    try:
        result_file = check_result_file(cfg.result_file)
    except MedbenchError:
        result_file = "result.json"  # the failed record still lands in the run dir, under the default name
    try:
        job = to_job(cfg)
    except MedbenchError as exc:
        record = _config_failure(cfg, exc, overrides, choices)
    else:
        # A dataset's benchmark list is shared: by the points of a sweep, and by single runs made side by side.
        list_dir = shared_list_dir(job.input, job.seed, Path(hc.sweep.dir) if multirun else run_dir.parent)
        try:
            record = run_job(job, list_dir=list_dir, overrides=overrides, choices=choices)
        except KeyboardInterrupt as exc:  # SIGINT / SIGTERM (medbench.cli.signals): record the point, then stop
            record = getattr(exc, "record", None)
            if record is not None:
                record["metadata"]["config"] = composed_config(cfg)
                _write_record(run_dir / result_file, record)
            raise
        record["warnings"].extend(config_warnings(job))
        record["metadata"]["config"] = composed_config(cfg)  # every record carries the config it ran with
    record = Record.model_validate(record).to_json()  # what is written is a valid record
    path = _write_record(run_dir / result_file, record)
    note_written("run", path)
    if record["status"] == "ok" and multirun:  # one line a point: the end-of-sweep tables compare them
        log.info(point_summary(record, display_path(path)))
    elif record["status"] == "ok":
        for line in summary_lines(record, display_path(path)):
            log.info(line)
    else:
        log.error("medbench: error: %s  (%s error; record: %s)", record["error"]["message"], record["error"]["type"], display_path(path))
        if record["error"].get("traceback"):
            log.debug(record["error"]["traceback"])
        # Returning (not raising) keeps Hydra from aborting a sweep and from printing its own error banner.
    return {"status": record["status"], "path": str(path), "p50_ms": (record.get("latency") or {}).get("p50_ms")}


def _write_record(path: Path, record: dict[str, Any]) -> Path:
    """Write the record atomically; an existing record there is kept as ``<name>.previous-<stamp>`` (never
    overwritten) and a write that fails (disk full, read-only dir) is one OutputError line, with no partial file."""
    from medbench.config.schema import unique_stamp

    try:
        if path.exists():
            kept = path.with_name(f"{path.name}.previous-{unique_stamp('%Y%m%dT%H%M%S')}")
            os.replace(path, kept)
            log.warning("medbench: %s existed; kept it as %s", display_path(path), kept.name)
        return write_json_atomic(path, record)
    except OSError as exc:
        raise OutputError(f"cannot write the result {path}: {exc.strerror or exc}") from exc


@hydra.main(version_base="1.3", config_path="pkg://medbench.conf", config_name="config")
def hydra_entry(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's task function (see ``run_from_config``)."""
    return run_from_config(cfg)


class SweepDirCallback(Callback):
    """Remembers the sweep dir when a multirun starts, for ``main``'s collation after a sweep that raised.

    Resolved from the very config object the sweeper uses, so ``${now:...}`` gives the same directory.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Remember the sweep dir and write the sweep plan (every point's overrides) before any point starts."""
        from medbench.cli.sweep_plan import plan_points
        from medbench.results.plan import write_plan

        sweep_dir = Path(str(config.hydra.sweep.dir))
        note_written("sweep", sweep_dir)
        points = plan_points(config)
        set_sweep_total(len(points) if points is not None else None)
        log.info("sweep of %s point(s) → %s", len(points) if points is not None else "?", display_path(sweep_dir))
        if points is not None:
            try:
                write_plan(sweep_dir, points)
            except OSError as exc:
                raise OutputError(f"cannot write the sweep plan into {sweep_dir}: {exc.strerror or exc}") from exc


def _collate_stopped_sweep(exc: BaseException, sweep_dir: Path | None) -> None:
    """A sweep raised (a submitit job died under the plugin's own launcher, SIGINT/SIGTERM, sbatch refused a job):
    Hydra skipped its end-of-sweep callback, so write the tables of what is there, print them, say why, exit."""
    from medbench.cli.collate import collate_sweep

    if sweep_dir is None or not sweep_dir.is_dir() or not any(sweep_dir.rglob("overrides.yaml")):
        return
    tables = f"tables of the points that ran are in {sweep_dir}"
    try:
        if collate_sweep(sweep_dir) is None:
            raise OSError("see the log line above")
    except (Exception, KeyboardInterrupt) as collate_exc:  # keep the sweep's own error the one that is reported
        tables = f"no tables written ({_describe(collate_exc)})"
    interrupted = isinstance(exc, KeyboardInterrupt)
    what = f"was {exc}" if isinstance(exc, Interrupted) else "was interrupted" if interrupted else f"stopped: {_describe(exc)}"
    print(f"medbench: error: the sweep {what}; {tables} "
          f"(re-run the missing ones: python -m medbench.resume {sweep_dir})", file=sys.stderr)
    sys.exit(signals.exit_code(exc) if interrupted else 1)


def run_hydra() -> None:
    """The Hydra run (``medbench`` without a subcommand): user errors, signals and failed writes in one line; the
    exit status of a finished run or sweep is computed from the records it wrote (1 when any point is not ok)."""
    from medbench.cli import completion

    if completion.handle(sys.argv[1:]):  # tab completion of `medbench` and `python -m medbench` (README)
        return
    show_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises; we decide how errors look
    logging.raiseExceptions = False  # a full disk must not turn every log line into a traceback on stderr
    signals.install()
    fd, outcome = tempfile.mkstemp(prefix="medbench-outcome-", suffix=".jsonl")
    os.close(fd)
    os.environ[OUTCOME_ENV] = outcome
    try:
        _run_hydra(show_traceback, Path(outcome))
    finally:
        os.environ.pop(OUTCOME_ENV, None)
        Path(outcome).unlink(missing_ok=True)


def _run_hydra(show_traceback: bool, outcome: Path) -> None:
    try:
        hydra_entry()
    except (Exception, KeyboardInterrupt) as exc:
        if show_traceback and not isinstance(exc, KeyboardInterrupt):
            raise
        sweeps = _written(outcome)["sweep"]
        _collate_stopped_sweep(exc, sweeps[-1] if sweeps else None)  # exits when a sweep had started
        if isinstance(exc, KeyboardInterrupt):
            print(f"medbench: error: the run was {exc if isinstance(exc, Interrupted) else 'interrupted'}"
                  f"{_record_note(exc)}", file=sys.stderr)
            sys.exit(signals.exit_code(exc))
        if isinstance(exc, OSError):  # Hydra's own writes (.hydra/, the log file) into a full or read-only dir
            print(f"medbench: error: {_describe(exc)}", file=sys.stderr)
            sys.exit(1)
        if not _is_user_error(exc):
            raise
        print(f"medbench: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(1 if isinstance(exc, OutputError) else 2)
    code = exit_status(_written(outcome))
    if code:
        sys.exit(code)


def exit_status(written: dict[str, list[Path]]) -> int:
    """1 when a point of the sweep (or the single run) has no ok record, else 0 — read from the files."""
    from medbench.results.load import load_dir

    places = list(dict.fromkeys(written["sweep"] or written["run"]))
    for place in places:
        found = load_dir(place)
        if found.skipped or not found.records or any(not r.ok for r in found.records):
            return 1
    return 0 if places else 1


def main() -> None:
    """The ``medbench`` console command: a subcommand (collate, compare, resume, suite, targets) or the Hydra run."""
    from medbench.cli.commands import dispatch

    dispatch(sys.argv[1:], run_hydra)


def _describe(exc: BaseException) -> str:
    """One line; an OSError names its file: ``cannot write out/run/.hydra/config.yaml: No space left on device``."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot write {exc.filename}: {exc.strerror}" if exc.filename else f"cannot write: {exc.strerror}"
    return one_line(exc)


def _record_note(exc: BaseException) -> str:
    record = getattr(exc, "record", None)
    return "; the point's record says interrupted" if record is not None else ""


def _is_user_error(exc: BaseException) -> bool:
    """Errors of composition/overrides (Hydra, OmegaConf) and MedbenchErrors: no traceback for those."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(exc, (MedbenchError, HydraException, OmegaConfBaseException))
