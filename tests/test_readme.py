"""Every code snippet of README.md runs: the ```python blocks, and the ``$ socialals ...`` lines
of the ```console blocks (their output is not compared: timings differ; ``VAR=value``
prefixes run the command as its own process, with the folder moved into a temporary one). The ```bash block is
what .ci/run executes (install with the test extra, run the test command).

Snippets that load FilmTrust read it from ``../shared`` or the download cache instead of
downloading (and skip with a reason when it is in neither); files they write land in a
temporary folder.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import socialals
import socialals.datasets
from socialals import cli

from conftest import require_dataset

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.M | re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python"]
#: The ``$ socialals ...`` lines of each console block; a block's lines run in order in one
#: folder (``recommend`` reads the model ``fit`` saved).
SESSIONS = [
    [line[2:].strip() for line in code.splitlines() if re.match(r"\$ (\w+=\S+ )*socialals\b", line)]
    for lang, code in BLOCKS
    if lang == "console"
]


def test_the_readme_has_snippets():
    assert len(PYTHON) >= 3 and sum(map(len, SESSIONS)) >= 3
    assert {lang for lang, _ in BLOCKS} <= {"python", "console", "bash", ""}


@pytest.fixture
def local_filmtrust(monkeypatch):
    """load_filmtrust() without a path reads the local copy instead of downloading."""
    real = socialals.datasets.load_filmtrust

    def local(path=None, **kwargs):
        if path is None:
            path = require_dataset("filmtrust")
        return real(path, **kwargs)

    monkeypatch.setattr(socialals, "load_filmtrust", local)
    monkeypatch.setattr(socialals.datasets, "load_filmtrust", local)


@pytest.mark.slow
@pytest.mark.parametrize("code", PYTHON, ids=[f"python_{i}" for i in range(len(PYTHON))])
def test_python_snippet_runs(code, tmp_path, monkeypatch, local_filmtrust):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})


@pytest.mark.slow
@pytest.mark.parametrize("session", SESSIONS, ids=[f"console_{i}" for i in range(len(SESSIONS))])
def test_console_commands_run(session, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for command in session:
        words = shlex.split(command)
        env = dict(w.split("=", 1) for w in words[: words.index("socialals")])
        argv = words[words.index("socialals") + 1 :]
        if env:  # run as its own process, so that the variables apply from the start
            done = subprocess.run([sys.executable, "-m", "socialals", *argv], capture_output=True, text=True,
                                  env={**os.environ, **{k: str(tmp_path / Path(v).name) for k, v in env.items()},
                                       "PYTHONPATH": str(ROOT)})
            assert done.returncode == 0, (command, done.stderr)
            continue
        if "--data" in argv and argv[argv.index("--data") + 1] == "filmtrust":
            # The same data and defaults, read from the local copy instead of the download cache.
            argv[argv.index("--data") + 1] = str(require_dataset("filmtrust"))
            argv += ["--defaults", "filmtrust"]
        try:
            status = cli.main(argv)
        except SystemExit as exc:  # --version, --help
            status = exc.code
        assert status == 0, (command, capsys.readouterr().err)
