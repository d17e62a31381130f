"""Two versions of socialals side by side: seconds per iteration, interleaved.

A shared machine's timings wander by 20-40 % between minutes, so comparing a number
measured today with one measured last week says little. This script checks out a second
version of the repository (``--old``, a commit; by default the one before the ALS core
redesign) into a temporary git worktree and times both versions *alternately*: round 1
old, round 1 new, round 2 old, ... each round a fresh process that warms up (compiles)
and then times every setting. Reported: the best seconds per iteration of each version,
and new / old.

Settings: ``bench_als.py``'s data (the MovieLens-1M-shaped synthetic set and Ciao),
RegularizedALS and SocialALS at k = 16 and 64 in both dtypes, 2 threads; the new version
also runs RegularizedALS with the missing-data term (``unobserved_weight=0.1``), whose
cost the top-N issue bounds at 1.3x the plain model's.

Usage::

    python benchmarks/bench_versions.py                       # old = df5e99b
    python benchmarks/bench_versions.py --old HEAD~5 --rounds 3 --data ml1m
    python benchmarks/bench_versions.py --old main --data ml1m --new-config '{"schedule": "blocks"}'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

ROUND = r"""
import json, sys, warnings
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
warnings.simplefilter("ignore")
from pathlib import Path
from bench_als import ml1m_like
import socialals
from socialals import RegularizedALS, SocialALS, load_ciao
settings = json.loads(sys.argv[2])
if len(sys.argv) > 4 and sys.argv[4] != "{}":
    socialals.set_config(**json.loads(sys.argv[4]))
out = []
data = {}
for s in settings:
    if s["data"] not in data:
        data[s["data"]] = ml1m_like() if s["data"] == "ml1m" else load_ciao(path=Path(sys.argv[3]) / "ciao")
    ratings, social = data[s["data"]]
    params = dict(s["params"])
    if "unobserved_weight" in params and "unobserved_weight" not in RegularizedALS().get_params():
        continue  # the old version has no missing-data term
    cls = SocialALS if s["model"] == "SocialALS" else RegularizedALS
    make = lambda it: cls(factors=s["k"], iterations=it, n_jobs=2, random_state=0, dtype=s["dtype"], **params)
    make(1).fit(ratings, social)  # compile and warm caches
    best = min(m.fit_seconds_ / m.n_iter_ for m in (make(s["iterations"]).fit(ratings, social) for _ in range(2)))
    out.append({**s, "s_per_iter": best})
print(json.dumps(out))
"""


@contextlib.contextmanager
def checkout(commit):
    """A temporary git worktree of ``commit`` (removed on exit)."""
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), commit], check=True,
                       capture_output=True)
        try:
            yield old
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], capture_output=True)


def settings(data, ks, dtypes, iterations):
    out = []
    for d in data:
        for k in ks:
            for dt in dtypes:
                base = dict(data=d, k=k, dtype=dt, iterations=iterations)
                out.append({**base, "model": "RegularizedALS", "params": {"reg": 0.1}})
                out.append({**base, "model": "SocialALS", "params": {"reg": 0.1, "alpha": 0.1}})
                out.append({**base, "model": "RegularizedALS+w0", "params": {"reg": 0.1, "unobserved_weight": 0.1}})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default="df5e99b", help="the commit to compare with (default: before the core redesign)")
    ap.add_argument("--data", nargs="+", default=["ml1m", "ciao"], choices=["ml1m", "ciao"])
    ap.add_argument("--k", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--output", default=None, help="also write the table here")
    ap.add_argument("--new-config", default="{}",
                    help='socialals.set_config keywords for the new version, as JSON (e.g. \'{"schedule": "blocks"}\')')
    args = ap.parse_args(argv)
    todo = settings(args.data, args.k, args.dtype, args.iterations)
    with checkout(args.old) as old:
        rows = []
        for r in range(args.rounds):
            for version, path in (("old", old), ("new", ROOT)):
                config = args.new_config if version == "new" else "{}"
                done = subprocess.run([sys.executable, "-c", ROUND, str(path), json.dumps(todo), args.shared, config],
                                      capture_output=True, text=True, check=True)
                for row in json.loads(done.stdout.strip().splitlines()[-1]):
                    rows.append({**row, "version": version, "round": r})
                print(f"round {r + 1} {version}: done", flush=True)
    table = pd.DataFrame(rows)
    best = table.pivot_table(index=["data", "k", "dtype", "model"], columns="version", values="s_per_iter", aggfunc="min")
    best["new/old"] = best["new"] / best["old"]
    plain = best.xs("RegularizedALS", level="model")["new"]
    w0 = best.xs("RegularizedALS+w0", level="model")["new"]
    extra = f" --new-config '{args.new_config}'" if args.new_config != "{}" else ""
    text = (f"python benchmarks/bench_versions.py --old {args.old}{extra} (best of {args.rounds} interleaved rounds "
            f"x 2 fits, 2 threads, s/iter)\n\n" + best.to_string(float_format=lambda x: f"{x:.4f}")
            + "\n\nmissing-data term, new version: RegularizedALS(unobserved_weight=0.1) / RegularizedALS\n"
            + (w0 / plain).rename("w0 / plain").to_string(float_format=lambda x: f"{x:.3f}"))
    print("\n" + text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
