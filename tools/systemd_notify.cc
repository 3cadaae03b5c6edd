#include "tools/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/signals.h"

namespace yard::cli {

bool NotifySystemd(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || (path[0] != '/' && path[0] != '@')) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof(addr.sun_path)) return false;
  std::memcpy(addr.sun_path, path, len);
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const auto addr_len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  const ssize_t sent =
      ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&addr), addr_len);
  ::close(fd);
  return sent == static_cast<ssize_t>(state.size());
}

ServiceNotifier::ServiceNotifier() {
  if (!NotifySystemd("READY=1")) return;
  // The stop flag is checked first: a drain shorter than one sleep still
  // says STOPPING=1 before the service exits.
  watcher_ = std::thread([this] {
    for (;;) {
      if (StopRequested()) {
        NotifySystemd("STOPPING=1");
        return;
      }
      if (done_.load()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
}

ServiceNotifier::~ServiceNotifier() {
  done_.store(true);
  if (watcher_.joinable()) watcher_.join();
}

}  // namespace yard::cli
