// SPDX-License-Identifier: MIT
// wm_mpi_floor: raw MPI floor, run as `mpirun -np 2 wm_mpi_floor [--bench-runs 5] [--bench-smoke]`.
// Rank 0 prints JSON lines (see bench_common.hpp) with source "floor":
//   mpi_rt_median / mpi_rt_p99   1-byte MPI_Send/MPI_Recv ping-pong between ranks 0 and 1 [us]
//   mpi_bandwidth                64 MiB sent to rank 1 and back, bytes counted both ways [GB/s]
#include "bench_common.hpp"

#include <mpi.h>

#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const bool smoke = bench::arg_flag(argc, argv, "--bench-smoke");
  const int runs = std::max(1, std::atoi(bench::arg_value(argc, argv, "--bench-runs", smoke ? "1" : "5").c_str()));
  if (size < 2) {
    if (rank == 0)
      bench::Json().str("kind", "error").str("source", "floor").str("figure", "mpi").str("message", "needs 2 ranks").emit();
    MPI_Finalize();
    return 1;
  }
  const int peer = rank == 0 ? 1 : 0;
  const bool active = rank < 2;  // ranks beyond 1 only wait at the barrier

  // Ping-pong.
  const int m = smoke ? 200 : 20000;
  char b = 'x';
  std::vector<double> med, p99, all;
  for (int r = -1; r < runs; ++r) {  // r = -1: warm-up
    std::vector<double> s;
    for (int i = 0; active && i < m; ++i) {
      if (rank == 0) {
        const auto t0 = std::chrono::steady_clock::now();
        MPI_Send(&b, 1, MPI_CHAR, peer, 0, MPI_COMM_WORLD);
        MPI_Recv(&b, 1, MPI_CHAR, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        s.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      } else {
        MPI_Recv(&b, 1, MPI_CHAR, peer, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        MPI_Send(&b, 1, MPI_CHAR, peer, 0, MPI_COMM_WORLD);
      }
    }
    if (rank == 0 && r >= 0) {
      med.push_back(bench::quantile(s, 0.5));
      p99.push_back(bench::quantile(s, 0.99));
      all.insert(all.end(), s.begin(), s.end());
    }
  }

  // Bandwidth: echo of a 64 MiB buffer.
  const std::size_t bytes = smoke ? (std::size_t(4) << 20) : (std::size_t(64) << 20);
  std::vector<char> buf(bytes, 'b');
  std::vector<double> bw;
  for (int r = -1; r < runs; ++r) {
    if (!active) break;
    const double t0 = bench::now_s();
    if (rank == 0) {
      MPI_Send(buf.data(), int(bytes), MPI_CHAR, peer, 1, MPI_COMM_WORLD);
      MPI_Recv(buf.data(), int(bytes), MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      if (r >= 0) bw.push_back(2.0 * double(bytes) / (bench::now_s() - t0) / 1e9);
    } else {
      MPI_Recv(buf.data(), int(bytes), MPI_CHAR, peer, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buf.data(), int(bytes), MPI_CHAR, peer, 1, MPI_COMM_WORLD);
    }
  }
  if (rank == 0) {
    const std::string note = "MPI_Send/MPI_Recv, " + std::to_string(size) + " ranks";
    bench::emit_metric("floor", "mpi_rt_median", "us", med, "1-byte ping-pong, " + note);
    bench::emit_metric("floor", "mpi_rt_p99", "us", p99, "1-byte ping-pong, " + note);
    bench::emit_hist("floor", "mpi_roundtrip", all);
    bench::emit_metric("floor", "mpi_bandwidth", "GB/s", bw,
                       std::to_string(bytes >> 20) + " MiB to rank 1 and back, bytes counted both ways, " + note);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Finalize();
  return 0;
}
