// SPDX-License-Identifier: MIT
// mpi_host_init.cpp: a host program that initialises MPI itself before it makes its work manager,
// run under mpirun by run_mpi.py. argv[1]: "multiple" (MPI_Init_thread with MPI_THREAD_MULTIPLE:
// the work manager works on its own communicator and leaves MPI_Finalize to the host, which also
// uses MPI itself) or "single" (plain MPI_Init: the work manager refuses, saying what to do).
// Prints "RESULT ok" on rank 0 when every check passed.
#include <wm/task.hpp>
#include <wm/wm.hpp>

#include <mpi.h>

#include <cstdio>
#include <string>

int cube(int x) { return x * x * x; }
WM_TASK(cube);

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  int provided = 0;
  if (mode == "single")
    MPI_Init(&argc, &argv);
  else
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int failures = 0;
  auto check = [&](bool ok, const std::string& what) {
    if (!ok) {
      ++failures;
      std::printf("CHECK FAILED: %s\n", what.c_str());
    }
  };
  if (mode == "single") {
    try {
      auto wm = wm::make_work_manager();
      check(false, "the mpi work manager refused a host that initialised MPI with MPI_THREAD_SINGLE");
    } catch (const wm::Error& e) {
      const std::string what = e.what();
      if (rank == 0) std::printf("refused: %s\n", what.c_str());
      check(what.find("MPI_THREAD_SINGLE") != std::string::npos && what.find("MPI_Init_thread") != std::string::npos,
            "the refusal names the thread level and the fix: " + what);
    }
  } else {
    {
      auto wm = wm::make_work_manager();  // worker ranks serve here and finalize MPI themselves
      std::vector<wm::Future<int>> fs;
      for (int i = 0; i < 100; ++i) fs.push_back(wm->submit(cube, i));
      for (int i = 0; i < 100; ++i) check(fs[i].get_result() == i * i * i, "a task's result");
    }
    // MPI is still the host's: it works, and the host finalizes it.
    int finalized = 1;
    MPI_Finalized(&finalized);
    check(!finalized, "MPI is not finalized by the work manager");
    int one = 1, sum = 0;
    MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_SELF);
    check(sum == 1, "the host's own MPI call works after the work manager ended");
  }
  // With MPI_THREAD_SINGLE every rank refused and goes on as a plain MPI program.
  if (mode == "single") MPI_Barrier(MPI_COMM_WORLD);
  MPI_Finalize();
  if (rank == 0) std::printf("RESULT %s\n", failures == 0 ? "ok" : "failed");
  return failures == 0 ? 0 : 1;
}
