#include "loadtest/redis_server.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
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

using ReplyPtr = std::unique_ptr<redisReply, void (*)(void*)>;

// One command to 127.0.0.1:port on a connection of its own, waiting up to
// timeout_ms to connect and as long for the reply. Null when there is none.
ReplyPtr Query(uint16_t port, const std::vector<std::string>& args,
               int64_t timeout_ms) {
  ReplyPtr none(nullptr, freeReplyObject);
  timeval tv{static_cast<time_t>(timeout_ms / 1000),
             static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c == nullptr) return none;
  if (c->err != 0 || redisSetTimeout(c, tv) != REDIS_OK) {
    redisFree(c);
    return none;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  ReplyPtr reply(
      static_cast<redisReply*>(redisCommandArgv(
          c, static_cast<int>(args.size()), argv.data(), lens.data())),
      freeReplyObject);
  redisFree(c);
  return reply;
}

// The value of `field:` in an INFO text ("" when absent).
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

// Polls `check` (which sets *last to what it saw) every 50 ms until it
// holds or `timeout` passes.
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
  const std::string binary = RedisBinary();
  if (Status s = CheckBinary(binary); !s.ok()) return s;
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
      // A replica's full sync starts at once (the default waits 5 s for
      // more replicas to share the transfer).
      "--repl-diskless-sync-delay",
      "0",
  };
  if (options_.replica_of != 0) {
    args.insert(args.end(), {"--replicaof", "127.0.0.1",
                             std::to_string(options_.replica_of)});
  }
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
  // Redis ignores a SIGTERM that comes while it writes its initial AOF
  // (e.g. right after a replica's full sync): send it again until it takes.
  const auto deadline = std::chrono::steady_clock::now() + kStopTimeout;
  std::optional<ExitInfo> exit;
  while (!exit && std::chrono::steady_clock::now() < deadline) {
    process_->Signal(SIGTERM);
    exit = process_->Wait(std::chrono::milliseconds(500));
  }
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

namespace yard {

Status RedisServer::AwaitReplicaLink(std::chrono::milliseconds timeout) {
  return PollFor(
      [this](std::string* last) {
        ReplyPtr r = Query(port_, {"INFO", "replication"}, 500);
        if (!r || r->type != REDIS_REPLY_STRING) return false;
        std::string info(r->str, r->len);
        *last = "role:" + InfoField(info, "role") +
                " master_link_status:" + InfoField(info, "master_link_status");
        return InfoField(info, "role") == "slave" &&
               InfoField(info, "master_link_status") == "up";
      },
      timeout, "replica on port " + std::to_string(port_) + " in sync");
}

Status RedisServer::AwaitReplicas(int replicas,
                                  std::chrono::milliseconds timeout) {
  return PollFor(
      [this, replicas](std::string* last) {
        ReplyPtr r = Query(port_, {"INFO", "replication"}, 500);
        if (!r || r->type != REDIS_REPLY_STRING) return false;
        std::string info(r->str, r->len);
        int online = 0;
        for (int i = 0;; ++i) {
          std::string slave = InfoField(info, "slave" + std::to_string(i));
          if (slave.empty()) break;
          if (slave.find("state=online") != std::string::npos) ++online;
        }
        *last = "role:" + InfoField(info, "role") +
                " online replicas:" + std::to_string(online);
        return InfoField(info, "role") == "master" && online >= replicas;
      },
      timeout,
      std::to_string(replicas) + " replica(s) online at port " +
          std::to_string(port_));
}

// ---------------------------------------------------------------- Sentinel

RedisSentinel::RedisSentinel(std::string binary, std::string dir, uint16_t port,
                             std::string master_name)
    : binary_(std::move(binary)),
      dir_(std::move(dir)),
      port_(port),
      master_name_(std::move(master_name)) {}

Result<std::unique_ptr<RedisSentinel>> RedisSentinel::Create(
    const std::string& master_name, uint16_t primary_port) {
  const std::string binary = RedisBinary();
  if (Status s = CheckBinary(binary); !s.ok()) return s;
  Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    char tmpl[] = "/tmp/yard-sentinel-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      return Status::IoError(std::string("mkdtemp: ") + strerror(errno));
    }
    Result<uint16_t> port = PickFreeLoopbackPort();
    if (!port.ok()) {
      std::filesystem::remove_all(tmpl);
      return port.status();
    }
    std::unique_ptr<RedisSentinel> s(
        new RedisSentinel(binary, tmpl, *port, master_name));
    const std::string m = " " + master_name;
    const std::string config =
        "port " + std::to_string(*port) +
        "\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir " + s->dir_ +
        "\nlogfile " + s->dir_ + "/sentinel.log" +
        "\nsentinel resolve-hostnames no" + "\nsentinel monitor" + m +
        " 127.0.0.1 " + std::to_string(primary_port) + " 2" +
        "\nsentinel down-after-milliseconds" + m + " 1000" +
        "\nsentinel failover-timeout" + m + " 5000" +
        "\nsentinel parallel-syncs" + m + " 1\n";
    if (FILE* f = std::fopen((s->dir_ + "/sentinel.conf").c_str(), "w")) {
      const bool ok =
          std::fwrite(config.data(), 1, config.size(), f) == config.size();
      if (std::fclose(f) != 0 || !ok) {
        return Status::IoError("cannot write " + s->dir_ + "/sentinel.conf");
      }
    } else {
      return Status::IoError("cannot create " + s->dir_ +
                             "/sentinel.conf: " + strerror(errno));
    }
    last = s->Start();
    if (last.ok()) return s;
  }
  return last;
}

RedisSentinel::~RedisSentinel() {
  (void)Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string RedisSentinel::address() const {
  return "127.0.0.1:" + std::to_string(port_);
}

Status RedisSentinel::Start() {
  if (process_ != nullptr) return Status::OK();
  Result<std::unique_ptr<Process>> p =
      Process::Spawn({binary_, dir_ + "/sentinel.conf", "--sentinel"},
                     dir_ + "/sentinel.stderr");
  if (!p.ok()) return p.status();
  process_ = std::move(p).value();
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Pings(port_)) return Status::OK();
    if (!process_->Running()) {
      std::optional<ExitInfo> exit = process_->Wait(std::chrono::seconds(1));
      process_.reset();
      return Status::Unavailable("redis sentinel on port " +
                                 std::to_string(port_) + " exited (" +
                                 (exit ? exit->ToString() : std::string("?")) +
                                 "); log:\n" + LogTail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  process_->Kill();
  process_.reset();
  return Status::DeadlineExceeded(
      "redis sentinel on port " + std::to_string(port_) +
      " did not answer PING within 10 s; log:\n" + LogTail());
}

Status RedisSentinel::Stop() {
  if (process_ == nullptr) return Status::OK();
  process_->Signal(SIGTERM);
  std::optional<ExitInfo> exit = process_->Wait(kStopTimeout);
  Status status;
  if (!exit) {
    process_->Kill();
    status =
        Status::DeadlineExceeded("redis sentinel ignored SIGTERM for 10 s");
  }
  process_.reset();
  return status;
}

Result<uint16_t> RedisSentinel::MasterPort() const {
  ReplyPtr r =
      Query(port_, {"SENTINEL", "get-master-addr-by-name", master_name_}, 1000);
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[1]->type != REDIS_REPLY_STRING) {
    return Status::Unavailable("sentinel " + address() +
                               " gave no primary address");
  }
  return static_cast<uint16_t>(
      std::atoi(std::string(r->element[1]->str, r->element[1]->len).c_str()));
}

Status RedisSentinel::AwaitTopology(int replicas, int other_sentinels,
                                    std::chrono::milliseconds timeout) const {
  return PollFor(
      [&](std::string* last) {
        ReplyPtr r = Query(port_, {"SENTINEL", "MASTER", master_name_}, 500);
        if (!r || r->type != REDIS_REPLY_ARRAY) return false;
        std::string flags;
        int64_t slaves = -1, others = -1;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
          std::string k(r->element[i]->str, r->element[i]->len);
          std::string v(r->element[i + 1]->str, r->element[i + 1]->len);
          if (k == "flags") flags = v;
          if (k == "num-slaves") slaves = std::atoll(v.c_str());
          if (k == "num-other-sentinels") others = std::atoll(v.c_str());
        }
        *last = "flags=" + flags + " num-slaves=" + std::to_string(slaves) +
                " num-other-sentinels=" + std::to_string(others);
        return flags == "master" && slaves >= replicas &&
               others >= other_sentinels;
      },
      timeout, "sentinel " + address() + " topology");
}

std::string RedisSentinel::LogTail() const {
  std::string log = ReadFileOrEmpty(dir_ + "/sentinel.log") +
                    ReadFileOrEmpty(dir_ + "/sentinel.stderr");
  constexpr size_t kMax = 2000;
  return log.size() > kMax ? log.substr(log.size() - kMax) : log;
}

}  // namespace yard
