// What a run reports (loadtest/run.h): a sample per second, the progress
// display, the registry's brokers, and the audit of every job with the
// problems it found.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <utility>

#include "loadtest/run.h"
#include "redis/redis_target.h"

namespace yard::loadtest_internal {
namespace {

void AddTotals(const Ledger::Totals& t, Ledger::Totals* sum) {
  sum->submitted += t.submitted;
  sum->completed += t.completed;
  sum->failed += t.failed;
  sum->unknown_task += t.unknown_task;
  sum->rejected += t.rejected;
  sum->timed_out += t.timed_out;
  sum->unanswered += t.unanswered;
  sum->corrupt += t.corrupt;
  sum->foreign += t.foreign;
  sum->repeated += t.repeated;
}

}  // namespace

void Run::RecordBrokers() {
  auto target = ParseRedisTarget(cluster_->redis_url());
  if (!target.ok()) return;
  auto client = ConnectRegistry(*target, RedisTimeoutMs());
  if (!client.ok()) return;
  // Let every broker refresh its record (counters) once more.
  std::this_thread::sleep_for(std::chrono::milliseconds(o_.heartbeat_ms + 100));
  auto records = ReadRegistry(**client);
  if (!records.ok()) return;
  for (const BrokerRecord& b : *records) {
    std::map<std::string, std::string> row = {{"id", b.id},
                                              {"frontend", b.frontend}};
    for (const auto& [k, v] : b.counters) row[k] = std::to_string(v);
    report_.brokers.push_back(std::move(row));
  }
}

void Run::Sample(int64_t now, bool final) {
  if (!final &&
      now - last_sample_us_ < SeriesSpanUs(last_sample_us_ - start_us_)) {
    return;
  }
  SeriesPoint p;
  p.t = Since(now);
  p.span_s = (now - last_sample_us_) / 1e6;
  Ledger::Second sec;
  Histogram merged;
  for (auto& lane : lanes_) {
    lane->ledger->TakeSecond(&sec);
    p.completed += sec.completed;
    p.failed += sec.failed;
    p.lost += sec.lost;
    merged.Merge(sec.latency);
  }
  const uint64_t submitted = Submitted();
  p.submitted = submitted - last_sample_submitted_;
  p.in_flight = submitted - std::min(submitted, Answered());
  p.jobs_per_s = p.span_s > 0 ? (p.completed + p.failed) / p.span_s : 0;
  p.p50_us = merged.Percentile(0.50);
  p.p99_us = merged.Percentile(0.99);
  p.max_us = merged.max();
  report_.latency.Merge(merged);
  last_sample_us_ = now;
  last_sample_submitted_ = submitted;
  if (final && p.span_s < 0.001 && p.completed + p.failed + p.lost == 0) {
    return;  // nothing happened since the last point
  }
  report_.series.push_back(p);
}

void Run::Progress(int64_t now) {
  const bool live = o_.progress;
  const int64_t every =
      live ? kLiveProgressUs : static_cast<int64_t>(o_.progress_every_s * 1e6);
  if (every <= 0 || now < next_progress_us_) return;
  next_progress_us_ = now + every;
  const uint64_t answered = Answered();
  const uint64_t submitted = Submitted();
  const double rate = last_progress_us_ && now > last_progress_us_
                          ? (answered - last_progress_answered_) * 1e6 /
                                static_cast<double>(now - last_progress_us_)
                          : 0;
  last_progress_us_ = now;
  last_progress_answered_ = answered;
  uint64_t failed = 0, lost = 0, resent = 0, errors = 0;
  for (const auto& lane : lanes_) {
    const ProducerCounters c = lane->producer->counters();
    failed += c.failed + c.rejected;
    lost += c.timed_out;
    resent += c.resent;
    errors += c.errors;
  }
  std::fprintf(log_,
               "%s[%7.2fs] %" PRIu64 " done  %.0f jobs/s  %" PRIu64
               " in flight  %" PRIu64 " failed  %" PRIu64 " lost  %" PRIu64
               " resent  %" PRIu64 " errors%s",
               live ? "\r\x1b[K" : "", Since(now), answered, rate,
               submitted - std::min(submitted, answered), failed, lost, resent,
               errors, live ? "" : "\n");
  std::fflush(log_);
  progress_drawn_ = live;
}

// Every lane's ledger audited and added up, with the producers' counters;
// what was lost, and the throughput.
void Run::Audit() {
  int64_t last_answer = 0;
  for (auto& lane : lanes_) {
    AddTotals(lane->ledger->Audit(lane->submitted.load()), &report_.totals);
    const ProducerCounters c = lane->producer->counters();
    report_.duplicated += c.duplicates;
    report_.resent += c.resent;
    report_.busy += c.busy;
    last_answer = std::max(last_answer, lane->last_answer_us.load());
  }
  const Ledger::Totals& t = report_.totals;
  report_.lost = t.timed_out + t.unanswered;
  report_.elapsed_s =
      last_answer > start_us_ ? (last_answer - start_us_) / 1e6 : 0;
  report_.jobs_per_s =
      report_.elapsed_s > 0
          ? (t.completed + t.corrupt + t.failed) / report_.elapsed_s
          : 0;
}

void Run::AddProblems() {
  AddAuditProblems();
  if (!report_.interrupted) AddPendingChaosProblems();
}

void Run::AddAuditProblems() {
  const Ledger::Totals& t = report_.totals;
  if (t.corrupt) {
    report_.problems.push_back(std::to_string(t.corrupt) +
                               " echo results did not match their payload");
  }
  if (t.foreign || t.repeated) {
    report_.problems.push_back(
        std::to_string(t.foreign) + " outcomes for unknown ids, " +
        std::to_string(t.repeated) + " second outcomes for one id");
  }
  const uint64_t cut = static_cast<uint64_t>(
      std::count_if(lanes_.begin(), lanes_.end(),
                    [](const auto& l) { return l->cut_short.load(); }));
  if (report_.hit_timeout || cut > 0) {
    report_.problems.push_back(
        "the run hit its time bound (--timeout " +
        std::to_string(static_cast<int64_t>(EffectiveTimeoutS(o_))) +
        " s) before it submitted every job");
  }
  if (t.rejected) {
    report_.problems.push_back(std::to_string(t.rejected) +
                               " jobs refused (too large, or invalid)");
  }
  if (t.unknown_task) {
    report_.problems.push_back(std::to_string(t.unknown_task) +
                               " jobs failed: no worker knows task '" +
                               o_.task + "'");
  }
}

void Run::AddPendingChaosProblems() {
  const std::pair<int64_t, const char*> events[] = {
      {broker_kill_us_, "--kill-broker-at"},
      {broker_add_us_, "--add-broker-at"},
      {redis_restart_us_, "--restart-redis-at"},
      {migrate_at_us_, "--migrate-slot-at"}};
  for (const auto& [pending_us, flag] : events) {
    if (pending_us) {
      report_.problems.push_back(std::string(flag) +
                                 ": the load ended before it");
    }
  }
}

// The cluster's own casualties are a problem too; it stops, and keeps its
// logs when they were asked for. Otherwise its temporary directory goes
// with it, also when the run failed (runs that fail by design, in scripts
// and tests, would leave one each): the tails of the logs are shown then.
void Run::FinishCluster() {
  if (!cluster_) return;
  const std::string dead = cluster_->Casualties();
  if (!dead.empty()) report_.problems.push_back(dead);
  cluster_->Stop();
  if (o_.keep_logs || !o_.logs_dir.empty()) {
    cluster_->KeepLogs();
    report_.logs_dir = cluster_->dir();
  } else if (report_.ExitCode() != 0) {
    std::fprintf(log_,
                 "loadtest: the cluster's logs, removed at exit "
                 "(--keep-logs keeps them):\n%s",
                 cluster_->Describe(600).c_str());
  }
}

}  // namespace yard::loadtest_internal
