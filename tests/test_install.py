"""Installation-level behaviour: a read-only install used by someone whose home is not writable.

The subprocess imports socialals from a copy of the package on a read-only file system
(a private bind mount, set up with ``unshare``) or, when the tests do not run as root,
from a copy whose permissions forbid writing; ``HOME`` points to a folder that cannot be
created and ``NUMBA_CACHE_DIR`` is unset, so numba finds no cache folder. Importing and
fitting must still work: the kernels are compiled without a cache.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys, warnings
    sys.path.insert(0, {root!r})
    import socialals
    assert socialals.__file__.startswith({root!r}), socialals.__file__
    from socialals import RegularizedALS, SocialALS, FactorizationMachine, make_social_ratings
    ratings, social = make_social_ratings(n_users=60, n_items=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in (RegularizedALS(factors=3, iterations=2), SocialALS(factors=3, iterations=2),
                      FactorizationMachine(factors=3, iterations=2)):
            model.fit(ratings, social)
            assert model.predict(ratings[["user", "item"]].head(5)).shape == (5,)
    print("FITTED")
    # the main job of the README, as the command line runs it (embedded data, no download)
    from socialals import cli
    assert cli.main(["compare", "--n-users", "60", "--n-items", "30", "--folds", "2", "--factors", "2",
                     "--iterations", "2"]) == 0
    print("COMPARED")
    """
)


def _read_only_copy(tmp: Path) -> Path:
    root = tmp / "install"
    shutil.copytree(ROOT / "socialals", root / "socialals", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _environment(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE_DIR", "XDG_", "PYTHON"))}
    env["HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run_read_only(tmp: Path) -> subprocess.CompletedProcess:
    root = _read_only_copy(tmp)
    home = root / "home" / "nobody"  # inside the read-only tree: cannot be created
    code = SCRIPT.format(root=str(root))
    if os.geteuid() != 0:
        for path in sorted(root.rglob("*"), reverse=True) + [root]:
            mode = path.stat().st_mode
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  env=_environment(home), timeout=600)
        finally:
            for path in [root] + sorted(root.rglob("*")):
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root without unshare: cannot make the install read-only for root")
    probe = subprocess.run([unshare, "-rm", "sh", "-c", f"mount --bind -o ro {root} {root}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and a read-only bind mount is not permitted here: {probe.stderr.strip()}")
    shell = 'mount --bind -o ro "$0" "$0" && exec "$1" -c "$2"'
    return subprocess.run([unshare, "-rm", "sh", "-c", shell, str(root), sys.executable, code],
                          capture_output=True, text=True, env=_environment(home), timeout=600)


@pytest.mark.slow
def test_read_only_install_without_a_home_imports_and_fits(tmp_path):
    done = _run_read_only(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FITTED" in done.stdout and done.stdout.strip().endswith("COMPARED")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    cache_notes = [line for line in lines if "cannot cache" in line]
    assert len(cache_notes) <= 1, done.stderr  # one note at most, never a traceback
    assert "Traceback" not in done.stderr


def test_package_ships_type_marker_and_license():
    assert (ROOT / "socialals" / "py.typed").is_file()
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()
    assert "socialals developers" in (ROOT / "LICENSE").read_text()
    manifest = (ROOT / "MANIFEST.in").read_text()
    for needed in ("recursive-include tests *.py", "recursive-include notebooks *.ipynb", "include LICENSE"):
        assert needed in manifest
