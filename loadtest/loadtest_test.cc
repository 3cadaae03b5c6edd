// The load tester's parts that need no cluster: the ledger's audit, the flag
// checks and the reports. The runs themselves are in
// tests/loadtest_cli_test.cc (real `yard loadtest` processes).
#include "loadtest/loadtest.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "loadtest/ledger.h"
#include "loadtest/local_cluster.h"
#include "loadtest/report.h"

namespace yard {
namespace {

JobOutcome Outcome(JobId id, JobOutcome::Kind kind, std::string output = "") {
  JobOutcome o;
  o.id = id;
  o.kind = kind;
  o.output = std::move(output);
  return o;
}

TEST(LedgerTest, PayloadCarriesTheSequenceNumber) {
  Ledger ledger(7, std::string(64, 'x'), true, true);
  std::string buf;
  Bytes b = ledger.Payload(0x0102030405060708, &buf);
  ASSERT_EQ(b.size(), 64u);
  uint64_t seq = 0;
  std::memcpy(&seq, b.data(), sizeof(seq));
  EXPECT_EQ(seq, 0x0102030405060708u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data()) + 8, 56),
            std::string(56, 'x'));
  EXPECT_EQ(ledger.IdFor(5), (JobId{7, 5}));
}

TEST(LedgerTest, AuditCountsEveryJobByItsFinalState) {
  Ledger ledger(42, std::string(16, 'p'), true, true);
  std::string buf;
  auto echo = [&](uint64_t seq) {
    Bytes b = ledger.Payload(seq, &buf);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  };
  for (uint64_t s = 0; s < 10; ++s) ledger.Reserve(s);
  ledger.Record(Outcome({42, 0}, JobOutcome::Kind::kCompleted, echo(0)), 10);
  ledger.Record(Outcome({42, 1}, JobOutcome::Kind::kCompleted, echo(1)), 20);
  // Job 2's result carries job 3's payload: corrupt.
  ledger.Record(Outcome({42, 2}, JobOutcome::Kind::kCompleted, echo(3)), 5);
  JobOutcome unknown = Outcome({42, 3}, JobOutcome::Kind::kFailed);
  unknown.status = wire::ResultStatus::UnknownTask;
  ledger.Record(unknown, 30);
  ledger.Record(Outcome({42, 4}, JobOutcome::Kind::kRejected), 0);
  ledger.Record(Outcome({42, 5}, JobOutcome::Kind::kTimedOut), 0);
  // A second outcome for job 0 (the first stands), one for an id never
  // issued, one for a sequence number out of range.
  ledger.Record(Outcome({42, 0}, JobOutcome::Kind::kTimedOut), 1);
  ledger.Record(Outcome({41, 6}, JobOutcome::Kind::kCompleted), 1);
  ledger.Record(Outcome({42, Ledger::kMaxJobs}, JobOutcome::Kind::kFailed), 1);

  Ledger::Totals t = ledger.Audit(8);  // jobs 6 and 7: no outcome
  EXPECT_EQ(t.submitted, 8u);
  EXPECT_EQ(t.completed, 2u);  // 0 (its later time-out ignored) and 1
  EXPECT_EQ(t.corrupt, 1u);
  EXPECT_EQ(t.failed, 1u);
  EXPECT_EQ(t.unknown_task, 1u);
  EXPECT_EQ(t.rejected, 1u);
  EXPECT_EQ(t.timed_out, 1u);
  EXPECT_EQ(t.unanswered, 2u);
  EXPECT_EQ(t.repeated, 1u);
  EXPECT_EQ(t.foreign, 2u);

  Ledger::Second sec;
  ledger.TakeSecond(&sec);
  EXPECT_EQ(sec.completed, 3u);  // 0, 1, the corrupt 2
  EXPECT_EQ(sec.failed, 2u);
  EXPECT_EQ(sec.lost, 1u);
  EXPECT_EQ(sec.latency.count(), 4u);  // completed and failed have latency
  EXPECT_EQ(sec.latency.max(), 30u);
  ledger.TakeSecond(&sec);  // nothing since
  EXPECT_EQ(sec.completed + sec.failed + sec.lost, 0u);
  EXPECT_EQ(sec.latency.count(), 0u);
}

TEST(LedgerTest, AGivenPayloadIsSentAsItIs) {
  Ledger ledger(9, "00000005", /*stamp=*/false, /*check_echo=*/true);
  std::string buf;
  Bytes b = ledger.Payload(77, &buf);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data()), b.size()),
            "00000005");
  ledger.Reserve(77);
  ledger.Record(Outcome({9, 77}, JobOutcome::Kind::kCompleted, "00000005"), 1);
  EXPECT_EQ(ledger.Audit(78).completed, 1u);
}

TEST(LedgerTest, NonEchoTasksAreNotCheckedForContent) {
  Ledger ledger(1, "abc", true, false);
  ledger.Reserve(0);
  ledger.Record(Outcome({1, 0}, JobOutcome::Kind::kCompleted, "whatever"), 1);
  EXPECT_EQ(ledger.Audit(1).completed, 1u);
}

TEST(LedgerTest, ChunksGrowAcrossTheBoundary) {
  Ledger ledger(3, "", true, true);
  const uint64_t n = (uint64_t{1} << Ledger::kChunkBits) + 10;
  for (uint64_t s = 0; s < n; ++s) ledger.Reserve(s);
  for (uint64_t s = 0; s < n; s += 2) {
    ledger.Record(Outcome({3, s}, JobOutcome::Kind::kCompleted), 1);
  }
  Ledger::Totals t = ledger.Audit(n);
  EXPECT_EQ(t.completed, n / 2);
  EXPECT_EQ(t.unanswered, n / 2);
  EXPECT_EQ(t.foreign, 0u);
}

LoadtestOptions Valid() {
  LoadtestOptions o;
  o.jobs = 10;
  return o;
}

TEST(ValidateLoadtestTest, RejectsImpossibleShapes) {
  EXPECT_TRUE(ValidateLoadtest(Valid()).ok());
  struct Case {
    const char* want;
    void (*edit)(LoadtestOptions&);
  };
  const Case cases[] = {
      {"--producers", [](LoadtestOptions& o) { o.producers = 0; }},
      {"--rate", [](LoadtestOptions& o) { o.rate = -5; }},
      {"--jobs N or --duration",
       [](LoadtestOptions& o) {
         o.jobs = 0;
         o.duration_s = 0;
       }},
      {"--window", [](LoadtestOptions& o) { o.window = 0; }},
      {"--batch", [](LoadtestOptions& o) { o.batch = 0; }},
      {"--size", [](LoadtestOptions& o) { o.size = -1; }},
      {"payload limit", [](LoadtestOptions& o) { o.size = 5'000'000; }},
      {"--rate: at most", [](LoadtestOptions& o) { o.rate = 1e300; }},
      {"at least 0.1",
       [](LoadtestOptions& o) { o.kill_worker_every_s = 1e-7; }},
      {"--brokers", [](LoadtestOptions& o) { o.brokers = 0; }},
      {"loopback",
       [](LoadtestOptions& o) { o.connect = {"tcp://10.1.2.3:5555"}; }},
      {"drop --connect",
       [](LoadtestOptions& o) {
         o.connect = {"tcp://127.0.0.1:5555"};
         o.kill_worker_every_s = 1;
       }},
      {"--redis local", [](LoadtestOptions& o) { o.restart_redis_at_s = 1; }},
      {"--redis",
       [](LoadtestOptions& o) { o.redis = "redis://10.0.0.1:6379"; }},
      {"no workers",
       [](LoadtestOptions& o) {
         o.workers = 0;
         o.kill_worker_every_s = 1;
       }},
      {"--timeout: shorter",
       [](LoadtestOptions& o) {
         o.duration_s = 10;
         o.timeout_s = 5;
       }},
  };
  for (const Case& c : cases) {
    LoadtestOptions o = Valid();
    c.edit(o);
    Status st = ValidateLoadtest(o);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.want;
    EXPECT_NE(st.message().find(c.want), std::string::npos)
        << c.want << " not in: " << st.message();
    EXPECT_EQ(st.message().find('\n'), std::string::npos) << st.message();
  }
}

TEST(LoopbackTest, EndpointsAndUrls) {
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://localhost:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://[::1]:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("ipc:///tmp/x"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://192.168.1.1:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://127.0.0.1.evil.com:5555"));
  EXPECT_TRUE(IsLoopbackRedisUrl("redis://127.0.0.1:6379/2"));
  EXPECT_TRUE(IsLoopbackRedisUrl("redis://:secret@localhost:6379"));
  EXPECT_FALSE(IsLoopbackRedisUrl("redis://10.0.0.2:6379"));
  EXPECT_FALSE(IsLoopbackRedisUrl("sentinel://127.0.0.1:26379/m"));
}

TEST(ReadyLineTest, ParsesOnlyResolvedLoopbackEndpoints) {
  std::string f, b;
  EXPECT_TRUE(
      ParseReadyLine("yard broker ready frontend=tcp://127.0.0.1:4000 "
                     "backend=tcp://127.0.0.1:4001",
                     &f, &b));
  EXPECT_EQ(f, "tcp://127.0.0.1:4000");
  EXPECT_EQ(b, "tcp://127.0.0.1:4001");
  EXPECT_FALSE(ParseReadyLine(
      "yard broker ready frontend=tcp://127.0.0.1:* backend=tcp://127.0.0.1:1",
      &f, &b));
  EXPECT_FALSE(
      ParseReadyLine("yard broker ready frontend=tcp://127.0.0.1:1", &f, &b));
  EXPECT_FALSE(ParseReadyLine("yard broker starting", &f, &b));
  EXPECT_FALSE(ParseReadyLine("", &f, &b));
}

LoadtestReport SampleReport() {
  LoadtestReport r;
  r.options = Valid();
  r.mode = "memory";
  r.totals.submitted = 10;
  r.totals.completed = 7;
  r.totals.failed = 1;
  r.totals.rejected = 1;
  r.totals.timed_out = 1;
  r.lost = 1;
  r.duplicated = 3;
  for (uint64_t v : {100, 200, 300, 400, 5000, 6000, 7000, 8000}) {
    r.latency.Record(v);
  }
  SeriesPoint p;
  p.t = 1;
  p.span_s = 1;
  p.completed = 7;
  p.jobs_per_s = 8;
  p.p50_us = 400;
  p.p99_us = 8000;
  p.max_us = 8000;
  r.series.push_back(p);
  r.events.push_back({0.5, "kill-worker", "worker 0 <pid 1>", true});
  return r;
}

TEST(ReportTest, JsonHasTheContractKeys) {
  LoadtestReport r = SampleReport();
  nlohmann::json j = ReportJson(r);
  for (const char* k :
       {"config", "totals", "jobs_per_s", "latency_us", "series"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  const auto& t = j["totals"];
  EXPECT_EQ(t["submitted"], 10);
  EXPECT_EQ(t["completed"], 7);
  EXPECT_EQ(t["failed"], 2);  // failed + rejected
  EXPECT_EQ(t["duplicated"], 3);
  EXPECT_EQ(t["lost"], 1);
  for (const char* k : {"p50", "p90", "p99", "p999", "max"}) {
    EXPECT_TRUE(j["latency_us"].contains(k)) << k;
  }
  EXPECT_EQ(j["latency_us"]["max"], 8000);
  EXPECT_EQ(j["latency_us"]["p50"], r.latency.Percentile(0.5));
  ASSERT_EQ(j["series"].size(), 1u);
  EXPECT_EQ(j["series"][0]["latency_us"]["p99"], 8000);
  EXPECT_EQ(j["verdict"], "lost");
  EXPECT_EQ(j["exit_code"], 1);
  EXPECT_EQ(j["config"]["mode"], "memory");
}

TEST(ReportTest, VerdictAndExitCode) {
  LoadtestReport r = SampleReport();
  EXPECT_EQ(Verdict(r), "lost");
  r.lost = 0;
  r.totals.timed_out = 0;
  EXPECT_EQ(Verdict(r), "ok");
  EXPECT_EQ(r.ExitCode(), 0);
  r.problems.push_back("broker 0 exited by itself");
  EXPECT_EQ(Verdict(r), "failed");
  EXPECT_EQ(r.ExitCode(), 1);
  r.interrupted = true;
  EXPECT_EQ(r.ExitCode(), 130);
}

TEST(ReportTest, HtmlIsSelfContainedWithCharts) {
  std::string html = ReportHtml(SampleReport());
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("<path"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("href="), std::string::npos);
  // Event text is escaped.
  EXPECT_NE(html.find("worker 0 &lt;pid 1&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<pid 1>"), std::string::npos);
}

TEST(ReportTest, HtmlSummaryWrapsToThePageWidth) {
  std::string html = ReportHtml(SampleReport());
  EXPECT_NE(html.find("white-space:pre-wrap"), std::string::npos);
  EXPECT_NE(html.find("svg{max-width:100%"), std::string::npos);
}

// The points a run of `seconds` gets, sampled as Run::Sample does.
size_t SeriesPoints(int64_t seconds) {
  size_t points = 0;
  for (int64_t t = 0; t < seconds * 1'000'000; t += SeriesSpanUs(t)) ++points;
  return points;
}

TEST(ReportTest, ShortRunsGetFinePointsLongOnesABoundedNumber) {
  EXPECT_EQ(SeriesSpanUs(0), 100'000);
  EXPECT_GE(SeriesPoints(4), 30u);
  EXPECT_LE(SeriesPoints(60), 200u);
  EXPECT_LE(SeriesPoints(86'400), 600u);
}

TEST(ReportTest, TableNamesTheVerdict) {
  std::string table = ReportTable(SampleReport());
  EXPECT_NE(table.find("verdict: LOST"), std::string::npos) << table;
  EXPECT_NE(table.find("kill-worker"), std::string::npos) << table;
}

}  // namespace
}  // namespace yard
