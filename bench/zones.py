"""`python -m bench.zones`: the tracking owner's CPU per frame against a camera's number of zones and
lines, which is what `events_config.MAX_ZONES` / `MAX_LINES` / `MAX_ZONE_POINTS` are set from.

A camera's tracking stage (tracker.stage.CameraEvents: ordering, tracking, zones, lines, the
event lifecycle) is fed a scene of `objects` boxes walking across a 640x480 frame, with N zones of P
corners and N lines scattered over it; each event message also costs what the owner spends on it
before Redis (the counts, flattened, and the changed counts). No Redis, no JPEGs: the figure is the
zone and line logic's own share of the owner's loop (thread CPU time, ms per frame).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time

from bench.harness import machine
from common.config import CameraConfig
from common.events_config import EventStorageConfig, LineConfig, ZoneConfig
from tracker.owner import flatten_counts
from tracker.stage import CameraEvents, CountChanges, Emitted, Record, Released

W, H, FPS = 640, 480, 10.0


def zones(n: int, points: int, rng: random.Random) -> list[ZoneConfig]:
    out = []
    for i in range(n):
        cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.3)
        corners = [(min(1.0, max(0.0, cx + r * math.cos(2 * math.pi * k / points))),
                    min(1.0, max(0.0, cy + r * math.sin(2 * math.pi * k / points)))) for k in range(points)]
        # Built unvalidated: the figures above the config's bounds are what the bounds were set from.
        out.append(ZoneConfig.model_construct(name=f"z{i}", points=corners, labels=[]))
    return out


def lines(n: int, rng: random.Random) -> list[LineConfig]:
    return [LineConfig.model_construct(name=f"l{i}", points=[(rng.random(), rng.random()), (rng.random(), rng.random())],
                                       in_side="right", labels=[]) for i in range(n)]


def per_frame_ms(n_zones: int, n_lines: int, points: int, objects: int, frames: int, seed: int = 1) -> float:
    """Thread CPU ms per frame of one camera's tracking stage with these zones and lines."""
    rng = random.Random(seed)
    camera = CameraConfig(id="bench", source="pattern", events={"enabled": True}).model_copy(
        update={"zones": zones(n_zones, points, rng), "lines": lines(n_lines, rng)})
    paths = [(rng.uniform(0, 0.2), rng.uniform(0.2, 0.9), rng.uniform(0.004, 0.01)) for _ in range(objects)]

    messages = []
    changes = CountChanges()

    def take(step: Released) -> list:  # what CameraOwner computes for every message before Redis
        for item in step.outputs:
            if isinstance(item, Emitted):
                messages.append(item.message.type)
                flatten_counts(item.counts)
                changes.since_last(item.counts["objects"])
        return step.tracked

    stage = CameraEvents(camera, EventStorageConfig(), fps=FPS)
    t0 = 1_700_000_000.0
    released = []
    started = time.thread_time()
    for seq in range(frames):
        dets = []
        for x0, y, speed in paths:
            x = ((x0 + speed * seq) % 1.0) * W
            dets.append(["person", 0.9, x - 15, y * H - 60, x + 15, y * H, 0])
        released += take(stage.push(Record(1, seq, t0 + seq / FPS, W, H, dets), seq / FPS))
        released += take(stage.tick(seq / FPS + 10, t0 + seq / FPS))
    released += take(stage.close())
    spent = (time.thread_time() - started) * 1000 / frames
    assert len(released) == frames, len(released)
    assert messages, "the scene made no events"
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zones", description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 10, 50, 100, 200, 500, 1000])
    parser.add_argument("--points", type=int, nargs="+", default=[4, 32, 100])
    parser.add_argument("--objects", type=int, default=20, help="boxes in every frame")
    parser.add_argument("--kind", choices=("both", "zones", "lines"), default="both",
                        help="N zones and N lines, or only one of them")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="the median of this many runs is reported")
    args = parser.parse_args(argv)
    rows = []
    for points in args.points:
        for n in args.counts:
            n_zones, n_lines = (0 if args.kind == "lines" else n), (0 if args.kind == "zones" else n)
            runs = sorted(per_frame_ms(n_zones, n_lines, points, args.objects, args.frames, seed=r)
                          for r in range(args.repeats))
            rows.append({"zones": n_zones, "lines": n_lines, "points": points, "objects": args.objects,
                         "ms_per_frame": round(runs[len(runs) // 2], 3)})
            print(f"zones={n_zones:>5}  lines={n_lines:>5}  points={points:>3}  objects={args.objects}  "
                  f"{rows[-1]['ms_per_frame']:8.3f} ms/frame", flush=True)
    print(json.dumps({"machine": machine(), "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
