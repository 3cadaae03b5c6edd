// Ledger: the audit of one load-test producer's jobs.
//
// Every job a producer submits gets id {tag, seq}: the producer's random tag
// and a dense sequence number from 0. The ledger keeps one state byte per
// sequence number (in chunks allocated as the run grows), so that each
// outcome is checked against what was submitted: an outcome for an id that
// was never submitted, or a second outcome for one id, is an audit error,
// and a submitted job with no outcome at the end is lost. An echo job's
// output must equal its payload, which carries the job's sequence number,
// so a result delivered to the wrong job is caught as corrupt.
//
// Latency goes into a histogram of the current second; the sampler thread
// takes it once a second (TakeSecond) and merges it across producers, so the
// run's histogram is the merge of its seconds.
//
//   Ledger ledger(tag, payload_template, /*stamp=*/true, /*check_echo=*/true);
//   ledger.Reserve(seq);                       // submitting thread
//   spec.id = ledger.IdFor(seq); spec.payload = ledger.Payload(seq, &buf);
//   ledger.Record(outcome, latency_us);        // producer's I/O thread
//   Ledger::Second s = ledger.TakeSecond();    // sampler thread
//   Ledger::Totals t = ledger.Audit(submitted);  // after Producer::Close()
//
// Thread-safety: Reserve from one submitting thread, Record from one I/O
// thread, TakeSecond from one sampler thread, concurrently; Audit only after
// the I/O thread is joined.
#ifndef YARD_LOADTEST_LEDGER_H_
#define YARD_LOADTEST_LEDGER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "client/producer.h"
#include "common/histogram.h"
#include "common/job_id.h"

namespace yard {

class Ledger {
 public:
  static constexpr int kChunkBits = 16;
  static constexpr uint64_t kMaxJobs = uint64_t{1} << 30;  // per producer

  // `payload`: the bytes every job carries. stamp: its first 8 bytes (when
  // it has that many) are replaced by the job's sequence number (a payload
  // the user gave is sent as it is). check_echo: a completed job's output
  // must equal its payload.
  Ledger(uint64_t tag, std::string payload, bool stamp, bool check_echo);
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  JobId IdFor(uint64_t seq) const { return JobId{tag_, seq}; }
  // Job seq's payload, written into *buf (which must outlive the submit).
  Bytes Payload(uint64_t seq, std::string* buf) const;
  size_t payload_size() const { return payload_.size(); }

  // Makes room for job seq. REQUIRES: seq < kMaxJobs, called in order.
  void Reserve(uint64_t seq);
  // One outcome, `latency_us` measured by the caller. The first outcome for
  // a job is its final state; a later one only counts as repeated.
  void Record(const JobOutcome& o, int64_t latency_us);

  struct Second {
    uint64_t completed = 0;
    uint64_t failed = 0;  // failed + rejected
    uint64_t lost = 0;    // timed out
    Histogram latency;    // completed and failed jobs
  };
  // What was recorded since the last call.
  void TakeSecond(Second* out);

  struct Totals {
    uint64_t submitted = 0;
    uint64_t completed = 0;
    uint64_t failed = 0;        // a non-Ok result (handler error, expired, ...)
    uint64_t unknown_task = 0;  // ... of which: no worker knows the task
    uint64_t rejected = 0;      // refused for good by the producer or broker
    uint64_t timed_out = 0;     // no result within the job's timeout
    uint64_t unanswered = 0;    // no outcome at all (must be 0 after Close)
    uint64_t corrupt = 0;       // completed, but the output is not the payload
    uint64_t foreign = 0;       // outcomes for ids this ledger never issued
    uint64_t repeated = 0;      // second outcomes for one id
  };
  // Counts every job 0..submitted-1 by its final state.
  Totals Audit(uint64_t submitted) const;

 private:
  enum State : uint8_t {
    kPending = 0,
    kCompleted,
    kFailed,
    kRejected,
    kTimedOut,
    kCorrupt
  };
  static constexpr uint64_t kChunk = uint64_t{1} << kChunkBits;
  static constexpr size_t kChunks = kMaxJobs >> kChunkBits;

  std::atomic<uint8_t>* Slot(uint64_t seq) const;
  bool EchoMatches(const JobOutcome& o) const;

  const uint64_t tag_;
  const std::string payload_;
  const bool stamp_;
  const bool check_echo_;
  std::array<std::atomic<std::atomic<uint8_t>*>, kChunks> chunks_{};
  std::array<std::unique_ptr<std::atomic<uint8_t>[]>, kChunks> owned_;

  std::atomic<uint64_t> foreign_{0}, repeated_{0}, unknown_task_{0};

  std::mutex mu_;  // Record vs TakeSecond
  Second second_;  // guarded by mu_
};

}  // namespace yard

#endif  // YARD_LOADTEST_LEDGER_H_
