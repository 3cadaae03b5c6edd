#include "testing/redis_spawn.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <utility>

namespace yard::fixture {
namespace {

constexpr char kDefaultBinary[] = "/usr/bin/redis-server";

}  // namespace

Result<RedisReply> Query(uint16_t port, std::vector<std::string> args,
                         int64_t timeout_ms, const RedisCredentials& auth) {
  RedisAddress address;
  address.host = "127.0.0.1";
  address.port = port;
  address.auth = auth;
  return RedisCallOnce(address, std::move(args), timeout_ms);
}

bool Pings(uint16_t port, const RedisCredentials& auth) {
  auto reply = Query(port, {"PING"}, 500, auth);
  return reply.ok() && reply->type == RedisReply::Type::kStatus &&
         reply->str == "PONG";
}

std::string InfoField(const std::string& info, const std::string& field) {
  const std::string key = field + ":";
  size_t at = 0;
  while ((at = info.find(key, at)) != std::string::npos) {
    if (at == 0 || info[at - 1] == '\n') {
      size_t end = info.find_first_of("\r\n", at);
      return info.substr(at + key.size(), end == std::string::npos
                                              ? std::string::npos
                                              : end - at - key.size());
    }
    at += key.size();
  }
  return "";
}

Status PollFor(const std::function<bool(std::string*)>& check,
               std::chrono::milliseconds timeout, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  while (!check(&last)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::DeadlineExceeded(what + " not within " +
                                      std::to_string(timeout.count()) +
                                      " ms (last seen: " + last + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status::OK();
}

std::string RedisBinary() {
  const char* env = std::getenv("YARD_REDIS_SERVER");
  return env != nullptr && env[0] != '\0' ? env : kDefaultBinary;
}

Status CheckBinary(const std::string& binary) {
  if (::access(binary.c_str(), X_OK) != 0) {
    return Status::Unavailable(
        "redis-server not found or not executable at " + binary +
        " (install Debian's redis-server package: apt-get install "
        "redis-server); the `redis` tests need a real server");
  }
  return Status::OK();
}

Status SpawnAndAwaitPing(std::vector<std::string> args,
                         const std::string& stderr_path, uint16_t port,
                         const std::string& what,
                         const std::function<std::string()>& log_tail,
                         std::unique_ptr<Process>* process,
                         const RedisCredentials& auth) {
  Result<std::unique_ptr<Process>> p =
      Process::Spawn(std::move(args), stderr_path);
  if (!p.ok()) return p.status();
  *process = std::move(p).value();
  const std::string name = what + " on port " + std::to_string(port);
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Pings(port, auth)) return Status::OK();
    if (!(*process)->Running()) {
      std::optional<ExitInfo> exit = (*process)->Wait(std::chrono::seconds(1));
      process->reset();
      return Status::Unavailable(name + " exited (" +
                                 (exit ? exit->ToString() : std::string("?")) +
                                 "); log:\n" + log_tail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  (*process)->Kill();
  process->reset();
  return Status::DeadlineExceeded(
      name + " did not answer PING within 10 s; log:\n" + log_tail());
}

Status StopGracefully(std::unique_ptr<Process>* process,
                      const std::string& what) {
  if (*process == nullptr) return Status::OK();
  const auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
  std::optional<ExitInfo> exit;
  while (!exit && std::chrono::steady_clock::now() < deadline) {
    (*process)->Signal(SIGTERM);
    exit = (*process)->Wait(std::chrono::milliseconds(500));
  }
  Status status;
  if (!exit) {
    (*process)->Kill();
    status = Status::DeadlineExceeded(what + " ignored SIGTERM for 10 s");
  }
  process->reset();
  return status;
}

std::string TailOf(const std::string& log, const std::string& err) {
  std::string text = ReadFileOrEmpty(log) + ReadFileOrEmpty(err);
  constexpr size_t kMax = 2000;
  return text.size() > kMax ? text.substr(text.size() - kMax) : text;
}

}  // namespace yard::fixture
