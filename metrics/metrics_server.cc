#include "metrics/metrics_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <thread>

namespace yard {
namespace {

// Runs each connection on the listening thread: one at a time, so a flood
// waits in the kernel's backlog instead of piling up threads or queued
// sockets (httplib's default pool queues without bound).
class InlineQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

constexpr int kIoTimeoutSec = 2;

}  // namespace

Status ParseHostPort(const std::string& host_port, std::string* host,
                     int* port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 ||
      colon + 1 == host_port.size()) {
    return Status::InvalidArgument("expected HOST:PORT, got '" + host_port +
                                   "'");
  }
  std::string h = host_port.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  }
  const std::string p = host_port.substr(colon + 1);
  int value = -1;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
  if (ec != std::errc() || end != p.data() + p.size() || value < 0 ||
      value > 65535) {
    return Status::InvalidArgument("bad port in '" + host_port + "'");
  }
  *host = std::move(h);
  *port = value;
  return Status::OK();
}

std::string JoinHostPort(const std::string& host, int port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

int ServeInBackground(httplib::Server& server, const std::string& host,
                      int port, std::thread* thread) {
  const int bound = port == 0 ? server.bind_to_any_port(host)
                    : server.bind_to_port(host, port) ? port
                                                      : -1;
  if (bound <= 0) return -1;
  *thread = std::thread([&server] {
    if (!server.listen_after_bind()) spdlog::warn("HTTP listener stopped");
  });
  // stop() does nothing to a server not yet running: wait until it is.
  for (int i = 0; i < 2000 && !server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return bound;
}

class MetricsServer::Impl {
 public:
  explicit Impl(MetricsEndpoints e) : endpoints_(std::move(e)) {
    server_.new_task_queue = [] { return new InlineQueue; };
    server_.set_keep_alive_max_count(1);
    server_.set_read_timeout(kIoTimeoutSec, 0);
    server_.set_write_timeout(kIoTimeoutSec, 0);
    server_.set_payload_max_length(0);
    server_.Get("/metrics",
                [this](const httplib::Request&, httplib::Response& res) {
                  res.set_content(endpoints_.metrics(),
                                  "text/plain; version=0.0.4; charset=utf-8");
                });
    server_.Get("/healthz",
                [](const httplib::Request&, httplib::Response& res) {
                  res.set_content("ok\n", "text/plain");
                });
    server_.Get("/readyz",
                [this](const httplib::Request&, httplib::Response& res) {
                  std::string why = endpoints_.not_ready();
                  if (why.empty()) {
                    res.set_content("ready\n", "text/plain");
                  } else {
                    res.status = 503;
                    res.set_content(why + "\n", "text/plain");
                  }
                });
  }
  ~Impl() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }

  // The bound port, or -1.
  int Serve(const std::string& host, int port) {
    return ServeInBackground(server_, host, port, &thread_);
  }

 private:
  MetricsEndpoints endpoints_;
  httplib::Server server_;
  std::thread thread_;
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& host_port, MetricsEndpoints endpoints) {
  std::string host;
  int port = 0;
  if (Status s = ParseHostPort(host_port, &host, &port); !s.ok()) return s;
  auto impl = std::make_unique<Impl>(std::move(endpoints));
  const int bound = impl->Serve(host, port);
  if (bound <= 0) {
    return Status::IoError("cannot listen on " + host_port);
  }
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(std::move(impl), JoinHostPort(host, bound)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}

MetricsServer::~MetricsServer() = default;

}  // namespace yard
