// Readiness for systemd's Type=notify services, without libsystemd: the
// protocol is one datagram of "KEY=VALUE" lines to the unix socket named by
// $NOTIFY_SOCKET (a path, or "@name" in the abstract namespace). Without
// that variable (not started by systemd) everything here does nothing.
#ifndef YARD_TOOLS_SYSTEMD_NOTIFY_H_
#define YARD_TOOLS_SYSTEMD_NOTIFY_H_

#include <atomic>
#include <string_view>
#include <thread>

namespace yard::cli {

// Sends `state` ("READY=1") to $NOTIFY_SOCKET; false when not set or not
// sent.
bool NotifySystemd(std::string_view state);

// Construct once the service can do its job: sends READY=1, then STOPPING=1
// as soon as a stop signal arrives (common/signals.h), which starts the
// drain. Thread-compatible; one per process.
class ServiceNotifier {
 public:
  ServiceNotifier();
  ~ServiceNotifier();
  ServiceNotifier(const ServiceNotifier&) = delete;
  ServiceNotifier& operator=(const ServiceNotifier&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread watcher_;  // only under systemd
};

}  // namespace yard::cli

#endif  // YARD_TOOLS_SYSTEMD_NOTIFY_H_
