// The worker's I/O thread, results: collecting them from the runners,
// holding them briefly to share a Results message, sending them (with the
// credit they return), and Answered, which ends a job.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/clock.h"
#include "worker/worker_impl.h"

namespace yard {

void Worker::Impl::CollectResults() {
  Job* job = nullptr;
  int64_t collected = 0;
  const int64_t now_us = MonoMicros();
  while (done_queue_.try_pop(job)) {
    if (job->metrics != nullptr) {
      job->metrics->CountOwned(job->status);
      if (job->ran) job->metrics->run_time.RecordOwned(job->duration_us);
    }
    Broker& b = brokers_[job->broker];
    if (b.pending.empty()) b.oldest_pending_us = now_us;
    b.pending.push_back(job);
    ++collected;
  }
  if (collected != 0) uncollected_.fetch_sub(collected);
}

void Worker::Impl::FlushProgress() {
  // Most turns have no report: one load, no lock.
  if (!progress_pending_.load(std::memory_order_acquire)) return;
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    progress_pending_.store(false, std::memory_order_relaxed);
    if (progress_out_.empty()) return;
    progress_local_.swap(progress_out_);
  }
  // Reports are few (one per job per interval): one pass per broker.
  std::vector<ProgressUpdate> updates;
  for (Broker& b : brokers_) {
    updates.clear();
    for (OutgoingProgress& p : progress_local_) {
      // A report of an older registration: that broker forgot the job.
      if (p.broker == b.index && p.generation == b.generation) {
        updates.push_back(std::move(p.update));
      }
    }
    for (size_t i = 0; i < updates.size(); i += options_.limits.max_batch) {
      const size_t n = std::min(options_.limits.max_batch, updates.size() - i);
      (void)Send(b, writer_.EncodeProgress({updates.data() + i, n}),
                 "Progress");
    }
  }
  progress_local_.clear();
}

bool Worker::Impl::ShouldFlush(const Broker& b, int64_t now_us) const {
  if (b.pending.empty()) return false;
  const int64_t batch = std::clamp<int64_t>(
      b.share / 4, 1, static_cast<int64_t>(max_result_batch_));
  // No job left to start: the next results may be far off (slow handlers).
  return draining_ || static_cast<int64_t>(b.pending.size()) >= batch ||
         queued_.load() == 0 ||
         now_us - b.oldest_pending_us >= kMaxResultDelayUs;
}

void Worker::Impl::FlushResults(Broker& b) {
  if (b.pending.empty()) return;
  if (!b.socket() && b.retired) {
    // Its broker is gone; another broker runs these jobs again.
    for (Job* job : b.pending) Answered(b, job);
    b.pending.clear();
    b.credit = 0;  // Answered returned credit to a broker that is gone
    return;
  }
  const size_t max_frame = options_.limits.max_frame_bytes;
  size_t sent = 0;
  while (sent < b.pending.size()) {
    results_.Clear();
    size_t end = sent;
    while (end < b.pending.size() && results_.size() < max_result_batch_) {
      const std::string& r = b.pending[end]->result;
      size_t estimate = results_.bytes() + r.size() +
                        kPerBlobSlackBytes * (results_.size() + 1) +
                        kEnvelopeSlackBytes;
      if (!results_.empty() && estimate > max_frame) break;
      results_.AddResult(AsBytes(r));
      ++end;
    }
    // Above its share: these results return less credit (Rebalance).
    int64_t current = 0;
    for (size_t i = sent; i < end; ++i) {
      current += b.pending[i]->generation == b.generation ? 1 : 0;
    }
    const int64_t withheld =
        std::clamp<int64_t>(b.credit + b.held - b.share, 0, current);
    if (!Send(b, results_.FinishResults({}, static_cast<uint32_t>(withheld)),
              "Results")) {
      break;  // retried soon
    }
    ++results_messages_;
    for (size_t i = sent; i < end; ++i) Answered(b, b.pending[i]);
    b.credit -= withheld;
    sent = end;
  }
  results_.Clear();
  b.pending.erase(b.pending.begin(),
                  b.pending.begin() + static_cast<ptrdiff_t>(sent));
  // A send failed (full pipe): retry after one more delay, not in a loop.
  if (!b.pending.empty()) b.oldest_pending_us = MonoMicros();
}

void Worker::Impl::Answered(Broker& b, Job* job) {
  --b.held;
  --outstanding_;
  // The broker takes a result as one credit back, but only for a job it
  // dispatched to this registration; older jobs' slots are re-granted by
  // Regrant with an explicit Credit.
  if (job->generation == b.generation) ++b.credit;
  Batch* batch = job->batch;
  if (--batch->unanswered == 0) {
    live_batches_.erase(batch);
    delete batch;
  }
}

}  // namespace yard
