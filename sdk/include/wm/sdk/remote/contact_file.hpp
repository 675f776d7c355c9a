// SPDX-License-Identifier: MIT
// wm/sdk/remote/contact_file.hpp: a contact file, how a master tells the processes that join it
// where it listens and how they prove they belong (endpoints, a key): "name value" lines, written
// atomically with mode 0600 (a reader never sees half a file, other users never the key), waited
// for by a joiner started before its master.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace wm::sdk::remote {

/** The "name value" lines of a contact file, in order; a field with an empty value is left out. */
using ContactFields = std::vector<std::pair<std::string, std::string>>;

/**
 * @brief Writes path atomically: a temporary file of mode 0600 in its directory, synced, renamed
 * into place. comment: lines written first behind "# ". Throws std::runtime_error
 * ("cannot write <what> <path>: <step>: <error>").
 *
 * @code
 * write_contact_file("/job/contact", "nodes join the master that wrote this file",
 *                    {{"tcp", "tcp://h:5555"}, {"key", hex}}, "the contact file");
 * @endcode
 */
void write_contact_file(const std::string& path, const std::string& comment, const ContactFields& fields,
                        const std::string& what);

/** Reads the fields of path (lines of '#' and empty lines skipped); false with why ("does not
 *  exist yet", "cannot be read: <error>") if it cannot. */
bool read_contact_file(const std::string& path, std::map<std::string, std::string>& fields, std::string& why);

/** Calls ready() whenever a file appears or is written in path's directory (inotify) and at least
 *  once a second (file systems that report nothing, NFS), until it returns true (true) or the
 *  deadline passes (false). */
bool wait_for_contact_file(const std::string& path, std::chrono::steady_clock::time_point deadline,
                           const std::function<bool()>& ready);

/** Removes path if its field name still has this value (a later master may have written its own). */
void remove_contact_file(const std::string& path, const std::string& name, const std::string& value);

}  // namespace wm::sdk::remote
