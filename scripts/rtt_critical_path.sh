#!/usr/bin/env bash
# Times the critical path of the `rtt` row on each side: from each read that returns a frame
# to the send that follows it, the work a module does between a message arriving and its
# answer leaving (docs/performance.md, "Twenty-sixth step"). A CPU profile cannot show this:
# most of a polling module's CPU is its polling, which the round trip does not wait for.
#
# Usage: scripts/rtt_critical_path.sh [BENCH_BINARY]   (default target/release/logos-bench)
#
# Runs `logos-bench --only rtt --rounds 20` (about 15 s), records the system calls of its two modules
# (`perf record -e raw_syscalls:*`) for 1.5 s while the 64-byte calls run, and prints, for
# the caller (answer read → next call sent) and the callee (call read → answer sent), the
# median over all round trips and the mean of the fastest 90 %. perf's own cost, about 0.1 µs
# a side, is included: compare builds with each other, not with zero. Needs perf (with
# permission to trace other processes) and python3; builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-target/release/logos-bench}
for tool in perf python3; do
    command -v "$tool" >/dev/null || { echo "rtt_critical_path: $tool is not installed" >&2; exit 2; }
done
[ -x "$bench" ] || { echo "rtt_critical_path: no $bench (cargo build --release -p logos-bench)" >&2; exit 2; }

work=$(mktemp -d)
bench_pid=
cleanup() {
    [ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/dev/shm} "$bench" --only rtt --rounds 20 >"$work/bench.out" 2>&1 &
bench_pid=$!
# The two modules of the row run as `benchmod` (the program of that name when it is built
# beside the benchmark, else the benchmark's binary), children of it.
pids=
for _ in $(seq 1 200); do
    pids=$(pgrep -d, -P "$bench_pid" benchmod || true)
    [ -n "$pids" ] && break
    sleep 0.05
done
[ -n "$pids" ] || { echo "rtt_critical_path: the benchmark started no modules; its output:" >&2; cat "$work/bench.out" >&2; exit 1; }
# The modules are loaded first; the 64-byte rounds follow.
sleep 1
perf record -q -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -p "$pids" -o "$work/sys.data" -- sleep 1.5 >/dev/null 2>&1
perf script -i "$work/sys.data" --ns -F pid,time,event,trace 2>/dev/null >"$work/sys.txt"
# Let the benchmark finish its row: stopped early, it would leave its directories behind.
wait "$bench_pid" || true
bench_pid=

python3 - "$work/sys.txt" <<'PY'
import re, statistics, sys
READS, SENDS = (0, 45, 47), (1, 44, 46)  # read, recvfrom, recvmsg / write, sendto, sendmsg
line_re = re.compile(r'\s*(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit): NR (\d+)(?: = (-?\d+))?')
events = {}
for line in open(sys.argv[1]):
    m = line_re.match(line)
    if m:
        pid, t, kind, nr, ret = m.groups()
        events.setdefault(pid, []).append((float(t) * 1e9, kind, int(nr), int(ret) if ret else None))
sides = []
for pid, es in events.items():
    gaps = {}
    for i, (t, kind, nr, ret) in enumerate(es[:-1]):
        nxt = es[i + 1]
        if kind == 'exit' and nr in READS and ret and ret > 0 and nxt[1] == 'enter' and nxt[2] in SENDS:
            gaps.setdefault(ret, []).append(nxt[0] - t)
    if gaps:
        size, g = max(gaps.items(), key=lambda kv: len(kv[1]))
        sides.append((size, g))
if len(sides) != 2 or not all(60 <= size <= 200 for size, _ in sides):
    sys.exit("rtt_critical_path: did not catch the 64-byte round trips (frames of %s bytes); run it again"
             % [size for size, _ in sides])
sides.sort()
for (size, g), who in zip(sides, ("caller: answer read → next call sent", "callee: call read → answer sent")):
    g.sort()
    fast = g[: max(1, int(len(g) * 0.9))]
    print("%-38s frames of %3d B, %6d round trips: median %4.0f ns, mean of the fastest 90 %% %4.0f ns"
          % (who, size, len(g), statistics.median(g), statistics.mean(fast)))
PY
