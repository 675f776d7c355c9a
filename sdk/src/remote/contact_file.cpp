// SPDX-License-Identifier: MIT
// contact_file.cpp: contact files written atomically and waited for (contact_file.hpp).
#include <wm/sdk/remote/contact_file.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace wm::sdk::remote {

void write_contact_file(const std::string& path, const std::string& comment, const ContactFields& fields,
                        const std::string& what) {
  std::ostringstream text;
  std::istringstream lines(comment);
  for (std::string line; std::getline(lines, line);) text << "# " << line << "\n";
  for (const auto& [name, value] : fields)
    if (!value.empty()) text << name << " " << value << "\n";
  const std::string body = text.str(), tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  auto fail = [&](const std::string& step) {
    const std::string err = std::strerror(errno);
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    return std::runtime_error("cannot write " + what + " " + path + ": " + step + ": " + err);
  };
  if (fd < 0) throw fail("open " + tmp);
  if (fchmod(fd, 0600) != 0) throw fail("fchmod");  // whatever the umask
  for (std::size_t done = 0; done < body.size();) {
    const ssize_t w = write(fd, body.data() + done, body.size() - done);
    if (w < 0 && errno != EINTR) throw fail("write");
    done += static_cast<std::size_t>(std::max<ssize_t>(w, 0));
  }
  if (fsync(fd) != 0) throw fail("fsync");
  const int closed = close(fd);
  fd = -1;
  if (closed != 0) throw fail("close");
  if (rename(tmp.c_str(), path.c_str()) != 0) throw fail("rename");
}

bool read_contact_file(const std::string& path, std::map<std::string, std::string>& fields, std::string& why) {
  std::ifstream in(path);
  if (!in) {
    why = errno == ENOENT ? std::string("does not exist yet") : std::string("cannot be read: ") + std::strerror(errno);
    return false;
  }
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto sp = line.find(' ');
    fields[line.substr(0, sp)] = sp == std::string::npos ? "" : line.substr(sp + 1);
  }
  return true;
}

bool wait_for_contact_file(const std::string& path, std::chrono::steady_clock::time_point deadline,
                           const std::function<bool()>& ready) {
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  // The writer renames the file into place: a creation or a move into the directory.
  const int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (in >= 0) inotify_add_watch(in, dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE);
  bool got = false;
  for (;;) {
    using std::chrono::milliseconds;
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{in, POLLIN, 0};
    if (poll(&p, in >= 0 ? 1 : 0, static_cast<int>(std::min<long long>(left.count(), 1000))) > 0) {
      char buf[4096];
      while (read(in, buf, sizeof buf) > 0) {
      }
    }
    if ((got = ready())) break;
  }
  if (in >= 0) close(in);
  return got;
}

void remove_contact_file(const std::string& path, const std::string& name, const std::string& value) {
  std::map<std::string, std::string> fields;
  std::string why;
  if (read_contact_file(path, fields, why) && fields[name] == value) unlink(path.c_str());
}

}  // namespace wm::sdk::remote
