// SPDX-License-Identifier: MIT
// run_task.cpp: a host that runs a task from a task library it loads at run time: TASK(N) for each
// number N, on the work manager the environment or the command line picks.
//
//   wm_run_task [wm options] LIBRARY TASK N...
//   wm_run_task --work-manager processes ./libexample_tasks.so collatz_steps 27 97
//
// TASK must be registered (WM_TASK) with the signature std::int64_t(std::int64_t).
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <cstdint>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

namespace {
void usage(std::ostream& os) {
  os << "usage: wm_run_task [wm options] LIBRARY TASK N...\n"
        "Loads the task library LIBRARY and runs TASK(N) for each N (TASK: std::int64_t(std::int64_t)).\n\n"
     << wm::wm_args_help();  // wm's own options, in one call
}
}  // namespace

int main(int argc, char** argv) {
  try {
    wm::WMEnvironment env;  // a worker process serves its tasks from here and never returns
    // wm's flags are taken out; what is left is ours.
    const std::vector<std::string> args = env.parse_args(argc, argv);
    for (const auto& a : args)
      if (a == "--help" || a == "-h") {
        usage(std::cout);
        return 0;
      }
    if (args.size() < 4) {
      usage(std::cerr);
      return 2;
    }
    // Before the work manager is made, so that workers of remote backends load it too.
    wm::load_task_library(args[1]);
    auto wm = env.make_work_manager();
    std::vector<wm::TaskSpec<std::int64_t>> tasks;
    for (std::size_t i = 3; i < args.size(); ++i)
      tasks.push_back(wm::task_by_name<std::int64_t>(args[2], std::int64_t(std::stoll(args[i]))));
    const auto futures = wm->submit_many(std::move(tasks));
    for (std::size_t i = 0; i < futures.size(); ++i)
      std::cout << args[2] << "(" << args[i + 3] << ") = " << futures[i].get_result() << "\n";
    std::cout << "on " << wm->name() << " with " << wm->n_workers() << " worker(s)\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "wm_run_task: " << e.what() << "\n";
    return 1;
  }
}
