#!/usr/bin/env python3
"""Time shell commands in interleaved rounds (A B C, A B C, ...) rather than one after the
other (A A A, B B B) as hyperfine does, so that a drift in the machine's speed during the run
(other tenants, thermal state, page cache) falls on every command alike. Used for `npm ci`
through each registry in bench/run, where the target (within 1.05x of nginx) is smaller than
the drift seen between consecutive hyperfine blocks.

    interleave.py --runs N [--warmup W] [--prepare CMD] --export-json FILE \
        -n NAME CMD [-n NAME CMD ...]

Each round runs PREPARE (through the shell) before every command, then times the command (wall
clock, spawn to exit). Warm-up rounds are run and discarded. A failing command stops the run.
The JSON has hyperfine's shape ({"results": [{"command", "mean", "stddev", "median", "min",
"max", "times"}]}), so the same readers take either.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--prepare", default=None)
    parser.add_argument("--export-json", required=True)
    parser.add_argument("-n", dest="names", action="append", required=True)
    parser.add_argument("commands", nargs="+")
    args = parser.parse_intermixed_args()
    if len(args.names) != len(args.commands):
        parser.error("give one -n NAME per command")

    times: dict[str, list[float]] = {name: [] for name in args.names}
    for round_no in range(args.warmup + args.runs):
        for name, command in zip(args.names, args.commands):
            if args.prepare:
                subprocess.run(args.prepare, shell=True, check=True)
            start = time.perf_counter()
            done = subprocess.run(command, shell=True, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                sys.stderr.write(f"interleave: {name} failed ({done.returncode}):\n")
                sys.stderr.buffer.write(done.stderr[-2000:])
                return 1
            if round_no >= args.warmup:
                times[name].append(elapsed)
        sys.stderr.write(f"interleave: round {round_no + 1}/{args.warmup + args.runs}\n")

    results = []
    for name in args.names:
        t = times[name]
        results.append({
            "command": name,
            "mean": statistics.mean(t),
            "stddev": statistics.stdev(t) if len(t) > 1 else 0.0,
            "median": statistics.median(t),
            "min": min(t),
            "max": max(t),
            "times": t,
        })
        sys.stderr.write(f"{name}: mean {results[-1]['mean']:.3f} s, median "
                         f"{results[-1]['median']:.3f} s, min {results[-1]['min']:.3f} s\n")
    with open(args.export_json, "w") as out:
        json.dump({"results": results}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
