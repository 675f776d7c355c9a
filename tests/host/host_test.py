#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""host_test.py: host programs run as a user runs them: the README's program asked for --help-wm and
given bad configurations, hosts that catch wm's errors or have terminate handlers of their own, and
the plugin ABI rule seen from `wm list --why`, `wm check` and a host at once.

Run one group: host_test.py Help | SetupErrors | AbiMinor (the paths come from the environment, see
tests/host/CMakeLists.txt). Every command is bounded by a timeout."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

HOST = os.environ["WM_README_HOST"]          # the program of README.md, "A complete host program"
SETUP_HOST = os.environ["WM_SETUP_HOST"]     # tests/host/setup_host.cpp
WM = os.environ["WM_TOOL"]
FIXTURES = os.environ["WM_DISCOVERY_FIXTURES"]
HOST_NAME = os.path.basename(HOST)
LAUNCHER_RANKS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")


def run(cmd, env=None, timeout=60):
    """Runs cmd with no WM_* or launcher variable from the caller's environment but those given."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("WM_") and k not in LAUNCHER_RANKS}
    e.update(env or {})
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout, errors="replace")


def flat(text):
    """Text with every run of blanks and line breaks made one space: wrapping does not matter."""
    return " ".join(text.split())


def wm_json(args, **kw):
    r = run([WM] + args + ["--json"], **kw)
    if r.returncode != 0:
        raise AssertionError(f"wm {' '.join(args)} --json: {r.returncode}\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout)


def bundled_backends():
    """Every bundled backend (no WM_PLUGIN_PATH) with its options, as `wm info` reports them."""
    names = [m["name"] for m in wm_json(["list"])["work_managers"]]
    return {n: wm_json(["info", n])["work_manager"] for n in names}


def without_asides(text):
    """An option's help as the short listing shows it: without its asides in parentheses longer than
    24 characters (short ones say what a special value means, "(0: no limit)")."""
    out, i = "", 0
    while i < len(text):
        if text[i] == ")":
            return text
        if text[i] != "(":
            out += text[i]
            i += 1
            continue
        depth, end = 0, i
        while end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if text[end] == ")" and depth == 0:
                break
            end += 1
        if end == len(text):
            return text
        if end + 1 - i > 24:
            out = out[:-1] if out.endswith(" ") else out
        else:
            out += text[i:end + 1]
        i = end + 1
    return out if out.strip() else text


def bound(option, v):
    """A range bound as the help prints it: an integer, or a number in C++'s default stream
    formatting, which is printf's %g."""
    return str(int(v)) if option["type"] == "int" else "%g" % float(v)


class PluginDir:
    """A fresh plugin directory holding copies of the given fixtures."""

    def __init__(self, *fixtures):
        self.fixtures = fixtures

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="wm-host-test-")
        for f in self.fixtures:
            shutil.copyfile(os.path.join(FIXTURES, f), os.path.join(self.path, f))
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path)


def default_text(option):
    """An option's default as the help writes it (wm info --json gives it typed)."""
    v = option["default"]
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "%g" % v
    return str(v)


class HostTest(unittest.TestCase):
    def assert_ran(self, r, code, what):
        self.assertEqual(r.returncode, code, f"{what}: exit code {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")

    def assert_one_message(self, r, *parts):
        """stderr is one line from the program, naming it, holding every part; no terminate trace."""
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith(HOST_NAME + ": ") or lines[0].startswith("wm_setup_host: "), lines[0])
        for p in parts:
            self.assertIn(p, lines[0])
        self.assertNotIn("terminate called", r.stderr)


class Help(HostTest):
    def test_help_wm_lists_every_option_of_every_backend_short(self):
        backends = bundled_backends()
        self.assertTrue({"serial", "threads"} <= set(backends), backends.keys())
        r = run([HOST, "--help-wm"])
        self.assert_ran(r, 0, "--help-wm")
        self.assertEqual(r.stderr, "")
        self.assertNotIn("pi ~", r.stdout)  # the program did not go on to run its job
        out = r.stdout
        text = flat(out)
        # The common options first, then each backend.
        common = [out.index(f) for f in ("--work-manager NAME", "--serial", "--parallel", "--n-workers N",
                                         "--help-wm [BACKEND]")]
        self.assertTrue(out.startswith("parallelization options"), out[:200])
        self.assertIn("work manager to use: " + ", ".join(backends), text)
        for name, info in backends.items():
            header = f"\n{name} {info['version']}: "
            self.assertIn(header, out)
            self.assertGreater(out.index(header), max(common), name)
            for o in info["options"]:
                self.assertIn(o["flag"], out, o)
                entry = flat(without_asides(o["help"])) + (f" (default {default_text(o)})" if o["default"] != "" else "")
                self.assertIn(entry, text, o)
        self.assertNotIn("default ]", out)
        self.assertNotIn("(default )", out)
        self.assertNotRegex(out, r"(?m)^.{81,}$")  # fits a terminal of 80 columns (no word is that long)
        # Short: fewer lines than the backends' full texts together, and no variable repeated per option.
        full = sum(len(run([HOST, "--help-wm", n]).stdout.splitlines()) for n in backends)
        self.assertLess(len(out.splitlines()), full)
        self.assertLessEqual(len(re.findall(r"\bWM_[A-Z0-9_]+", out)), 3, out)

    def test_help_wm_backend_in_full(self):
        for name, info in bundled_backends().items():
            with self.subTest(backend=name):
                r = run([HOST, "--help-wm", name])
                self.assert_ran(r, 0, f"--help-wm {name}")
                self.assertEqual(r.stderr, "")
                text = flat(r.stdout)
                self.assertTrue(r.stdout.startswith(f"{name} {info['version']}: {info['description']}"[:60]), r.stdout)
                self.assertIn(f"chosen with --work-manager {name} or WM_WORK_MANAGER={name}", text)
                for o in info["options"]:
                    block = text[text.index(o["flag"]):]
                    value = {"bool": "[=BOOL]", "int": " N", "number": " X"}.get(o["type"], " TEXT")
                    self.assertTrue(block.startswith(o["flag"] + value + " "), block[:100])
                    self.assertIn(flat(o["help"]), block)
                    facts = o["type"]
                    if o["type"] == "bool":
                        facts += " (1/0, true/false, yes/no, on/off; the flag alone means true)"
                    facts += f", default {default_text(o)}" if o["default"] != "" else ", no default"
                    if "min" in o:
                        facts += f", range {bound(o, o['min'])}..{bound(o, o['max'])}"
                    facts += f"; variable {o['variable']}"
                    self.assertIn(facts, block, o)
                if not info["options"]:
                    self.assertIn("(none)", r.stdout)
                self.assertEqual(run([HOST, f"--help-wm={name}"]).stdout, r.stdout)

    def test_the_programs_own_help_shows_wm_options(self):
        # The README's program answers --help itself, with wm::wm_args_help(); wm says nothing about it.
        r = run([HOST, "--help"])
        self.assert_ran(r, 0, "--help")
        self.assertEqual(r.stderr, "")
        self.assertTrue(r.stdout.startswith("usage: app [wm options]\n\n"), r.stdout[:200])
        self.assertEqual(r.stdout.split("\n\n", 1)[1], run([HOST, "--help-wm"]).stdout)

    def test_wm_args_help_gives_the_same_texts(self):
        self.assertEqual(run([SETUP_HOST, "print-help"]).stdout, run([HOST, "--help-wm"]).stdout)
        self.assertEqual(run([SETUP_HOST, "print-help", "processes"]).stdout,
                         run([HOST, "--help-wm", "processes"]).stdout)

    def test_help_wm_comes_before_the_configuration(self):
        # Help is what the user asked for, even with a setting that would be refused.
        r = run([HOST, "--help-wm", "threads"], env={"WM_N_WORKERS": "abc"})
        self.assert_ran(r, 0, "--help-wm threads with WM_N_WORKERS=abc")
        self.assertIn("--wm-threads-spin-us", r.stdout)

    def test_help_for_an_unknown_backend_is_a_configuration_error(self):
        r = run([HOST, "--help-wm", "thread"])
        self.assert_ran(r, 2, "--help-wm thread")
        self.assertEqual(r.stdout, "")
        self.assert_one_message(r, "unknown work manager 'thread' (from --help-wm thread)", "Did you mean 'threads'?")

    def test_only_rank_0_of_a_job_prints_it(self):
        for var in LAUNCHER_RANKS:
            r = run([HOST, "--help-wm"], env={var: "1"})
            self.assert_ran(r, 0, f"--help-wm with {var}=1")
            self.assertEqual(r.stdout + r.stderr, "", var)
            self.assertIn("--serial", run([HOST, "--help-wm"], env={var: "0"}).stdout, var)


class SetupErrors(HostTest):
    def test_uncaught_configuration_errors_end_with_the_message_and_exit_code_2(self):
        cases = [
            ([HOST, "--work-manager", "thread"], {},
             ["unknown work manager 'thread' (from option --work-manager='thread'). Did you mean 'threads'?"]),
            ([HOST], {"WM_N_WORKERS": "abc"}, ["environment variable WM_N_WORKERS='abc' is not a whole number"]),
            ([HOST, "--wm-threads-spin-uss", "3"], {},
             ["unknown option --wm-threads-spin-uss; did you mean --wm-threads-spin-us?",
              "--help-wm lists wm's options"]),
            ([HOST, "--serial", "--parallel"], {}, ["give only one of --serial, --parallel and --work-manager"]),
            ([HOST, "--work-manager", "threads"], {"WM_THREADS_SPIN_US": "-1"}, ["WM_THREADS_SPIN_US='-1'"]),
            ([HOST], {"WM_LOG_LEVEL": "loud"}, ["WM_LOG_LEVEL='loud' is not a log level"]),
        ]
        for cmd, env, parts in cases:
            with self.subTest(cmd=cmd, env=env):
                r = run(cmd, env=env)
                self.assert_ran(r, 2, " ".join(cmd))
                self.assertEqual(r.stdout, "")  # nothing of the job ran
                self.assert_one_message(r, *parts)

    def test_a_refused_plugin_is_reported_the_same_way(self):
        with PluginDir("missing_dep.so") as d:
            r = run([HOST], env={"WM_WORK_MANAGER": "fixture_missing_dep", "WM_PLUGIN_PATH": d})
            self.assert_ran(r, 2, "WM_WORK_MANAGER=fixture_missing_dep")
            self.assert_one_message(r, "work manager 'fixture_missing_dep' (from environment variable "
                                       "WM_WORK_MANAGER='fixture_missing_dep') was found but refused",
                                    "missing dependency libwm_fixture_dep.so")

    def test_ranks_other_than_0_exit_2_quietly(self):
        for var in LAUNCHER_RANKS:
            with self.subTest(var=var):
                r = run([HOST, "--work-manager", "thread"], env={var: "2"})
                self.assert_ran(r, 2, f"{var}=2")
                self.assertEqual(r.stdout + r.stderr, "")
                r = run([HOST, "--work-manager", "thread"], env={var: "0"})
                self.assert_ran(r, 2, f"{var}=0")
                self.assert_one_message(r, "unknown work manager 'thread'")

    def test_a_host_that_catches_the_error_carries_on(self):
        r = run([SETUP_HOST, "catch", "--work-manager", "thread"])
        self.assert_ran(r, 0, "catch")
        self.assertIn("caught wm::ConfigError: unknown work manager 'thread'", r.stdout)
        self.assertEqual(r.stderr, "")

    def test_other_uncaught_exceptions_are_left_to_the_previous_handler(self):
        # The default one: libstdc++'s message, then abort.
        r = run([SETUP_HOST, "catch-then-throw", "--work-manager", "thread"])
        self.assertEqual(r.returncode, -signal.SIGABRT, r.stderr)
        self.assertIn("caught wm::ConfigError", r.stdout)
        self.assertIn("terminate called after throwing an instance of 'std::runtime_error'", r.stderr)
        self.assertIn("the host's own error", r.stderr)
        # The host's own, installed before wm's error came.
        r = run([SETUP_HOST, "own-handler-other", "--work-manager", "thread"])
        self.assert_ran(r, 7, "own-handler-other")
        self.assertIn("the host's own terminate handler ran", r.stderr)
        # ... which is not asked about wm's own configuration error.
        r = run([SETUP_HOST, "own-handler", "--work-manager", "thread"])
        self.assert_ran(r, 2, "own-handler")
        self.assert_one_message(r, "unknown work manager 'thread'")

    def test_a_good_configuration_runs_the_program(self):
        r = run([HOST, "--work-manager", "threads", "--n-workers", "2"])
        self.assert_ran(r, 0, "threads")
        self.assertRegex(r.stdout, r"pi ~ 3\.14\d* on threads with 2 workers")


class AbiMinor(HostTest):
    """Plugins built with the SDK of ABI 1.3 (newer than this core's 1.2): `wm list --why`, `wm check`
    and a host give the same verdict on each, for the same reason."""

    def why_line(self, d, file):
        r = run([WM, "list", "--why"], env={"WM_PLUGIN_PATH": d})
        self.assert_ran(r, 0, "wm list --why")
        line = next((l for l in r.stdout.splitlines() if re.match(rf"^  \S+ +\S+ +{re.escape(file)}\b", l)), None)
        self.assertIsNotNone(line, r.stdout)
        return line

    def test_one_that_needs_a_newer_core_is_refused_everywhere_for_the_same_reason(self):
        with PluginDir("abi_1_3.so") as d:
            line = self.why_line(d, "abi_1_3.so")
            m = re.match(r"^  refused +fixture_abi_1_3 +abi_1_3\.so: (.*)$", line)
            self.assertIsNotNone(m, line)
            reason = m.group(1)
            self.assertIn("built for ABI version 1.3 and needs a wm core of ABI version 1.3 or a later 1.x, this "
                          "core speaks ABI version 1.2", reason)

            check = run([WM, "check", "fixture_abi_1_3"], env={"WM_PLUGIN_PATH": d}, timeout=90)
            self.assert_ran(check, 1, "wm check")
            self.assertRegex(check.stdout, r"(?m)^  FAILED  discovery .*was found but refused: .*abi_1_3\.so: " +
                             re.escape(reason))
            self.assertIn("fixture_abi_1_3: FAILED in stage 'discovery'", check.stdout)

            host = run([HOST], env={"WM_PLUGIN_PATH": d, "WM_WORK_MANAGER": "fixture_abi_1_3"})
            self.assert_ran(host, 2, "host")
            self.assert_one_message(host, "work manager 'fixture_abi_1_3' (from environment variable "
                                          "WM_WORK_MANAGER='fixture_abi_1_3') was found but refused",
                                    "abi_1_3.so: " + reason)

    def test_one_that_runs_on_this_core_works_everywhere(self):
        with PluginDir("abi_1_3_runs_on_1_0.so") as d:
            name = "fixture_abi_1_3_runs_on_1_0"
            line = self.why_line(d, "abi_1_3_runs_on_1_0.so")
            self.assertRegex(line, rf"^  taken +{name} +abi_1_3_runs_on_1_0\.so \(version 1\.3\.0\) \(note: built for "
                                   r"ABI version 1\.3, newer than this core's 1\.2; it runs on cores of ABI 1\.0 and later")

            check = run([WM, "check", name], env={"WM_PLUGIN_PATH": d}, timeout=90)
            self.assert_ran(check, 0, "wm check")
            self.assertIn(f"{name}: ok", check.stdout)

            host = run([HOST], env={"WM_PLUGIN_PATH": d, "WM_WORK_MANAGER": name})
            self.assert_ran(host, 0, "host")
            self.assertRegex(host.stdout, rf"pi ~ 3\.14\d* on {name} with 1 workers")


if __name__ == "__main__":
    group = sys.argv[1] if len(sys.argv) > 1 else None
    unittest.main(argv=[sys.argv[0]] + ([group] if group else []), verbosity=2)
