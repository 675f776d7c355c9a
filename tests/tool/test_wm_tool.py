#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""test_wm_tool.py: the `wm` tool run as a user runs it: help, list, info, config, check, and the
broken-plugin matrix, each case in an isolated plugin directory that `wm list --why` must explain.

Run one group: test_wm_tool.py Cli | Matrix | Check | Json (the paths come from the environment, see
tests/tool/CMakeLists.txt). Every command is bounded by a timeout; no process is left behind."""
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

WM = os.environ["WM_TOOL"]
FIXTURES = os.environ["WM_DISCOVERY_FIXTURES"]  # tests/discovery fixtures (good.so, wrong_abi.so, ...)
TEST_FIXTURES = os.environ["WM_TEST_FIXTURES"]  # tests/fixtures (unresolved.so)
TEST_PLUGINS = os.environ["WM_TEST_PLUGIN_DIR"]  # loopback
MAGIC = b"WMPLUG01"
NAME_OFFSET = 16  # magic[8], abi_version, record_size


def fixture(name):
    return os.path.join(FIXTURES, name)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def run(args, plugin_path=None, env=None, timeout=60, prefix=()):
    """Runs wm with only the WM_* variables given: nothing from the caller's environment leaks in."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("WM_")}
    if plugin_path is not None:
        e["WM_PLUGIN_PATH"] = plugin_path
    e.update(env or {})
    return subprocess.run(list(prefix) + [WM] + list(args), env=e, capture_output=True, timeout=timeout,
                          text=True, errors="replace")


def processes_checking(name):
    """Processes of this wm binary checking the backend `name` (a check process or what it left)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if os.readlink(f"/proc/{pid}/exe") != os.path.realpath(WM):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if name.encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


class PluginDir:
    """A fresh, isolated plugin directory."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="wm-tool-test-")
        os.chmod(self.path, 0o755)
        return self

    def __exit__(self, *exc):
        for root, dirs, _ in os.walk(self.path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(self.path)

    def copy(self, source, name=None):
        dest = os.path.join(self.path, name or os.path.basename(source))
        shutil.copyfile(source, dest)
        return dest

    def write(self, name, data):
        dest = os.path.join(self.path, name)
        with open(dest, "wb") as f:
            f.write(data)
        return dest


class ToolTest(unittest.TestCase):
    def wm_ok(self, args, **kw):
        r = run(args, **kw)
        self.assertEqual(r.returncode, 0, f"wm {' '.join(args)}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def wm_json(self, args, **kw):
        return json.loads(self.wm_ok(list(args) + ["--json"], **kw).stdout)

    def why(self, directory, **kw):
        """wm list --why as JSON: the files of that directory, by file name; and the text output."""
        data = self.wm_json(["list", "--why"], plugin_path=directory, **kw)
        files = {os.path.basename(f["path"]): f for f in data["files"]
                 if os.path.dirname(f["path"]) == directory.rstrip("/")}
        text = self.wm_ok(["list", "--why"], plugin_path=directory, **kw).stdout
        return files, data, text


class Cli(ToolTest):
    def test_help_goes_to_stdout_and_exits_zero(self):
        for args in (["--help"], ["-h"], ["help"]):
            r = self.wm_ok(args)
            self.assertIn("usage: wm COMMAND", r.stdout)
            for command in ("wm list", "wm info NAME", "wm config", "wm check NAME"):
                self.assertIn(command, r.stdout)
        for verb in ("list", "plugins", "info", "config", "check"):
            for args in ([verb, "--help"], [verb, "-h"], ["help", verb]):
                r = self.wm_ok(args)
                self.assertIn("usage: wm ", r.stdout, args)
                self.assertIn("--json", r.stdout, args)
        self.assertIn("--wm-threads-spin-us", self.wm_ok(["config", "--help"]).stdout)

    def test_unknown_command_and_flag(self):
        r = run(["lsit"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'lsit'; did you mean 'list'?", r.stderr)
        r = run(["list", "--whyy"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--whyy", r.stderr)
        r = run(["list", "--wh"])  # never guessed
        self.assertEqual(r.returncode, 2)

    def test_list(self):
        for args in ([], ["list"], ["plugins"]):
            out = self.wm_ok(args).stdout
            self.assertIn("NAME", out)
            for name in ("serial", "threads"):
                self.assertRegex(out, rf"(?m)^{name} +1\.0\.0 +/.*wm_backend_{name}\.so$")
        data = self.wm_json(["list"], plugin_path=TEST_PLUGINS)
        names = [m["name"] for m in data["work_managers"]]
        self.assertEqual(names[-1], "loopback")
        self.assertIn("threads", names)
        self.assertEqual(data["directories"][0]["origin"], "bundled")
        self.assertEqual(data["directories"][1], {"path": TEST_PLUGINS, "origin": "WM_PLUGIN_PATH", "status": "scanned"})
        self.assertNotIn("files", data)
        self.assertEqual(self.wm_ok(["list", "--names"], plugin_path=TEST_PLUGINS).stdout.split(), names)
        self.assertIn(f"WM_PLUGIN_PATH entry 1 {TEST_PLUGINS}: scanned",
                      self.wm_ok(["list", "--why"], plugin_path=TEST_PLUGINS).stdout)

    def test_version(self):
        self.assertRegex(self.wm_ok(["--version"]).stdout, r"^wm \d+\.\d+\.\d+ \(plugin ABI 1\.\d+\)")

    def test_info(self):
        out = self.wm_ok(["info", "threads"]).stdout
        for text in ("threads 1.0.0: ", "ABI version   1.2", "capabilities  in-process", "entry symbol  wm_backend_entry_threads",
                     "spin-us  int, default '50', range 0..", "WM_THREADS_SPIN_US / --wm-threads-spin-us"):
            self.assertIn(text, out)
        info = self.wm_json(["info", "Threads"])["work_manager"]
        self.assertEqual(info["name"], "threads")
        self.assertEqual(info["status"], "taken")
        self.assertEqual(info["capabilities"], ["in-process"])
        option = info["options"][0]
        self.assertEqual({k: option[k] for k in ("name", "type", "variable", "flag", "min")},
                         {"name": "spin-us", "type": "int", "variable": "WM_THREADS_SPIN_US",
                          "flag": "--wm-threads-spin-us", "min": 0})
        processes = self.wm_json(["info", "processes"])["work_manager"]
        self.assertIn("spawns-workers", processes["capabilities"])
        self.assertIn("maps-memory", processes["capabilities"])
        # wm's own options, which every backend takes, are named too.
        self.assertIn("--wm-gpus-per-worker", self.wm_ok(["info", "threads"]).stdout)
        common = {o["name"]: o for o in self.wm_json(["info", "threads"])["common_options"]}
        self.assertEqual(set(common), {"n-workers", "gpus-per-worker", "gpus", "cpus-per-worker", "bind", "resources",
                                       "progress", "dump-signal", "dashboard", "shared-memory-limit"})
        self.assertEqual(common["bind"]["variable"], "WM_BIND")
        r = run(["info", "thread"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown work manager 'thread'", r.stderr)
        self.assertIn("Did you mean 'threads'?", r.stderr)
        self.assertEqual(run(["info"]).returncode, 2)

    def test_config(self):
        env = {"WM_WORK_MANAGER": "threads", "WM_THREADS_SPIN_US": "5", "WM_THREADS_SPIN_UZ": "1"}
        data = self.wm_json(["config"], env=env)
        settings = {s["name"]: s for s in data["settings"]}
        self.assertEqual(settings["work-manager"]["value"], "threads")
        self.assertEqual(settings["work-manager"]["source"], "environment")
        self.assertEqual(settings["threads-spin-us"]["value"], 5)
        self.assertEqual(settings["threads-spin-us"]["variable"], "WM_THREADS_SPIN_US")
        self.assertEqual(settings["log-level"]["value"], "warning")
        self.assertEqual(settings["log-level"]["source"], "default")
        self.assertTrue(any("WM_THREADS_SPIN_UZ is not an option of work manager 'threads' and is ignored; did you "
                            "mean WM_THREADS_SPIN_US?" in w for w in data["warnings"]), data["warnings"])
        out = self.wm_ok(["config", "--n-workers", "3", "--wm-threads-spin-us", "7"], env=env).stdout
        self.assertIn("n-workers = 3  (command line; WM_N_WORKERS, --n-workers)", out)
        self.assertIn("threads-spin-us = 7  (command line; WM_THREADS_SPIN_US, --wm-threads-spin-us)", out)
        self.assertIn("warnings (a host prints these", out)
        r = run(["config", "--wm-threads-spin-uss", "7"], env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown option --wm-threads-spin-uss; did you mean --wm-threads-spin-us?", r.stderr)
        r = run(["config", "--n-worker", "3"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--n-worker is not a wm option and is left to the program; did you mean --n-workers?", r.stderr)
        r = run(["config", "--serial", "--work-manager", "threads"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("(given: --serial, --work-manager threads)", r.stderr)

    def test_config_shows_the_binding_plan(self):
        env = {"WM_WORK_MANAGER": "processes", "WM_GPUS_PER_WORKER": "1", "CUDA_VISIBLE_DEVICES": "GPU-aaa,MIG-bbb"}
        data = self.wm_json(["config", "--n-workers", "2", "--wm-resources", "mem=64e9,license=1"], env=env)
        plan = data["binding"]
        self.assertEqual(plan["n_workers"], 2)
        self.assertEqual(plan["gpus_from"], "environment variable CUDA_VISIBLE_DEVICES")
        self.assertEqual(plan["gpu_variable"], "CUDA_VISIBLE_DEVICES")
        self.assertEqual([w["gpus"] for w in plan["workers"]], [["GPU-aaa"], ["MIG-bbb"]])
        self.assertEqual(plan["workers"][1]["environment"]["CUDA_VISIBLE_DEVICES"], "MIG-bbb")
        self.assertEqual({k: plan["workers"][0]["resources"][k] for k in ("gpu", "mem", "license")},
                         {"gpu": 1, "mem": 64e9, "license": 1})
        settings = {s["name"]: s for s in data["settings"]}
        self.assertEqual(settings["gpus-per-worker"]["value"], 1)
        self.assertEqual(settings["gpus-per-worker"]["source"], "environment")
        self.assertEqual(settings["resources"]["flag"], "--wm-resources")
        self.assertIsNone(settings["gpus"]["value"])
        out = self.wm_ok(["config", "--n-workers", "2", "--wm-cpus-per-worker", "1"], env=env).stdout
        self.assertIn("binding plan for 2 workers (--n-workers):", out)
        self.assertIn("devices from environment variable CUDA_VISIBLE_DEVICES; each worker's in CUDA_VISIBLE_DEVICES",
                      out)
        self.assertRegex(out, r"worker 1: gpus MIG-bbb; cores \d+; cpu=1 gpu=1")
        # A plan that cannot be made is the error a host would get.
        r = run(["config", "--n-workers", "3"], env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("environment variable WM_GPUS_PER_WORKER='1' for 3 workers needs 3 GPUs, and environment "
                      "variable CUDA_VISIBLE_DEVICES='GPU-aaa,MIG-bbb' lists 2", r.stderr)
        r = run(["config", "--wm-bind", "sockets"])
        self.assertEqual(r.returncode, 1)
        self.assertIn("option --wm-bind='sockets' is not a binding", r.stderr)
        # Listed with wm's options.
        for args in (["config", "--help"], ["config", "--help-wm"]):
            out = self.wm_ok(args).stdout
            for flag in ("--wm-gpus-per-worker", "--wm-gpus", "--wm-cpus-per-worker", "--wm-bind", "--wm-resources"):
                self.assertIn(flag, out, args)

    def test_log_level(self):
        r = run(["config"], env={"WM_LOG_LEVEL": "bogus"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("WM_LOG_LEVEL='bogus' is not a log level; use debug, info, warning or error", r.stderr)
        r = self.wm_ok(["list"], env={"WM_LOG_LEVEL": "DEBUG"}, plugin_path=TEST_PLUGINS)
        self.assertIn("[wm core] debug: plugin directory '" + TEST_PLUGINS + "' (WM_PLUGIN_PATH): scanned", r.stderr)
        self.assertRegex(r.stderr, r"\[wm core\] debug: .*/wm_backend_serial\.so: taken 'serial' version 1\.0\.0")
        r = self.wm_ok(["check", "threads"], env={"WM_LOG_LEVEL": "info"})
        self.assertRegex(r.stdout, r"\[wm core\] info: work manager 'threads': loading /.*wm_backend_threads\.so "
                                   r"\(version 1\.0\.0, ABI 1\.2\)")
        self.assertNotIn("debug:", r.stdout)


class Matrix(ToolTest):
    """The broken-plugin matrix: each case alone in a plugin directory, explained by `wm list --why`,
    and, where the file names a backend, reported as refused when a host selects that name."""

    def refused_on_selection(self, name, reason, plugin_path):
        r = run(["config"], env={"WM_WORK_MANAGER": name}, plugin_path=plugin_path)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn(f"work manager '{name}' (from environment variable WM_WORK_MANAGER='{name}') was found but "
                      "refused", r.stderr)
        self.assertIn(reason, r.stderr)
        self.assertNotIn("unknown work manager", r.stderr)

    def case(self, files, status, reason, name=None, selected=True):
        """files: {file name: source path or bytes}; checks the first file's entry."""
        with PluginDir() as d:
            for fname, source in files.items():
                if isinstance(source, bytes):
                    d.write(fname, source)
                else:
                    d.copy(source, fname)
            first = next(iter(files))
            entries, _, text = self.why(d.path)
            entry = entries[first]
            self.assertEqual(entry["status"], status, entry)
            self.assertIn(reason, entry.get("reason", entry.get("note", "")), entry)
            self.assertEqual(entry["name"], name, entry)
            self.assertRegex(text, rf"(?m)^  {status} +{name or '-'} +{first}")
            self.assertIn(reason, text)
            if status == "refused" and name and selected:
                self.refused_on_selection(name, reason, d.path)
            return entries

    def test_wrong_abi_major_older(self):
        self.case({"wrong_abi.so": fixture("wrong_abi.so")}, "refused",
                  "built for ABI version 0.999, this core speaks ABI version 1.2", "fixture_wrong_abi")
        self.case({"wrong_abi.so": fixture("wrong_abi.so")}, "refused",
                  "the plugin is older than this wm; rebuild the plugin against this SDK", "fixture_wrong_abi")

    def test_wrong_abi_major_newer(self):
        self.case({"abi_major2.so": fixture("abi_major2.so")}, "refused",
                  "built for ABI version 2.0, this core speaks ABI version 1.2", "fixture_abi_major2")
        self.case({"abi_major2.so": fixture("abi_major2.so")}, "refused",
                  "the plugin is newer than this wm; rebuild it against the SDK installed with this wm (ABI 1.x), "
                  "or use a wm that speaks ABI 2.x", "fixture_abi_major2", selected=False)

    def test_newer_abi_minor(self):
        # Refused at discovery if it needs a newer core (same reason when a host selects it), taken if
        # its record says it runs on this one. (tests/host checks `wm check` and a host agree too.)
        self.case({"newer_minor.so": fixture("newer_minor.so")}, "refused",
                  "built for ABI version 1.5 and needs a wm core of ABI version 1.5 or a later 1.x, this core "
                  "speaks ABI version 1.2", "fixture_newer_minor")
        self.case({"newer_minor_runs_here.so": fixture("newer_minor_runs_here.so")}, "taken",
                  "built for ABI version 1.5, newer than this core's 1.2; it runs on cores of ABI 1.0 and later",
                  "fixture_newer_minor_runs_here")
        with PluginDir() as d:
            d.copy(fixture("newer_minor_runs_here.so"))
            out = self.wm_ok(["info", "fixture_newer_minor_runs_here"], plugin_path=d.path).stdout
            self.assertIn("ABI version   1.5 (this wm: 1.2)", out)
            self.assertIn("note          built for ABI version 1.5", out)

    def test_no_metadata_record(self):
        self.case({"no_record.so": fixture("no_record.so")}, "refused", "not a work-manager plugin: no .wmplug section")

    def test_empty_or_missing_name(self):
        self.case({"empty_name.so": fixture("empty_name.so")}, "refused", "metadata record malformed: name is empty")
        good = read_bytes(fixture("good.so"))
        at = good.index(MAGIC) + NAME_OFFSET
        unterminated = good[:at] + b"a" * 32 + good[at + 32:]
        self.case({"no_name.so": unterminated}, "refused", "metadata record malformed: name not NUL-terminated")

    def test_two_plugins_with_one_name(self):
        with PluginDir() as d:
            d.copy(fixture("good.so"), "b_copy.so")
            d.copy(fixture("good.so"), "a_copy.so")
            entries, _, text = self.why(d.path)
            self.assertEqual(entries["a_copy.so"]["status"], "taken")
            self.assertEqual(entries["b_copy.so"]["status"], "shadowed")
            self.assertEqual(entries["b_copy.so"]["shadowed_by"], os.path.join(d.path, "a_copy.so"))
            self.assertIn("shadowed by " + os.path.join(d.path, "a_copy.so") + ", the first file of work manager "
                          "'fixture_good' in path order", text)
        # The bundled directory comes first: a copy of a bundled backend is shadowed by it.
        threads = self.wm_json(["info", "threads"])["work_manager"]["path"]
        with PluginDir() as d:
            d.copy(threads, "my_threads.so")
            entries, _, _ = self.why(d.path)
            self.assertEqual(entries["my_threads.so"]["status"], "shadowed")
            self.assertEqual(entries["my_threads.so"]["shadowed_by"], threads)
            data = self.wm_json(["config"], env={"WM_WORK_MANAGER": "threads"}, plugin_path=d.path)
            self.assertTrue(any("my_threads.so (version 1.0.0) is shadowed" in w for w in data["warnings"]), data)

    def test_truncated(self):
        good = read_bytes(fixture("good.so"))
        self.case({"truncated.so": good[: len(good) // 2]}, "refused", "truncated ELF file")

    def test_non_elf(self):
        self.case({"x.so": b"this is a text file\n"}, "refused", "not an ELF file")

    def test_fifo_does_not_hang(self):
        with PluginDir() as d:
            os.mkfifo(os.path.join(d.path, "fifo.so"))
            entries, _, _ = self.why(d.path)
            self.assertIn("not a regular file (a FIFO)", entries["fifo.so"]["reason"])

    def test_missing_dependency(self):
        self.case({"missing_dep.so": fixture("missing_dep.so")}, "refused",
                  "missing dependency libwm_fixture_dep.so", "fixture_missing_dep")

    def test_bad_option_declaration(self):
        for f, reason in (("bad_option_range.so", "its default '5000' is out of range; give a whole number from 0 to 1024"),
                          ("bad_option_parse.so", "its default 'lots' is not a whole number"),
                          ("bad_option_empty_range.so", "its range is empty (min 10 > max 1)")):
            self.case({f: fixture(f)}, "refused", "option 'workers' is declared wrong: " + reason,
                      "fixture_" + f[:-3])

    def test_directory_does_not_exist(self):
        with PluginDir() as d:
            missing = os.path.join(d.path, "nowhere")
            _, data, text = self.why(missing)
            self.assertEqual(data["directories"][1]["status"], "missing")
            self.assertIn(f"WM_PLUGIN_PATH entry 1 {missing}: does not exist", text)
            listing = run(["list"], plugin_path=missing)
            self.assertIn(f"warning: plugin directory '{missing}' (entry 1 of WM_PLUGIN_PATH) does not exist: "
                          "not scanned", listing.stdout)

    def test_directory_is_a_file(self):
        with PluginDir() as d:
            plugin = d.copy(fixture("good.so"))
            _, data, text = self.why(plugin)
            self.assertEqual(data["directories"][1]["status"], "not a directory")
            self.assertIn("is a file, not a directory: name the directory that holds the plugin", text)

    def test_directory_cannot_be_read(self):
        with PluginDir() as d:
            locked = os.path.join(d.path, "locked")
            os.mkdir(locked)
            shutil.copyfile(fixture("good.so"), os.path.join(locked, "good.so"))
            os.chmod(locked, 0)
            prefix = ()
            if os.geteuid() == 0:
                # root reads anything: run the tool as nobody, where the machine allows it.
                prefix = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--")
                try:
                    probe = run(["--version"], prefix=prefix)
                except OSError as e:
                    self.skipTest(f"cannot run as nobody here ({e}): unreadable-directory case not checked")
                if probe.returncode != 0:
                    self.skipTest("this wm cannot run as nobody here (its files are not readable by others): "
                                  f"unreadable-directory case not checked: {probe.stderr.strip()}")
            r = run(["list", "--why", "--json"], plugin_path=locked, prefix=prefix)
            self.assertEqual(r.returncode, 0, r.stderr)
            data = json.loads(r.stdout)
            self.assertEqual(data["directories"][1]["status"], "unreadable")
            self.assertIn("cannot be read: Permission denied", data["directories"][1]["detail"])
            self.assertEqual([f for f in data["files"] if f["path"].startswith(locked)], [])

    def test_plugin_path_with_empty_entries(self):
        _, data, text = self.why(":" + TEST_PLUGINS + "::")
        statuses = [d["status"] for d in data["directories"][1:]]
        self.assertEqual(statuses, ["empty entry", "scanned", "empty entry", "empty entry"])
        self.assertIn("WM_PLUGIN_PATH entry 1 is empty: empty entry: ignored (it does not mean the current directory)",
                      text)
        self.assertIn("loopback", [m["name"] for m in data["work_managers"]])
        self.assertIn("entry 3 of WM_PLUGIN_PATH is empty", " ".join(data["problems"]))

    def test_file_names_cannot_fake_a_line(self):
        with PluginDir() as d:
            d.write("evil\n  taken    serial  fake.so", b"text")
            text = self.wm_ok(["list", "--why"], plugin_path=d.path).stdout
            self.assertNotIn("\n  taken    serial  fake.so", text)
            self.assertIn("evil\\x0a  taken    serial  fake.so: not an ELF file", text)
            data = self.wm_json(["list", "--why"], plugin_path=d.path)
            self.assertIn(os.path.join(d.path, "evil\n  taken    serial  fake.so"), [f["path"] for f in data["files"]])


class Check(ToolTest):
    def check(self, name, *args, plugin_path=None, timeout=90):
        r = run(["check", name, "--json", *args], plugin_path=plugin_path, timeout=timeout)
        data = json.loads(r.stdout)
        self.assertEqual(r.returncode, 0 if data["ok"] else 1)
        return data

    def test_good_backends_pass_every_stage(self):
        for name, path in (("serial", None), ("threads", None), ("processes", None), ("loopback", TEST_PLUGINS)):
            data = self.check(name, plugin_path=path)
            self.assertTrue(data["ok"], data)
            self.assertEqual([s["stage"] for s in data["stages"]],
                             ["discovery", "load", "entry symbol", "create", "startup", "task", "shutdown"])
            self.assertIn("wm_check_task(14) = 43", data["stages"][5]["detail"])
        data = self.check("processes", "--n-workers", "3")
        self.assertIn("3 worker(s), tasks run in other processes", data["stages"][3]["detail"])
        self.assertIn("(a worker)", data["stages"][5]["detail"])
        text = self.wm_ok(["check", "threads"]).stdout
        self.assertRegex(text, r"(?m)^  ok      create +\d+ worker\(s\), tasks run in this process$")
        self.assertTrue(text.endswith("threads: ok\n"), text)

    def failing(self, name, stage, message, *args, plugin_path=None):
        data = self.check(name, *args, plugin_path=plugin_path)
        self.assertFalse(data["ok"], data)
        self.assertEqual(data["failed_stage"], stage, data)
        self.assertIn(message, data["stages"][-1]["detail"], data)
        text = run(["check", name, *args], plugin_path=plugin_path, timeout=90)
        self.assertEqual(text.returncode, 1)
        self.assertIn(f"{name}: FAILED in stage '{stage}'", text.stdout)
        return data

    def test_load_path_failures_name_the_stage(self):
        with PluginDir() as d:
            d.copy(os.path.join(TEST_FIXTURES, "unresolved.so"))
            for case in ("entry_null", "create_null", "create_throws", "startup_fails", "startup_throws"):
                d.copy(fixture(case + ".so"))
            self.failing("unresolved", "load", "undefined symbol: wm_test_symbol_that_nobody_defines", plugin_path=d.path)
            self.failing("fixture_entry_null", "create", "fixture_entry_null", plugin_path=d.path)
            self.failing("fixture_create_null", "create", "fixture_create_null", plugin_path=d.path)
            self.failing("fixture_create_throws", "create", "int", plugin_path=d.path)
            self.failing("fixture_startup_fails", "startup", "the fixture's startup fails on purpose", plugin_path=d.path)
            self.failing("fixture_startup_throws", "startup", "int", plugin_path=d.path)

    def test_a_hang_is_killed_at_the_timeout(self):
        with PluginDir() as d:
            d.copy(fixture("startup_hangs.so"))
            start = time.monotonic()
            data = self.failing("fixture_startup_hangs", "startup", "no answer within 2 s: the check process was killed",
                                "--timeout", "2", plugin_path=d.path)
            self.assertTrue(data["timed_out"])
            self.assertLess(time.monotonic() - start, 30)
        self.assertEqual(processes_checking("fixture_startup_hangs"), [])

    def test_refused_and_unknown_stop_at_discovery(self):
        with PluginDir() as d:
            d.copy(fixture("missing_dep.so"))
            self.failing("fixture_missing_dep", "discovery", "was found but refused", plugin_path=d.path)
        self.failing("nonesuch", "discovery", "unknown work manager 'nonesuch'")


def typed(value, kind):
    """isinstance that tells booleans from numbers (True is an int in Python)."""
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


class Json(ToolTest):
    """--json as a script reads it: every command's output and errors parsed, values typed, file
    names kept as they are."""

    def assert_types(self, obj, types, where):
        for key, kind in types.items():
            self.assertIn(key, obj, where)
            self.assertTrue(typed(obj[key], kind), f"{where}: {key} = {obj[key]!r} is not {kind.__name__}")

    def test_every_command_is_typed(self):
        data = self.wm_json(["list"], plugin_path=TEST_PLUGINS)
        for m in data["work_managers"]:
            self.assert_types(m, {"name": str, "version": str, "path": str, "abi_version": str, "description": str}, "list")
        self.assertTrue(all(typed(p, str) for p in data["problems"]))
        self.assertEqual(data, self.wm_json(["plugins"], plugin_path=TEST_PLUGINS))
        data = self.wm_json(["list", "--why"], plugin_path=TEST_PLUGINS)
        for f in data["files"]:
            self.assert_types(f, {"path": str, "status": str}, "list --why")
            if f["status"] != "refused":
                self.assertTrue(typed(f["capabilities"], list) and typed(f["options"], list), f)

        info = self.wm_json(["info", "threads"])
        self.assertEqual(info["core_abi_version"], "1.2")
        spin = next(o for o in info["work_manager"]["options"] if o["name"] == "spin-us")
        self.assert_types(spin, {"default": int, "min": int, "max": int, "help": str}, "info threads spin-us")
        self.assertEqual(spin["default"], 50)
        # Every option of every bundled backend: its default has its declared type.
        python_type = {"int": int, "number": float, "bool": bool, "text": str}
        for name in [m["name"] for m in self.wm_json(["list"])["work_managers"]]:
            for o in self.wm_json(["info", name])["work_manager"]["options"]:
                self.assertIn(o["type"], python_type, o)
                self.assertTrue(typed(o["default"], python_type[o["type"]]), f"{name}: {o}")

        env = {"WM_WORK_MANAGER": "threads", "WM_N_WORKERS": "3", "WM_THREADS_SPIN_US": "7"}
        settings = {s["name"]: s for s in self.wm_json(["config"], env=env)["settings"]}
        self.assertEqual(settings["n-workers"]["value"], 3)
        self.assertEqual(settings["threads-spin-us"]["value"], 7)
        self.assertEqual(settings["work-manager"]["value"], "threads")
        self.assertIsNone(settings["log-level"]["flag"])
        settings = {s["name"]: s for s in self.wm_json(["config"])["settings"]}
        self.assertIsNone(settings["n-workers"]["value"])  # the backend's default
        self.assertEqual(settings["n-workers"]["source"], "default")
        # A boolean option, given as a yes/no word, comes out as a boolean (processes' shared-memory).
        option = next(o for o in self.wm_json(["info", "processes"])["work_manager"]["options"]
                      if o["name"] == "shared-memory")
        self.assertIs(option["default"], True)
        for word, value in (("no", False), ("On", True)):
            settings = {s["name"]: s for s in self.wm_json(
                ["config", "--work-manager", "processes", "--wm-processes-shared-memory", word])["settings"]}
            self.assertIs(settings["processes-shared-memory"]["value"], value)
            self.assertEqual(settings["processes-shared-memory"]["source"], "command line")

        data = self.check_json(["check", "threads"])
        self.assert_types(data, {"ok": bool, "timed_out": bool, "exit_status": int, "stages": list, "output": str},
                          "check")
        self.assertIs(data["ok"], True)
        self.assertIsNone(data["failed_stage"])
        for stage in data["stages"]:
            self.assert_types(stage, {"stage": str, "ok": bool, "detail": str}, "check stage")

    def check_json(self, args):
        r = run(args + ["--json"], timeout=90)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def error(self, args, kind, status, message, **kw):
        """An error with --json: a JSON object on stdout, the same exit status, the message on stderr too."""
        r = run(args + ["--json"], **kw)
        self.assertEqual(r.returncode, status, (args, r.stdout, r.stderr))
        data = json.loads(r.stdout)
        self.assertEqual(list(data), ["error"], data)
        e = data["error"]
        self.assert_types(e, {"kind": str, "message": str, "exit_status": int}, f"error of {args}")
        self.assertEqual((e["kind"], e["exit_status"]), (kind, status), e)
        self.assertIn(message, e["message"])
        self.assertIn(message, r.stderr)
        return e

    def test_errors_are_json_objects(self):
        self.error(["lsit"], "usage", 2, "unknown command 'lsit'; did you mean 'list'?")
        self.error(["list", "--whyy"], "usage", 2, "--whyy")
        self.error(["plugins", "--wh"], "usage", 2, "--wh")
        self.error(["info"], "usage", 2, "wm info needs the NAME of a backend")
        self.error(["info", "thread"], "config", 1, "unknown work manager 'thread'")
        self.error(["check"], "usage", 2, "wm check needs the NAME of a backend")
        self.error(["check", "threads", "--timeout", "0"], "usage", 2, "--timeout must be more than 0")
        self.error(["config", "--wm-threads-spin-uss", "7"], "config", 1, "unknown option --wm-threads-spin-uss",
                   env={"WM_WORK_MANAGER": "threads"})
        self.error(["config"], "config", 1, "WM_LOG_LEVEL='bogus' is not a log level", env={"WM_LOG_LEVEL": "bogus"})
        self.error(["config"], "config", 1, "WM_THREADS_SPIN_US='abc'",
                   env={"WM_WORK_MANAGER": "threads", "WM_THREADS_SPIN_US": "abc"})
        with PluginDir() as d:
            d.copy(fixture("missing_dep.so"))
            self.error(["info", "fixture_missing_dep"], "plugin", 1, "was found but refused", plugin_path=d.path)
        # A failing check is a report, not an error: ok is false, the exit status 1.
        r = run(["check", "nonesuch", "--json"])
        self.assertEqual(r.returncode, 1)
        data = json.loads(r.stdout)
        self.assertIs(data["ok"], False)
        self.assertEqual(data["failed_stage"], "discovery")

    def test_utf8_names_are_kept(self):
        with PluginDir() as d:
            directory = os.path.join(d.path, "plugins-é-日本")
            os.mkdir(directory)
            plugin = os.path.join(directory, "bon-été.so")
            shutil.copyfile(fixture("good.so"), plugin)
            r = run(["list", "--why", "--json"], plugin_path=directory)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("plugins-é-日本/bon-été.so".encode(), r.stdout.encode())  # as UTF-8, not escaped
            data = json.loads(r.stdout)
            self.assertEqual(data["directories"][1]["path"], directory)
            self.assertNotIn("path_bytes", data["directories"][1])
            entry = next(f for f in data["files"] if f["path"] == plugin)
            self.assertEqual((entry["status"], entry["name"]), ("taken", "fixture_good"))
            info = self.wm_json(["info", "fixture_good"], plugin_path=directory)
            self.assertEqual(info["work_manager"]["path"], plugin)

    def test_bytes_that_are_not_utf8_are_escaped(self):
        with PluginDir() as d:
            raw = os.fsencode(d.path) + b"/plugins-\xff\xfe-caf\xe9"
            os.mkdir(raw)
            shutil.copyfile(fixture("good.so"), raw + b"/good.so")
            r = subprocess.run([WM, "list", "--why", "--json"], capture_output=True, timeout=60,
                               env={**{k: v for k, v in os.environ.items() if not k.startswith("WM_")},
                                    "WM_PLUGIN_PATH": os.fsdecode(raw)})
            self.assertEqual(r.returncode, 0, r.stderr)
            data = json.loads(r.stdout.decode("utf-8"))  # valid UTF-8 throughout
            entry = data["directories"][1]
            self.assertEqual(entry["path"], os.fsdecode(os.fsencode(d.path)) + "/plugins-\ufffd\ufffd-caf\ufffd")
            self.assertEqual(bytes(entry["path_bytes"]), raw)
            files = [f for f in data["files"] if "path_bytes" in f]
            self.assertEqual([bytes(f["path_bytes"]) for f in files], [raw + b"/good.so"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
