# Shared by bench/run (npm) and bench/run-pypi-crates: sourced, not run.
#
# Expects BENCH_DIR, ROOT, MOAT, SKIP (",a,b,"), THREADS, CONNS, DURATION and WARMUP to be set;
# bench_setup_out sets OUT, WORK, RESULTS and PIDS (every pid in PIDS is stopped on exit), and
# run_wrk reads SPID[server] (the server's pid, for CPU accounting).

# loopback only: never through a proxy
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

skip() { [[ $SKIP == *",$1,"* ]]; }
log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ensure_apt CMD=PACKAGE...: apt-get install the packages whose command is missing
ensure_apt() {
  local need=() pair cmd
  for pair in "$@"; do
    cmd=${pair%%=*}
    if [[ $cmd == /* ]]; then [[ -x $cmd ]] && continue; else command -v "$cmd" >/dev/null && continue; fi
    need+=("${pair#*=}")
  done
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# build_moat: cargo build --release -p moat-cli (unless BENCH_NO_BUILD or MOAT_BIN), then check
# that $MOAT has a `gate` command; sets MOAT_OK=1 when it does.
build_moat() {
  MOAT_OK=0
  if [[ -z ${BENCH_NO_BUILD:-} && -z ${MOAT_BIN:-} ]]; then
    log "cargo build --release -p moat-cli"
    (cd "$ROOT" && timeout 1800 cargo build --release -p moat-cli) || echo "bench: build failed; moat is not measured" >&2
  fi
  if [[ -x $MOAT ]] && "$MOAT" gate --help >/dev/null 2>&1; then MOAT_OK=1; else
    echo "bench: $MOAT has no working 'gate' command; moat is not measured" >&2
  fi
}

# bench_setup_out SUFFIX LINK: raw output in bench/out/<UTC stamp>SUFFIX (bench/out/LINK points
# at it), scratch in a temporary directory removed on exit with every process in PIDS.
bench_setup_out() {
  STAMP=$(date -u +%Y%m%dT%H%M%SZ)
  OUT=$BENCH_DIR/out/$STAMP$1
  mkdir -p "$OUT"
  ln -sfn "$STAMP$1" "$BENCH_DIR/out/$2"
  WORK=$(mktemp -d /tmp/moat-bench.XXXXXX)
  chmod 755 "$WORK" # nginx workers run as nobody
  RESULTS=$OUT/results.tsv
  : >"$RESULTS"
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  exit $rc
}

# free_ports N: N free loopback ports, on one line
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
}

record() { printf '%s\n' "$(IFS=$'\t'; echo "$*")" >>"$RESULTS"; } # key value...

# wait_for NAME SECONDS CMD...: poll CMD every 0.1 s
wait_for() {
  local name=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || { echo "bench: $name did not come up within ${secs}s" >&2; return 1; }
    sleep 0.1
  done
}

# percent of CPU time not idle over 2 s, on the whole machine
cpu_busy() {
  local a b
  a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
  local tot=0 idle i
  for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $(( tot > 0 ? 100 * (tot - idle) / tot : 0 ))
}
# Other work on the machine distorts every figure: wait (bounded) until it is quiet.
wait_idle() { # what
  local end=$((SECONDS + ${BENCH_IDLE_WAIT:-300})) busy
  while :; do
    busy=$(cpu_busy)
    ((busy <= 10)) && break
    if ((SECONDS >= end)); then
      echo "bench: machine still ${busy}% busy before $1; measuring anyway" >&2
      break
    fi
    echo "bench: machine ${busy}% busy (other processes); waiting before $1" >&2
    sleep 5
  done
  record "cpu_busy_before_$1" "$busy"
}

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
# RSS of a process and its children (nginx master + workers)
tree_rss_kb() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do total=$((total + $(rss_kb "$p" || echo 0))); done
  echo "$total"
}

# user + system CPU ticks of the whole machine so far (irq, softirq and steal left out: they
# are not charged to processes either)
machine_ticks() {
  local a; a=($(head -1 /proc/stat))
  echo $((a[1] + a[2] + a[3]))
}
# CPU ticks used so far by a process and its children
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
# CPU ticks used so far by each thread of a process, summed by thread name (digits dropped), as
# JSON: where a multi-threaded server spends its time
thread_ticks() { # pid
  python3 - "$1" <<'EOF'
import glob, json, re, sys
out = {}
for path in glob.glob(f"/proc/{sys.argv[1]}/task/*/stat"):
    try:
        text = open(path).read()
    except OSError:
        continue
    comm = re.sub(r"[-_ ]?\d+$", "", text[text.index("(") + 1:text.rindex(")")]) or "?"
    fields = text[text.rindex(")") + 2:].split()
    out[comm] = out.get(comm, 0) + int(fields[11]) + int(fields[12])
print(json.dumps(out))
EOF
}
# Wait (at most 60 s) until a server has finished the requests still in flight from the
# previous load, i.e. used under 5% of a core over one second.
wait_quiet() { # pid
  local a b i
  for i in $(seq 60); do
    a=$(cpu_ticks "$1"); sleep 1; b=$(cpu_ticks "$1")
    (((b - a) * 100 <= 5 * $(getconf CLK_TCK))) && return 0
  done
  echo "bench: server $1 still busy after 60 s" >&2
}

# run_wrk SERVER ROUTE URL [WRK ARGS...]: an unrecorded warm-up, then the measured run; records
# rps, p50, p99, request and non-2xx counts, socket errors, and the CPU of the server, of wrk and
# of every other process during the run (% of one core; server CPU seconds too).
run_wrk() {
  local server=$1 route=$2 url=$3
  local extra=("${@:4}")
  local f=$OUT/wrk-$route-$server.txt
  echo "wrk $server $route: ${extra[*]} $url" >&2
  # an unrecorded warm-up at the same load (JIT, caches, connection pools), then the run
  timeout 60 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" --timeout 30s "${extra[@]}" "$url" >"$OUT/wrk-warmup-$route-$server.txt" 2>&1 || true
  wait_quiet "${SPID[$server]}"
  # CPU accounting over the run: the server's, wrk's, and everything else on the machine
  local m0 m1 s0 s1
  thread_ticks "${SPID[$server]}" >"$f.threads0"
  m0=$(machine_ticks); s0=$(cpu_ticks "${SPID[$server]}")
  /usr/bin/time -f "%e %U %S" -o "$f.time" timeout 120 \
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --timeout 30s --latency "${extra[@]}" "$url" >"$f" 2>&1 || true
  m1=$(machine_ticks); s1=$(cpu_ticks "${SPID[$server]}")
  thread_ticks "${SPID[$server]}" >"$f.threads1"
  python3 - "$f.threads0" "$f.threads1" "$(tail -1 "$f.time")" "$(getconf CLK_TCK)" "${route}_$server" >>"$RESULTS" <<'EOF3' || true
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
wall, hz, key = float(sys.argv[3].split()[0]), int(sys.argv[4]), sys.argv[5]
used = {k: v - a.get(k, 0) for k, v in b.items()}
parts = [f"{k}={100 * v / (wall * hz):.0f}" for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v > 0]
print(f"threads_{key}\t{';'.join(parts)}")
EOF3
  python3 - "$(tail -1 "$f.time")" "$((m1 - m0))" "$((s1 - s0))" "$(getconf CLK_TCK)" "$(nproc)" "${route}_$server" >>"$RESULTS" <<'EOF2'
import sys
wall, wu, ws = map(float, sys.argv[1].split())
machine, server, hz, ncpu, key = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
wrk = (wu + ws) * hz
print(f"servercpu_{key}\t{100 * server / (wall * hz):.0f}")
print(f"servercpus_{key}\t{server / hz:.2f}")
print(f"wrkcpu_{key}\t{100 * wrk / (wall * hz):.0f}")
print(f"othercpu_{key}\t{max(0.0, 100 * (machine - server - wrk) / (wall * hz)):.0f}")
EOF2
  python3 - "$f" "$server" "$route" >>"$RESULTS" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
server, route = sys.argv[2], sys.argv[3]
def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\b", text, re.M)
p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\b", text, re.M)
reqs = re.search(r"(\d+) requests in", text)
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errs = re.search(r"Socket errors:(.*)", text)
print(f"rps_{route}_{server}\t{float(rps.group(1)) if rps else ''}")
print(f"p99ms_{route}_{server}\t{ms(*p99.groups()) if p99 else ''}")
print(f"p50ms_{route}_{server}\t{ms(*p50.groups()) if p50 else ''}")
print(f"requests_{route}_{server}\t{reqs.group(1) if reqs else ''}")
print(f"non2xx_{route}_{server}\t{non2xx.group(1) if non2xx else 0}")
print(f"sockerr_{route}_{server}\t{errs.group(1).strip() if errs else ''}")
EOF
  grep -E "Requests/sec|  99%|Non-2xx|Socket errors" "$f" >&2 || true
}

# median_rounds ROUTE SERVER: record SERVER's figures on ROUTE under the keys of a single run,
# from the rounds run_wrk recorded as ROUTE.rN: the median of each figure over the rounds (the
# CPU split and errors of the round with the median req/s; upstream requests and non-2xx
# answers summed), and every round's req/s and p99 as rounds_ROUTE_SERVER.
median_rounds() {
  python3 "$BENCH_DIR/median_rounds.py" "$RESULTS" "$1" "$2" >>"$RESULTS"
}

# machine_info: the lines every machine.txt starts with
machine_info() {
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel: $(uname -sr)"
  echo "virtualization: $(lscpu 2>/dev/null | awk -F: '/Hypervisor vendor/ {gsub(/^ +/, "", $2); print $2}' | head -1)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "wrk: $(wrk --version 2>&1 | head -1 | awk '{print $2}')"
}

# moat_info: the moat line of machine.txt
moat_info() {
  echo "moat: $("$MOAT" --version 2>/dev/null) (binary built $(date -u -r "$MOAT" '+%Y-%m-%d %H:%M UTC'); work tree $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet HEAD 2>/dev/null || echo '+uncommitted changes'))"
}
