"""`framecast SUBCOMMAND ...`: each subcommand is a service's `main(argv)`, imported only when used
so that, say, the web tier never loads TensorFlow."""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "producer": ("producer.main", "publish camera frames to Redis"),
    "worker": ("framecast.worker_role", "detect objects in published frames"),
    "tracker": ("tracker.main", "track event cameras apart from detection (`worker --no-tracker`)"),
    "encoder": ("encoder.main", "encode watched cameras' H.264 live view apart from detection (`worker --no-encoder`)"),
    "web": ("web.main", "serve the dashboard, MJPEG feeds and APIs"),
    "process": ("worker.offline.main", "annotate a recorded video file"),
    "up": ("framecast.up", "run the whole pipeline on this machine under supervisord"),
    "assets": ("common.assets", "fetch and verify the bundled model and sample clip"),
}


def _usage() -> str:
    lines = ["usage: framecast SUBCOMMAND [options]", "", "subcommands:"]
    lines += [f"  {name:<9} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "Run `framecast SUBCOMMAND --help` for its options; `framecast --version` prints the version",
              "and the dependency lock the installed packages follow."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("--version", "version"):
        from common.build import describe

        print(describe())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"framecast: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
