#include "testing/redis_sentinel.h"

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

#include "testing/redis_server.h"
#include "testing/redis_spawn.h"

namespace yard {

using fixture::CheckBinary;
using fixture::InfoField;
using fixture::PollFor;
using fixture::Query;
using fixture::RedisBinary;
using fixture::SpawnAndAwaitPing;
using fixture::StopGracefully;
using fixture::TailOf;

namespace {

// A config file argument in double quotes ('"' and '\\' escaped), so that
// spaces survive.
std::string ConfigQuoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

RedisSentinel::RedisSentinel(std::string binary, std::string dir, uint16_t port,
                             std::string master_name)
    : binary_(std::move(binary)),
      dir_(std::move(dir)),
      port_(port),
      master_name_(std::move(master_name)) {}

Result<std::unique_ptr<RedisSentinel>> RedisSentinel::Create(
    const std::string& master_name, uint16_t primary_port,
    const std::string& auth_pass) {
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
        "\nsentinel parallel-syncs" + m + " 1\n" +
        (auth_pass.empty()
             ? std::string()
             : "sentinel auth-pass" + m + " " + ConfigQuoted(auth_pass) + "\n");
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
  auto r =
      Query(port_, {"SENTINEL", "get-master-addr-by-name", master_name_}, 1000);
  if (!r.ok() || r->type != RedisReply::Type::kArray ||
      r->elements.size() != 2 ||
      r->elements[1].type != RedisReply::Type::kString) {
    return Status::Unavailable("sentinel " + address() +
                               " gave no primary address");
  }
  return static_cast<uint16_t>(std::atoi(r->elements[1].str.c_str()));
}

Status RedisSentinel::AwaitTopology(int replicas, int other_sentinels,
                                    std::chrono::milliseconds timeout) const {
  return PollFor(
      [&](std::string* last) {
        auto r = Query(port_, {"SENTINEL", "MASTER", master_name_}, 500);
        if (!r.ok() || r->type != RedisReply::Type::kArray) return false;
        std::string flags;
        int64_t slaves = -1, others = -1;
        for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
          const std::string& k = r->elements[i].str;
          const std::string& v = r->elements[i + 1].str;
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
