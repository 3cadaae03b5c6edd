// LoadtestFixture: runs the real `yard loadtest` (YARD_BIN) in a per-test
// temporary directory and parses its --json report; for the load tester's
// end-to-end tests (integration and redis labels).
#ifndef YARD_TESTS_LOADTEST_FIXTURE_H_
#define YARD_TESTS_LOADTEST_FIXTURE_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "testing/process.h"

namespace yard {

struct LoadtestRun {
  std::optional<ExitInfo> exit;
  std::string out;
  std::string err;
  nlohmann::json report;  // stdout parsed (--json -); null otherwise

  std::string Describe() const {
    return "exit " + (exit ? exit->ToString() : std::string("none")) +
           "\nstdout: " + out.substr(0, 3000) + "\nstderr: " + err;
  }
  int64_t Total(const char* key) const {
    if (!report.is_object() || !report["totals"].contains(key)) return -1;
    return report["totals"][key].get<int64_t>();
  }
  // The pids in the details of the report's `event` events ("... (pid N
  // ...) SIGKILLed ..."), in order.
  std::vector<std::string> KilledPids(const char* event) const {
    std::vector<std::string> pids;
    if (!report.is_object()) return pids;
    static const std::regex kPid(R"(\(pid (\d+)[,)])");
    for (const auto& e : report["events"]) {
      std::smatch m;
      const std::string detail = e.value("detail", "");
      if (e.value("event", "") == event && std::regex_search(detail, m, kPid)) {
        pids.push_back(m[1]);
      }
    }
    return pids;
  }
};

class LoadtestFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "yard_loadtest_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!HasFailure()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    } else {
      std::cerr << "logs kept in " << dir_ << "\n";
    }
  }

  std::unique_ptr<Process> Start(std::vector<std::string> args) {
    args.insert(args.begin(), {YARD_BIN, "loadtest"});
    auto p =
        Process::Spawn(std::move(args),
                       dir_ + "/loadtest-" + std::to_string(n_++) + ".stderr");
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p).value() : nullptr;
  }

  LoadtestRun Finish(Process* p, std::chrono::seconds timeout) {
    LoadtestRun run;
    if (p == nullptr) return run;
    auto out = p->ReadAll(timeout);
    run.exit = p->Wait(std::chrono::seconds(5));
    if (!run.exit) p->Kill();
    run.out = out.value_or("");
    run.err = p->Stderr();
    run.report =
        nlohmann::json::parse(run.out, nullptr, /*allow_exceptions=*/false);
    if (run.report.is_discarded()) run.report = nullptr;
    return run;
  }

  // A run with its report on stdout and its cluster's logs kept in
  // dir_/cluster (see ClusterLog).
  LoadtestRun Run(std::vector<std::string> args, std::chrono::seconds timeout) {
    args.insert(args.end(), {"--json", "-", "--progress-every", "1", "--logs",
                             dir_ + "/cluster"});
    auto p = Start(std::move(args));
    return Finish(p.get(), timeout);
  }

  // The stderr lines of the cluster processes of the last Run whose log
  // files' names start with `prefix` ("broker", "worker").
  std::vector<std::string> ClusterLog(const std::string& prefix) const {
    std::vector<std::string> lines;
    std::error_code ec;
    for (const auto& f :
         std::filesystem::directory_iterator(dir_ + "/cluster", ec)) {
      if (f.path().filename().string().rfind(prefix, 0) != 0) continue;
      std::ifstream in(f.path());
      for (std::string line; std::getline(in, line);) lines.push_back(line);
    }
    return lines;
  }

  std::string dir_;
  int n_ = 0;
};

}  // namespace yard

#endif  // YARD_TESTS_LOADTEST_FIXTURE_H_
