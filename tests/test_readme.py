"""Every code snippet of README.md runs: the ```python blocks (those of one section in order, in
one namespace), and the ``$ socialals ...`` lines
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



def _python_sections():
    """The ```python blocks grouped by their ``## `` section, each with its first README line.

    A section reads as one story (a later block uses the model an earlier one fitted), so
    its blocks run in order in one namespace.
    """
    text = README.read_text(encoding="utf-8")
    sections, title = {}, "(top)"
    for match in re.finditer(r"^(## [^\n]*)$|^```python\n(.*?)^```", text, flags=re.M | re.S):
        if match.group(1):
            title = match.group(1)[3:].strip()
        else:
            line = text.count("\n", 0, match.start(2)) + 1
            sections.setdefault(title, []).append((line, match.group(2)))
    return sections


SECTIONS = _python_sections()
PYTHON = [code for blocks in SECTIONS.values() for _, code in blocks]
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
@pytest.mark.parametrize("section", list(SECTIONS), ids=list(SECTIONS))
def test_python_snippets_run(section, tmp_path, monkeypatch, local_filmtrust):
    if section == "Scaling out":
        pytest.importorskip("distributed", reason="the Scaling out snippet needs dask.distributed "
                            "(pip install 'socialals[dask]')")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for line, code in SECTIONS[section]:
            # padded so that a traceback names the README's own line
            exec(compile("\n" * (line - 1) + code, str(README), "exec"), namespace)


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
