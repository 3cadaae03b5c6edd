#include "loadtest/local_cluster.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "redis/redis_client.h"

namespace yard {
namespace {

using Millis = std::chrono::milliseconds;
constexpr Millis kReadyTimeout{15000};
constexpr Millis kStopGrace{5000};
// A restarted broker may find its port still held for a moment.
constexpr int kBindAttempts = 20;
constexpr Millis kBindRetry{250};

// "tcp://127.0.0.1:<port>" with a numeric, non-zero port.
bool IsResolvedLoopback(const std::string& ep) {
  static const std::string kPrefix = "tcp://127.0.0.1:";
  if (ep.rfind(kPrefix, 0) != 0 || ep.size() == kPrefix.size()) return false;
  std::string port = ep.substr(kPrefix.size());
  if (port.size() > 5) return false;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
  }
  return std::stoi(port) > 0;
}

bool IsLoopbackHost(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "[::1]" ||
         host == "::1";
}

// Waits for every process in `ps` to exit, all within `grace`, then
// SIGKILLs the ones left.
void WaitAll(const std::vector<Process*>& ps, Millis grace) {
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (Process* p : ps) {
    auto left = std::chrono::duration_cast<Millis>(
        deadline - std::chrono::steady_clock::now());
    if (!p->Wait(std::max(left, Millis(0)))) p->Kill();
  }
}

}  // namespace

bool ParseReadyLine(const std::string& line, std::string* frontend,
                    std::string* backend) {
  std::istringstream in(line);
  std::vector<std::string> words;
  std::string w;
  while (in >> w && words.size() < 6) words.push_back(w);
  if (words.size() != 5 || words[0] != "yard" || words[1] != "broker" ||
      words[2] != "ready") {
    return false;
  }
  if (words[3].rfind("frontend=", 0) != 0 ||
      words[4].rfind("backend=", 0) != 0) {
    return false;
  }
  *frontend = words[3].substr(9);
  *backend = words[4].substr(8);
  return IsResolvedLoopback(*frontend) && IsResolvedLoopback(*backend) &&
         *frontend != *backend;
}

bool IsLoopbackEndpoint(const std::string& ep) {
  if (ep.rfind("ipc://", 0) == 0 || ep.rfind("inproc://", 0) == 0) return true;
  if (ep.rfind("tcp://", 0) != 0) return false;
  std::string rest = ep.substr(6);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return false;
  return IsLoopbackHost(rest.substr(0, colon));
}

bool IsLoopbackRedisUrl(const std::string& url) {
  if (url.rfind("redis://", 0) != 0) return false;
  std::string rest = url.substr(8);
  rest = rest.substr(0, rest.find('/'));
  if (size_t at = rest.rfind('@'); at != std::string::npos) {
    rest = rest.substr(at + 1);
  }
  size_t colon = rest.rfind(':');
  return IsLoopbackHost(colon == std::string::npos ? rest
                                                   : rest.substr(0, colon));
}

Result<std::string> SelfExecutable() {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return Status::IoError("/proc/self/exe: " + ec.message());
  return p.string();
}

LocalCluster::LocalCluster(LocalClusterOptions options)
    : options_(std::move(options)) {}

Result<std::unique_ptr<LocalCluster>> LocalCluster::Start(
    LocalClusterOptions options) {
  std::unique_ptr<LocalCluster> c(new LocalCluster(std::move(options)));
  const LocalClusterOptions& o = c->options_;
  if (o.brokers < 1) return Status::InvalidArgument("need at least 1 broker");
  if (o.workers < 0 || o.concurrency < 1) {
    return Status::InvalidArgument("bad worker count or concurrency");
  }
  if (o.dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl =
        std::string(tmp && *tmp ? tmp : "/tmp") + "/yard-loadtest-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return Status::IoError("mkdtemp " + tmpl + " failed");
    }
    c->dir_ = tmpl;
    c->own_dir_ = true;
  } else {
    std::error_code ec;
    std::filesystem::create_directories(o.dir, ec);
    if (ec) return Status::IoError(o.dir + ": " + ec.message());
    c->dir_ = o.dir;
  }
  if (o.curve) {
    if (Status s = c->MakeCurveKeys(); !s.ok()) return s;
  }

  if (o.redis_cluster > 0) {
    if (!o.redis.empty()) {
      return Status::InvalidArgument("a Redis Cluster or `redis`, not both");
    }
    auto cluster = RedisCluster::Create(o.redis_cluster);
    if (!cluster.ok()) {
      return Status::Unavailable("cannot start a local Redis Cluster: " +
                                 cluster.status().message());
    }
    c->redis_cluster_ = std::move(cluster).value();
    c->redis_url_ = c->redis_cluster_->url();
    c->child_redis_url_ = c->redis_url_;
  } else if (o.redis == "local") {
    RedisServer::Options ro;
    ro.appendfsync_always = o.redis_fsync_always;
    auto server = RedisServer::Create(ro);
    if (!server.ok()) {
      return Status::Unavailable("cannot start a local redis-server: " +
                                 server.status().message());
    }
    c->redis_ = std::move(server).value();
    c->redis_url_ = c->redis_->url();
    c->child_redis_url_ = c->redis_url_;
  } else {
    c->child_redis_url_ = o.redis;
    c->redis_url_ =
        o.redis_with_password.empty() ? o.redis : o.redis_with_password;
  }

  c->brokers_.resize(static_cast<size_t>(o.brokers));
  for (size_t i = 0; i < c->brokers_.size(); ++i) {
    if (Status st = c->StartBroker(i); !st.ok()) return st;
  }
  c->workers_.resize(static_cast<size_t>(o.workers));
  for (size_t i = 0; i < c->workers_.size(); ++i) {
    if (Status st = c->StartWorker(i); !st.ok()) return st;
  }
  return c;
}

LocalCluster::~LocalCluster() {
  Stop();
  if (own_dir_) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void LocalCluster::KeepLogs() {
  own_dir_ = false;
  // A RedisServer's log goes with its own directory: copy it here.
  auto keep = [this](const RedisServer& server, const std::string& name) {
    std::error_code ec;
    std::filesystem::copy_file(
        server.dir() + "/redis.log", dir_ + "/" + name,
        std::filesystem::copy_options::overwrite_existing, ec);
  };
  if (redis_) keep(*redis_, "redis.log");
  if (redis_cluster_) {
    for (size_t i = 0; i < redis_cluster_->size(); ++i) {
      keep(redis_cluster_->node(i), "redis-node-" + std::to_string(i) + ".log");
    }
  }
}

void LocalCluster::Stop() {
  // Workers drain (finish what they run), then brokers, then Redis.
  std::vector<Process*> running;
  for (Worker& w : workers_) {
    if (w.process && w.process->Signal(SIGTERM)) {
      running.push_back(w.process.get());
    }
  }
  WaitAll(running, kStopGrace);
  running.clear();
  for (Broker& b : brokers_) {
    if (b.process && b.process->Signal(SIGTERM)) {
      running.push_back(b.process.get());
    }
  }
  WaitAll(running, kStopGrace);
  if (redis_) (void)redis_->Stop();
  if (redis_cluster_) {
    for (size_t i = 0; i < redis_cluster_->size(); ++i) {
      (void)redis_cluster_->node(i).Stop();
    }
  }
}

std::vector<std::string> LocalCluster::frontends() const {
  std::vector<std::string> out;
  for (const Broker& b : brokers_) out.push_back(b.frontend);
  return out;
}

std::string LocalCluster::BackendList() const {
  std::string out;
  for (const Broker& b : brokers_) {
    if (!out.empty()) out += ',';
    out += b.backend;
  }
  return out;
}

Result<std::unique_ptr<Process>> LocalCluster::Spawn(
    const std::string& name, std::vector<std::string> args) {
  args.insert(args.begin(), options_.yard_binary);
  std::string err =
      dir_ + "/" + name + "-" + std::to_string(spawned_++) + ".stderr";
  return Process::Spawn(std::move(args), err);
}

Status LocalCluster::MakeCurveKeys() {
  const std::string keys = dir_ + "/keys";
  std::error_code ec;
  std::filesystem::create_directories(keys, ec);
  if (ec) return Status::IoError(keys + ": " + ec.message());
  std::map<std::string, CurveKeyPair> pairs;
  for (const char* name : {"broker", "producer", "worker", "admin"}) {
    Result<CurveKeyPair> pair = GenerateKeyPair();
    if (!pair.ok()) return pair.status();
    const std::string path = keys + "/" + name;
    if (Status s = WriteKeyPair(path, *pair, true); !s.ok()) return s;
    pairs[name] = *pair;
  }
  curve_broker_args_ = {"--curve-secret",  keys + "/broker.secret",
                        "--producer-keys", keys + "/producer.public",
                        "--worker-keys",   keys + "/worker.public",
                        "--admin-keys",    keys + "/admin.public"};
  curve_worker_args_ = {"--curve-secret", keys + "/worker.secret",
                        "--broker-key", keys + "/broker.public"};
  const std::string& broker = pairs["broker"].public_key;
  curve_producer_ = {pairs["producer"].public_key, pairs["producer"].secret_key,
                     broker, nullptr};
  curve_admin_ = {pairs["admin"].public_key, pairs["admin"].secret_key, broker,
                  nullptr};
  return Status::OK();
}

Status LocalCluster::StartBroker(size_t i) {
  Broker& b = brokers_[i];
  const bool again = !b.frontend.empty();
  Status last;
  for (int attempt = 0; attempt < (again ? kBindAttempts : 1); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(kBindRetry);
    std::vector<std::string> args = {
        "broker",
        "--frontend",
        again ? b.frontend : "tcp://127.0.0.1:*",
        "--backend",
        again ? b.backend : "tcp://127.0.0.1:*",
        "--heartbeat-ms",
        std::to_string(options_.heartbeat_ms),
    };
    if (!redis_url_.empty()) {
      for (std::string& a : RedisArgs("--redis")) args.push_back(std::move(a));
    }
    // Its workers are all here: a job of a task none runs (a typo) is a
    // mistake to report in seconds, not after the broker's minute.
    if (std::find(options_.broker_args.begin(), options_.broker_args.end(),
                  "--unroutable-timeout-ms") == options_.broker_args.end()) {
      args.insert(args.end(), {"--unroutable-timeout-ms", "2000"});
    }
    args.insert(args.end(), options_.broker_args.begin(),
                options_.broker_args.end());
    args.insert(args.end(), curve_broker_args_.begin(),
                curve_broker_args_.end());
    auto p = Spawn("broker" + std::to_string(i), std::move(args));
    if (!p.ok()) return p.status();
    std::unique_ptr<Process> proc = std::move(p).value();
    std::optional<std::string> line = proc->ReadLine(kReadyTimeout);
    std::string frontend, backend;
    if (line && ParseReadyLine(*line, &frontend, &backend)) {
      b.process = std::move(proc);
      b.frontend = frontend;
      b.backend = backend;
      ++b.starts;
      return Status::OK();
    }
    std::optional<ExitInfo> exit = proc->Wait(Millis(1000));
    if (!exit) proc->Kill();
    last = Status::Unavailable("broker " + std::to_string(i) +
                               " did not get ready (" +
                               (line   ? "bad ready line '" + *line + "'"
                                : exit ? exit->ToString()
                                       : std::string("no ready line")) +
                               "): " + proc->StderrTail(600));
    dead_.push_back(std::move(proc));
  }
  return last;
}

std::vector<std::string> LocalCluster::RedisArgs(const char* flag) const {
  // The children keep this process's command deadline (--redis-timeout-ms).
  std::vector<std::string> args = {flag, child_redis_url_, "--redis-timeout-ms",
                                   std::to_string(RedisTimeoutMs())};
  if (!options_.redis_password_file.empty() &&
      child_redis_url_ == options_.redis) {
    args.insert(args.end(),
                {"--redis-password-file", options_.redis_password_file});
  }
  return args;
}

Status LocalCluster::StartWorker(size_t i) {
  std::vector<std::string> args = {"worker"};
  if (options_.discover) {
    for (std::string& a : RedisArgs("--discover")) args.push_back(std::move(a));
  } else {
    args.insert(args.end(), {"--connect", BackendList()});
  }
  args.insert(args.end(), {
                              "--concurrency",
                              std::to_string(options_.concurrency),
                              "--heartbeat-ms",
                              std::to_string(options_.heartbeat_ms),
                          });
  args.insert(args.end(), options_.worker_args.begin(),
              options_.worker_args.end());
  args.insert(args.end(), curve_worker_args_.begin(), curve_worker_args_.end());
  auto p = Spawn("worker" + std::to_string(i), std::move(args));
  if (!p.ok()) return p.status();
  workers_[i].process = std::move(p).value();
  ++workers_[i].starts;
  return Status::OK();
}

Result<std::string> LocalCluster::KillWorker() {
  if (workers_.empty()) return Status::InvalidArgument("no workers");
  const size_t i = next_victim_++ % workers_.size();
  Worker& w = workers_[i];
  const pid_t old = w.process ? w.process->pid() : 0;
  if (w.process) {
    w.process->Kill();
    dead_.push_back(std::move(w.process));
  }
  if (Status st = StartWorker(i); !st.ok()) return st;
  return "worker " + std::to_string(i) + " (pid " + std::to_string(old) +
         ") SIGKILLed; replacement pid " + std::to_string(w.process->pid());
}

Result<std::string> LocalCluster::KillBroker(size_t i) {
  if (i >= brokers_.size()) return Status::InvalidArgument("no such broker");
  Broker& b = brokers_[i];
  if (!b.process) return Status::InvalidArgument("broker is not running");
  const pid_t old = b.process->pid();
  b.process->Kill();
  dead_.push_back(std::move(b.process));
  return "broker " + std::to_string(i) + " (pid " + std::to_string(old) + ", " +
         b.frontend + ") SIGKILLed";
}

Result<std::string> LocalCluster::RestartBroker(size_t i) {
  if (i >= brokers_.size()) return Status::InvalidArgument("no such broker");
  if (brokers_[i].process) return std::string("broker already running");
  if (Status st = StartBroker(i); !st.ok()) return st;
  return "broker " + std::to_string(i) + " restarted (pid " +
         std::to_string(brokers_[i].process->pid()) + ", same ports)";
}

Result<std::string> LocalCluster::AddBroker() {
  brokers_.emplace_back();
  const size_t i = brokers_.size() - 1;
  if (Status st = StartBroker(i); !st.ok()) {
    brokers_.pop_back();
    return st;
  }
  return "broker " + std::to_string(i) + " added (pid " +
         std::to_string(brokers_[i].process->pid()) + ", " +
         brokers_[i].frontend + ")";
}

Result<std::string> LocalCluster::RestartRedis() {
  if (!redis_) {
    return Status::InvalidArgument("no local redis-server to restart");
  }
  redis_->Kill();
  const auto t0 = std::chrono::steady_clock::now();
  if (Status st = redis_->Start(); !st.ok()) return st;
  const auto ms =
      std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0)
          .count();
  return "redis-server on port " + std::to_string(redis_->port()) +
         " SIGKILLed and restarted from its AOF (answering after " +
         std::to_string(ms) + " ms)";
}

std::string LocalCluster::Casualties(size_t tail_bytes) {
  std::ostringstream s;
  auto check = [&](const std::string& what, Process* p) {
    if (!p || p->Running()) return;
    std::optional<ExitInfo> exit = p->Wait(Millis(0));
    s << what << " exited by itself (" << (exit ? exit->ToString() : "?")
      << "): " << p->StderrTail(tail_bytes) << "\n";
  };
  for (size_t i = 0; i < brokers_.size(); ++i) {
    check("broker " + std::to_string(i), brokers_[i].process.get());
  }
  for (size_t i = 0; i < workers_.size(); ++i) {
    check("worker " + std::to_string(i), workers_[i].process.get());
  }
  return s.str();
}

std::string LocalCluster::Describe(size_t tail_bytes) {
  std::ostringstream s;
  auto one = [&](Process* p) {
    if (!p) return;
    std::optional<ExitInfo> exit = p->Wait(Millis(0));
    s << "  " << p->CommandLine() << "\n    "
      << (exit ? exit->ToString() : std::string("running"))
      << ", stderr: " << p->stderr_path() << "\n";
    std::string tail = p->StderrTail(tail_bytes);
    if (!tail.empty()) s << tail << (tail.back() == '\n' ? "" : "\n");
  };
  for (Broker& b : brokers_) one(b.process.get());
  for (Worker& w : workers_) one(w.process.get());
  if (redis_)
    s << "  redis: " << redis_->url() << ", log: " << redis_->dir()
      << "/redis.log\n";
  if (redis_cluster_) {
    for (size_t i = 0; i < redis_cluster_->size(); ++i) {
      RedisServer& node = redis_cluster_->node(i);
      s << "  redis cluster node " << i << ": " << node.url()
        << ", log: " << node.dir() << "/redis.log\n";
    }
  }
  return s.str();
}

}  // namespace yard
