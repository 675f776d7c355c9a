#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Benchmark driver: runs wm_bench for every installed backend (mpi under mpirun), the floor
programs, and writes the report: JSON + Markdown table + SVG plots. Standard library only.

    python3 bench/run.py [--build build] [--runs 5] [--smoke] [--backends a,b] [--out DIR]
                         [--check] [--update-readme]

See bench/README.md for what each figure means.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

FIGURES = ["throughput", "roundtrip", "bandwidth", "idle", "efficiency", "death", "memory", "sweep", "node_death",
           "stats", "idle_dashboard", "shared_bandwidth", "shared_result"]
# Figures run in a fresh process per run: VmHWM only grows, an MPI job cannot replace a rank, a
# killed zmq node is gone.
ONE_RUN_PER_PROCESS = {"death", "memory", "node_death", "shared_result"}
# Backends whose workers run under nodes started beside the master (the node_death figure is theirs).
NODE_BACKENDS = {"zmq"}
ZMQ_NODE_WORKERS = 2
SWEEP_US = [1, 10, 100, 1000, 10000]
# Metrics each figure must produce (smoke check). "na" is accepted where marked.
EXPECTED = {
    "throughput": ["throughput"],
    "roundtrip": ["rt_median", "rt_p99"],
    "bandwidth": ["bandwidth"],
    "idle": ["idle_cpu"],
    "efficiency": ["efficiency"],
    "death": ["death_ms"],
    "memory": ["mem_master_hwm", "mem_per_future", "mem_worker_hwm"],
    "sweep": ["sweep_%dus" % us for us in SWEEP_US],
    "node_death": ["node_death_ms"],
    "stats": ["stats_ratio", "stats_call_us"],
    "idle_dashboard": ["idle_cpu_dashboard"],
    "shared_bandwidth": ["shared_bandwidth", "shared_echo_memcpys"],
    "shared_result": ["shared_result_hwm"],
}
# The idle figure again with the dashboard listening (WM_DASHBOARD): fewer runs, 3 s each.
DASHBOARD_IDLE_RUNS = 3
NA_OK_IN_PROCESS = {"death_ms", "mem_worker_hwm"}
FLOOR_EXPECTED = ["pool_throughput", "pool_rt_median", "pool_rt_p99", "pipe_rt_median", "pipe_rt_p99",
                  "memcpy", "fresh_echo", "pool_mem_master_hwm", "pool_mem_per_future"]
MPI_FLOOR_EXPECTED = ["mpi_rt_median", "mpi_rt_p99", "mpi_bandwidth"]
# The remote engine's dispatcher over a fake transport (wm_dispatch_bench): master's CPU per task.
DISPATCH_WORKERS = [2, 64, 1024]
DISPATCH_NEEDS_WORKERS = [2, 1024]
DISPATCH_EXPECTED = ["dispatch_ns_%d" % w for w in DISPATCH_WORKERS] + \
    ["dispatch_needs_ns_%d" % w for w in DISPATCH_NEEDS_WORKERS]
ZMQ_FLOOR_EXPECTED = ["zmq_rt_median", "zmq_rt_p99", "zmq_bandwidth"]
# Table rows, in order: metric, label.
ROWS = [
    ("throughput", "tiny-task throughput"),
    ("rt_median", "round trip, median"),
    ("rt_p99", "round trip, p99"),
    ("bandwidth", "64 MiB echo bandwidth"),
    ("bandwidth_keep", "64 MiB echo bandwidth, host malloc keeps freed memory"),
    ("shared_bandwidth", "64 MiB wm::SharedArray echo bandwidth"),
    ("shared_floor_ratio", "64 MiB wm::SharedArray echo, to its floor"),
    ("shared_echo_memcpys", "64 MiB wm::SharedArray echo, in memcpys of 64 MiB (same run)"),
    ("shared_result_hwm", "peak RSS master, holding a 1 GiB wm::SharedBytes result"),
    ("idle_cpu", "idle CPU, 3 s, whole tree"),
    ("idle_cpu_dashboard", "idle CPU, 3 s, whole tree, dashboard listening"),
    ("dashboard_idle_extra", "the idle dashboard's CPU over 3 s (difference of medians)"),
    ("stats_counting_ratio", "throughput with statistics counted, to without (same process)"),
    ("stats_ratio", "throughput with stats() read 10×/s, to without"),
    ("stats_call_us", "one stats() call during a run"),
    ("efficiency", "submit_as_completed efficiency"),
    ("death_ms", "worker-death detection"),
    ("node_death_ms", "node-death detection (SIGKILL)"),
    ("mem_master_hwm", "peak RSS master, 100k futures"),
    ("mem_worker_hwm", "peak RSS one worker"),
    ("mem_per_future", "memory per outstanding future"),
]
# Rows measured for some backends only (remote ones): left out where absent.
OPTIONAL_ROWS = {"bandwidth_keep", "shared_floor_ratio", "node_death_ms", "idle_cpu_dashboard", "dashboard_idle_extra", "stats_ratio",
                 "stats_call_us", "stats_counting_ratio"}
FLOOR_ROWS = [
    ("pool_throughput", "std::thread pool + packaged_task throughput"),
    ("pool_rt_median", "std::thread pool round trip, median"),
    ("pool_rt_p99", "std::thread pool round trip, p99"),
    ("pipe_rt_median", "pipe ping-pong round trip, median"),
    ("pipe_rt_p99", "pipe ping-pong round trip, p99"),
    ("mpi_rt_median", "MPI ping-pong round trip, median (np 2)"),
    ("mpi_rt_p99", "MPI ping-pong round trip, p99 (np 2)"),
    ("zmq_rt_median", "ZeroMQ ping-pong round trip, median (ROUTER/DEALER, ipc, 2 processes)"),
    ("zmq_rt_p99", "ZeroMQ ping-pong round trip, p99 (ROUTER/DEALER, ipc, 2 processes)"),
    ("memcpy", "memcpy 64 MiB"),
    ("fresh_echo", "64 MiB into fresh memory, as an echo's new result (2 × bytes / time)"),
    ("mpi_bandwidth", "MPI 64 MiB echo, both ways (np 2)"),
    ("zmq_bandwidth", "ZeroMQ 64 MiB echo, both ways (ROUTER/DEALER, ipc, 2 processes)"),
    ("pool_mem_master_hwm", "std::thread pool peak RSS, 100k futures"),
    ("pool_mem_per_future", "std::thread pool memory per future"),
]
KNOWN_BACKENDS = ["serial", "threads", "processes", "mpi", "zmq"]
MPI_NP = 3


# ----------------------------------------------------------------------------- running programs

def session_members(sid):
    """Pids of live processes whose session id is sid (everything a run started)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            if int(fields[3]) == sid:  # field 6 of stat: session
                out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def run_program(cmd, env, timeout, log):
    """Runs cmd in its own session, bounded by timeout; kills whatever it leaves behind.
    Returns (parsed JSON lines, error string or None)."""
    log("  $ " + " ".join(cmd))
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    err = None
    try:
        out, errtext = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            err = "exit code %d: %s" % (proc.returncode, errtext.strip()[-500:])
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, errtext = proc.communicate()
        err = "timed out after %d s" % timeout
    # Processes that are ending (a killed zmq node's workers, dying with it) get a moment.
    deadline = time.time() + 1.0
    left = [p for p in session_members(proc.pid) if p != os.getpid()]
    while left and time.time() < deadline:
        time.sleep(0.02)
        left = [p for p in session_members(proc.pid) if p != os.getpid()]
    if left:
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log("  warning: killed %d leftover process(es) of this run: %s" % (len(left), left))
    records = []
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "kind" in rec:
            records.append(rec)
    log("    %.1f s, %d records%s" % (time.time() - t0, len(records), (", " + err) if err else ""))
    return records, err


class Store:
    """Collects records per source (backend name or "floor")."""

    def __init__(self):
        self.metrics = {}   # source -> metric -> {unit, values, note}
        self.na = {}        # source -> metric -> reason
        self.hists = {}     # source -> metric -> {edges_us, counts}
        self.info = {}      # source -> info record
        self.errors = []    # strings

    def add(self, records):
        for r in records:
            src, kind = r.get("source", "?"), r["kind"]
            if kind == "metric":
                m = self.metrics.setdefault(src, {}).setdefault(
                    r["metric"], {"unit": r.get("unit", ""), "values": [], "note": r.get("note", "")})
                m["values"].extend(v for v in r.get("values", []) if v is not None)
                if r.get("note"):
                    m["note"] = r["note"]
            elif kind == "na":
                self.na.setdefault(src, {})[r["metric"]] = r.get("reason", "")
            elif kind == "hist":
                h = self.hists.setdefault(src, {}).get(r["metric"])
                if h is None:
                    self.hists[src][r["metric"]] = {"edges_us": r["edges_us"], "counts": list(r["counts"])}
                else:
                    h["counts"] = [a + b for a, b in zip(h["counts"], r["counts"])]
            elif kind == "info":
                self.info[src] = r
            elif kind == "error":
                self.errors.append("%s/%s: %s" % (src, r.get("figure", "?"), r.get("message", "")))


def zmq_pair(bench_bin, master_args, host_info):
    """A zmq master and one node of ZMQ_NODE_WORKERS workers (the same program in the node role),
    started side by side by one shell, which is the root of the process tree whose CPU is counted.
    The master waits for the node's workers; the node waits for the host-info file, and exits 0
    once the master is done."""
    node = [bench_bin, "--work-manager", "zmq", "--wm-zmq-mode", "node", "--wm-zmq-read-host-info", host_info,
            "--n-workers", str(ZMQ_NODE_WORKERS)]
    master = [bench_bin, "--work-manager", "zmq", "--wm-zmq-write-host-info", host_info,
              "--n-workers", str(ZMQ_NODE_WORKERS)] + master_args
    script = "%s & %s; status=$?; wait; exit $status" % (
        " ".join(shlex.quote(a) for a in node), " ".join(shlex.quote(a) for a in master))
    return ["sh", "-c", script]


def backend_command(b, bench_bin, args, env, mpi_env, mpirun, fig, tmpdir):
    """The command and environment that run wm_bench for backend b with args."""
    if b == "mpi":
        pre = [mpirun, "--oversubscribe", "-np", str(MPI_NP)]
        if fig == "death":
            pre.append("--enable-recovery")  # otherwise mpirun ends the job when a rank dies
        return pre + [bench_bin, "--work-manager", b] + args, mpi_env
    if b == "zmq":
        host_info = os.path.join(tmpdir, "host-info")
        if os.path.exists(host_info):
            os.unlink(host_info)  # left by a master that was killed (a timeout)
        return zmq_pair(bench_bin, args, host_info), dict(env, WM_BENCH_TREE_IS_PARENT="1")
    return [bench_bin, "--work-manager", b] + args, env


# ----------------------------------------------------------------------------- statistics, formatting

def summary(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt(v):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    a = abs(v)
    if a >= 10000:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    if a == 0:
        return "0"
    return "%.3g" % v


def floor_for(metric, backend, info, floor_metrics):
    """Name of the floor metric a backend metric is compared with (None: no floor)."""
    in_process = info.get("in_process", True)
    have = lambda m: m in floor_metrics and floor_metrics[m]["values"]
    if metric == "throughput":
        return "pool_throughput"
    if metric in ("rt_median", "rt_p99"):
        suffix = metric[len("rt_"):]
        if in_process:
            return "pool_rt_" + suffix
        if backend == "mpi" and have("mpi_rt_" + suffix):
            return "mpi_rt_" + suffix
        if backend == "zmq" and have("zmq_rt_" + suffix):
            return "zmq_rt_" + suffix
        return "pipe_rt_" + suffix
    if metric == "shared_bandwidth":
        # The echo's task copies once: the floor is a memcpy, or MPI's own echo.
        if backend == "mpi" and have("mpi_bandwidth"):
            return "mpi_bandwidth"
        if backend == "zmq" and have("zmq_bandwidth"):
            return "zmq_bandwidth"
        return "memcpy"
    if metric in ("bandwidth", "bandwidth_keep"):
        if backend == "mpi" and have("mpi_bandwidth"):
            return "mpi_bandwidth"
        # A remote backend's result is a new 64 MiB object: bounded by copying into fresh memory,
        # unless the host keeps freed memory.
        if metric == "bandwidth" and not in_process and have("fresh_echo"):
            return "fresh_echo"
        return "memcpy"
    if metric == "mem_master_hwm":
        return "pool_mem_master_hwm"
    if metric == "mem_per_future":
        return "pool_mem_per_future"
    return None


def target_bound(target, results):
    """The number a target compares with: a value, or "F x BACKEND" (F times that backend's median
    of the same metric in this run; None if that backend was not measured)."""
    op, bound, *rel = target
    if not rel:
        return bound
    other = results.get(rel[0], {}).get("metrics", {}).get(rel[1], {})
    return bound * other["median"] if other.get("median") is not None else None


def check_target(target, value, results=None):
    if target is None or value is None:
        return None
    bound = target_bound(target, results or {})
    if bound is None:
        return None
    op = target[0]
    return value >= bound if op == ">=" else value <= bound


# ----------------------------------------------------------------------------- SVG (self-written)

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"]
# One colour per backend in every plot; the known backends keep theirs from run to run.
BACKEND_COLORS = {b: COLORS[i] for i, b in enumerate(KNOWN_BACKENDS)}
# The backend each round-trip floor is the floor of (floor_for): drawn dashed, in its colour.
FLOOR_BACKEND = {"pool": "threads", "pipe": "processes", "mpi": "mpi", "zmq": "zmq"}
NO_BACKEND_COLOR = "#999"


def backend_colors(backends):
    """Colour of each backend measured: the known ones their own, others the colours left."""
    spare = [c for c in COLORS if c not in BACKEND_COLORS.values()] or COLORS
    out, i = {}, 0
    for b in backends:
        if b in BACKEND_COLORS:
            out[b] = BACKEND_COLORS[b]
        else:
            out[b] = spare[i % len(spare)]
            i += 1
    return out


def plot_subtitle(rep):
    """Machine, then date and commit of a run: the two lines under a plot's title."""
    m = rep["machine"]
    return ["%s, %s, %s cores, kernel %s" % (m["hostname"], m["cpu_model"], m["nproc"], m["kernel"]),
            "%s; commit %s%s" % (rep["date"].replace("T", " "), rep["commit"],
                                 "; SMOKE (tiny N, not a measurement)" if rep.get("smoke") else "")]


def svg_chart(title, xlabel, ylabel, series, logx=True, logy=False, subtitle=()):
    """series: [{name, points: [(x, y)], color, dash}] -> SVG text. subtitle: lines under the title
    (the machine, date and commit of the run)."""
    W, H, L, R, T, B = 820, 540, 80, 210, 76, 60
    pts = [(x, y) for s in series for (x, y) in s["points"] if y is not None and (not logy or y > 0)]
    if not pts:
        pts = [(1, 1), (10, 10)]
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    tx = (lambda v: math.log10(v)) if logx else (lambda v: v)
    ty = (lambda v: math.log10(v)) if logy else (lambda v: v)
    x0, x1 = tx(min(xs)), tx(max(xs))
    if logx:
        x0, x1 = math.floor(x0), math.ceil(x1)
    if logy:
        y0, y1 = math.floor(ty(min(ys))), math.ceil(ty(max(ys)))
    else:
        # Round steps (1, 2 or 5 times a power of ten), with the top on a step above the highest
        # point (a line at the top, such as 100% of ideal, stays clear of the frame).
        raw = max(max(ys), 1e-12) / 5
        mag = 10 ** math.floor(math.log10(raw))
        ystep = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
        y0, y1 = 0.0, (math.floor(max(ys) / ystep) + 1) * ystep
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    px = lambda v: L + (tx(v) - x0) / (x1 - x0) * (W - L - R)
    py = lambda v: H - B - (ty(v) - y0) / (y1 - y0) * (H - T - B)
    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>' % (L, esc(title))]
    for i, line in enumerate(subtitle):
        o.append('<text x="%d" y="%d" font-size="11" fill="#444">%s</text>' % (L, 42 + 14 * i, esc(line)))
    # grid and ticks
    if logx:
        xt = [10 ** e for e in range(int(x0), int(x1) + 1)]
    else:
        xt = [x0 + (x1 - x0) * i / 5 for i in range(6)]
    for v in xt:
        X = px(v)
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (X, T, X, H - B))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (X, H - B + 16, esc(tick(v))))
    if logy:
        yt = [10 ** e for e in range(int(y0), int(y1) + 1)]
    else:
        yt = [y0 + ystep * i for i in range(int(round((y1 - y0) / ystep)) + 1)]
    for v in yt:
        Y = py(v)
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' % (L, Y, W - R, Y))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (L - 6, Y + 4, esc(tick(v))))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>' % (L, T, W - L - R, H - T - B))
    o.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % ((L + W - R) // 2, H - 18, esc(xlabel)))
    o.append('<text transform="translate(18,%d) rotate(-90)" text-anchor="middle">%s</text>' % ((T + H - B) // 2, esc(ylabel)))
    for i, s in enumerate(series):
        color = s.get("color") or COLORS[i % len(COLORS)]
        p = [(px(x), py(y)) for (x, y) in s["points"] if y is not None and (not logy or y > 0)]
        if not p:
            continue
        dash = ' stroke-dasharray="6,4"' if s.get("dash") else ""
        o.append('<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>' % (
            color, dash, " ".join("%.1f,%.1f" % q for q in p)))
        if s.get("markers", True):
            for (X, Y) in p:
                o.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>' % (X, Y, color))
        ly = T + 10 + 18 * i
        o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>' % (W - R + 12, ly, W - R + 36, ly, color, dash))
        o.append('<text x="%d" y="%d">%s</text>' % (W - R + 42, ly + 4, esc(s["name"])))
    o.append("</svg>")
    return "\n".join(o) + "\n"


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def tick(v):
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return "%gM" % (v / 1e6)
    if a >= 1e3:
        return "%gk" % (v / 1e3)
    return "%g" % float("%.3g" % v)


# ----------------------------------------------------------------------------- main

def machine_info():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "cpu_model": model, "nproc": os.cpu_count(),
            "kernel": platform.release(), "loadavg_at_start": loadavg()}


def loadavg():
    """1-minute load average: the machines are shared, this says how busy this one was."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def git_commit():
    try:
        c = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        commit = c.stdout.strip() or "unknown"
        d = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10)
        return commit, bool(d.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="CMake build directory")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 5, smoke 1)")
    ap.add_argument("--smoke", action="store_true", help="tiny N, one run: checks that every figure is produced")
    ap.add_argument("--backends", default="", help="comma-separated subset of the installed backends")
    ap.add_argument("--figures", default=",".join(FIGURES), help="comma-separated subset of " + ",".join(FIGURES))
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="directory for JSON, Markdown and SVG")
    ap.add_argument("--timeout", type=int, default=None, help="seconds per program run (default 300, smoke 60)")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every figure was produced")
    ap.add_argument("--update-readme", action="store_true", help="put the table into bench/README.md")
    args = ap.parse_args()
    runs = args.runs or (1 if args.smoke else 5)
    timeout = args.timeout or (60 if args.smoke else 300)
    figures = [f for f in args.figures.split(",") if f]
    bindir = os.path.join(os.path.abspath(args.build), "bin")
    bench_bin = os.path.join(bindir, "wm_bench")
    floor_bin = os.path.join(bindir, "wm_floor")
    mpi_floor_bin = os.path.join(bindir, "wm_mpi_floor")
    dispatch_bin = os.path.join(bindir, "wm_dispatch_bench")
    zmq_floor_bin = os.path.join(bindir, "wm_zmq_floor")
    os.makedirs(args.out, exist_ok=True)
    log_lines = []

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
        log_lines.append(msg)

    for b in (bench_bin, floor_bin):
        if not os.access(b, os.X_OK):
            sys.exit("run.py: %s is missing: build first (make build, or cmake --build %s)" % (b, args.build))
    env = dict(os.environ)
    for k in ("WM_WORK_MANAGER", "WM_N_WORKERS"):  # the harness picks the backend itself
        env.pop(k, None)
    mpirun = shutil.which("mpirun")
    mpi_env = dict(env)
    if os.geteuid() == 0:
        mpi_env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    smoke_flags = ["--bench-smoke"] if args.smoke else []
    notes = []
    store = Store()
    machine = machine_info()

    # Backends: whatever the plugin scan finds (third-party ones included).
    recs = subprocess.run([bench_bin, "--bench-list"], capture_output=True, text=True, env=env, timeout=60)
    installed = [l.strip() for l in recs.stdout.splitlines() if l.strip()]
    wanted = [b for b in args.backends.split(",") if b] or installed
    for b in KNOWN_BACKENDS:
        if b not in installed:
            notes.append("backend '%s' is not installed: skipped" % b)
    backends = []
    for b in wanted:
        if b not in installed:
            notes.append("backend '%s' asked for but not installed: skipped" % b)
        elif b == "mpi" and not mpirun:
            notes.append("backend 'mpi' is installed but mpirun was not found: skipped")
        else:
            backends.append(b)
    for n in notes:
        log("note: " + n)

    # The floor.
    log("floor:")
    for fig in ("memory", "pool", "pipe", "memcpy", "fresh"):
        r, err = run_program([floor_bin, "--bench-figure", fig, "--bench-runs", str(runs)] + smoke_flags, env, timeout, log)
        store.add(r)
        if err:
            store.errors.append("floor/%s: %s" % (fig, err))
    have_mpi_floor = bool(mpirun) and os.access(mpi_floor_bin, os.X_OK)
    if have_mpi_floor:
        cmd = [mpirun, "--oversubscribe", "-np", "2", mpi_floor_bin, "--bench-runs", str(runs)] + smoke_flags
        r, err = run_program(cmd, mpi_env, timeout, log)
        store.add(r)
        if err:
            store.errors.append("floor/mpi: %s" % err)
    else:
        notes.append("raw MPI floor not run (%s)" % ("mpirun not found" if not mpirun else "wm_mpi_floor not built"))
    have_zmq_floor = "zmq" in backends and os.access(zmq_floor_bin, os.X_OK)
    if have_zmq_floor:
        r, err = run_program([zmq_floor_bin, "--bench-runs", str(runs)] + smoke_flags, env, timeout, log)
        store.add(r)
        if err:
            store.errors.append("floor/zmq: %s" % err)

    # The dispatcher at scale (no backend: a fake transport with simulated workers).
    have_dispatch = os.access(dispatch_bin, os.X_OK)
    if have_dispatch:
        log("dispatcher:")
        r, err = run_program([dispatch_bin, "--bench-runs", str(runs)] + smoke_flags, env, timeout, log)
        store.add(r)
        if err:
            store.errors.append("dispatcher: %s" % err)
    else:
        notes.append("dispatcher scaling not run (wm_dispatch_bench not built)")

    # Every backend, one program run per figure (per run for ONE_RUN_PER_PROCESS figures).
    tmpdir = tempfile.mkdtemp(prefix="wm-bench-")
    for b in backends:
        log("backend %s:" % b)
        for fig in figures:
            if fig == "node_death" and b not in NODE_BACKENDS:
                continue
            passes = runs if fig in ONE_RUN_PER_PROCESS else 1
            per_pass_runs = 1 if fig in ONE_RUN_PER_PROCESS else runs
            if fig == "idle_dashboard":
                per_pass_runs = min(runs, DASHBOARD_IDLE_RUNS)
            for _ in range(passes):
                bargs = ["--bench-figure", fig, "--bench-runs", str(per_pass_runs)] + smoke_flags
                cmd, e = backend_command(b, bench_bin, bargs, env, mpi_env, mpirun, fig, tmpdir)
                if fig == "idle_dashboard":
                    e = dict(e, WM_DASHBOARD="127.0.0.1:0")
                r, err = run_program(cmd, e, timeout, log)
                store.add(r)
                if err:
                    store.errors.append("%s/%s: %s" % (b, fig, err))

    # Remote backends once more: the bandwidth figure in a host whose malloc keeps freed memory
    # (the result of a large task is then decoded into warm pages; see plugins/processes/README.md).
    for b in backends:
        if store.info.get(b, {}).get("in_process", True):
            continue
        bargs = ["--bench-figure", "bandwidth", "--bench-keep-memory", "--bench-runs", str(runs)] + smoke_flags
        cmd, e = backend_command(b, bench_bin, bargs, env, mpi_env, mpirun, "bandwidth", tmpdir)
        r, err = run_program(cmd, e, timeout, log)
        store.add(r)
        if err:
            store.errors.append("%s/bandwidth (keep memory): %s" % (b, err))

    shutil.rmtree(tmpdir, ignore_errors=True)

    # ---- assemble
    with open(os.path.join(HERE, "targets.json")) as f:
        targets = json.load(f)
    floor_metrics = store.metrics.get("floor", {})
    floor = {}
    for m, d in floor_metrics.items():
        floor[m] = dict(d, **(summary(d["values"]) or {}))
    results = {}
    missing = []
    for b in backends:
        info = store.info.get(b, {})
        mets = store.metrics.get(b, {})
        na = store.na.get(b, {})
        out = {}
        for m, d in mets.items():
            s = summary(d["values"])
            entry = dict(d, **(s or {}))
            fm = floor_for(m, b, info, floor_metrics)
            if fm and fm in floor and s and floor[fm].get("median"):
                entry["floor"] = fm
                entry["floor_median"] = floor[fm]["median"]
                entry["ratio"] = s["median"] / floor[fm]["median"]
            if m == "efficiency" and s:
                entry["floor"], entry["floor_median"], entry["ratio"] = "ideal", 1.0, s["median"]
            t = targets.get(b, {}).get(m)
            if t and s:
                entry["target"] = t
            out[m] = entry
        for m, reason in na.items():
            if m not in out:
                out[m] = {"na": reason}
                t = targets.get(b, {}).get(m)
                if t:
                    out[m]["target"], out[m]["met"] = t, False
        for fig in figures:
            if fig == "node_death" and b not in NODE_BACKENDS:
                continue
            for m in EXPECTED[fig]:
                d = out.get(m)
                if d and d.get("values"):
                    continue
                if d and "na" in d and m in NA_OK_IN_PROCESS and info.get("in_process", False):
                    continue  # no worker process to kill or measure
                missing.append("%s/%s" % (b, m))
        # What the idle dashboard adds to the idle figure (medians of runs in separate processes).
        if out.get("idle_cpu", {}).get("median") is not None and out.get("idle_cpu_dashboard", {}).get("median") is not None:
            extra = out["idle_cpu_dashboard"]["median"] - out["idle_cpu"]["median"]
            out["dashboard_idle_extra"] = dict(summary([extra]), values=[extra], unit="CPU-s",
                                               note="median of idle_cpu_dashboard minus median of idle_cpu")
            t = targets.get(b, {}).get("dashboard_idle_extra")
            if t:
                out["dashboard_idle_extra"]["target"] = t
        # The shared-array echo against its floor (raw MPI's echo for mpi), as a figure of its own.
        if out.get("shared_bandwidth", {}).get("ratio") is not None:
            r = out["shared_bandwidth"]["ratio"]
            out["shared_floor_ratio"] = dict(summary([r]), values=[r], unit="x",
                                             note="median of shared_bandwidth over the median of its floor (%s)"
                                             % out["shared_bandwidth"]["floor"])
            t = targets.get(b, {}).get("shared_floor_ratio")
            if t:
                out["shared_floor_ratio"]["target"] = t
        results[b] = {"info": info, "metrics": out, "hists": store.hists.get(b, {})}
    # Targets once every backend is in: a target may be relative to another backend of this run.
    for b in backends:
        for m, entry in results[b]["metrics"].items():
            if "target" in entry and entry.get("median") is not None:
                entry["target_bound"] = target_bound(entry["target"], results)
                entry["met"] = check_target(entry["target"], entry["median"], results)
    for m in FLOOR_EXPECTED + (MPI_FLOOR_EXPECTED if have_mpi_floor else []) + (ZMQ_FLOOR_EXPECTED if have_zmq_floor else []):
        if m not in floor or not floor[m].get("values"):
            missing.append("floor/%s" % m)
    dispatch = {}
    for m, d in store.metrics.get("dispatcher", {}).items():
        dispatch[m] = dict(d, **(summary(d["values"]) or {}))
    if have_dispatch:
        for m in DISPATCH_EXPECTED:
            if m not in dispatch:
                missing.append("dispatcher/%s" % m)
    base = dispatch.get("dispatch_ns_%d" % DISPATCH_WORKERS[0], {}).get("median")
    top = dispatch.get("dispatch_ns_%d" % DISPATCH_WORKERS[-1], {}).get("median")
    if base and top:
        ratio = {"values": [top / base], "unit": "x", "median": top / base}
        t = targets.get("dispatcher", {}).get("dispatch_ratio_%d" % DISPATCH_WORKERS[-1])
        if t:
            ratio["target"], ratio["met"] = t, check_target(t, top / base)
        dispatch["dispatch_ratio_%d" % DISPATCH_WORKERS[-1]] = ratio
    # Placement: tasks that need resources against tasks that do not, same run, same worker count.
    for w in DISPATCH_NEEDS_WORKERS:
        plain = dispatch.get("dispatch_ns_%d" % w, {}).get("median")
        placed = dispatch.get("dispatch_needs_ns_%d" % w, {}).get("median")
        if plain and placed:
            ratio = {"values": [placed / plain], "unit": "x", "median": placed / plain}
            t = targets.get("dispatcher", {}).get("needs_ratio_%d" % w)
            if t:
                ratio["target"], ratio["met"] = t, check_target(t, placed / plain)
            dispatch["needs_ratio_%d" % w] = ratio

    commit, dirty = git_commit()
    now = datetime.datetime.now().astimezone()
    report = {
        "machine": dict(machine, loadavg_at_end=loadavg()),
        "date": now.isoformat(timespec="seconds"),
        "commit": commit + ("-dirty" if dirty else ""),
        "smoke": args.smoke,
        "runs": runs,
        "mpi_np": MPI_NP,
        "backends": results,
        "floor": floor,
        "floor_hists": store.hists.get("floor", {}),
        "dispatcher": dispatch,
        "notes": notes,
        "errors": store.errors,
        "missing": missing,
    }
    stamp = now.strftime("%Y%m%d-%H%M%S")
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(report, f, indent=1)
    if not args.smoke:
        shutil.copy(os.path.join(args.out, "latest.json"), os.path.join(args.out, "bench-%s.json" % stamp))

    md = markdown(report, backends)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(md)
    write_plots(report, backends, args.out)
    print(md)
    if args.update_readme:
        update_readme(md, headline(report))
    if missing:
        print("missing figures: " + ", ".join(missing), file=sys.stderr)
    if args.check and missing:
        return 1
    return 0


def markdown(rep, backends):
    m = rep["machine"]
    o = ["Benchmark: %s, %s, %s cores (%s), load average %s at start, %s at end; %s; commit %s; median of %d run(s) [min, max]%s" % (
        m["hostname"], m["cpu_model"], m["nproc"], m["kernel"], fmt(m.get("loadavg_at_start")),
        fmt(m.get("loadavg_at_end")), rep["date"], rep["commit"], rep["runs"],
        "; SMOKE (tiny N, not a measurement)" if rep["smoke"] else ""), ""]
    o.append("Floor (measured in the same run):")
    o.append("")
    o.append("| floor | median | min | max | unit |")
    o.append("|---|---:|---:|---:|---|")
    for key, label in FLOOR_ROWS:
        d = rep["floor"].get(key)
        if d and d.get("values"):
            o.append("| %s | %s | %s | %s | %s |" % (label, fmt(d["median"]), fmt(d["min"]), fmt(d["max"]), d["unit"]))
    o.append("")
    disp = rep.get("dispatcher", {})
    if any(("dispatch_ns_%d" % w) in disp for w in DISPATCH_WORKERS):
        o.append("Remote engine's dispatcher over a fake transport (simulated workers that answer at once): "
                 "the master's CPU time per task, and its ratio to 2 workers:")
        o.append("")
        o.append("| simulated workers | median | min | max | unit | ratio to 2 workers | target | met |")
        o.append("|---:|---:|---:|---:|---|---:|---|---|")
        base = disp.get("dispatch_ns_%d" % DISPATCH_WORKERS[0], {}).get("median")
        for w in DISPATCH_WORKERS:
            d = disp.get("dispatch_ns_%d" % w)
            if not d or not d.get("values"):
                continue
            r = disp.get("dispatch_ratio_%d" % w, {}) if w == DISPATCH_WORKERS[-1] else {}
            tgt = r.get("target")
            tgt_s = ("%s %sx" % (tgt[0].replace(">=", "≥").replace("<=", "≤"), fmt(tgt[1]))) if tgt else ""
            met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
            ratio_s = "%s×" % fmt(d["median"] / base) if base else ""
            o.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                "{:,}".format(w), fmt(d["median"]), fmt(d["min"]), fmt(d["max"]), d["unit"], ratio_s, tgt_s, met))
        o.append("")
        if any(("dispatch_needs_ns_%d" % w) in disp for w in DISPATCH_NEEDS_WORKERS):
            o.append("Every task needing a resource every worker has (placement), against no needs, same run:")
            o.append("")
            o.append("| simulated workers | median with needs | median without | ratio | target | met |")
            o.append("|---:|---:|---:|---:|---|---|")
            for w in DISPATCH_NEEDS_WORKERS:
                d, p, r = disp.get("dispatch_needs_ns_%d" % w), disp.get("dispatch_ns_%d" % w), disp.get("needs_ratio_%d" % w)
                if not d or not p or not r:
                    continue
                tgt = r.get("target")
                tgt_s = ("%s %sx" % (tgt[0].replace(">=", "≥").replace("<=", "≤"), fmt(tgt[1]))) if tgt else ""
                met = {True: "yes", False: "**no**", None: ""}[r.get("met")]
                o.append("| %s | %s | %s | %s× | %s | %s |" % ("{:,}".format(w), fmt(d["median"]), fmt(p["median"]),
                                                              fmt(r["median"]), tgt_s, met))
            o.append("")
    o.append("| backend | figure | median | min | max | unit | floor | ratio to floor | target | met |")
    o.append("|---|---|---:|---:|---:|---|---:|---:|---|---|")
    for b in backends:
        r = rep["backends"][b]
        nw = r["info"].get("n_workers")
        name = "%s (%d worker%s)" % (b, nw, "s" if nw != 1 else "") if nw is not None else b
        for key, label in ROWS:
            d = r["metrics"].get(key)
            if d is None and key in OPTIONAL_ROWS:
                continue
            if d is None:
                o.append("| %s | %s | missing | | | | | | | |" % (name, label))
                continue
            tgt = d.get("target")
            tgt_s = ""
            if tgt:
                tgt_s = "%s %s" % (tgt[0].replace(">=", "≥").replace("<=", "≤"), fmt(tgt[1]))
                if len(tgt) > 2:
                    tgt_s = "%s%s× %s (%s)" % (tgt_s[:2], fmt(tgt[1]), tgt[2], fmt(d.get("target_bound")))
            met = {True: "yes", False: "**no**", None: ""}[d.get("met")]
            if "na" in d or d.get("median") is None:
                o.append("| %s | %s | n/a | | | | | | %s | %s |" % (name, label, tgt_s, met))
                continue
            floor_s = ""
            ratio_s = ""
            if "floor" in d:
                floor_s = "%s (%s)" % (fmt(d["floor_median"]), d["floor"])
                ratio_s = "%s×" % fmt(d["ratio"])
            o.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, label, fmt(d["median"]), fmt(d["min"]), fmt(d["max"]), d["unit"], floor_s, ratio_s, tgt_s, met))
    o.append("")
    sweep_rows = []
    for b in backends:
        mets = rep["backends"][b]["metrics"]
        nw = rep["backends"][b]["info"].get("n_workers") or 1
        cells = []
        for us in SWEEP_US:
            d = mets.get("sweep_%dus" % us)
            if d and d.get("median"):
                cells.append("%s (%.0f%%)" % (fmt(d["median"]), 100.0 * d["median"] / (nw * 1e6 / us)))
            else:
                cells.append("n/a")
        sweep_rows.append("| %s | %s |" % (b, " | ".join(cells)))
    if sweep_rows:
        o.append("Throughput against task size [tasks/s] (percent of ideal n_workers / task time):")
        o.append("")
        o.append("| backend | " + " | ".join("%s us" % tick(u) for u in SWEEP_US) + " |")
        o.append("|---|" + "---:|" * len(SWEEP_US))
        o.extend(sweep_rows)
        o.append("")
    for n in rep["notes"]:
        o.append("- note: " + n)
    for e in rep["errors"]:
        o.append("- error: " + e)
    for b in backends:
        for key, d in rep["backends"][b]["metrics"].items():
            if "na" in d:
                o.append("- %s %s n/a: %s" % (b, key, d["na"]))
    return "\n".join(o) + "\n"


def write_plots(rep, backends, out):
    colors = backend_colors(backends)
    subtitle = plot_subtitle(rep)
    series = []
    hist_sources = [(b, rep["backends"][b]["hists"].get("roundtrip"), colors[b], False) for b in backends]
    for k, v in sorted(rep["floor_hists"].items()):
        floor = k.replace("_roundtrip", "")
        owner = FLOOR_BACKEND.get(floor)
        name = "floor: %s (%s)" % (floor, owner) if owner else "floor: " + floor
        hist_sources.append((name, v, colors.get(owner, NO_BACKEND_COLOR), True))
    for name, h, color, dashed in hist_sources:
        if not h:
            continue
        total = sum(h["counts"]) or 1
        e = h["edges_us"]
        pts = [(math.sqrt(e[j] * e[j + 1]), 100.0 * c / total) for j, c in enumerate(h["counts"])]
        # trim empty tails
        nz = [j for j, p in enumerate(pts) if p[1] > 0]
        if nz:
            pts = pts[max(0, nz[0] - 1): nz[-1] + 2]
        series.append({"name": name, "points": pts, "dash": dashed, "markers": False, "color": color})
    with open(os.path.join(out, "latency_histogram.svg"), "w") as f:
        f.write(svg_chart("Single submit + get round trip (floors dashed, in their backend's colour)",
                          "round trip [us] (log)", "share of samples [%]", series, logx=True, logy=False,
                          subtitle=subtitle))
    # Efficiency, not tasks/s: on a log-log plot of tasks/s every backend hugs the same ideal line.
    series = []
    for b in backends:
        mets = rep["backends"][b]["metrics"]
        nw = rep["backends"][b]["info"].get("n_workers") or 1
        pts = []
        for us in SWEEP_US:
            tps = mets.get("sweep_%dus" % us, {}).get("median")
            pts.append((us, 100.0 * tps / (nw * 1e6 / us) if tps else None))
        series.append({"name": "%s (%d worker%s)" % (b, nw, "s" if nw > 1 else ""), "points": pts, "color": colors[b]})
    series.append({"name": "ideal: n_workers / task time", "dash": True, "markers": False, "color": NO_BACKEND_COLOR,
                   "points": [(us, 100.0) for us in SWEEP_US]})
    with open(os.path.join(out, "throughput_vs_task_size.svg"), "w") as f:
        f.write(svg_chart("Throughput against task size, as efficiency", "CPU work per task [us] (log)",
                          "tasks/s, percent of ideal", series, logx=True, logy=False, subtitle=subtitle))


def headline(rep):
    """Three lines for the top README: the run, the tiny-task throughput and the round trip of each
    backend beside its floor."""
    m, b, fl = rep["machine"], rep["backends"], rep["floor"]

    def med(d, k):
        v = d.get(k, {}).get("median") if isinstance(d.get(k), dict) else None
        return v if isinstance(v, (int, float)) else None

    def rate(v):
        return "%.2fM" % (v / 1e6) if v >= 1e5 else fmt(v)

    names = sorted(b)
    tput = ["%s %s" % (n, rate(med(b[n]["metrics"], "throughput"))) for n in names
            if med(b[n]["metrics"], "throughput") is not None]
    rt = ["%s %s" % (n, fmt(med(b[n]["metrics"], "rt_median"))) for n in names
          if med(b[n]["metrics"], "rt_median") is not None]
    floors = [(label, med(fl, k)) for label, k in (("thread pool", "pool_rt_median"), ("pipe ping-pong", "pipe_rt_median"),
                                                   ("MPI", "mpi_rt_median"), ("ZeroMQ", "zmq_rt_median"))]
    pool = med(fl, "pool_throughput")
    return ("Last run: %s, %s cores, %s, commit %s (`make bench`; every figure against its floor: "
            "[bench/README.md](bench/README.md)).  \n"
            "Tiny tasks per second: %s (a std::thread pool of futures: %s).  \n"
            "Round trip, median, us: %s (floors: %s).\n" % (
                m["cpu_model"], m["nproc"], rep["date"][:10], rep["commit"], ", ".join(tput),
                rate(pool) if pool is not None else "n/a", ", ".join(rt),
                ", ".join("%s %s" % (label, fmt(v)) for label, v in floors if v is not None)))


def update_readme(md, head):
    """Puts the table between the bench-table markers of bench/README.md, and the headline between
    the bench-headline markers of the top README.md."""
    for path, name, text_in in ((os.path.join(HERE, "README.md"), "bench-table", md),
                                (os.path.join(HERE, os.pardir, "README.md"), "bench-headline", head)):
        begin, end = "<!-- %s:begin -->" % name, "<!-- %s:end -->" % name
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if begin not in text or end not in text:
            continue
        before, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        with open(path, "w") as f:
            f.write(before + begin + "\n" + text_in + end + tail)


if __name__ == "__main__":
    sys.exit(main())
