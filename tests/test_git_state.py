"""collect_env's git runs nothing the working directory or the environment names."""

from __future__ import annotations

import subprocess
from pathlib import Path

from medbench.results.store import git_state


def test_git_state_runs_no_program_from_repo_config_or_env(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    marker = tmp_path / "ran"

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "a@b.c")
    git("config", "user.name", "a")
    (repo / "f.txt").write_text("x\n")
    (repo / ".gitattributes").write_text("* filter=evil\n")
    git("add", ".")
    git("commit", "-qm", "init")
    for key in ("core.fsmonitor", "filter.evil.clean", "filter.evil.process"):
        git("config", key, f"touch {marker}; cat")
    (repo / "f.txt").write_text("y\n")  # modified: status has to look at the file's content
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")  # what a hydra.job.env_set would inject
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.fsmonitor")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"touch {marker}")
    git_state.cache_clear()
    state = git_state(str(repo))
    assert not marker.exists()
    assert len(state["git_commit"]) == 40 and state["git_dirty"] is True


def test_env_names_the_workdir_repository_and_its_state(tmp_path: Path) -> None:
    from medbench.results.store import collect_env, cudnn_version_string

    repo = tmp_path / "study"
    (repo / "sub").mkdir(parents=True)
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, text=True).stdout
    run("init", "-q")
    (repo / "train.py").write_text("x = 1\n")
    run("add", ".")
    run("-c", "user.email=a@b.c", "-c", "user.name=a", "commit", "-qm", "init")
    git_state.cache_clear()
    env = collect_env(str(repo / "sub"))
    head = run("rev-parse", "HEAD").strip()
    assert env["workdir_git"] == {"root": str(repo), "commit": head, "dirty": False}
    assert (env["git_commit"], env["git_dirty"]) == (head, False)
    (repo / "train.py").write_text("x = 2\n")
    git_state.cache_clear()
    assert collect_env(str(repo))["workdir_git"]["dirty"] is True
    assert git_state(str(repo / "sub"))["tracks_init"] is False  # a copy of a package here would be no clone of it
    assert [cudnn_version_string(v) for v in (92400, 91900, 90100, 8907, 7605, None)] == [
        "9.24.0", "9.19.0", "9.1.0", "8.9.7", "7.6.5", None]  # 91900: torch 2.11 with nvidia-cudnn-cu13 9.19.0.56 (H100)
