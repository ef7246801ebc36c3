"""How trustworthy are compare's verdicts here? A/A false positives, and detection of real differences.

Each repetition is one `vdevperf compare` as a user runs it, with its default
settings (rounds, window, placement, steal gating), TCP_STREAM and TCP_RR:

- aa:    veth against an identical copy (`compare --aa veth`). Every cell
         should read "no significant difference"; a repetition with any other
         verdict is a false positive. The target is at most 1 in 10.
- large: veth against the same veth with tso, gso and gro off (a topology
         file setting them per device): should read "costlier" every time.
- small: bridge against veth: the cost of one bridge hop, a few per cent of
         CPU per KB, the size of difference users actually ask about.

It prints one line per repetition (verdicts, CI half-widths, how long the
compare took against its measured windows) and a summary, and writes every
result file to --out.

Usage: python3 benchmarks/compare_aa.py [--kind aa|large|small] [--reps 10] [--out DIR] [-- EXTRA COMPARE FLAGS]
       python3 benchmarks/compare_aa.py --kind aa --recompute DIR   (judge stored files again)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPOLOGIES = Path(__file__).resolve().parent.parent / "vdevperf" / "topologies"


def offloads_off(directory: Path) -> Path:
    """veth.toml with tso, gso and gro off on both ends, named veth-nooff."""
    text = (TOPOLOGIES / "veth.toml").read_text().replace('name = "veth"', 'name = "veth-nooff"')
    text = text.replace('peer = "s0"\n', 'peer = "s0"\noffload = { tso = false, gso = false, gro = false }\n')
    text = text.replace('peer = "c0"\n', 'peer = "c0"\noffload = { tso = false, gso = false, gro = false }\n')
    path = directory / "veth-nooff.toml"
    path.write_text(text)
    return path


def arguments(kind: str, directory: Path) -> list[str]:
    """The compare command line of one repetition of ``kind``."""
    if kind == "aa":
        return ["--aa", "veth"]
    if kind == "large":
        return ["veth", str(offloads_off(directory))]
    return ["veth", "bridge"]


def rejudged(doc: dict) -> dict:
    """The comparison of a stored file judged again by this vdevperf (same rounds, current rules)."""
    from vdevperf.measure import paired
    from vdevperf.results import run_from_json

    c = doc["comparison"]
    runs = [run_from_json(r) for r in doc["runs"]]
    return c | {"cells": [x.to_json() for x in paired.analyse(runs, lambda r: r.topology, c["baseline"], c["alpha"])]}


def _cell(name: str, cell: tuple) -> str:
    verdict, ratio, half = cell
    return f"{name} {ratio:.3f}x {'' if half is None else f'±{half:.1f}% '}{verdict}"


def summary(doc: dict) -> dict:
    """Verdicts, interval half-widths and times of one result file."""
    c = doc["comparison"]
    windows = sum(it["metrics"]["elapsed_s"] for r in doc["runs"] for it in r["iterations"])
    retries = sum(len(it["retries"]) for r in doc["runs"] for it in r["iterations"])
    flagged = sum(1 for r in doc["runs"] for it in r["iterations"] if it["noise"] and it["noise"]["flags"])
    return {
        "cells": {f"{x['test']} {x['metric']}": (x["verdict"], x["geomean"], x["half_width_pct"]) for x in c["cells"]},
        "seconds": c["seconds"],
        "windows_s": windows,
        "rounds": len(c["orders"]),
        "retries": retries,
        "flagged": flagged,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=("aa", "large", "small"), default="aa")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="vdevperf-aa-")))
    p.add_argument(
        "--recompute",
        type=Path,
        metavar="DIR",
        help="measure nothing: judge the KIND-*.json files in DIR again with this vdevperf",
    )
    p.add_argument("extra", nargs="*", help="more compare flags, after --")
    args = p.parse_args()
    if args.recompute:
        found = []
        for path in sorted(args.recompute.glob(f"{args.kind}-*.json"), key=lambda f: int(f.stem.split("-")[-1])):
            doc = json.loads(path.read_text())
            s = summary(doc | {"comparison": rejudged(doc)}) | {"wall_s": 0.0}
            found.append(s)
            print(f"{path.name}: " + "; ".join(_cell(k, v) for k, v in s["cells"].items()))
        report(args.kind, found, args.recompute)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    found = []
    for n in range(args.reps):
        out = args.out / f"{args.kind}-{n}.json"
        argv = [
            sys.executable,
            "-m",
            "vdevperf",
            "compare",
            *arguments(args.kind, args.out),
            "-t",
            "TCP_STREAM,TCP_RR",
            "-q",
            "-o",
            str(out),
            *args.extra,
        ]
        started = time.monotonic()
        done = subprocess.run(argv, capture_output=True, text=True)
        wall = time.monotonic() - started
        if done.returncode != 0:
            sys.exit(f"compare failed: {done.stderr.strip()}")
        s = summary(json.loads(out.read_text())) | {"wall_s": wall}
        found.append(s)
        verdicts = "; ".join(_cell(k, v) for k, v in s["cells"].items())
        print(
            f"rep {n + 1}: {verdicts} | {s['rounds']} rounds, windows {s['windows_s']:.0f} s, rounds took "
            f"{s['seconds']:.0f} s ({s['seconds'] / s['windows_s']:.2f}x), wall {wall:.0f} s, "
            f"{s['retries']} noisy attempts retried, {s['flagged']} flagged",
            flush=True,
        )
    report(args.kind, found, args.out)


def report(kind: str, found: list[dict], where: Path) -> None:
    """The summary over repetitions: false positives or detections, interval widths, time taken."""
    if kind == "aa":
        clean = sum(1 for s in found if all(v[0] == "no significant difference" for v in s["cells"].values()))
        print(f"A/A: {clean} of {len(found)} repetitions read 'no significant difference' in every cell")
    else:
        for cell in found[0]["cells"]:
            words = [s["cells"][cell][0] for s in found]
            print(f"{cell}: " + ", ".join(f"{w} x{words.count(w)}" for w in sorted(set(words))))
    widths = [v[2] for s in found for k, v in s["cells"].items() if k.endswith("service_demand") and v[2] is not None]
    print(f"service demand CI half-width: max {max(widths):.1f} %, median {sorted(widths)[len(widths) // 2]:.1f} %")
    ratio = [s["seconds"] / s["windows_s"] for s in found]
    print(f"rounds time / measured windows: {min(ratio):.2f}-{max(ratio):.2f}; results in {where}")


if __name__ == "__main__":
    main()
