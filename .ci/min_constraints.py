"""Print a pip constraints file pinning every runtime dependency to its declared minimum.

Reads ``[project] dependencies`` of pyproject.toml; ``name>=X.Y`` becomes ``name~=X.Y.0``
(the lowest X.Y.* release: the oldest patch may lack wheels for this Python, while a
later patch of the same minor release keeps the same features). Used by .ci/run to test
that the lower bounds we declare are true.
"""

import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    from pip._vendor import tomli as tomllib


def main(path="pyproject.toml"):
    project = tomllib.loads(Path(path).read_text(encoding="utf-8"))["project"]
    lines = []
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9]+(?:\.[0-9]+)*)\s*(?:,.*)?", requirement)
        if match is None:
            sys.exit(f"min_constraints: cannot read a lower bound from {requirement!r}")
        name, version = match.groups()
        parts = version.split(".")
        pinned = ".".join((parts + ["0"])[:2]) + ".0"
        lines.append(f"{name}~={pinned}")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
