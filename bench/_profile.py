"""Where a budget miss comes from: the daemon's own code path, run in-process under a profiler.

``python bench/_profile.py cpu|mem|imports [--devices N] [--monitors M] [--seconds S]``

- cpu: cProfile on every thread (the event loop, the phue worker threads, the SQLite
  writer), merged, printed per poll by own time and by cumulative time.
- mem: tracemalloc from the first import; the biggest allocators grouped by file, and
  totals by package, after S seconds of polling.
- imports: which top-level packages ``homepoll run`` has loaded after its first polls.

It runs exactly ``homepoll run``'s code (config loading, logging setup, run_daemon) minus
the final os._exit, so its figures explain the subprocess figures bench/run.py measures.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

if __name__ == "__main__" and "mem" in sys.argv[1:2]:
    import tracemalloc

    tracemalloc.start(10)

import cProfile
import io
import pstats
from pathlib import Path

from _daemon import Simulators, make_workdir


def run_inprocess(
    config_path: Path, seconds: float, at_end=None, profilers: list | None = None
) -> None:
    from homepoll.config import load_config
    from homepoll.daemon import run_daemon
    from homepoll.logs import setup_logging

    config = load_config(config_path)
    setup_logging(config.log)

    def stopper() -> None:
        time.sleep(seconds)
        if at_end is not None:
            at_end()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stopper, daemon=True).start()
    run_daemon(config)


class Sampler:
    """cProfile per thread, switched on only around units of work after the warm-up.

    cProfile follows only the thread that enables it, and the daemon's work runs in asyncio
    callbacks (the loop thread) and in executor work items (phue fetches, the SQLite writer,
    status.json writes), so both are wrapped. The timer is per-thread CPU time: waiting for
    the bridge or on a queue costs nothing, as in the /proc figures.
    """

    def __init__(self) -> None:
        self.measuring = False
        self.profilers: list[cProfile.Profile] = []
        self._local = threading.local()

    def _profiler(self) -> cProfile.Profile:
        prof = getattr(self._local, "prof", None)
        if prof is None:
            prof = cProfile.Profile(time.thread_time)
            self._local.prof = prof
            self.profilers.append(prof)
        return prof

    def wrap(self, cls: type, method: str) -> None:
        original = getattr(cls, method)
        sampler = self

        def run(self, *args, **kwargs):
            if not sampler.measuring or getattr(sampler._local, "active", False):
                return original(self, *args, **kwargs)
            prof = sampler._profiler()
            sampler._local.active = True
            prof.enable()
            try:
                return original(self, *args, **kwargs)
            finally:
                prof.disable()
                sampler._local.active = False

        setattr(cls, method, run)

    def install(self) -> None:
        import asyncio.events
        import concurrent.futures.thread

        self.wrap(asyncio.events.Handle, "_run")
        self.wrap(concurrent.futures.thread._WorkItem, "run")


def polls_in(data: Path) -> int:
    import json

    status = json.loads((data / "status.json").read_text())
    return sum(c.get("polls", 0) for c in status["collectors"].values())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["cpu", "mem", "imports"])
    parser.add_argument("--devices", type=int, default=7)
    parser.add_argument("--monitors", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=4)
    parser.add_argument("--write", help="imports: write the module list to this file")
    parser.add_argument("--diff", action="store_true", help="mem: growth after the warm-up")
    parser.add_argument("--no-hue", action="store_true", help="only the Amazon collector")
    args = parser.parse_args()
    with Simulators(args.devices, args.monitors) as sims:
        folder = make_workdir(
            sims,
            hue_interval=None if args.no_hue else 1,
            aqm_interval=1 if args.monitors else None,
        )
        config = folder / "config.yaml"
        if args.mode == "cpu":
            sampler = Sampler()
            sampler.install()
            counts: list[int] = []
            data = folder / "data"

            def begin() -> None:
                counts.append(polls_in(data))
                sampler.measuring = True

            def end() -> None:
                sampler.measuring = False
                counts.append(polls_in(data))

            threading.Timer(args.warmup, begin).start()
            run_inprocess(config, args.warmup + args.seconds, at_end=end)
            polls = counts[1] - counts[0]
            out = io.StringIO()
            stats = pstats.Stats(*sampler.profilers, stream=out)
            total = stats.total_tt  # type: ignore[attr-defined]
            print(f"{polls} polls measured, {total / polls * 1000:.2f} ms profiled CPU per poll")
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())
        elif args.mode == "mem":
            import tracemalloc

            snap: list = []

            def grab() -> None:
                snap.append(tracemalloc.take_snapshot())

            if args.diff:  # growth between the end of the warm-up and the end of the run
                threading.Timer(args.warmup, grab).start()
            run_inprocess(
                config, args.warmup + args.seconds if args.diff else args.seconds, at_end=grab
            )
            if args.diff:
                keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
                old, new = snap[0].filter_traces(keep), snap[1].filter_traces(keep)
                growth = new.compare_to(old, "lineno")
                total = sum(d.size_diff for d in growth)
                print(f"traced Python memory grew {total / 1e3:.1f} kB in {args.seconds:g} s")
                for d in growth[: args.top]:
                    print(f"{d.size_diff / 1e3:+9.1f} kB {d.count_diff:+6d}  {d.traceback[0]}")
                return 0
            snapshot = snap[0].filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            stats = snapshot.statistics("filename")
            total = sum(s.size for s in stats)
            print(f"traced Python memory: {total / 1e6:.2f} MB")
            by_pkg: dict[str, int] = {}
            for s in stats:
                name = s.traceback[0].filename
                key = (
                    name.split("site-packages/")[-1].split("/")[0]
                    if "site-packages" in name
                    else (
                        "homepoll"
                        if "/homepoll/" in name
                        else "stdlib:" + Path(name).name
                        if "python3.11" in name
                        else name
                    )
                )
                by_pkg[key] = by_pkg.get(key, 0) + s.size
            for key, size in sorted(by_pkg.items(), key=lambda kv: -kv[1])[: args.top]:
                print(f"{size / 1e3:10.1f} kB  {key}")
            print()
            for s in snapshot.statistics("lineno")[: args.top]:
                print(f"{s.size / 1e3:10.1f} kB  {s.count:7d}  {s.traceback[0]}")
        else:
            loaded: list[str] = []

            def grab_modules() -> None:
                loaded.extend(sorted(sys.modules))

            run_inprocess(config, args.seconds, at_end=grab_modules)
            harness = {"_daemon", "_proc", "_profile", "cProfile", "_lsprof", "pstats", "profile"}
            loaded = [n for n in loaded if n.split(".")[0] not in harness and n != "__main__"]
            top = sorted({n.split(".")[0] for n in loaded})
            print(f"{len(loaded)} modules, top-level packages: {' '.join(top)}")
            if args.write:
                Path(args.write).write_text("\n".join(loaded) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
