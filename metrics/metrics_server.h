// MetricsServer: the small HTTP listener of a broker or worker
// (`--metrics HOST:PORT`), on its own thread, off the event loop:
//
//   GET /metrics  Prometheus text format (version 0.0.4)
//   GET /healthz  200 "ok" while the process runs
//   GET /readyz   200 "ready" when it can do its job; 503 and a one-line
//                 reason otherwise
//
// Built for hostile peers on the network it listens on: GET routes only,
// one connection served at a time and closed after one request (no
// keep-alive), 2 s to read a request and 2 s to write an answer, request
// bodies of 0 bytes, request lines and headers bounded by cpp-httplib (8 KiB
// each). Connections beyond the one being served wait in the kernel's listen
// backlog, so a flood costs neither threads nor memory (docs/adr/0017).
//
// Thread-safety: the callbacks run on the server's thread; they must only
// read what their owner publishes for other threads.
#ifndef YARD_METRICS_METRICS_SERVER_H_
#define YARD_METRICS_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace yard {

struct MetricsEndpoints {
  std::function<std::string()> metrics;  // the /metrics body
  // Empty when ready; otherwise why not (one line).
  std::function<std::string()> not_ready;
};

class MetricsServer {
 public:
  // Binds HOST:PORT (PORT 0: any free port) and starts serving.
  // InvalidArgument for a malformed address; IoError when it cannot bind.
  static Result<std::unique_ptr<MetricsServer>> Start(
      const std::string& host_port, MetricsEndpoints endpoints);
  // Stops listening and joins the thread.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // HOST:PORT as bound (the port resolved).
  const std::string& address() const { return address_; }

 private:
  class Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl, std::string address);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

// Splits HOST:PORT ([V6]:PORT too). InvalidArgument when malformed.
Status ParseHostPort(const std::string& host_port, std::string* host,
                     int* port);
// The reverse: HOST:PORT, an IPv6 host in brackets.
std::string JoinHostPort(const std::string& host, int port);

// Binds `server` to host:port (port 0: any free port) and serves it on a new
// thread (*thread), returning once it runs, so that a later stop() cannot
// miss it. The bound port, or -1 when it cannot bind.
int ServeInBackground(httplib::Server& server, const std::string& host,
                      int port, std::thread* thread);

}  // namespace yard

#endif  // YARD_METRICS_METRICS_SERVER_H_
