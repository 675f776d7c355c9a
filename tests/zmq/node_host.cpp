// SPDX-License-Identifier: MIT
// node_host.cpp: a host program for the conformance suite's zmq nodes. It registers the suite's tasks
// (the test kit's test_tasks.cpp) and does what any host program does first: make its work manager.
// Started with WM_WORK_MANAGER=zmq WM_ZMQ_MODE=node, that call serves its master and never returns.
#include <wm/wm.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  auto wm = wm::make_work_manager(&argc, argv);
  std::fprintf(stderr, "node host: started as a %s master, not as a node: nothing to do\n", wm->name().c_str());
  return 2;
}
