// SPDX-License-Identifier: MIT
// wm/sdk/remote/parting.hpp: how a remote backend's processes part: a last word on connections that
// the peer must read before they close, and a last line when a launcher's signal ends a worker.
#pragma once

#include <string>
#include <vector>

namespace wm::sdk::remote {

/** Writes `what` on each connection (a doorbell), then this side's end of file, and closes each
 *  once its peer closed its end too (at most `seconds` in all): closing with the peer's bytes still
 *  unread would reset the connection, and the peer could lose `what`. */
void say_last(std::vector<int> fds, char what, double seconds);

/** When signal `sig` comes, `line` goes to standard error, then the signal does what it did before
 *  (the handler the process had). Left alone if the process ignores it. A launcher (mpirun, a batch
 *  system) ends a job so: a worker says that this is why it ends. One line for the process. */
void say_on_signal(int sig, const std::string& line);

}  // namespace wm::sdk::remote
