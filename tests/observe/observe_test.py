#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""observe_test.py: watching a run as a user does (issue 22), with observe_host.cpp: progress on a
pseudo-terminal (redrawn in place) and on a pipe (plain lines); log lines that say who, routed into
the host's sink; a task library loaded too late is one warning; the status dump on a signal during a
hung task; the shutdown summary; the dashboard (/metrics against /status.json, the token, `wm
status`, its idle cost) and the page in a real browser (headless Chromium, where installed); the
same on zmq nodes and MPI ranks, with a killed worker and a retry.

Run one group: observe_test.py Progress | Logs | Dump | Dashboard | Browser | Zmq | Mpi (paths from
the environment, see CMakeLists.txt beside this file). Every process is bounded in time and ended."""
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HOST = os.environ["WM_OBSERVE_HOST"]
WM = os.environ["WM_TOOL"]
TASK_LIBRARY = os.environ["WM_TEST_TASK_LIBRARY"]
LAUNCHER_RANKS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")
# A line wm writes: time (UTC), role, pid, component, level, message.
LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (master|worker \d+|rank \d+|node \S+:\d+) pid (\d+) "
                  r"\[wm ([a-z0-9_]+)\] (debug|info|warning|error): (.*)$")


def clean_env(extra=None):
    """The caller's environment without WM_* and launcher variables, plus extra."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("WM_") and k not in LAUNCHER_RANKS}
    e.update(extra or {})
    return e


def run(args, env=None, timeout=120, stdin=None):
    return subprocess.run([HOST] + args, env=clean_env(env), capture_output=True, text=True, timeout=timeout,
                          errors="replace", stdin=stdin if stdin is not None else subprocess.DEVNULL,
                          start_new_session=True)


def wm_lines(text):
    """wm's lines of a stream, parsed (non-matching lines are returned as None in place)."""
    return [LINE.match(l) for l in text.splitlines() if l.strip()]


class Process:
    """A host started in a session of its own, read line by line, always ended (killpg) at the end."""

    def __init__(self, args, env=None, stdin_open=True, cmd=None):
        self.p = subprocess.Popen(cmd or [HOST] + args, env=clean_env(env), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin_open else subprocess.DEVNULL,
                                  start_new_session=True)
        self.out, self.err = b"", b""

    def pump(self, seconds):
        """Reads what comes within seconds (or until both streams close)."""
        until = time.monotonic() + seconds
        streams = [s for s in (self.p.stdout, self.p.stderr) if s is not None]
        while streams and time.monotonic() < until:
            ready, _, _ = select.select(streams, [], [], max(0.0, min(0.2, until - time.monotonic())))
            for s in ready:
                data = os.read(s.fileno(), 65536)
                if not data:
                    streams.remove(s)
                elif s is self.p.stdout:
                    self.out += data
                else:
                    self.err += data

    def wait_for(self, pattern, seconds=60, stream="err"):
        """Reads until pattern (a regex) is in stream; the match, or None after seconds."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            text = (self.err if stream == "err" else self.out).decode(errors="replace")
            m = re.search(pattern, text, re.M)
            if m:
                return m
            if self.p.poll() is not None:
                self.pump(0.5)
                text = (self.err if stream == "err" else self.out).decode(errors="replace")
                return re.search(pattern, text, re.M)
            self.pump(0.2)
        return None

    def finish(self, seconds=60):
        """Closes stdin, waits for the end (reading all of it); the exit status."""
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        until = time.monotonic() + seconds
        while self.p.poll() is None and time.monotonic() < until:
            self.pump(0.3)
        self.pump(1)
        return self.p.poll()

    def end(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait(timeout=30)
        for s in (self.p.stdout, self.p.stderr, self.p.stdin):
            if s:
                s.close()

    @property
    def stdout(self):
        return self.out.decode(errors="replace")

    @property
    def stderr(self):
        return self.err.decode(errors="replace")


def on_pty(args, env=None, timeout=60):
    """Runs the host with stdout and stderr on one pseudo-terminal; everything it wrote, and its status."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(HOST, [HOST] + args, clean_env(env))
    out, until = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < until:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    return out.decode(errors="replace"), status


def get(url, headers=None, method="GET", timeout=10):
    """(status, body) of an HTTP request."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def parse_metrics(text):
    """Prometheus text format: {(name, frozenset(labels)): value}, and the families' (help, type)."""
    samples, families = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            families.setdefault(name, {})["help"] = line.split(" ", 3)[3]
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            families.setdefault(name, {})["type"] = kind
        elif line and not line.startswith("#"):
            m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$', line)
            assert m, "not a sample line: " + line
            labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2)))
            samples[(m.group(1), labels)] = float(m.group(3))
    return samples, families


def dashboard_url(proc, seconds=60):
    m = proc.wait_for(r"dashboard: (http://\S+/)(\?token=([0-9a-f]+))?", seconds)
    assert m, "no dashboard line on stderr:\n" + proc.stderr
    return m.group(1), m.group(3)


def wait_for_file(path, seconds=60):
    """True once path exists (a task created it: it started), False after seconds."""
    until = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < until:
        time.sleep(0.02)
    return os.path.exists(path)


def cpu_seconds(pid):
    """User + system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ObserveTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wm-observe-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.end()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start(self, args, env=None, **kw):
        p = Process(args, env, **kw)
        self.procs.append(p)
        return p

    def assert_wm_lines(self, text, what):
        for line in text.splitlines():
            if line.strip():
                self.assertRegex(line, LINE, f"{what}: a line of wm's that does not say when and who")


# ---------------------------------------------------------------- progress

class Progress(ObserveTest):
    def test_pipe_gets_plain_lines_every_few_seconds_and_the_last(self):
        # 24 tasks of 1 s on 4 threads: about 6 s, so one line at 5 s and one at the end.
        r = run(["progress", "vector", "24", "1000", "--work-manager", "threads", "--n-workers", "4"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, f"RESULT {sum(range(24))}\n")
        self.assertNotIn("\r", r.stderr)
        self.assertNotIn("\033", r.stderr)
        self.assert_wm_lines(r.stderr, "progress on a pipe")
        lines = [m.group(6) for m in wm_lines(r.stderr)]
        self.assertGreaterEqual(len(lines), 2, r.stderr)
        self.assertRegex(lines[0], r"^observe: \d+/24 done \(\d+%\), [0-9.]+/s, ETA [0-9.]+ s, [0-9.]+ s$")
        self.assertRegex(lines[-1], r"^observe: 24/24 done \(100%\), [0-9.]+/s, [0-9.]+ s$")

    def test_every_way_of_waiting_ends_with_its_line(self):
        for how in ("vector", "wait_all", "as_completed", "submit_as_completed"):
            for backend in ("threads", "processes", "serial"):
                with self.subTest(how=how, backend=backend):
                    r = run(["progress", how, "12", "20", "--work-manager", backend, "--n-workers", "2"])
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.assertEqual(r.stdout, f"RESULT {sum(range(12))}\n")
                    label = "tasks" if how == "wait_all" else "observe"
                    self.assertRegex(wm_lines(r.stderr)[-1].group(6), rf"^{label}: 12/12 done \(100%\)")

    def test_terminal_redraws_in_place_and_never_shares_a_line_with_the_program(self):
        for how in ("as_completed", "submit_as_completed"):
            with self.subTest(how=how):
                out, status = on_pty(["progress", how, "20", "100", "--work-manager", "threads", "--n-workers", "2"])
                self.assertEqual(os.waitstatus_to_exitcode(status), 0, out)
                redraws = re.findall(r"\r\[wm\] observe: (\d+)/20 done \(\d+%\)[^\r\n]*\x1b\[K", out)
                self.assertGreaterEqual(len(redraws), 3, repr(out))
                self.assertEqual([int(x) for x in redraws], sorted(int(x) for x in redraws), repr(out))
                # The last line is a whole line of its own, and the program's output comes after it,
                # on a line of its own (the progress line was taken off first).
                self.assertRegex(out, r"\r\x1b\[K\d{4}-[^\r\n]* \[wm progress\] info: observe: 20/20 done \(100%\)[^\r\n]*\r\n"
                                      r"RESULT 190\r\n")
                self.assertIsNone(re.search(r"(?<!\n)RESULT", out), repr(out))

    def test_off_draws_nothing_and_on_shows_every_work_manager(self):
        r = run(["progress", "vector", "10", "10", "--work-manager", "threads", "--wm-progress", "off"])
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        r = run(["progress", "as_completed", "10", "10", "--work-manager", "threads"], env={"WM_PROGRESS": "off"})
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        r = run(["run", "10", "50", "--work-manager", "processes", "--n-workers", "2", "--wm-progress", "on"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r"\[wm progress\] info: processes: 10/10 done \(100%\)")
        r = run(["run", "1", "1", "--work-manager", "threads", "--wm-progress", "sometimes"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("option --wm-progress='sometimes' is not a progress mode; use auto, on or off", r.stderr)


# ---------------------------------------------------------------- log lines

class Logs(ObserveTest):
    def test_every_line_says_when_who_and_which_pid(self):
        r = run(["run", "6", "10", "1", "--work-manager", "processes", "--n-workers", "2"], env={"WM_LOG_LEVEL": "debug"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_wm_lines(r.stderr, "WM_LOG_LEVEL=debug")
        lines = wm_lines(r.stderr)
        roles = {m.group(2) for m in lines}
        self.assertIn("master", roles)
        self.assertTrue({"worker 0", "worker 1"} <= roles, roles)
        pids = {m.group(2): int(m.group(3)) for m in lines}
        self.assertEqual(len(set(pids.values())), len(pids), "each role is a process of its own")
        now = time.time()
        for m in lines:
            t = time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            self.assertLess(abs(t - now), 120, m.group(0))

    def test_the_sink_receives_every_line_with_its_role(self):
        r = run(["sink", "--work-manager", "processes", "--n-workers", "2"], env={"WM_LOG_LEVEL": "info", "OBSERVE_SINK": "1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "", "every line went to the sink")
        records = [l.split("|", 5) for l in r.stdout.splitlines() if l.startswith("SINK|")]
        roles = {rec[1] for rec in records}
        self.assertIn("master", roles)
        self.assertTrue({"worker 0", "worker 1"} <= roles, roles)
        for _, role, pid, level, component, message in records:
            self.assertTrue(pid.isdigit() and int(pid) > 0)
            self.assertIn(level, ("debug", "info", "warning", "error"))
            self.assertNotIn("\n", message)
        self.assertTrue(any(rec[1] == "master" and "summary after" in rec[5] for rec in records), records)

    def test_a_task_library_loaded_too_late_is_one_warning(self):
        r = run(["late", TASK_LIBRARY, "--work-manager", "processes", "--n-workers", "4"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ERROR work manager 'processes' failed to start: worker ", r.stdout)
        self.assertIn("does not have the tasks the master has: unknown there: tasklib::", r.stdout)
        lines = wm_lines(r.stderr)
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertEqual(lines[0].group(5), "warning")
        self.assertIn("task library " + TASK_LIBRARY, r.stderr)
        self.assertIn("was loaded after 1 work manager(s)", r.stderr)

    def test_the_shutdown_summary_at_level_info(self):
        for backend in ("serial", "threads", "processes"):
            with self.subTest(backend=backend):
                r = run(["run", "10", "20", "2", "--work-manager", backend, "--n-workers", "2"],
                        env={"WM_LOG_LEVEL": "info"})
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertRegex(r.stderr, rf"master pid \d+ \[wm {backend}\] info: summary after [0-9.]+ s: 10 tasks "
                                           r"submitted, 8 completed, 2 failed \(2 task_exception\), 0 cancelled, 0 retried")
                workers = 1 if backend == "serial" else 2
                self.assertRegex(r.stderr, rf"\[wm {backend}\] info: busy: worker 0 \d+%" + (r", worker 1 \d+%" if workers == 2 else "")
                                 + r"; mean \d+%")
                r = run(["run", "3", "1", "--work-manager", backend])
                self.assertEqual(r.stderr, "", "nothing at the default level")


# ---------------------------------------------------------------- the status dump

class Dump(ObserveTest):
    def hang_and_signal(self, backend, sig=signal.SIGUSR1, flags=(), env=None, group=False):
        marker = os.path.join(self.tmp, f"started-{backend}-{int(sig)}")
        p = self.start(["hang", "4000", marker, "--work-manager", backend, "--n-workers", "2", *flags], env)
        # (serial runs the task inside submit: the task's id is printed after it, read at the end)
        self.assertTrue(wait_for_file(marker), "the task did not start within 60 s")
        time.sleep(0.6)
        (os.killpg if group else os.kill)(p.p.pid, sig)
        return p

    def test_sigusr1_names_the_running_task_its_worker_and_age(self):
        for backend in ("serial", "threads", "processes"):
            with self.subTest(backend=backend):
                p = self.hang_and_signal(backend)
                m = p.wait_for(r"\[wm \w+\] info:   worker (\d+) \((?:pid (\d+))[^)]*\): busy, .*; running "
                               r"'observe::hang' \(task ([0-9a-f-]+)\) for ([0-9.]+) s$", 30)
                self.assertIsNotNone(m, p.stderr)
                self.assertGreaterEqual(float(m.group(4)), 0.5)
                self.assertRegex(p.stderr, rf"info: status \(SIGUSR1\): work manager '{backend}' \(pid {p.p.pid}\)")
                self.assertRegex(p.stderr, r"tasks: 1 submitted, 0 completed, 0 failed.*0 queued, 1 in flight")
                self.assert_wm_lines(p.stderr, "the dump")
                # The run goes on, undisturbed.
                self.assertEqual(p.finish(), 0, p.stderr)
                self.assertIn("RESULT 1\n", p.stdout)
                self.assertIn(f"submitted {m.group(3)}\n", p.stdout, "the dump names the task by its id")

    def test_the_signal_is_configurable_and_can_be_turned_off(self):
        p = self.hang_and_signal("threads", signal.SIGUSR2, ["--wm-dump-signal", "USR2"])
        self.assertIsNotNone(p.wait_for(r"status \(SIGUSR2\).*\n(?:.*\n){1,8}?.*running 'observe::hang'", 30), p.stderr)
        self.assertEqual(p.finish(), 0, p.stderr)
        p = self.hang_and_signal("threads", env={"WM_DUMP_SIGNAL": "off"})
        self.assertEqual(p.finish(), -signal.SIGUSR1, "no handler: the signal does what it does by default")
        r = run(["run", "1", "1", "--work-manager", "threads", "--wm-dump-signal", "KILL"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("option --wm-dump-signal='KILL' is not a signal for the status dump", r.stderr)

    def test_a_killed_worker_and_its_retry_are_counted(self):
        marker = os.path.join(self.tmp, "died")
        r = run(["retry", marker, "--work-manager", "processes", "--n-workers", "2"], env={"WM_PROCESSES_RETRIES": "1"})
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"^STATS (.*)$", r.stdout, re.M)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        stats = dict(kv.split("=") for kv in m.group(1).split())
        self.assertEqual((stats["submitted"], stats["completed"], stats["failed"], stats["task_exception"],
                          stats["worker_lost"], stats["retried"], stats["restarts"], stats["result"]),
                         ("11", "9", "2", "2", "0", "1", "1", "7"), r.stdout)
        self.assertRegex(r.stderr, r"master pid \d+ \[wm processes\] warning: worker \d \(pid \d+\) was killed by "
                                   r"signal 9 .* running task 'observe::die_once'; running it again")

    def test_workers_are_not_ended_by_a_signal_to_the_whole_group(self):
        p = self.hang_and_signal("processes", group=True)
        self.assertIsNotNone(p.wait_for(r"running 'observe::hang'", 30), p.stderr)
        self.assertEqual(p.finish(), 0, p.stderr)
        self.assertIn("RESULT 1\n", p.stdout)
        self.assertNotIn("was killed", p.stderr)


# ---------------------------------------------------------------- the dashboard

class Dashboard(ObserveTest):
    def serve(self, backend, address="127.0.0.1:0", n=40, ms=20, env=None, workers=2):
        p = self.start(["serve", str(n), str(ms), "--work-manager", backend, "--n-workers", str(workers),
                        "--wm-dashboard", address], env)
        url, token = dashboard_url(p)
        return p, url, token

    def test_metrics_agree_with_the_snapshot(self):
        for backend in ("threads", "processes", "serial"):
            with self.subTest(backend=backend):
                p, url, _ = self.serve(backend)
                self.assertIsNotNone(p.wait_for(r"^done$", 60, stream="out"), p.stderr)
                status, body = get(url + "status.json")
                self.assertEqual(status, 200)
                snap = json.loads(body)
                status, text = get(url + "metrics")
                self.assertEqual(status, 200)
                samples, families = parse_metrics(text)
                b = ("backend", backend)
                def value(name, *labels):
                    return samples[(name, frozenset((b,) + labels))]
                for name in ("wm_tasks_submitted_total", "wm_tasks_completed_total", "wm_tasks_failed_total",
                             "wm_tasks_queued", "wm_tasks_running", "wm_workers"):
                    self.assertIn(name, families)
                    self.assertIn(families[name]["type"], ("counter", "gauge"))
                    self.assertTrue(families[name]["help"])
                self.assertEqual(value("wm_tasks_submitted_total"), snap["tasks"]["submitted"])
                self.assertEqual(value("wm_tasks_submitted_total"), 40)
                self.assertEqual(value("wm_tasks_completed_total"), snap["tasks"]["completed"])
                self.assertEqual(value("wm_tasks_completed_total"), 37)
                self.assertEqual(value("wm_tasks_failed_total", ("kind", "task_exception")), 3)
                self.assertEqual(value("wm_tasks_queued"), snap["tasks"]["queued"])
                self.assertEqual(value("wm_tasks_running"), snap["tasks"]["running"])
                n = 1 if backend == "serial" else 2
                self.assertEqual(value("wm_workers", ("state", "idle")), n)
                self.assertEqual(sum(v for (k, l), v in samples.items() if k == "wm_workers"), len(snap["workers"]))
                self.assertTrue(all(dict(l).get("backend") == backend for (_, l) in samples), "every sample is labelled")
                self.assertEqual(len(snap["recent_failures"]), 3)
                self.assertEqual({f["message"] for f in snap["recent_failures"]},
                                 {"observe failure 0", "observe failure 1", "observe failure 2"})
                # The page carries the snapshot and fetches nothing from elsewhere.
                status, page = get(url)
                self.assertEqual(status, 200)
                self.assertIn('id="initial"', page)
                self.assertNotRegex(page, r"(src|href)=\"?https?://")
                # `wm status`, as text and as JSON.
                r = subprocess.run([WM, "status", url], capture_output=True, text=True, timeout=30, env=clean_env())
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(f"work manager '{backend}' (pid {p.p.pid})", r.stdout)
                self.assertIn("40 submitted, 37 completed, 3 failed (3 task_exception)", r.stdout)
                self.assertIn("observe failure", r.stdout)
                r = subprocess.run([WM, "status", url, "--json"], capture_output=True, text=True, timeout=30, env=clean_env())
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout)["tasks"]["submitted"], 40)
                self.assertEqual(p.finish(), 0, p.stderr)
        r = subprocess.run([WM, "status", "http://127.0.0.1:1/", "--timeout", "2"], capture_output=True, text=True,
                           timeout=30, env=clean_env())
        self.assertEqual(r.returncode, 1)
        self.assertIn("no answer from http://127.0.0.1:1", r.stderr)

    def test_off_loopback_the_token_is_asked_of_every_request(self):
        p, url, token = self.serve("threads", "0.0.0.0:0")
        self.assertIsNotNone(token, p.stderr)
        base = url.replace(socket.gethostname(), "127.0.0.1", 1)
        for path in ("", "metrics", "status.json"):
            self.assertEqual(get(base + path)[0], 401, "no token: refused")
            self.assertEqual(get(base + path + "?token=0123456789abcdef0123456789abcdef")[0], 401, "a wrong one")
            self.assertEqual(get(base + path + "?token=" + token)[0], 200)
            self.assertEqual(get(base + path, {"Authorization": "Bearer " + token})[0], 200)
        self.assertEqual(get(base + "metrics?token=" + token, method="POST")[0], 405, "read-only")
        self.assertEqual(get(base + "anything?token=" + token)[0], 404, "nothing else is served")
        r = subprocess.run([WM, "status", base], capture_output=True, text=True, timeout=30, env=clean_env())
        self.assertEqual(r.returncode, 1)
        self.assertIn("needs the token its master printed", r.stderr)
        r = subprocess.run([WM, "status", base + "?token=" + token], capture_output=True, text=True, timeout=30,
                           env=clean_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([WM, "status", base], capture_output=True, text=True, timeout=30,
                           env=clean_env({"WM_DASHBOARD_TOKEN": token}))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(p.finish(), 0, p.stderr)
        # A token of the user's own: used as given, and refused when too short to guess.
        p, url, token2 = self.serve("threads", "0.0.0.0:0", env={"WM_DASHBOARD_TOKEN": "my-own-token-of-32-characters!!"})
        self.assertEqual(token2, None, "a token of its own is not printed")
        base = url.replace(socket.gethostname(), "127.0.0.1", 1)
        self.assertEqual(get(base + "metrics", {"Authorization": "Bearer my-own-token-of-32-characters!!"})[0], 200)
        self.assertEqual(get(base + "metrics")[0], 401)
        self.assertEqual(p.finish(), 0, p.stderr)
        r = run(["run", "1", "1", "--work-manager", "threads", "--wm-dashboard", "0.0.0.0:0"],
                env={"WM_DASHBOARD_TOKEN": "short"})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("WM_DASHBOARD_TOKEN is 5 characters long; a dashboard token needs at least 16", r.stderr)
        r = run(["run", "1", "1", "--work-manager", "threads", "--wm-dashboard", "localhost:http"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("option --wm-dashboard='localhost:http' is not an address", r.stderr)

    def test_an_idle_dashboard_costs_nothing(self):
        p, url, _ = self.serve("threads", n=4, ms=1)
        self.assertIsNotNone(p.wait_for(r"^done$", 60, stream="out"), p.stderr)
        get(url + "metrics")
        time.sleep(0.5)
        before = cpu_seconds(p.p.pid)
        time.sleep(3)
        idle = cpu_seconds(p.p.pid) - before
        print(f"[observe] the master with an idle dashboard: {idle:.3f} CPU-s over 3 s")
        self.assertLessEqual(idle, 0.03)
        self.assertEqual(p.finish(), 0, p.stderr)


# ---------------------------------------------------------------- a real browser

def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser(ObserveTest):
    def dump_dom(self, url):
        """The page's DOM after 2.5 s of its own time (its script ran, its timers fired)."""
        profile = tempfile.mkdtemp(prefix="profile-", dir=self.tmp)
        browser = self.start([], stdin_open=False, cmd=[
            find_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-extensions", "--user-data-dir=" + profile, "--virtual-time-budget=2500", "--dump-dom", url])
        status = browser.finish(90)  # Chromium and its helpers are a session of their own, ended in any case
        browser.end()
        self.assertEqual(status, 0, browser.stderr[-2000:])
        return browser.stdout

    def test_the_page_in_headless_chromium_shows_the_workers_and_a_rising_done_count(self):
        if find_chromium() is None:
            self.skipTest("Chromium is not installed (Debian: apt-get install chromium): the page is not loaded "
                          "in a browser here")
        for backend, workers in (("threads", 3), ("processes", 2)):
            with self.subTest(backend=backend):
                p = self.start(["stream", "60", "--work-manager", backend, "--n-workers", str(workers),
                                "--wm-dashboard", "127.0.0.1:0"])
                url, _ = dashboard_url(p)
                counts = []
                for _ in range(2):
                    dom = self.dump_dom(url)
                    self.assertIn('<span id="workers-count">%d</span>' % workers, dom)
                    self.assertEqual(len(re.findall(r'<tr class="worker"', dom)), workers, dom[-3000:])
                    self.assertIn(f'<span id="backend">{backend}</span>', dom)
                    counts.append(int(re.search(r'<b id="done">(\d+)</b>', dom).group(1)))
                    time.sleep(1.0)
                self.assertLess(counts[0], counts[1], f"done counts {counts}")
                self.assertGreater(counts[0], 0)
                self.assertRegex(dom, r'<tr class="worker" data-state="busy"')
                self.assertEqual(p.finish(), 0, p.stderr)
                self.assertRegex(p.stdout, r"RESULT \d+ done")


# ---------------------------------------------------------------- zmq nodes

class Zmq(ObserveTest):
    def master_and_node(self, args, node_workers=2, env=None):
        info = os.path.join(self.tmp, "host-info")
        master = self.start(args + ["--work-manager", "zmq", "--wm-zmq-write-host-info", info,
                                    "--wm-zmq-endpoint", "ipc://" + os.path.join(self.tmp, "master.ipc")], env)
        node = self.start(["node", "--work-manager", "zmq", "--wm-zmq-mode", "node", "--wm-zmq-read-host-info", info,
                           "--n-workers", str(node_workers)], env, stdin_open=False)
        return master, node

    def test_dump_dashboard_roles_and_a_retry_on_nodes(self):
        marker = os.path.join(self.tmp, "started")
        master, node = self.master_and_node(["hang", "4000", marker, "--wm-dashboard", "127.0.0.1:0"],
                                            env={"WM_LOG_LEVEL": "debug"})
        url, _ = dashboard_url(master)
        self.assertTrue(wait_for_file(marker), "the task did not start within 60 s")
        time.sleep(0.6)
        os.kill(master.p.pid, signal.SIGUSR1)
        m = master.wait_for(r"info:   worker (\d+) \(pid (\d+)\): busy, .*; running 'observe::hang' \(task \S+\) for "
                            r"([0-9.]+) s$", 30)
        self.assertIsNotNone(m, master.stderr)
        samples, _ = parse_metrics(get(url + "metrics")[1])
        self.assertEqual(samples[("wm_workers", frozenset({("backend", "zmq"), ("state", "busy")}))], 1)
        self.assertEqual(samples[("wm_workers", frozenset({("backend", "zmq"), ("state", "idle")}))], 1)
        self.assertEqual(master.finish(), 0, master.stderr)
        node.finish(30)
        self.assert_wm_lines(node.stderr, "a node")
        roles = {x.group(2) for x in wm_lines(node.stderr)}
        self.assertTrue(any(r.startswith("node ") for r in roles), roles)
        self.assertTrue({"worker 0", "worker 1"} & roles, roles)

    def test_a_killed_worker_and_its_retry_are_counted(self):
        marker = os.path.join(self.tmp, "died")
        master, node = self.master_and_node(["retry", marker], env={"WM_ZMQ_RETRIES": "1"})
        self.assertEqual(master.finish(), 0, master.stderr)
        m = re.search(r"^STATS (.*)$", master.stdout, re.M)
        self.assertIsNotNone(m, master.stdout + master.stderr)
        stats = dict(kv.split("=") for kv in m.group(1).split())
        self.assertEqual((stats["submitted"], stats["completed"], stats["failed"], stats["task_exception"],
                          stats["retried"], stats["result"]), ("11", "9", "2", "2", "1", "7"), master.stdout)
        self.assertGreaterEqual(int(stats["restarts"]), 1, master.stdout)
        node.finish(30)


# ---------------------------------------------------------------- MPI ranks

class Mpi(ObserveTest):
    def mpirun(self, np, args, recovery=False, env=None):
        cmd = ["mpirun", "--oversubscribe", "-np", str(np)]
        if recovery:
            cmd.append("--enable-recovery")
        extra = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                 "OMPI_MCA_rmaps_base_oversubscribe": "1"}
        extra.update(env or {})
        for k, v in extra.items():
            cmd += ["-x", f"{k}={v}"] if k.startswith("WM_") else []
        p = Process([], clean_env(extra), stdin_open=True,
                    cmd=cmd + [HOST] + args + ["--work-manager", "mpi"])
        p.p_env = extra
        self.procs.append(p)
        return p

    def test_dump_and_dashboard_on_rank_0(self):
        marker = os.path.join(self.tmp, "started")
        p = self.mpirun(3, ["hang", "4000", marker, "--wm-dashboard", "127.0.0.1:0"])
        url, _ = dashboard_url(p, 90)
        self.assertTrue(wait_for_file(marker), "the task did not start within 60 s")
        time.sleep(0.6)
        # mpirun forwards SIGUSR1 to every rank: rank 0 dumps, the others take no notice.
        os.kill(p.p.pid, signal.SIGUSR1)
        m = p.wait_for(r"info:   worker (\d+) \(rank (\d), pid (\d+)\): busy, .*; running 'observe::hang' \(task \S+\) "
                       r"for ([0-9.]+) s$", 30)
        self.assertIsNotNone(m, p.stderr)
        self.assertIn(m.group(2), ("1", "2"))
        samples, _ = parse_metrics(get(url + "metrics")[1])
        self.assertEqual(samples[("wm_tasks_running", frozenset({("backend", "mpi")}))], 1)
        self.assertEqual(p.finish(90), 0, p.stderr)
        self.assertIn("RESULT 1", p.stdout)

    def test_a_killed_rank_and_the_retry_are_counted(self):
        marker = os.path.join(self.tmp, "died")
        p = self.mpirun(3, ["retry", marker], recovery=True, env={"WM_MPI_RETRIES": "1", "WM_LOG_LEVEL": "info"})
        p.finish(120)
        m = re.search(r"^STATS (.*)$", p.stdout, re.M)
        self.assertIsNotNone(m, p.stdout + p.stderr)
        stats = dict(kv.split("=") for kv in m.group(1).split())
        self.assertEqual((stats["submitted"], stats["completed"], stats["failed"], stats["task_exception"],
                          stats["retried"], stats["result"], stats["lost"]), ("11", "9", "2", "2", "1", "7", "1"),
                         p.stdout)
        self.assertRegex(p.stderr, r"master pid \d+ \[wm mpi\] warning: worker \d \(rank \d, pid \d+\) .*running it again")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: observe_test.py Progress|Logs|Dump|Dashboard|Browser|Zmq|Mpi")
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(globals()[sys.argv[1]])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
