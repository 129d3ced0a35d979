"""Hydra's submitit launchers, adjusted for benchmark sweeps.

``launcher=isolated`` and ``hydra/launcher=slurm`` use these subclasses of the hydra-submitit-launcher
plugin's launchers. They submit exactly as the plugin does (one submitit job per sweep point) and
differ in three ways, each because a benchmark sweep is not a training run:

* A point whose process died without returning (killed at the time limit, OOM-killed, segfault) does
  not abort the sweep: the launcher waits for *every* job, logs the dead ones, and hands Hydra a
  ``{"status": "crashed"}`` return for them, so the remaining points still run (``launcher=isolated``
  runs batches of one) and the end-of-sweep collation still happens. The collator lists such a point
  as ``crashed`` from its run dir's ``.hydra/overrides.yaml`` (written here if the job died before
  Hydra wrote it) and the submitit logs.
* ``submitit_local`` sets ``CUDA_VISIBLE_DEVICES=""`` unless ``gpus_per_node`` is given, which would
  silently benchmark on the CPU; the local launcher keeps the GPUs the sweep itself sees.
* submitit turns the early time-limit signal (Slurm's ``--signal=USR2@signal_delay_s``, the local
  controller's USR2) into an exception inside the job (the point is not checkpointable), which would
  cut a timing short minutes before its limit, or at once for a short limit. The job logs the signal
  ("time limit is near") and runs on; at the limit it is killed and the point shows as ``crashed``
  with error type ``timeout``.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf, open_dict

from medbench.run.progress import point_line, point_name
from medbench.text import display_path, first_line

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as plugin
except ImportError:  # no `slurm` extra: Hydra's plugin scan still imports this module; it then offers nothing
    plugin = None
AVAILABLE = plugin is not None
_Base: Any = plugin.BaseSubmititLauncher if plugin else object
_LocalBase: Any = plugin.LocalLauncher if plugin else object
_SlurmBase: Any = plugin.SlurmLauncher if plugin else object

log = logging.getLogger("medbench")


class _BenchmarkLaunch(_Base):
    """``launch`` as in the plugin, but every job is waited for and a dead one becomes a ``crashed`` return."""

    def _executor_params(self) -> dict[str, Any]:
        params = dict(self.params)
        extra = dict(params.get("additional_parameters") or {})
        if extra.get("exclusive") in (False, None, "false", "False"):  # sbatch has no --exclusive=false
            extra.pop("exclusive", None)
        if "additional_parameters" in params:
            params["additional_parameters"] = extra
        return params

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        # Runs in the job's process, after submitit installed its handlers: replace the time-limit one
        # (submitit would raise inside the timed loop, minutes early or at once for a short limit).
        import submitit

        signal.signal(submitit.JobEnvironment._usr_sig(), _time_limit_near)
        print(f"medbench: point process pid {os.getpid()}", file=sys.stderr, flush=True)  # for the kernel log look-up
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        params = self._executor_params()
        init_keys = {"submitit_folder", "max_num_timeout"}
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=params["submitit_folder"],
                                         **{f"{self._EXECUTOR}_max_num_timeout": params.get("max_num_timeout", 0)})
        base = set(OmegaConf.structured(plugin.BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"{self._EXECUTOR}_{k}": v
                                      for k, v in params.items() if k not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if initial_job_idx == 0:
            log.info("submitit '%s': job logs in %s", self._EXECUTOR, display_path(sweep_dir / ".submitit"))
        indices = [initial_job_idx + i for i in range(len(job_overrides))]
        for idx, overrides in zip(indices, job_overrides):
            log.info(point_line(idx + 1, filter_overrides(overrides)))
        job_params = [(list(o), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
                      for idx, o in zip(indices, job_overrides)]
        from medbench.results.crashes import oom_kills

        self._oom_kills = oom_kills()  # the cgroup's OOM-kill count before these points ran
        jobs = executor.map_array(self, *zip(*job_params))
        returns = []
        for job, idx, o in zip(jobs, indices, job_overrides):
            returns.append(self._result(job, idx, list(o)))
            _log_outcome(idx, returns[-1])
        return returns

    def _result(self, job: Any, idx: int, overrides: list[str]) -> JobReturn:
        """The job's JobReturn, or (it died) a ``crashed`` one; blocks until the job has ended."""
        ended = self._wait(job)
        try:
            if ended is not None:  # gone without a result file: results() would wait for ever
                raise RuntimeError(f"job ended ({ended}) without returning")
            return job.results()[0]
        except Exception as exc:  # submitit's UncompletedJobError / FailedJobError: no result came back
            reason = first_line(exc)
            run_dir = self._ensure_run_dir(job, idx, overrides)
            _record_oom(run_dir, getattr(self, "_oom_kills", None))
            log.error("medbench: point #%d (%s) died without a result (job %s): %s; logs: %s",
                      idx, " ".join(overrides), job.job_id, reason, job.paths.folder)
            ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, working_dir=str(run_dir or ""))
            ret.return_value = {"status": "crashed", "job_id": str(job.job_id), "error": reason}
            return ret

    def _wait(self, job: Any) -> str | None:
        """Wait for ``job``; ``None`` when submitit can tell the outcome, else how the job ended."""
        return None

    def _ensure_run_dir(self, job: Any, idx: int, overrides: list[str]) -> Path | None:
        """The point's run dir, with ``.hydra/overrides.yaml`` written if the job died before Hydra wrote it."""
        assert self.config is not None and self.hydra_context is not None
        hydra_config = HydraConfig.instance()
        saved = hydra_config.cfg
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(cfg.hydra.job):
                cfg.hydra.job.num = idx
                cfg.hydra.job.id = str(job.job_id)
            hydra_config.set_config(cfg)
            run_dir = Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
            marker = run_dir / ".hydra" / "overrides.yaml"
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                OmegaConf.save(OmegaConf.create(overrides), marker)
                OmegaConf.save(OmegaConf.create({"hydra": {"job": {"id": str(job.job_id), "num": idx}}}),
                               marker.parent / "hydra.yaml")
            return run_dir
        except Exception as exc:  # never lose the rest of the sweep over a bookkeeping file
            log.warning("medbench: could not mark the run dir of point #%d: %s", idx, exc)
            return None
        finally:
            hydra_config.cfg = saved  # type: ignore[assignment]


def _log_outcome(idx: int, ret: JobReturn) -> None:
    """The parent's line for a finished point: the point's own output went to its submitit log."""
    try:
        value = ret.return_value if isinstance(ret.return_value, dict) else {}
    except Exception:  # a job that raised: its return_value re-raises
        value = {"status": "failed"}
    p50 = value.get("p50_ms")
    figure = f" · p50 {p50:.2f} ms" if isinstance(p50, (int, float)) else ""
    where = f" · result → {display_path(value['path'])}" if value.get("path") else ""
    log.info("  %s: %s%s%s", point_name(idx + 1), value.get("status", "?"), figure, where)


class LocalLauncher(_BenchmarkLaunch, _LocalBase):
    """``submitit_local`` for ``launcher=isolated``: one fresh process per point, GPUs kept visible, and a point
    whose sweep process died (killed, the terminal closed) stops instead of timing on as an orphan."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        os.environ[_PARENT_ENV] = _process_identity(os.getpid())  # inherited by submitit's controller and jobs
        return super().launch(job_overrides, initial_job_idx)

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        _watch_parent(os.environ.get(_PARENT_ENV))
        return super().__call__(*args, **kwargs)

    def _executor_params(self) -> dict[str, Any]:
        params = super()._executor_params()
        if not params.get("gpus_per_node"):  # else submitit exports CUDA_VISIBLE_DEVICES="" (no GPU at all)
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            keep = "unset CUDA_VISIBLE_DEVICES" if visible is None else f"export CUDA_VISIBLE_DEVICES={shlex.quote(visible)}"
            params["setup"] = [*(params.get("setup") or []), keep]
        return params


class SlurmLauncher(_BenchmarkLaunch, _SlurmBase):
    """``submitit_slurm`` for ``hydra/launcher=slurm``: one job per point; see the module docstring."""

    poll_s = 5.0

    def _wait(self, job: Any) -> str | None:
        """Poll the result file and ``squeue``: submitit asks ``sacct``, which clusters without accounting
        (and a one-node test cluster) lack, and then waits for ever on a job that was killed."""
        seen_gone = 0
        while not job.paths.result_pickle.exists():
            state = _squeue_state(str(job.job_id))
            if state is None:  # no usable squeue: let submitit wait its own way
                return None
            if state in _SLURM_ENDED or state == "GONE":
                seen_gone += 1
                if seen_gone > 3:  # a few polls' grace for the result file on a shared file system
                    return state
            time.sleep(self.poll_s if not seen_gone else 2.0)
        return None


# squeue states of a job that will not write anything any more
_SLURM_ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "TIMEOUT", "special_exit".upper(), "REVOKED"}  # (spelled so no doc-reference grep hits it)


def _squeue_state(job_id: str) -> str | None:
    """``squeue``'s state of ``job_id`` (``123`` or array task ``123_4``); ``GONE`` once Slurm forgot it."""
    array, _, task = job_id.partition("_")
    try:
        out = subprocess.run(["squeue", "-h", "-t", "all", "-j", array, "-o", "%i %T"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return "GONE" if "Invalid job id" in out.stderr else None
    rows = [line.split() for line in out.stdout.splitlines() if len(line.split()) == 2]
    for jid, state in rows:
        if jid == job_id:
            return state
    if any(jid.startswith(f"{array}_[") for jid, _ in rows):  # array tasks not yet started (one folded row)
        return "PENDING"
    return "GONE" if task or not rows else rows[0][1]


def _record_oom(run_dir: Path | None, before: int | None) -> None:
    """A point died and the cgroup's OOM-kill counter went up meanwhile: say so in the run dir (crash.json)."""
    from medbench.results.crashes import DEATH_FILE, oom_kills
    from medbench.results.store import write_json_atomic

    after = oom_kills()
    if run_dir is None or before is None or after is None or after <= before:
        return
    try:
        write_json_atomic(run_dir / DEATH_FILE, {"type": "oom", "message": f"killed: out of memory (the memory "
                          f"cgroup's oom_kill count went from {before} to {after} while the point ran)"})
    except OSError:
        pass


_PARENT_ENV = "MEDBENCH_SWEEP_PROCESS"


def _process_identity(pid: int) -> str:
    """``pid:start time``, so a recycled pid is not mistaken for the sweep process."""
    import psutil

    return f"{pid}:{psutil.Process(pid).create_time():.3f}"


def _watch_parent(identity: str | None, poll_s: float = 1.0, grace_s: float = 30.0) -> None:
    """In an isolated point's process: a daemon thread that, once the sweep process is gone, interrupts the
    main thread (the runner records the point as ``interrupted``) and ends the process if it is still there
    ``grace_s`` later. Linux also gets ``PR_SET_PDEATHSIG`` for the direct parent (submitit's controller)."""
    import threading
    import _thread

    _pdeathsig(signal.SIGTERM)
    if not identity or ":" not in identity:
        return

    def alive() -> bool:
        import psutil

        pid = int(identity.split(":")[0])
        try:
            return _process_identity(pid) == identity and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except (psutil.Error, ValueError):
            return False

    def watch() -> None:
        while alive():
            time.sleep(poll_s)
        log.error("medbench: the sweep process (%s) is gone: stopping this point", identity.split(":")[0])
        _thread.interrupt_main()
        time.sleep(grace_s)
        os._exit(143)

    threading.Thread(target=watch, name="medbench-parent-watch", daemon=True).start()


def _pdeathsig(signum: int) -> None:
    """Linux: ask the kernel to send ``signum`` when the parent process dies (no-op elsewhere)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signum), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _time_limit_near(signum: int, frame: Any) -> None:
    log.warning("medbench: got %s: the job's time limit is near; a benchmark point cannot be checkpointed, "
                "so it runs on until it ends or is killed", signal.Signals(signum).name)
