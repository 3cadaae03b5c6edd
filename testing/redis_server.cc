#include "testing/redis_server.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
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

#include "testing/redis_spawn.h"

namespace yard {

using fixture::CheckBinary;
using fixture::InfoField;
using fixture::kStopTimeout;
using fixture::PollFor;
using fixture::Query;
using fixture::RedisBinary;
using fixture::SpawnAndAwaitPing;
using fixture::StopGracefully;
using fixture::TailOf;

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
                         uint16_t cluster_port, Options options)
    : binary_(std::move(binary)),
      dir_(std::move(dir)),
      port_(port),
      cluster_port_(cluster_port),
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
    // The cluster bus needs a port of its own (the default, port + 10000,
    // may be taken or above 65535).
    Result<uint16_t> bus = options.cluster ? PickFreeLoopbackPort()
                                           : Result<uint16_t>(uint16_t{0});
    if (!port.ok() || !bus.ok()) {
      std::filesystem::remove_all(tmpl);
      return port.ok() ? bus.status() : port.status();
    }
    if (options.cluster && *bus == *port) {  // picked twice: try again
      std::filesystem::remove_all(tmpl);
      last = Status::Unavailable("no two free ports for a cluster node");
      continue;
    }
    std::unique_ptr<RedisServer> server(
        new RedisServer(binary, tmpl, *port, *bus, options));
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

RedisAddress RedisServer::address() const {
  RedisAddress a;
  a.host = "127.0.0.1";
  a.port = port_;
  a.auth = admin_auth();
  return a;
}

Result<RedisReply> RedisServer::Call(std::vector<std::string> args,
                                     int64_t timeout_ms) const {
  return Query(port_, std::move(args), timeout_ms, admin_auth());
}

Status RedisServer::AddAclUser(const std::string& user,
                               const std::string& password,
                               const std::vector<std::string>& rules) const {
  std::vector<std::string> args = {"ACL",   "SETUSER", user,
                                   "reset", "on",      ">" + password};
  args.insert(args.end(), rules.begin(), rules.end());
  auto r = Call(std::move(args));
  return r.ok() ? Status::OK() : r.status();
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
  if (!options_.password.empty()) {
    args.insert(args.end(), {"--requirepass", options_.password, "--masterauth",
                             options_.password});
  }
  if (options_.cluster) {
    args.insert(args.end(),
                {"--cluster-enabled", "yes", "--cluster-config-file",
                 dir_ + "/nodes.conf", "--cluster-node-timeout",
                 std::to_string(options_.cluster_node_timeout_ms),
                 "--cluster-port", std::to_string(cluster_port_)});
  }
  return SpawnAndAwaitPing(
      std::move(args), dir_ + "/redis.stderr", port_, "redis-server",
      [this] { return LogTail(); }, &process_, admin_auth());
}

Status RedisServer::Stop() {
  Resume();
  return StopGracefully(&process_, "redis-server");
}

void RedisServer::Pause() {
  if (process_ != nullptr) process_->Signal(SIGSTOP);
}

void RedisServer::Resume() {
  if (process_ != nullptr) process_->Signal(SIGCONT);
}

bool RedisServer::Authenticate(redisContext* c) const {
  if (options_.password.empty()) return true;
  auto* reply = static_cast<redisReply*>(redisCommand(
      c, "AUTH %b", options_.password.data(), options_.password.size()));
  const bool ok = reply != nullptr && reply->type != REDIS_REPLY_ERROR;
  if (reply != nullptr) freeReplyObject(reply);
  return ok;
}

Status RedisServer::Shutdown() {
  if (process_ == nullptr) return Status::OK();
  Resume();
  std::string refused;
  timeval tv{2, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (c == nullptr || c->err != 0) {
    refused = std::string("connect: ") + (c != nullptr ? c->errstr : "ENOMEM");
  } else if (redisSetTimeout(c, tv) == REDIS_OK && Authenticate(c)) {
    // On success redis closes the connection without a reply, which the
    // shared call path (redis/redis_call.h) can only report as a lost
    // connection: a plain hiredis call tells an error reply from that.
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
  return TailOf(dir_ + "/redis.log", dir_ + "/redis.stderr");
}

Status RedisServer::AwaitReplicaLink(std::chrono::milliseconds timeout) {
  return PollFor(
      [this](std::string* last) {
        auto r = Call({"INFO", "replication"}, 500);
        if (!r.ok() || r->type != RedisReply::Type::kString) return false;
        const std::string& info = r->str;
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
        auto r = Call({"INFO", "replication"}, 500);
        if (!r.ok() || r->type != RedisReply::Type::kString) return false;
        const std::string& info = r->str;
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

}  // namespace yard
