#!/usr/bin/env python3
"""Interleaved spawn-to-exit timing for bench/run-sandbox.

    sandbox_timing.py SPEC.json ROUNDS WARMUP OUT.json [GAP_MS]

SPEC.json is a list of {"name", "argv", "setup" (optional shell command, run untimed before each
run), "log" (optional file the command's output is appended to), "capture" (optional: true reads
its output through pipes, as a caller that keeps it does, and the run ends once both pipes are at
their end and the command is reaped); otherwise output is discarded}. Every round runs each
command once, in an order shuffled anew each round (a fixed seed, so a rerun repeats it): every
command follows every command, itself included, about equally often. (Until 2026-12-03 the order
was rotated by one each round; with three commands or more that put each one after the same
predecessor in all but one round of every cycle: with four, `moat run` followed `moat run
--backend podman` in three rounds of four, and bwrap followed `moat run`.) The first WARMUP
rounds are not recorded. Each run is timed from just before the spawn to the reap of the exit,
with time.perf_counter_ns. A run that exits non-zero is counted as a failure and its time is
kept out of the figures.

Runs follow each other back to back (GAP_MS 0, the default), so work a command leaves behind
once it has exited (its sandbox's teardown, a gate's bookkeeping, the unmapping of a process's
memory) falls on the run after it. With GAP_MS, each run starts that long after the last one
ended (untimed), so that leftovers have run their course: each command's own latency, started
on an idle machine. Each run's predecessor (the
command run just before it, warm-up rounds included) is recorded, and the medians by predecessor
show how much one command's leftovers cost the next. With one command in SPEC.json, every run
follows another of the same: its back-to-back rate, leftovers included.

Writes OUT.json: per command the times (ms), median, p90, mean, min, max, runs, failures, and the
median and count of its runs by predecessor; the share of CPU time the recorded rounds lost to the
hypervisor ("steal_percent": /proc/stat's steal over all CPU time, both summed over all CPUs;
null where /proc/stat cannot be read), which in a VM stalls runs for milliseconds at a time; and
prints one line per command.
"""

import json
import random
import statistics
import subprocess
import sys
import time


def pct(sorted_ms, p):
    """Nearest-rank percentile."""
    if not sorted_ms:
        return None
    k = max(0, min(len(sorted_ms) - 1, -(-p * len(sorted_ms) // 100) - 1))
    return sorted_ms[k]


def cpu_ticks():
    """(steal, all) clock ticks of all CPUs so far, from /proc/stat's first line; None if unread."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal (guest time is counted in user and nice)
    ticks = [int(v) for v in fields[1:9]]
    return ticks[7], sum(ticks)


def steal_percent(start, end):
    """The share of CPU time stolen between two cpu_ticks() readings, in percent; None when
    either is missing or they are under 100 ticks apart (a second of CPU time at the usual 100
    ticks a second): /proc/stat counts whole ticks, so a shorter span says nothing."""
    if start is None or end is None or end[1] - start[1] < 100:
        return None
    return 100 * (end[0] - start[0]) / (end[1] - start[1])


def main():
    spec_path, rounds, warmup, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    gap_s = float(sys.argv[5]) / 1000 if len(sys.argv) > 5 else 0.0
    spec = json.load(open(spec_path))
    times = {c["name"]: [] for c in spec}
    after = {c["name"]: {} for c in spec}
    fails = {c["name"]: 0 for c in spec}
    previous = None
    recorded_from = None
    rng = random.Random(20261203)
    for r in range(warmup + rounds):
        if r == warmup:
            recorded_from = cpu_ticks()
        order = list(spec)
        rng.shuffle(order)
        for c in order:
            if c.get("setup"):
                subprocess.run(c["setup"], shell=True, check=True)
            log = open(c["log"], "ab") if c.get("log") else subprocess.DEVNULL
            out = subprocess.PIPE if c.get("capture") else log
            if gap_s:
                time.sleep(gap_s)
            try:
                t0 = time.perf_counter_ns()
                rc = subprocess.run(c["argv"], stdin=subprocess.DEVNULL, stdout=out, stderr=out).returncode
                t1 = time.perf_counter_ns()
            finally:
                if log is not subprocess.DEVNULL:
                    log.close()
            before, previous = previous, c["name"]
            if r < warmup:
                continue
            if rc != 0:
                fails[c["name"]] += 1
                print(f"{c['name']}: exit {rc} in round {r - warmup}", file=sys.stderr)
                continue
            times[c["name"]].append((t1 - t0) / 1e6)
            after[c["name"]].setdefault(before, []).append((t1 - t0) / 1e6)
        if r >= warmup and (r - warmup + 1) % max(1, rounds // 5) == 0:
            print(f"  round {r - warmup + 1}/{rounds}", file=sys.stderr)
    steal = steal_percent(recorded_from, cpu_ticks())
    result = {}
    for c in spec:
        name = c["name"]
        ms = sorted(times[name])
        result[name] = {
            "argv": c["argv"],
            "runs": len(ms),
            "failures": fails[name],
            "median_ms": statistics.median(ms) if ms else None,
            "p90_ms": pct(ms, 90),
            "mean_ms": statistics.fmean(ms) if ms else None,
            "min_ms": ms[0] if ms else None,
            "max_ms": ms[-1] if ms else None,
            "times_ms": times[name],
            "after": {
                before: {"runs": len(ms_after), "median_ms": statistics.median(ms_after)}
                for before, ms_after in after[name].items()
            },
        }
        if ms:
            print(f"{name}: runs {len(ms)} failures {fails[name]} median {result[name]['median_ms']:.2f} ms "
                  f"p90 {result[name]['p90_ms']:.2f} ms min {ms[0]:.2f} max {ms[-1]:.2f}")
        else:
            print(f"{name}: no successful run ({fails[name]} failures)")
    if steal is not None:
        print(f"steal (CPU time the hypervisor took) during the recorded rounds: {steal:.1f}%")
    json.dump({"rounds": rounds, "warmup": warmup, "gap_ms": gap_s * 1000, "steal_percent": steal,
               "commands": result},
              open(out_path, "w"), indent=1)


if __name__ == "__main__":
    main()
