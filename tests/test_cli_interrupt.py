"""Ctrl-C in the command line: one line on standard error and exit status 130."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from socialals import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="needs POSIX SIGINT")
def test_real_sigint_during_a_command_exits_130_with_one_line():
    # A real SIGINT arrives while a command runs (the command sends it to its own process).
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from socialals import cli
        def slow_command(args):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
            return 0
        cli._cmd_recommend = slow_command
        sys.exit(cli.main(["recommend", "--model", "model.npz", "--user", "1"]))
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "SOCIALALS_DEBUG"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines() == ["socialals: interrupted"]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_debug_mode_keeps_the_traceback(monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_recommend", interrupted)
    monkeypatch.setenv("SOCIALALS_DEBUG", "1")
    with pytest.raises(KeyboardInterrupt):
        cli.main(["recommend", "--model", "model.npz", "--user", "1"])
