#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs one MPI job for a test, the way a user would, and checks what a user would check.

    run_mpi.py [--np N] [--recovery] [--timeout S] [--repeat K] [--expect-rc N|nonzero]
               [--expect-out REGEX]... [--expect-err REGEX]... [--expect-err-once TEXT]...
               [--interrupt-on TEXT] [--ends-within S --after TEXT] -- PROGRAM ARGS...

Every run is `mpirun --oversubscribe -np N [--enable-recovery] PROGRAM ARGS` in a session of its
own, bounded by --timeout; after it, no process of that session may be left (mpirun, a rank, a
daemon). --interrupt-on sends SIGINT to mpirun's process group, as Ctrl-C in a terminal does, once
standard output has a line containing TEXT. --ends-within S --after TEXT: the job ends within S
seconds of the first line (stdout or stderr) containing TEXT. --repeat runs the job K times, each
checked in full. Exit status 0 if every check passed; otherwise the failures and the job's output
(and, for a job that did not end in time, every thread's stack in each of its processes, where gdb is
installed).
"""
import argparse
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time


def session_members(sid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


CURRENT = []  # the job running now, ended if this script is told to stop


def stacks_of(pids, limit_s=60.0):
    """Where each process of a job that hangs is: every thread's stack (gdb, where installed),
    for the failure report. Bounded: at most limit_s in all, the ranks first (not mpirun)."""
    gdb = shutil.which("gdb")
    if gdb is None or not pids:
        return []
    def comm_of(p):
        try:
            return open("/proc/%d/comm" % p).read().strip()
        except OSError:
            return "?"
    out = []
    until = time.monotonic() + limit_s
    for p in sorted(pids, key=lambda p: comm_of(p) in ("mpirun", "orterun", "prterun")):
        left = until - time.monotonic()
        if left <= 1:
            out.append("(no time left for the stacks of the other processes)")
            break
        comm = comm_of(p)
        try:
            r = subprocess.run([gdb, "-p", str(p), "-batch", "-nx", "-ex", "thread apply all bt 20"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=min(left, 20))
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = [l for l in r.stdout.decode(errors="replace").splitlines()
                 if l.startswith("#") or l.startswith("Thread ")]
        out.append("stacks of %d (%s):\n  %s" % (p, comm, "\n  ".join(lines[:200])))
    return out


def stop_current(signum, _frame):
    for proc in CURRENT:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in session_members(proc.pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    sys.exit(128 + signum)


def run_once(args, cmd, env):
    """Runs the job; returns (rc, stdout, stderr, failures, seconds)."""
    failures = []
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    CURRENT[:] = [proc]
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    buf = {"out": b"", "err": b""}
    interrupted_at = None
    marker_at = None
    timed_out = False
    open_streams = 2
    while open_streams:
        left = args.timeout - (time.monotonic() - t0)
        if left <= 0:
            timed_out = True
            break
        for key, _ in sel.select(timeout=min(left, 0.2)):
            data = os.read(key.fileobj.fileno(), 65536)
            if not data:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            buf[key.data] += data
        text_out = buf["out"].decode(errors="replace")
        if args.interrupt_on and interrupted_at is None and any(
                args.interrupt_on in line for line in text_out.splitlines()):
            interrupted_at = time.monotonic()
            try:
                os.killpg(proc.pid, signal.SIGINT)  # a terminal signals the foreground process group
            except ProcessLookupError:
                pass
        if args.after and marker_at is None and args.after in text_out + buf["err"].decode(errors="replace"):
            marker_at = time.monotonic()
    try:
        rc = proc.wait(timeout=max(1.0, args.timeout - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        timed_out = True
        rc = None
    ended_at = time.monotonic()
    if timed_out:
        failures.append("the job did not end within %g s" % args.timeout)
        failures.extend(stacks_of(session_members(proc.pid)))
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    # Nothing of the job may be left: give its processes a moment to be reaped, then look.
    deadline = time.monotonic() + 3.0
    left = session_members(proc.pid)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = session_members(proc.pid)
    if left:
        failures.append("processes left behind after the job ended: %s" % ", ".join(
            "%d (%s)" % (p, open("/proc/%d/comm" % p).read().strip() if os.path.exists("/proc/%d/comm" % p) else "?")
            for p in left))
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    out = buf["out"].decode(errors="replace")
    err = buf["err"].decode(errors="replace")
    if rc is not None and args.expect_rc is not None:
        if args.expect_rc == "nonzero":
            if rc == 0:
                failures.append("exit code 0, expected a nonzero one")
        elif rc != int(args.expect_rc):
            failures.append("exit code %d, expected %s" % (rc, args.expect_rc))
    for rx in args.expect_out:
        if not re.search(rx, out, re.M):
            failures.append("standard output does not match %r" % rx)
    for rx in args.expect_err:
        if not re.search(rx, err, re.M):
            failures.append("standard error does not match %r" % rx)
    for text in args.expect_err_once:
        n = err.count(text)
        if n != 1:
            failures.append("standard error holds %r %d times, expected once" % (text, n))
    if args.interrupt_on and interrupted_at is None and not timed_out:
        failures.append("no line with %r came to interrupt the job at" % args.interrupt_on)
    if args.ends_within is not None:
        start = interrupted_at if args.interrupt_on else marker_at
        if start is None:
            failures.append("no line with %r came" % (args.interrupt_on or args.after))
        elif ended_at - start > args.ends_within:
            failures.append("the job ended %.2f s after %r, more than %g s" % (ended_at - start, args.interrupt_on or args.after,
                                                                            args.ends_within))
    return rc, out, err, failures, ended_at - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--np", type=int, default=3)
    ap.add_argument("--recovery", action="store_true", help="mpirun --enable-recovery")
    ap.add_argument("--direct", action="store_true",
                    help="run the program alone, without mpirun (as srun does without a PMI MPI can use)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--expect-rc", default=None)
    ap.add_argument("--expect-out", action="append", default=[])
    ap.add_argument("--expect-err", action="append", default=[])
    ap.add_argument("--expect-err-once", action="append", default=[])
    ap.add_argument("--interrupt-on", default=None)
    ap.add_argument("--ends-within", type=float, default=None)
    ap.add_argument("--after", default=None)
    ap.add_argument("--env", action="append", default=[],
                    help="NAME=VALUE for the job (WM_WORK_MANAGER is mpi, WM_N_WORKERS unset, unless given)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, stop_current)
    signal.signal(signal.SIGINT, stop_current)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    mpirun = shutil.which("mpirun")
    if not mpirun:
        print("run_mpi.py: mpirun not found", file=sys.stderr)
        return 1
    env = dict(os.environ)
    for k in ("WM_WORK_MANAGER", "WM_N_WORKERS"):  # the job's own: --env, or the program's choice
        env.pop(k, None)
    env["WM_WORK_MANAGER"] = "mpi"
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    cmd = [mpirun, "--oversubscribe", "-np", str(args.np)] + (["--enable-recovery"] if args.recovery else []) + command
    if args.direct:
        cmd = command
    failed = 0
    times = []
    for i in range(args.repeat):
        rc, out, err, failures, took = run_once(args, cmd, env)
        times.append(took)
        if failures:
            failed += 1
            print("run %d of %d: %s (exit code %s, %.2f s)" % (i + 1, args.repeat, " ".join(cmd), rc, took))
            for f in failures:
                print("  FAILED: " + f)
            print("---- standard output\n%s---- standard error\n%s----" % (out, err))
    print("%d of %d run(s) passed: %s (%.2f-%.2f s each)" % (args.repeat - failed, args.repeat, " ".join(cmd),
                                                              min(times), max(times)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
