#!/usr/bin/env python3
"""Fold one server's wrk rounds on one route into the keys of a single run.

    median_rounds.py RESULTS ROUTE SERVER >> RESULTS

run_wrk (lib.sh) records round N of ROUTE as `<metric>_<ROUTE>.rN_<SERVER>`. This prints
`<metric>_<ROUTE>_<SERVER>` for report.py: the median over the rounds of each figure; the
request count and server CPU seconds (so CPU per request comes from one round, not from two
medians), thread split, socket errors and repeat note of the round with the median req/s; upstream
requests and non-2xx answers summed; and `rounds_<ROUTE>_<SERVER>`, every round's
`req/s/p99 ms` in order, so the report can show the spread.
"""

import re
import statistics
import sys

MEDIAN = ("rps", "p99ms", "p50ms", "servercpu", "wrkcpu", "othercpu")
SUMMED = ("non2xx", "upstream")
FROM_MEDIAN_ROUND = ("requests", "servercpus", "threads", "sockerr", "repeated")
WHOLE = ("servercpu", "wrkcpu", "othercpu")


def number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def main():
    path, route, server = sys.argv[1:]
    pattern = re.compile(rf"(\w+?)_{re.escape(route)}\.r(\d+)_{re.escape(server)}")
    rounds = {}
    with open(path) as results:
        for line in results:
            key, _, value = line.rstrip("\n").partition("\t")
            match = pattern.fullmatch(key)
            if match:
                rounds.setdefault(int(match.group(2)), {})[match.group(1)] = value
    if not rounds:
        return
    order = sorted(rounds)
    by_rps = sorted((number(rounds[n].get("rps")) or 0.0, n) for n in order)
    middle = rounds[by_rps[(len(by_rps) - 1) // 2][1]]
    out = {}
    for metric in MEDIAN:
        values = [v for v in (number(rounds[n].get(metric)) for n in order) if v is not None]
        if values:
            value = statistics.median(values)
            out[metric] = round(value) if metric in WHOLE else value
    for metric in SUMMED:
        out[metric] = int(sum(number(rounds[n].get(metric)) or 0 for n in order))
    for metric in FROM_MEDIAN_ROUND:
        if middle.get(metric):
            out[metric] = middle[metric]
    out["rounds"] = ";".join(f"{rounds[n].get('rps', '')}/{rounds[n].get('p99ms', '')}" for n in order)
    for metric, value in out.items():
        print(f"{metric}_{route}_{server}\t{value}")


if __name__ == "__main__":
    main()
