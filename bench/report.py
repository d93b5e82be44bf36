#!/usr/bin/env python3
"""Turn one bench/run or bench/run-pypi-crates output directory (results.tsv, machine.txt,
fixture.json) into Markdown."""

import json
import os
import sys

NM = "not measured"


def load(out):
    r = {}
    with open(os.path.join(out, "results.tsv")) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 2:
                r[parts[0]] = parts[1]
    return r


def num(r, key):
    v = r.get(key, "")
    try:
        return float(v)
    except ValueError:
        return None


def fmt_ms(v):
    if v is None:
        return NM
    return f"{v:.2f} ms" if v < 100 else f"{v:,.0f} ms"


def fmt_rps(v):
    return NM if v is None else f"{v:,.0f}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.{digits}f}×"


def mb(kb):
    return NM if kb is None else f"{kb / 1024:.0f} MiB"


def main():
    out = sys.argv[1]
    r = load(out)
    fx = json.load(open(os.path.join(out, "fixture.json")))
    machine = open(os.path.join(out, "machine.txt")).read().strip().splitlines()
    m = dict(line.split(": ", 1) for line in machine if ": " in line)
    if "pypi" in fx:
        return report_pypi_crates(r, fx, m)
    servers = [("nginx", "nginx (static)"), ("verdaccio", "Verdaccio"), ("moat", "moat gate")]
    routes = [
        ("packument", f"packument `{fx['bench_packument']}` ({fx['big_packument_bytes'] / 1000:.0f} KB, {fx['big_versions']} versions)"),
        ("tarball", f"tarball `{fx['bench_tarball'].rsplit('/', 1)[-1]}` ({fx['bench_tarball_bytes'] / 1000:.1f} KB)"),
    ]
    p = print
    p(f"Run of {m.get('date', '?')} — {m.get('nproc', '?')} × {m.get('cpu', '?')}, {m.get('memory', '?')}, {m.get('kernel', '?')}; "
      f"nginx {m.get('nginx', '?')}, Verdaccio {m.get('verdaccio', NM)}, moat {m.get('moat', NM).removeprefix('moat ')}, "
      f"node {m.get('node', '?')}, npm {m.get('npm', '?')}, wrk {m.get('wrk', '?')} ({m.get('load', '?')})")
    busy = [f"{r[k]}% before {k.rsplit('_', 1)[-1]}" for k in ("cpu_busy_before_wrk", "cpu_busy_before_npm") if r.get(k)]
    p()
    p(f"Machine CPU busy with other processes: {', '.join(busy) or 'not sampled'}; "
      f"load average {m.get('load before', '?')} before, {m.get('load after', '?')} after.")
    p()
    p("### Warm-cache requests (wrk, 2 threads, 64 connections)")
    p()
    p("| route | server | req/s | p50 | p99 | non-2xx | nginx req/s ÷ server req/s | server p99 ÷ nginx p99 | CPU, % of one core: server / wrk / others |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for route, label in routes:
        base_rps, base_p99 = num(r, f"rps_{route}_nginx"), num(r, f"p99ms_{route}_nginx")
        for s, sname in servers:
            rps, p50, p99 = num(r, f"rps_{route}_{s}"), num(r, f"p50ms_{route}_{s}"), num(r, f"p99ms_{route}_{s}")
            non2xx = r.get(f"non2xx_{route}_{s}", "")
            status = r.get(f"status_{route}_{s}")
            if r.get(f"requests_{route}_{s}") == "0":
                p50 = p99 = None
                non2xx = "no request completed"
            if rps is None:
                p(f"| {label} | {sname} | {NM} | {NM} | {NM} | | | | |")
                continue
            if status and status != "200":
                non2xx = f"{non2xx} (HTTP {status})"
            cpu = "/".join(r.get(f"{k}cpu_{route}_{s}", "?") for k in ("server", "wrk"))
            other = r.get(f"othercpu_{route}_{s}")
            cpu = f"{cpu.replace('/', ' / ')} / {other}" if other is not None else ""
            p(f"| {label} | {sname} | {fmt_rps(rps)} | {fmt_ms(p50)} | {fmt_ms(p99)} | {non2xx} | "
              f"{ratio(base_rps, rps)} | {ratio(p99, base_p99)} | {cpu} |")
    sizes = [f"{sname} {int(num(r, f'bytes_packument_{s}')):,} B" for s, sname in servers if num(r, f"bytes_packument_{s}")]
    if sizes:
        p()
        same = [r.get(f"tarball_identical_{s}") for s, _ in servers if r.get(f"status_tarball_{s}")]
        if same and all(v == "1" for v in same):
            tail = "; the tarball is byte-identical from every server"
        elif any(v == "0" for v in same):
            tail = "; **the tarball bytes differ** between servers (see results.tsv)"
        else:
            tail = ""
        p(f"Packument bodies as served (no `Accept-Encoding`): {', '.join(sizes)}{tail}.")
    p()
    p("Target: moat within 1.5× of nginx on both ratios, on every route.")
    p()
    p("| route | moat vs nginx: req/s ratio (≤ 1.5×) | p99 ratio (≤ 1.5×) | moat req/s ÷ Verdaccio req/s | Verdaccio p99 ÷ moat p99 |")
    p("|---|---:|---:|---:|---:|")
    for route, label in routes:
        n_rps, n_p99 = num(r, f"rps_{route}_nginx"), num(r, f"p99ms_{route}_nginx")
        v_rps, v_p99 = num(r, f"rps_{route}_verdaccio"), num(r, f"p99ms_{route}_verdaccio")
        m_rps, m_p99 = num(r, f"rps_{route}_moat"), num(r, f"p99ms_{route}_moat")
        if m_rps is None:
            p(f"| {route} | {NM} | {NM} | {NM} | {NM} |")
        else:
            p(f"| {route} | {ratio(n_rps, m_rps)} | {ratio(m_p99, n_p99)} | {ratio(m_rps, v_rps, 1)} | {ratio(v_p99, m_p99, 1)} |")
    if r.get("rps_packument_verdaccio"):
        p()
        p("For reference, Verdaccio vs nginx: packument "
          f"{ratio(num(r, 'rps_packument_nginx'), num(r, 'rps_packument_verdaccio'), 1)} fewer req/s, "
          f"tarball {ratio(num(r, 'rps_tarball_nginx'), num(r, 'rps_tarball_verdaccio'), 1)} fewer req/s.")

    p()
    p(f"### `npm ci` of the fixture project ({r.get('lock_packages', '?')} packages in the lockfile, empty npm cache each run, registries interleaved run by run)")
    p()
    p("| registry | mean ± σ | median | min | mean ÷ nginx's (target ≤ 1.05×) | median ÷ nginx's |")
    p("|---|---:|---:|---:|---:|---:|")
    base = num(r, "npmci_mean_s_nginx")
    base_median = num(r, "npmci_median_s_nginx")
    for s, sname in servers:
        mean, sd, mn = num(r, f"npmci_mean_s_{s}"), num(r, f"npmci_stddev_s_{s}"), num(r, f"npmci_min_s_{s}")
        median = num(r, f"npmci_median_s_{s}")
        if mean is None:
            p(f"| {sname} | {NM} | {NM} | {NM} | | |")
        else:
            med = NM if median is None else f"{median:.2f} s"
            p(f"| {sname} | {mean:.2f} s ± {sd:.2f} | {med} | {mn:.2f} s | {ratio(mean, base, 3)} | {ratio(median, base_median, 3)} |")

    p()
    p("### Advisory database (full npm bundle) and memory")
    p()
    p("| what | wall time | max RSS |")
    p("|---|---:|---:|")
    def row(label, wall, rss):
        p(f"| {label} | {NM if wall is None else f'{wall:.2f} s'} | {rss} |")
    row("`moat db import npm.zip` (the full npm bundle, into an empty data dir)", num(r, "db_import_wall_s"), mb(num(r, "db_import_maxrss_kb")))
    st = num(r, "db_status_mean_s")
    row("`moat db status` (loads the saved index; hyperfine mean)" if st is not None else "`moat db status`",
        st if st is not None else num(r, "db_status_wall_s"), mb(num(r, "db_status_maxrss_kb")))
    lm = num(r, "db_status_load_ms")
    if lm is not None:
        row("index load as reported by `moat db status --json` (`load_ms`)", lm / 1000, "")
    gl = num(r, "gate_data_loaded_ms")
    if gl is not None:
        row("gate: advisories, policy and popular lists loaded (its own log)", gl / 1000, "")
    row("`moat gate --advisories …` (npm + PyPI + crates.io dumps) start-up until listening", num(r, "gate_startup_s"), f"{mb(num(r, 'gate_rss_after_start_kb'))} (RSS when listening)")
    p()
    p("| resident memory after the run | RSS |")
    p("|---|---:|")
    p(f"| nginx (master + workers) | {mb(num(r, 'rss_kb_nginx'))} |")
    p(f"| Verdaccio | {mb(num(r, 'rss_kb_verdaccio'))} |")
    hwm = num(r, "hwm_kb_moat")
    p(f"| moat gate | {mb(num(r, 'rss_kb_moat'))}{'' if hwm is None else f' (peak {mb(hwm)})'} |")


def report_pypi_crates(r, fx, m):
    """The PyPI and cargo routes: moat vs devpi-server vs nginx (bench/run-pypi-crates)."""
    py, cr = fx["pypi"], fx["crates"]
    servers = [("nginx", "nginx (static)"), ("devpi", "devpi-server"), ("moat", "moat gate")]
    routes = [
        ("simple_json", f"simple page as JSON (`{py['simple_path']}`, `Accept: application/vnd.pypi.simple.v1+json`; "
                        f"{py['releases']} releases, {py['files']} files, {py['simple_json_bytes'] / 1000:.0f} KB)"),
        ("simple_html", f"simple page as HTML (same URL, `Accept: text/html`; {py['simple_html_bytes'] / 1000:.0f} KB)"),
        ("wheel", f"wheel `{py['wheel']}` ({py['wheel_bytes'] / 1000:.1f} KB)"),
        ("metadata", f"its PEP 658 `.metadata` ({py['metadata_bytes']} B)"),
        ("crate_index", f"sparse index file `{cr['index_path']}` ({cr['versions']} versions, {cr['index_bytes'] / 1000:.1f} KB)"),
        ("crate", f"`.crate` `{cr['crate_path']}` ({cr['crate_bytes'] / 1000:.1f} KB)"),
    ]
    short = {"simple_json": "simple page, JSON", "simple_html": "simple page, HTML", "wheel": "wheel",
             "metadata": "`.metadata`", "crate_index": "sparse index file", "crate": "`.crate`"}
    p = print
    p(f"Run of {m.get('date', '?')} — {m.get('nproc', '?')} × {m.get('cpu', '?')}, {m.get('memory', '?')}, {m.get('kernel', '?')}; "
      f"nginx {m.get('nginx', '?')}, devpi-server {m.get('devpi-server', NM)}, moat {m.get('moat', NM).removeprefix('moat ')}, "
      f"wrk {m.get('wrk', '?')} ({m.get('load', '?')})")
    p()
    p(f"Machine CPU busy with other processes before the wrk runs: {r.get('cpu_busy_before_wrk', '?')}%; "
      f"load average {m.get('load before', '?')} before, {m.get('load after', '?')} after.")
    p()
    p("### Warm-cache requests (wrk, 2 threads, 64 connections)")
    p()
    p("| route | server | req/s | p50 | p99 | non-2xx | nginx req/s ÷ server req/s | server p99 ÷ nginx p99 "
      "| CPU, % of one core: server / wrk / others | server CPU per request | upstream requests during the run |")
    p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for route, label in routes:
        base_rps, base_p99 = num(r, f"rps_{route}_nginx"), num(r, f"p99ms_{route}_nginx")
        for s, sname in servers:
            rps, p50, p99 = num(r, f"rps_{route}_{s}"), num(r, f"p50ms_{route}_{s}"), num(r, f"p99ms_{route}_{s}")
            if rps is None:
                if s == "devpi" and route.startswith("crate"):
                    continue
                p(f"| {label} | {sname} | {NM} | {NM} | {NM} | | | | | | |")
                continue
            non2xx = r.get(f"non2xx_{route}_{s}", "")
            status = r.get(f"status_{route}_{s}")
            if r.get(f"requests_{route}_{s}") == "0":
                p50 = p99 = None
                non2xx = "no request completed"
            if status and status != "200":
                non2xx = f"{non2xx} (HTTP {status})"
            other = r.get(f"othercpu_{route}_{s}")
            cpu = " / ".join(r.get(f"{k}cpu_{route}_{s}", "?") for k in ("server", "wrk", "other")) if other is not None else ""
            rep = r.get(f"repeated_{route}_{s}")
            if rep:
                cpu += f" (measured twice: others used {rep}% in the first run)"
            elif other is not None and int(other) > 25:
                cpu += " (disturbed)"
            cs, reqs = num(r, f"servercpus_{route}_{s}"), num(r, f"requests_{route}_{s}")
            per = f"{cs * 1e6 / reqs:,.0f} µs" if cs is not None and reqs else ""
            up = r.get(f"upstream_{route}_{s}", "")
            p(f"| {label} | {sname} | {fmt_rps(rps)} | {fmt_ms(p50)} | {fmt_ms(p99)} | {non2xx} | "
              f"{ratio(base_rps, rps)} | {ratio(p99, base_p99)} | {cpu} | {per} | {up} |")
    if any(r.get(f"rounds_{route}_{s}") for route, _ in routes for s, _ in servers):
        p()
        n = max(len(r.get(f"rounds_{route}_{s}", "").split(";")) for route, _ in routes for s, _ in servers)
        p(f"Each figure above is the median of {n} rounds; in each round every server ran once, in "
          "turn (devpi-server in the first round only). Every round, req/s and p99:")
        p()
        p("| route | server | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |")
        p("|---|---|" + "---:|" * n)
        for route, _ in routes:
            for s, sname in servers:
                rounds = r.get(f"rounds_{route}_{s}")
                if not rounds:
                    continue
                cells = []
                for cell in rounds.split(";"):
                    rps, _, p99 = cell.partition("/")
                    cells.append(f"{fmt_rps(num({'x': rps}, 'x'))} / {fmt_ms(num({'x': p99}, 'x'))}")
                p(f"| {short[route]} | {sname} | " + " | ".join(cells) + " |")
    p()
    p("Answers checked before the runs (the second request through each server, after one that "
      "filled its cache):")
    p()
    p("| route | server | HTTP | bytes | content type | check |")
    p("|---|---|---:|---:|---|---|")
    for route, _ in routes:
        for s, sname in servers:
            if r.get(f"status_{route}_{s}") is None:
                continue
            b = num(r, f"bytes_{route}_{s}")
            p(f"| {short[route]} | {sname} | {r.get(f'status_{route}_{s}')} | {'' if b is None else f'{int(b):,}'} | "
              f"`{r.get(f'ctype_{route}_{s}', '')}` | {r.get(f'check_{route}_{s}', '')} |")
    pip = [f"{sname} {r[f'pip_download_{s}']}" for s, sname in servers if r.get(f"pip_download_{s}")]
    if pip:
        p()
        p(f"`pip download --no-deps {py['project']}=={py['wheel'].split('-')[1]}` (pip {m.get('pip', '?').split(' (')[0]}) through each "
          f"server, and the downloaded wheel's sha256 checked: {', '.join(pip)}.")
    p()
    p("Target: moat within 1.5× of nginx on both ratios, on every route.")
    p()
    p("| route | moat vs nginx: req/s ratio (≤ 1.5×) | p99 ratio (≤ 1.5×) | target | moat req/s ÷ devpi req/s | devpi p99 ÷ moat p99 |")
    p("|---|---:|---:|---|---:|---:|")
    for route, _ in routes:
        n_rps, n_p99 = num(r, f"rps_{route}_nginx"), num(r, f"p99ms_{route}_nginx")
        d_rps, d_p99 = num(r, f"rps_{route}_devpi"), num(r, f"p99ms_{route}_devpi")
        m_rps, m_p99 = num(r, f"rps_{route}_moat"), num(r, f"p99ms_{route}_moat")
        dv = "—" if route.startswith("crate") else None
        if m_rps is None or n_rps is None:
            p(f"| {short[route]} | {NM} | {NM} | | {NM} | {NM} |")
            continue
        t_rps, t_p99 = n_rps / m_rps, (m_p99 / n_p99 if m_p99 and n_p99 else None)
        missed = [w for w, v in (("req/s", t_rps), ("p99", t_p99)) if v is not None and v > 1.5]
        verdict = "met" if not missed and t_p99 is not None else ("**missed** (" + ", ".join(missed) + ")" if missed else "?")
        p(f"| {short[route]} | {ratio(n_rps, m_rps)} | {ratio(m_p99, n_p99)} | {verdict} | "
          f"{dv or ratio(m_rps, d_rps, 1)} | {dv or ratio(d_p99, m_p99, 1)} |")
    if any(r.get(f"threads_{route}_moat") for route, _ in routes):
        p()
        p("Where moat's CPU went during each run (its threads by name, % of one core; "
          "`moat-audit-writ` is the audit writer thread, which appends each new decision and, once a second, the tallies of repeated ones; `moat-loop-N` are the serving loops; the kernel cuts thread names to 15 characters):")
        p()
        p("| route | moat req/s | moat threads, % of one core |")
        p("|---|---:|---|")
        for route, _ in routes:
            t = r.get(f"threads_{route}_moat")
            if t:
                parts = ", ".join(f"`{k}` {v}" for k, v in (x.split("=", 1) for x in t.split(";") if "=" in x))
                p(f"| {short[route]} | {fmt_rps(num(r, f'rps_{route}_moat'))} | {parts} |")
    if r.get("rps_simple_json_devpi"):
        p()
        p("For reference, devpi-server vs nginx (nginx req/s ÷ devpi req/s): " + ", ".join(
            f"{short[route]} {ratio(num(r, f'rps_{route}_nginx'), num(r, f'rps_{route}_devpi'), 1)}"
            for route, _ in routes if not route.startswith("crate")) + ".")
    p()
    p("| resident memory after the run | RSS |")
    p("|---|---:|")
    p(f"| nginx (master + workers) | {mb(num(r, 'rss_kb_nginx'))} |")
    p(f"| devpi-server | {mb(num(r, 'rss_kb_devpi'))} |")
    hwm = num(r, "hwm_kb_moat")
    p(f"| moat gate | {mb(num(r, 'rss_kb_moat'))}{'' if hwm is None else f' (peak {mb(hwm)})'} |")
    st = num(r, "gate_startup_s")
    if st is not None:
        p()
        p(f"moat gate start-up until listening: {st:.2f} s ({mb(num(r, 'gate_rss_after_start_kb'))} resident); "
          f"its data directory (audit log) after the run: {mb(num(r, 'moat_data_dir_kb'))}.")


if __name__ == "__main__":
    main()
