// The run behind ExecuteLoadtest (loadtest/loadtest.h), private to the
// loadtest/ sources: one Lane per producer, and the Run that starts the
// cluster, drives the lanes, fires the chaos schedule and audits the jobs.
//
//   loadtest/run.cc         setting up, submitting, the main loop (Go)
//   loadtest/run_chaos.cc   the chaos schedule and its events
//   loadtest/run_report.cc  samples, progress, the audit and its problems
#ifndef YARD_LOADTEST_RUN_H_
#define YARD_LOADTEST_RUN_H_

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/producer.h"
#include "common/done_counter.h"
#include "common/status.h"
#include "loadtest/ledger.h"
#include "loadtest/loadtest.h"
#include "loadtest/local_cluster.h"
#include "registry/registry.h"

namespace yard::loadtest_internal {

// How often the live progress line (a terminal) is drawn.
inline constexpr int64_t kLiveProgressUs = 200'000;

std::string QueueName(const LoadtestOptions& o);

// The queue's shard count as its brokers agreed on it ({yard}:shards:Q; no
// key: 1, since a broker stores every count above 1 before it gets ready).
Result<int> ReadQueueShards(const std::string& url, const std::string& queue);

// One producer: its Producer, ledger, submitting thread and counters.
struct Lane {
  // Declared before the producer, whose destructor may still call back.
  std::unique_ptr<Ledger> ledger;
  DoneCounter done;
  std::atomic<uint64_t> submitted{0};
  std::atomic<int64_t> last_answer_us{0};
  std::atomic<bool> finished{false};   // the submitting loop ended
  uint64_t quota = 0;                  // UINT64_MAX: until the duration ends
  double rate = 0;                     // jobs/s for this lane
  std::atomic<bool> cut_short{false};  // stopped below quota at the bound
  std::unique_ptr<Producer> producer;
  // After the producer: it calls the producer, so it goes first.
  std::unique_ptr<Discovery> discovery;
  std::thread thread;
};

class Run {
 public:
  Run(const LoadtestOptions& o, std::FILE* log) : o_(o), log_(log) {
    report_.options = o;
    // A cluster it did not start: its mode is not known here.
    report_.mode = !o.connect.empty()                        ? "external"
                   : o.redis.empty() && o.redis_cluster == 0 ? "memory"
                                                             : "durable";
  }
  ~Run() {
    stop_.store(true);
    for (auto& lane : lanes_) {
      if (lane->producer) lane->producer->Close();
      if (lane->thread.joinable()) lane->thread.join();
    }
  }

  Result<LoadtestReport> Go();

 private:
  // The steps of Go, in order.
  Status Prepare();
  void Schedule();
  void StartLanes();
  void MainLoop();
  void StopLoad();
  void Audit();
  void AddProblems();
  void FinishCluster();

  Status StartCluster();
  Status MakeProducers();
  Status WaitForBrokers();
  void SubmitLoop(Lane& lane);
  void OnOutcome(Lane& lane, const JobOutcome& out);
  // Open loop: when job `seq` of the lane is due (start + seq / rate).
  int64_t IntendedUs(const Lane& lane, uint64_t seq) const {
    return start_us_ +
           static_cast<int64_t>(static_cast<double>(seq) * 1e6 / lane.rate);
  }
  void Sample(int64_t now, bool final);
  // The registry's brokers and their counters, for the report.
  void RecordBrokers();
  void Chaos(int64_t now, bool loading);
  // --migrate-slot-at, in steps: Begin at the time, then one Step per tick
  // until no key is left, then the hand-over; Finish does all that is left
  // at once (the run is ending).
  void BeginMigration(int64_t now);
  void StepMigration();
  void FinishMigration();
  // The problems of a run whose audit found corrupt, foreign or repeated
  // outcomes, refused jobs or an unknown task, or that hit its time bound.
  void AddAuditProblems();
  // The one-off chaos events still pending when the load ended.
  void AddPendingChaosProblems();
  // Records an event at `now` (in time order) and logs it.
  LoadEvent& Event(int64_t now, const char* what, Result<std::string> r);
  void Progress(int64_t now);
  uint64_t Submitted() const;
  uint64_t Answered() const;
  double Since(int64_t now) const { return (now - start_us_) / 1e6; }

  const LoadtestOptions& o_;
  std::FILE* log_;
  LoadtestReport report_;
  std::unique_ptr<LocalCluster> cluster_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::atomic<bool> stop_{false};
  std::string payload_;
  int64_t start_us_ = 0;
  int64_t submit_end_us_ = 0;  // duration mode: submitting stops here
  int64_t deadline_us_ = 0;    // the hard bound
  // Chaos state.
  int64_t next_worker_kill_us_ = 0;
  int64_t broker_kill_us_ = 0, broker_restart_us_ = 0, redis_restart_us_ = 0;
  int64_t broker_add_us_ = 0;
  int64_t migrate_at_us_ = 0;
  // The slot migration under way.
  struct Migration {
    int64_t began_us = 0;
    uint16_t slot = 0;
    size_t from = 0, to = 0;
    int shards = 0;
    std::string what;  // the slot, its shard and the nodes
    int moved = 0;
    int steps = 0;
  };
  std::optional<Migration> migration_;
  // Sampling.
  int64_t last_sample_us_ = 0;
  uint64_t last_sample_submitted_ = 0;
  int64_t next_progress_us_ = 0;
  int64_t last_progress_us_ = 0;
  uint64_t last_progress_answered_ = 0;
  bool progress_drawn_ = false;
};

}  // namespace yard::loadtest_internal

#endif  // YARD_LOADTEST_RUN_H_
