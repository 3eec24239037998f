"""The README's data-flywheel walkthrough, run as written in a copy of the repository against
the session's stack: a fine-tuned variant answers, the repository is left as it was, and the
README's start command still works afterwards. (Last in the session: it redeploys the stack.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import README_PORT

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def bash_block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def start_command() -> str:
    """The README's start command, past its install steps (the venv exists already)."""
    block = bash_block_after("## Two commands")
    return block.strip().split(" && ")[-1]


def copy_of_the_repository(target: Path) -> Path:
    """The tracked files as they are now, committed in a fresh repository, beside the venv."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(VENV_BIN.parent)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *command], cwd=target, check=True, capture_output=True)
    return target


def test_the_flywheel_walkthrough_runs_as_written(tzray_up, tmp_path):
    url, _, workdir = tzray_up
    if not url.endswith(f":{README_PORT}"):
        pytest.skip(f"port {README_PORT}, which the README's commands use, was taken")
    repo = copy_of_the_repository(tmp_path / "repo")
    # A job runs where `tzray up` started Ray: the README has it at the repository's root; the
    # session started it in its own folder, so the walkthrough's folder is reachable from there.
    (workdir / "flywheel").symlink_to(repo / "flywheel")
    shell_path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)
    env = {**os.environ, "PATH": shell_path}
    env.pop("RAY_AUTH_MODE", None)  # the README's commands say it themselves
    walked = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", bash_block_after("## The data flywheel")],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert walked.returncode == 0, walked.stdout[-4000:] + walked.stderr[-4000:]
    assert '"variant_name":"tuned"' in walked.stdout.replace(" ", ""), walked.stdout[-3000:]
    assert "validation loss" in walked.stdout

    leftovers = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True)
    assert leftovers.stdout == "", f"the walkthrough left files in tracked folders:\n{leftovers.stdout}"

    started = subprocess.run(
        ["bash", "-c", start_command()], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    body = {"model_name": "dummy::good", "input": {"messages": [{"role": "user", "content": "Hello"}]}}
    assert httpx.post(f"{url}/inference", json=body, timeout=60).status_code == 200
