#include "loadtest/redis_server.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <utility>

namespace yard {
namespace {

constexpr char kDefaultBinary[] = "/usr/bin/redis-server";
constexpr std::chrono::seconds kStartTimeout(10);
constexpr std::chrono::seconds kStopTimeout(10);

// True when redis answers PING with PONG within ~500 ms.
bool Pings(uint16_t port) {
  timeval tv{0, 500 * 1000};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c == nullptr) return false;
  bool ok = false;
  if (c->err == 0 && redisSetTimeout(c, tv) == REDIS_OK) {
    auto* reply = static_cast<redisReply*>(redisCommand(c, "PING"));
    ok = reply != nullptr && reply->type == REDIS_REPLY_STATUS &&
         std::string(reply->str, reply->len) == "PONG";
    if (reply != nullptr) freeReplyObject(reply);
  }
  redisFree(c);
  return ok;
}

}  // namespace

Result<uint16_t> PickFreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::IoError(std::string("socket: ") + strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Status error = Status::IoError(std::string("bind: ") + strerror(errno));
    ::close(fd);
    return error;
  }
  ::close(fd);
  return static_cast<uint16_t>(ntohs(addr.sin_port));
}

RedisServer::RedisServer(std::string binary, std::string dir, uint16_t port,
                         Options options)
    : binary_(std::move(binary)),
      dir_(std::move(dir)),
      port_(port),
      options_(options) {}

Result<std::unique_ptr<RedisServer>> RedisServer::Create(Options options) {
  const char* env = std::getenv("YARD_REDIS_SERVER");
  std::string binary = env != nullptr && env[0] != '\0' ? env : kDefaultBinary;
  if (::access(binary.c_str(), X_OK) != 0) {
    return Status::Unavailable(
        "redis-server not found or not executable at " + binary +
        " (install Debian's redis-server package: apt-get install "
        "redis-server); the `redis` tests need a real server");
  }
  Status last;
  // The port is free when picked but may be taken before redis binds it:
  // try a few ports.
  for (int attempt = 0; attempt < 3; ++attempt) {
    char tmpl[] = "/tmp/yard-redis-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      return Status::IoError(std::string("mkdtemp: ") + strerror(errno));
    }
    Result<uint16_t> port = PickFreeLoopbackPort();
    if (!port.ok()) {
      std::filesystem::remove_all(tmpl);
      return port.status();
    }
    std::unique_ptr<RedisServer> server(
        new RedisServer(binary, tmpl, *port, options));
    last = server->Start();
    if (last.ok()) return server;
  }
  return last;
}

RedisServer::~RedisServer() {
  (void)Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string RedisServer::url() const {
  return "redis://127.0.0.1:" + std::to_string(port_);
}

Status RedisServer::Start() {
  if (process_ != nullptr) return Status::OK();
  std::vector<std::string> args = {
      binary_,
      "--port",
      std::to_string(port_),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir_,
      "--appendonly",
      "yes",
      "--appendfsync",
      options_.appendfsync_always ? "always" : "everysec",
      "--save",
      "",
      "--daemonize",
      "no",
      "--logfile",
      dir_ + "/redis.log",
  };
  Result<std::unique_ptr<Process>> p =
      Process::Spawn(std::move(args), dir_ + "/redis.stderr");
  if (!p.ok()) return p.status();
  process_ = std::move(p).value();
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Pings(port_)) return Status::OK();
    if (!process_->Running()) {
      std::optional<ExitInfo> exit = process_->Wait(std::chrono::seconds(1));
      process_.reset();
      return Status::Unavailable("redis-server on port " +
                                 std::to_string(port_) + " exited (" +
                                 (exit ? exit->ToString() : std::string("?")) +
                                 "); log:\n" + LogTail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Kill();
  return Status::DeadlineExceeded(
      "redis-server on port " + std::to_string(port_) +
      " did not answer PING within 10 s; log:\n" + LogTail());
}

Status RedisServer::Stop() {
  if (process_ == nullptr) return Status::OK();
  process_->Signal(SIGTERM);
  std::optional<ExitInfo> exit = process_->Wait(kStopTimeout);
  Status status;
  if (!exit) {
    process_->Kill();
    status = Status::DeadlineExceeded("redis-server ignored SIGTERM for 10 s");
  }
  process_.reset();
  return status;
}

Status RedisServer::Shutdown() {
  if (process_ == nullptr) return Status::OK();
  std::string refused;
  timeval tv{2, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (c == nullptr || c->err != 0) {
    refused = std::string("connect: ") + (c != nullptr ? c->errstr : "ENOMEM");
  } else if (redisSetTimeout(c, tv) == REDIS_OK) {
    // On success redis closes the connection without a reply.
    auto* reply = static_cast<redisReply*>(redisCommand(c, "SHUTDOWN"));
    if (reply != nullptr && reply->type == REDIS_REPLY_ERROR) {
      refused = std::string(reply->str, reply->len);
    }
    if (reply != nullptr) freeReplyObject(reply);
  }
  if (c != nullptr) redisFree(c);
  std::optional<ExitInfo> exit = process_->Wait(kStopTimeout);
  Status status;
  if (!exit) {
    process_->Kill();
    status = Status::DeadlineExceeded(
        "redis-server did not exit within 10 s of SHUTDOWN" +
        (refused.empty() ? std::string() : " (" + refused + ")"));
  } else if (!exit->ExitedWith(0)) {
    status = Status::Internal("redis-server ended with " + exit->ToString() +
                              " after SHUTDOWN; log:\n" + LogTail());
  }
  process_.reset();
  return status;
}

void RedisServer::Kill() {
  if (process_ == nullptr) return;
  process_->Kill();
  process_.reset();
}

std::string RedisServer::LogTail() const {
  std::string log = ReadFileOrEmpty(dir_ + "/redis.log") +
                    ReadFileOrEmpty(dir_ + "/redis.stderr");
  constexpr size_t kMax = 2000;
  return log.size() > kMax ? log.substr(log.size() - kMax) : log;
}

}  // namespace yard
