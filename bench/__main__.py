"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks, print a table, write JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import REPO, machine


def _suite(name: str):
    """The suite's module, imported when it runs (a suite's heavy imports cost the others nothing)."""
    return importlib.import_module(f"bench.{name}")


def _latency(work, args, repeats):
    native_s, overload_s = (args.seconds, args.seconds) if args.seconds else ((10, 20) if args.quick else (30, 60))
    return _suite("latency").run(work, native_s, overload_s)


# name -> how to run it: (workdir, parsed args, repeats) -> result dicts. `make bench` runs them all.
RUNNERS = {
    "workers": lambda work, args, repeats: _suite("workers").run(work, repeats, 60 if args.quick else 400),
    "latency": _latency,
    "fanout": lambda work, args, repeats: _suite("fanout").run(work, [1, 10, 100] if args.quick else [1, 10, 100, 300],
                                                             5 if args.quick else 10),
    "offline": lambda work, args, repeats: _suite("offline").run(work, repeats, 60 if args.quick else 795),
    "cluster": lambda work, args, repeats: _suite("cluster").run(work, repeats, 60 if args.quick else 400),
    "motion": lambda work, args, repeats: _suite("motion").run(work, repeats, quick=args.quick),
    "motion_pipeline": lambda work, args, repeats: _suite("motion_pipeline").run(work, quick=args.quick),
    "many_cameras_producer": lambda work, args, repeats: _suite("many_cameras_producer").run(work, quick=args.quick),
    "many_cameras_web": lambda work, args, repeats: _suite("many_cameras_web").run(work, quick=args.quick),
    "many_cameras_redis": lambda work, args, repeats: _suite("many_cameras_redis").run(work, quick=args.quick),
    "many_cameras_hosts": lambda work, args, repeats: _suite("many_cameras_hosts").run(work, quick=args.quick),
    "live_video": lambda work, args, repeats: _suite("live_video").run(work, quick=args.quick),
    "live_video_latency": lambda work, args, repeats: _suite("live_video_latency").run(work, quick=args.quick),
}
SUITES = tuple(RUNNERS)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else (f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}")
    return str(value)


def print_result(result: dict) -> None:
    print(f"\n== {result['name']} ({result['unit']})")
    figures = result["figures"]
    if all(isinstance(v, list) for v in figures.values()):  # fan-out: a table per design
        for design, rows in figures.items():
            print(f"  {design}:")
            cols = list(rows[0])
            print("    " + "  ".join(f"{c:>16}" for c in cols))
            for row in rows:
                print("    " + "  ".join(f"{_fmt(row[c]):>16}" for c in cols))
    else:
        for key, value in figures.items():
            print(f"  {key:<28} {_fmt(value)}")
    if "stages" in result:  # per-stage table: where each frame's time went
        print(f"  {'stage':<14} {'p50 ms':>9} {'p95 ms':>9} {'frames':>7}")
        for stage, row in result["stages"].items():
            print(f"  {stage:<14} {_fmt(row['p50']):>9} {_fmt(row['p95']):>9} {row['frames']:>7}")
    for design, rows in result.get("series", {}).items():
        print(f"  {design} latency by 5 s bucket (p50 / max ms): "
              + ", ".join(f"{_fmt(r['p50_ms'])}/{_fmt(r['max_ms'])}" for r in rows))
    if "target" in result:
        print(f"  target: {result['target']} -> {'met' if result.get('met') else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SUITES, help="run only these suites")
    parser.add_argument("--quick", action="store_true", help="fewer frames, repeats and viewers (a smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    parser.add_argument("--seconds", type=float, help="length of each timed latency run (default 30 and 60, "
                                                       "--quick 10 and 20)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    chosen = args.only or SUITES
    info = {"machine": machine(), "command": "python -m bench " + " ".join(argv or sys.argv[1:]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": []}
    box = info["machine"]
    print(f"machine: {box['cores']} cores, {box['cpu']}, load average {box['load']} at the start")
    with tempfile.TemporaryDirectory(prefix="framecast-bench-") as tmp:
        work = Path(tmp)
        for suite in chosen:
            results = RUNNERS[suite](work / suite, args, repeats)
            for result in results:
                print_result(result)
                info["results"].append(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(info, indent=2, default=str))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
