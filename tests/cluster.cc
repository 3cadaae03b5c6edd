#include "tests/cluster.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <utility>
#include <zmq.hpp>

#include "schemas/codec.h"
#include "schemas/frames.h"

namespace yard {
namespace {

constexpr Millis kReadyTimeout{10000};

}  // namespace

const char* YardBinary() { return YARD_BIN; }

int64_t PushRun::Count(const char* key) const {
  if (!report.is_object() || !report.contains(key)) return -1;
  const auto& v = report[key];
  if (!v.is_number()) return -1;
  return v.get<int64_t>();
}

std::string PushRun::Describe() const {
  return "push " + (exit ? exit->ToString() : std::string("did not finish")) +
         ", stdout: " + out;
}

void ExpectPushSucceeded(const PushRun& run, int64_t n) {
  ASSERT_TRUE(run.exit.has_value()) << run.Describe();
  EXPECT_TRUE(run.exit->ExitedWith(0)) << run.Describe();
  ASSERT_TRUE(run.report.is_object())
      << "push --json printed no JSON object: " << run.Describe();
  EXPECT_EQ(run.Count("submitted"), n) << run.Describe();
  EXPECT_EQ(run.Count("completed"), n) << run.Describe();
  EXPECT_EQ(run.Count("failed"), 0) << run.Describe();
  EXPECT_EQ(run.Count("lost"), 0) << run.Describe();
  EXPECT_TRUE(run.report.contains("jobs_per_s")) << run.Describe();
  ASSERT_TRUE(run.report.contains("latency_us") &&
              run.report["latency_us"].is_object())
      << run.Describe();
  const auto& lat = run.report["latency_us"];
  for (const char* k : {"p50", "p99", "p999", "max"}) {
    EXPECT_TRUE(lat.contains(k) && lat[k].is_number())
        << k << ": " << run.Describe();
  }
  if (lat.contains("p50") && lat.contains("max") && lat["p50"].is_number() &&
      lat["max"].is_number()) {
    EXPECT_LE(lat["p50"].get<double>(), lat["max"].get<double>())
        << run.Describe();
    EXPECT_GT(lat["max"].get<double>(), 0) << run.Describe();
  }
}

int64_t ResidentKb(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

bool PollUntil(const std::function<bool()>& done, Millis bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(Millis(20));
  }
  return true;
}

nlohmann::json BrokerStats(const std::string& frontend, Millis timeout) {
  static zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  ConfigureSocket(socket, Limits(), 0);
  Writer writer;
  if (!Connect(socket, frontend).ok() ||
      !SendDealer(socket, writer.EncodeStatsRequest()).ok()) {
    return nullptr;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<Millis>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return nullptr;
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, left);
    DealerMessage m;
    while (RecvDealer(socket, &m)) {
      Decoded d = Decode(m.bytes(), Limits());
      if (!d.ok() || d.kind() != wire::Body::Stats) continue;
      return nlohmann::json::parse(
          AsString(d.envelope->body_as_Stats()->json()), nullptr,
          /*allow_exceptions=*/false);
    }
  }
}

nlohmann::json WorkerNamed(const nlohmann::json& workers,
                           const std::string& name) {
  if (!workers.is_array()) return nullptr;
  for (const auto& w : workers) {
    if (w.value("name", "") == name) return w;
  }
  return nullptr;
}

Cluster::Cluster() {
  std::string tmpl = ::testing::TempDir() + "yard_cluster_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << " failed";
    dir_ = ::testing::TempDir();
  } else {
    dir_ = tmpl;
  }
}

Cluster::~Cluster() {
  bool failed = ::testing::Test::HasFailure();
  if (failed) {
    std::cerr << "---- cluster state (stderr files in " << dir_ << ") ----\n"
              << Describe() << "---- end of cluster state ----\n";
  }
  // Kill in reverse start order (push, workers, then the broker).
  while (!children_.empty()) {
    children_.back().second->Kill();
    children_.pop_back();
  }
  const char* keep = std::getenv("YARD_TEST_KEEP_LOGS");
  if (!failed && keep != nullptr && *keep != '\0' && *keep != '0') {
    std::cerr << "(YARD_TEST_KEEP_LOGS) stderr files kept in " << dir_ << "\n";
  } else if (!failed && dir_ != ::testing::TempDir()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

Process* Cluster::Start(const std::string& name,
                        std::vector<std::string> args) {
  args.insert(args.begin(), YardBinary());
  std::string err =
      dir_ + "/" + name + "-" + std::to_string(next_id_++) + ".stderr";
  auto p = Process::Spawn(std::move(args), err);
  if (!p.ok()) {
    ADD_FAILURE() << "cannot start " << name << ": " << p.status().ToString();
    return nullptr;
  }
  children_.emplace_back(name, std::move(p).value());
  return children_.back().second.get();
}

std::optional<BrokerHandle> Cluster::StartBroker(
    std::vector<std::string> extra) {
  std::vector<std::string> args = {"broker", "--frontend", "tcp://127.0.0.1:*",
                                   "--backend", "tcp://127.0.0.1:*"};
  args.insert(args.end(), extra.begin(), extra.end());
  Process* p = Start("broker", std::move(args));
  if (p == nullptr) return std::nullopt;
  auto line = p->ReadLine(kReadyTimeout);
  BrokerHandle h;
  h.process = p;
  if (!line) {
    auto exit = p->Wait(Millis(0));
    ADD_FAILURE() << "no ready line from the broker within "
                  << kReadyTimeout.count() << " ms ("
                  << (exit ? exit->ToString() : "still running") << ")";
    return std::nullopt;
  }
  if (!ParseReadyLine(*line, &h.frontend, &h.backend)) {
    ADD_FAILURE() << "bad ready line from the broker: '" << *line << "'";
    return std::nullopt;
  }
  return h;
}

Process* Cluster::StartWorker(const std::string& backends, int concurrency,
                              std::vector<std::string> extra) {
  std::vector<std::string> args = {"worker", "--connect", backends,
                                   "--concurrency",
                                   std::to_string(concurrency)};
  args.insert(args.end(), extra.begin(), extra.end());
  return Start("worker", std::move(args));
}

Process* Cluster::StartPush(std::vector<std::string> args) {
  args.insert(args.begin(), "push");
  args.push_back("--json");
  return Start("push", std::move(args));
}

PushRun Cluster::FinishPush(Process* push, Millis timeout) {
  PushRun run;
  if (push == nullptr) return run;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto out = push->ReadAll(timeout);
  auto left = std::chrono::duration_cast<Millis>(
      deadline - std::chrono::steady_clock::now());
  run.exit = push->Wait(std::max(left, Millis(100)));
  if (!run.exit) {
    push->Kill();
    run.out = "(killed after " + std::to_string(timeout.count()) + " ms) ";
  }
  if (out) run.out += *out;
  // One JSON object; tolerate surrounding whitespace.
  run.report =
      nlohmann::json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  if (run.report.is_discarded()) run.report = nullptr;
  return run;
}

PushRun Cluster::RunPush(std::vector<std::string> args, Millis timeout) {
  return FinishPush(StartPush(std::move(args)), timeout);
}

std::string Cluster::Describe(size_t tail_bytes) {
  std::ostringstream s;
  for (auto& [name, p] : children_) {
    auto exit = p->Wait(Millis(0));
    s << "== " << name << " pid " << p->pid() << ": "
      << (exit ? exit->ToString() : "running") << "\n   " << p->CommandLine()
      << "\n   stderr (" << p->stderr_path() << "):\n"
      << p->StderrTail(tail_bytes) << "\n";
  }
  return s.str();
}

}  // namespace yard
