#include "loadtest/redis_server.h"

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

namespace yard {
namespace {

constexpr char kDefaultBinary[] = "/usr/bin/redis-server";
constexpr std::chrono::seconds kStartTimeout(10);
constexpr std::chrono::seconds kStopTimeout(10);

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

// True when redis answers PING with PONG within ~500 ms.
bool Pings(uint16_t port) {
  ReplyPtr reply = Query(port, {"PING"}, 500);
  return reply && reply->type == REDIS_REPLY_STATUS &&
         std::string(reply->str, reply->len) == "PONG";
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

// Spawns a server (redis-server or sentinel) and waits up to kStartTimeout
// until it answers PING on `port`. `what` names it in errors; `log_tail`
// reads its logs for them.
Status SpawnAndAwaitPing(std::vector<std::string> args,
                         const std::string& stderr_path, uint16_t port,
                         const std::string& what,
                         const std::function<std::string()>& log_tail,
                         std::unique_ptr<Process>* process) {
  Result<std::unique_ptr<Process>> p =
      Process::Spawn(std::move(args), stderr_path);
  if (!p.ok()) return p.status();
  *process = std::move(p).value();
  const std::string name = what + " on port " + std::to_string(port);
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Pings(port)) return Status::OK();
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

// SIGTERM, again every 500 ms (Redis ignores one that comes while it writes
// its initial AOF, e.g. right after a replica's full sync), SIGKILL after
// kStopTimeout.
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

// The last 2,000 bytes of a server's log and stderr, for error messages.
std::string TailOf(const std::string& log, const std::string& err) {
  std::string text = ReadFileOrEmpty(log) + ReadFileOrEmpty(err);
  constexpr size_t kMax = 2000;
  return text.size() > kMax ? text.substr(text.size() - kMax) : text;
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
  if (options_.cluster) {
    args.insert(args.end(),
                {"--cluster-enabled", "yes", "--cluster-config-file",
                 dir_ + "/nodes.conf", "--cluster-node-timeout",
                 std::to_string(options_.cluster_node_timeout_ms),
                 "--cluster-port", std::to_string(cluster_port_)});
  }
  return SpawnAndAwaitPing(
      std::move(args), dir_ + "/redis.stderr", port_, "redis-server",
      [this] { return LogTail(); }, &process_);
}

Status RedisServer::Stop() { return StopGracefully(&process_, "redis-server"); }

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
  return TailOf(dir_ + "/redis.log", dir_ + "/redis.stderr");
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
  return SpawnAndAwaitPing(
      {binary_, dir_ + "/sentinel.conf", "--sentinel"},
      dir_ + "/sentinel.stderr", port_, "redis sentinel",
      [this] { return LogTail(); }, &process_);
}

Status RedisSentinel::Stop() {
  return StopGracefully(&process_, "redis sentinel");
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
  return TailOf(dir_ + "/sentinel.log", dir_ + "/sentinel.stderr");
}

}  // namespace yard

// ---------------------------------------------------------------- Cluster

namespace yard {
namespace {

constexpr int kSlots = 16384;
constexpr std::chrono::seconds kClusterReadyTimeout(20);
constexpr std::chrono::seconds kSlotSettleTimeout(10);
constexpr int kMigratePage = 100;
constexpr int64_t kCommandTimeoutMs = 10000;  // MIGRATE waits up to 5 s

std::string JoinArgs(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) {
    if (!out.empty()) out.push_back(' ');
    out.append(a.size() > 40 ? a.substr(0, 40) + "..." : a);
  }
  return out;
}

// One command to node `port`; an error reply or none is a Status naming
// the node and the command.
Result<ReplyPtr> Run(uint16_t port, const std::vector<std::string>& args) {
  ReplyPtr r = Query(port, args, kCommandTimeoutMs);
  const std::string where =
      "127.0.0.1:" + std::to_string(port) + " " + JoinArgs(args) + ": ";
  if (!r) return Status::Unavailable(where + "no reply");
  if (r->type == REDIS_REPLY_ERROR) {
    return Status::Internal(where + std::string(r->str, r->len));
  }
  return r;
}

// A node's CLUSTER SLOTS as "first-last=<primary id>" per range, in slot
// order ("" when it does not answer).
std::string SlotSignature(uint16_t port) {
  ReplyPtr r = Query(port, {"CLUSTER", "SLOTS"}, 1000);
  if (!r || r->type != REDIS_REPLY_ARRAY) return "";
  std::vector<std::pair<long long, std::string>> ranges;
  for (size_t i = 0; i < r->elements; ++i) {
    const redisReply* range = r->element[i];
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3) return "";
    const redisReply* node = range->element[2];
    if (node->type != REDIS_REPLY_ARRAY || node->elements < 3) return "";
    ranges.emplace_back(
        range->element[0]->integer,
        std::to_string(range->element[0]->integer) + "-" +
            std::to_string(range->element[1]->integer) + "=" +
            std::string(node->element[2]->str, node->element[2]->len));
  }
  std::sort(ranges.begin(), ranges.end());
  std::string out;
  for (const auto& [first, text] : ranges) out.append(text + " ");
  return out;
}

// The id of the primary that `slots` (a CLUSTER SLOTS reply) names for
// `slot` ("" when none does).
std::string SlotOwnerId(const redisReply& slots, uint16_t slot) {
  if (slots.type != REDIS_REPLY_ARRAY) return "";
  for (size_t i = 0; i < slots.elements; ++i) {
    const redisReply* range = slots.element[i];
    if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
        range->element[2]->type != REDIS_REPLY_ARRAY ||
        range->element[2]->elements < 3) {
      continue;
    }
    if (slot < range->element[0]->integer ||
        slot > range->element[1]->integer) {
      continue;
    }
    const redisReply* id = range->element[2]->element[2];
    return std::string(id->str, id->len);
  }
  return "";
}

}  // namespace

Result<std::unique_ptr<RedisCluster>> RedisCluster::Create(
    int primaries, int replicas_per_primary) {
  if (primaries < 1) return Status::InvalidArgument("a cluster needs a node");
  if (replicas_per_primary < 0) {
    return Status::InvalidArgument("a negative replica count");
  }
  std::unique_ptr<RedisCluster> c(new RedisCluster());
  c->primaries_ = static_cast<size_t>(primaries);
  c->replicas_per_primary_ = replicas_per_primary;
  RedisServer::Options options;
  options.cluster = true;
  // With replicas: a short node timeout, so a failover takes seconds.
  if (replicas_per_primary > 0) options.cluster_node_timeout_ms = 1000;
  for (int i = 0; i < primaries * (1 + replicas_per_primary); ++i) {
    auto node = RedisServer::Create(options);
    if (!node.ok()) return node.status();
    auto id = Run((*node)->port(), {"CLUSTER", "MYID"});
    if (!id.ok()) return id.status();
    c->ids_.emplace_back((*id)->str, (*id)->len);
    c->nodes_.push_back(std::move(node).value());
  }
  if (Status s = c->Join(); !s.ok()) {
    return Status(s.code(), s.message() + "\n" + c->LogTails());
  }
  if (Status s = c->AttachReplicas(); !s.ok()) {
    return Status(s.code(), s.message() + "\n" + c->LogTails());
  }
  return c;
}

RedisCluster::~RedisCluster() = default;

Status RedisCluster::Join() {
  const size_t n = primaries_;  // the replicas hold no slots
  for (size_t i = 0; i < n; ++i) {
    const int first = static_cast<int>(i * kSlots / n);
    const int last = static_cast<int>((i + 1) * kSlots / n) - 1;
    auto r =
        Run(nodes_[i]->port(), {"CLUSTER", "ADDSLOTSRANGE",
                                std::to_string(first), std::to_string(last)});
    if (!r.ok()) return r.status();
  }
  for (size_t i = 1; i < nodes_.size(); ++i) {
    auto r =
        Run(nodes_[0]->port(),
            {"CLUSTER", "MEET", "127.0.0.1", std::to_string(nodes_[i]->port()),
             std::to_string(nodes_[i]->cluster_port())});
    if (!r.ok()) return r.status();
  }
  return AwaitConsistent(kClusterReadyTimeout);
}

Status RedisCluster::AttachReplicas() {
  if (replicas_per_primary_ == 0) return Status::OK();
  // A node learns the others by gossip after the MEETs: CLUSTER REPLICATE
  // says "Unknown node" until the replica has heard of its primary.
  for (size_t p = 0; p < primaries_; ++p) {
    for (int r = 0; r < replicas_per_primary_; ++r) {
      const size_t i = replica(p, r);
      Status s = PollFor(
          [&](std::string* last) {
            ReplyPtr reply = Query(nodes_[i]->port(),
                                   {"CLUSTER", "REPLICATE", ids_[p]}, 1000);
            if (!reply) {
              *last = "no reply";
              return false;
            }
            if (reply->type == REDIS_REPLY_ERROR) {
              *last = std::string(reply->str, reply->len);
              return false;
            }
            return true;
          },
          kClusterReadyTimeout,
          "node " + std::to_string(i) + " CLUSTER REPLICATE node " +
              std::to_string(p));
      if (!s.ok()) return s;
    }
  }
  for (size_t p = 0; p < primaries_; ++p) {
    for (int r = 0; r < replicas_per_primary_; ++r) {
      Status s = nodes_[replica(p, r)]->AwaitReplicaLink(kClusterReadyTimeout);
      if (!s.ok()) return s;
    }
    Status s =
        nodes_[p]->AwaitReplicas(replicas_per_primary_, kClusterReadyTimeout);
    if (!s.ok()) return s;
  }
  // Every node must know each replica's primary: a primary votes for a
  // replica's failover only if it sees it as a replica of the failed node.
  Status known = PollFor(
      [this](std::string* last) {
        for (size_t n = 0; n < nodes_.size(); ++n) {
          ReplyPtr reply = Query(nodes_[n]->port(), {"CLUSTER", "NODES"}, 500);
          if (!reply || reply->type != REDIS_REPLY_STRING) {
            *last = "node " + std::to_string(n) + ": no CLUSTER NODES";
            return false;
          }
          const std::string text(reply->str, reply->len);
          for (size_t p = 0; p < primaries_; ++p) {
            for (int r = 0; r < replicas_per_primary_; ++r) {
              const size_t i = replica(p, r);
              // "<id> <addr> <flags> <primary id> ...", one line per node.
              size_t at = text.find(ids_[i] + " ");
              if (at != 0 && at != std::string::npos && text[at - 1] != '\n') {
                at = std::string::npos;
              }
              const size_t end = at == std::string::npos ? std::string::npos
                                                         : text.find('\n', at);
              const std::string line =
                  at == std::string::npos ? "" : text.substr(at, end - at);
              if (line.find("slave") == std::string::npos ||
                  line.find(" " + ids_[p] + " ") == std::string::npos) {
                *last = "node " + std::to_string(n) + " on node " +
                        std::to_string(i) + ": '" + line + "'";
                return false;
              }
            }
          }
        }
        return true;
      },
      kClusterReadyTimeout, "every node knowing the replicas");
  if (!known.ok()) return known;
  return AwaitConsistent(kClusterReadyTimeout);
}

size_t RedisCluster::FirstRunning() const {
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->running()) return i;
  }
  return 0;
}

std::string RedisCluster::url() const {
  std::string out = "cluster://";
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (i) out.push_back(',');
    out.append("127.0.0.1:" + std::to_string(nodes_[i]->port()));
  }
  return out;
}

Result<size_t> RedisCluster::Owner(uint16_t slot) const {
  auto r = Run(nodes_[FirstRunning()]->port(), {"CLUSTER", "SLOTS"});
  if (!r.ok()) return r.status();
  const std::string id = SlotOwnerId(**r, slot);
  for (size_t n = 0; !id.empty() && n < ids_.size(); ++n) {
    if (ids_[n] == id) return n;
  }
  return Status::NotFound("no node serves slot " + std::to_string(slot));
}

Status RedisCluster::AwaitConsistent(std::chrono::milliseconds timeout) const {
  return PollFor(
      [this](std::string* last) {
        std::string first;
        bool have_first = false;
        for (size_t i = 0; i < nodes_.size(); ++i) {
          if (!nodes_[i]->running()) continue;
          const std::string who = "node " + std::to_string(i) + ": ";
          ReplyPtr info = Query(nodes_[i]->port(), {"CLUSTER", "INFO"}, 500);
          std::string state = info && info->type == REDIS_REPLY_STRING
                                  ? InfoField(std::string(info->str, info->len),
                                              "cluster_state")
                                  : "no answer";
          if (state != "ok") {
            *last = who + "cluster_state:" + state;
            return false;
          }
          std::string mine = SlotSignature(nodes_[i]->port());
          if (!have_first) {
            first = mine;
            have_first = true;
          }
          if (mine.empty() || mine != first) {
            *last = who + "slots " + mine + "; first live node: " + first;
            return false;
          }
        }
        return true;
      },
      timeout, "a consistent cluster");
}

Status RedisCluster::AwaitOwner(uint16_t slot, size_t node,
                                std::chrono::milliseconds timeout) const {
  if (node >= nodes_.size()) return Status::InvalidArgument("no such node");
  return PollFor(
      [&](std::string* last) {
        for (size_t i = 0; i < nodes_.size(); ++i) {
          if (!nodes_[i]->running()) continue;
          ReplyPtr r = Query(nodes_[i]->port(), {"CLUSTER", "SLOTS"}, 500);
          if (!r || r->type != REDIS_REPLY_ARRAY) {
            *last = "node " + std::to_string(i) + ": no CLUSTER SLOTS";
            return false;
          }
          const std::string owner = SlotOwnerId(*r, slot);
          if (owner != ids_[node]) {
            *last = "node " + std::to_string(i) + " says " +
                    (owner.empty() ? "none" : owner);
            return false;
          }
        }
        return true;
      },
      timeout,
      "node " + std::to_string(node) + " owning slot " + std::to_string(slot));
}

Status RedisCluster::BeginMigration(uint16_t slot, size_t to) {
  if (migration_) {
    return Status::InvalidArgument("slot " + std::to_string(migration_->slot) +
                                   " is still being migrated");
  }
  if (to >= nodes_.size()) return Status::InvalidArgument("no such node");
  if (replicas_per_primary() > 0) {
    // FinishMigration's CLUSTER SETSLOT NODE goes to every node, and Redis
    // refuses SETSLOT on a replica.
    return Status::InvalidArgument(
        "slot migration needs a cluster without replicas");
  }
  auto from = Owner(slot);
  if (!from.ok()) return from.status();
  if (*from == to) {
    return Status::InvalidArgument("slot " + std::to_string(slot) +
                                   " is already on node " + std::to_string(to));
  }
  const std::string s = std::to_string(slot);
  auto r = Run(nodes_[to]->port(),
               {"CLUSTER", "SETSLOT", s, "IMPORTING", ids_[*from]});
  if (!r.ok()) return r.status();
  r = Run(nodes_[*from]->port(),
          {"CLUSTER", "SETSLOT", s, "MIGRATING", ids_[to]});
  if (!r.ok()) return r.status();
  migration_ = Migration{slot, *from, to};
  return Status::OK();
}

Result<int> RedisCluster::MoveKeys(int max) {
  if (!migration_) return Status::InvalidArgument("no migration begun");
  const Migration m = *migration_;
  const uint16_t source = nodes_[m.from]->port();
  int moved = 0;
  while (moved < max) {
    const int page = std::min(kMigratePage, max - moved);
    auto keys = Run(source, {"CLUSTER", "GETKEYSINSLOT", std::to_string(m.slot),
                             std::to_string(page)});
    if (!keys.ok()) return keys.status();
    if ((*keys)->elements == 0) break;
    std::vector<std::string> args = {
        "MIGRATE", "127.0.0.1", std::to_string(nodes_[m.to]->port()), "", "0",
        "5000",    "KEYS"};
    for (size_t i = 0; i < (*keys)->elements; ++i) {
      args.emplace_back((*keys)->element[i]->str, (*keys)->element[i]->len);
    }
    auto r = Run(source, args);
    if (!r.ok()) return r.status();
    moved += static_cast<int>((*keys)->elements);
  }
  return moved;
}

Status RedisCluster::FinishMigration() {
  auto rest = MoveKeys(INT_MAX);
  if (!rest.ok()) return rest.status();
  const Migration m = *migration_;
  const std::vector<std::string> args = {
      "CLUSTER", "SETSLOT", std::to_string(m.slot), "NODE", ids_[m.to]};
  // The target first (it bumps its config epoch), then the source (which
  // stops answering ASK), then everyone else.
  std::vector<size_t> order = {m.to, m.from};
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (i != m.to && i != m.from) order.push_back(i);
  }
  for (size_t i : order) {
    auto r = Run(nodes_[i]->port(), args);
    if (!r.ok()) return r.status();
  }
  migration_.reset();
  return AwaitConsistent(kSlotSettleTimeout);
}

Status RedisCluster::MigrateSlot(uint16_t slot, size_t to) {
  if (Status s = BeginMigration(slot, to); !s.ok()) return s;
  return FinishMigration();
}

std::string RedisCluster::LogTails() const {
  std::string out;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    out += "--- node " + std::to_string(i) +
           " (127.0.0.1:" + std::to_string(nodes_[i]->port()) + "):\n" +
           nodes_[i]->LogTail();
  }
  return out;
}

}  // namespace yard
