// The producer's I/O thread, sending: lingering for fuller batches, picking
// a broker, Submit batches; the timers of a sent job (ack timeout, retry
// backoff, the job's deadline) and the bookkeeping of which broker holds it.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "client/producer_impl.h"

namespace yard {

bool Producer::Impl::ShouldLinger(bool pouring, int64_t now) {
  const int64_t linger_us = options_.linger_us;
  const bool full = ready_.size() >= max_batch_ ||
                    linger_bytes_ * 2 >= options_.limits.max_frame_bytes;
  if (linger_us <= 0 || ready_.empty() || full) {
    linger_until_us_ = 0;
    return false;
  }
  if (linger_until_us_ == 0) {
    if (!pouring) return false;
    linger_until_us_ = now + linger_us;
    linger_bytes_ = 0;
  }
  if (now < linger_until_us_) return true;
  linger_until_us_ = 0;
  return false;
}

void Producer::Impl::ExpireDeadlines(int64_t now) {
  while (!deadlines_.empty() && deadlines_.top()->deadline_us <= now) {
    PendingJob* job = deadlines_.top();
    int64_t waited_ms = (now - job->submit_us) / 1000;
    Finish(job, JobOutcome::Kind::kTimedOut, nullptr,
           "no result within " + std::to_string(waited_ms) + " ms", now);
  }
}

void Producer::Impl::ExpireAcks(int64_t now) {
  PendingJob* job;
  while ((job = ack_.front()) != nullptr && job->ack_deadline_us <= now) {
    spdlog::debug(
        "producer: no Accepted for {} from {} within {} ms; resending",
        job->id.ToString(),
        job->broker >= 0 ? brokers_[job->broker].endpoint() : "?",
        options_.ack_timeout_ms);
    // Prefer other brokers for a while: the resend goes elsewhere (the same
    // id, so a durable queue's copy of it is harmless).
    if (job->broker >= 0) {
      Broker& b = brokers_[job->broker];
      b.unavailable_until_us =
          std::max(b.unavailable_until_us, now + ack_timeout_us_);
    }
    Detach(job);  // also leaves ack_
    Requeue(job);
  }
}

void Producer::Impl::ReleaseRetries(int64_t now) {
  while (!retries_.empty() && retries_.top()->retry_at_us <= now) {
    Requeue(retries_.Pop());
  }
}

int Producer::Impl::PickBroker(int64_t now) {
  int best = -1;
  bool best_preferred = false;
  const size_t n = brokers_.size();
  for (size_t k = 0; k < n; ++k) {
    size_t i = (rr_ + k) % n;
    const Broker& b = brokers_[i];
    if (!b.alive() || b.blocked || !b.socket() || b.retired) continue;
    bool preferred = b.unavailable_until_us <= now;
    if (best < 0 || (preferred && !best_preferred) ||
        (preferred == best_preferred &&
         b.outstanding < brokers_[best].outstanding)) {
      best = static_cast<int>(i);
      best_preferred = preferred;
    }
  }
  ++rr_;
  return best;
}

void Producer::Impl::SendReady(int64_t now) {
  for (Broker& b : brokers_) b.blocked = b.pipe_full = false;
  const size_t max_frame = options_.limits.max_frame_bytes;
  while (!ready_.empty()) {
    int bi = PickBroker(now);
    if (bi < 0) return;
    Broker& b = brokers_[bi];
    batch_.Clear();
    batch_jobs_.clear();
    while (!ready_.empty() && batch_jobs_.size() < max_batch_) {
      PendingJob* job = ready_.front();
      if (job->state != JobState::kQueued) {  // stale entry
        ready_.pop_front();
        job->in_ready = false;
        if (job->state == JobState::kDone) PendingJob::Delete(job);
        continue;
      }
      if (!batch_jobs_.empty() && batch_.bytes() + job->blob_size +
                                          kPerBlobOverhead + kEnvelopeOverhead >
                                      max_frame) {
        break;
      }
      // Its send count: a broker may check resends against its queue.
      batch_.AddSubmission(
          job->blob(), static_cast<uint16_t>(std::min(job->sends + 1, 65535)));
      batch_jobs_.push_back(job);
      ready_.pop_front();
      job->in_ready = false;
    }
    if (batch_jobs_.empty()) continue;
    Status st = b.Send(batch_.FinishSubmit());
    if (!st.ok()) {
      // Put them back where they were and try another broker.
      for (auto it = batch_jobs_.rbegin(); it != batch_jobs_.rend(); ++it) {
        (*it)->in_ready = true;
        ready_.push_front(*it);
      }
      b.blocked = true;
      b.pipe_full = st.code() == StatusCode::kResourceExhausted;
      if (!b.pipe_full && LogAllowed(&b.last_log_us, now)) {
        spdlog::warn("producer: sending to {}: {}", b.endpoint(),
                     st.ToString());
      }
      continue;
    }
    last_send_us_ = now;
    ++messages_sent_;
    jobs_sent_ += batch_jobs_.size();
    const int64_t ack_deadline = now + ack_timeout_us_;
    uint64_t resends = 0;
    for (PendingJob* job : batch_jobs_) {
      if (job->sends++ > 0) ++resends;
      job->state = JobState::kSent;
      Attach(job, bi);
      job->ack_deadline_us = ack_deadline;
      ack_.PushBack(job);
    }
    if (resends) Bump(resent_, resends);
  }
}

void Producer::Impl::Attach(PendingJob* job, size_t bi) {
  job->broker = static_cast<int>(bi);
  ++brokers_[bi].outstanding;
}

void Producer::Impl::Detach(PendingJob* job) {
  if (job->broker >= 0) {
    --brokers_[job->broker].outstanding;
    job->broker = -1;
  }
  ack_.Remove(job);
}

void Producer::Impl::Requeue(PendingJob* job) {
  job->state = JobState::kQueued;
  if (!job->in_ready) {
    job->in_ready = true;
    ready_.push_back(job);
  }
}

void Producer::Impl::ScheduleRetry(PendingJob* job, int64_t delay_ms,
                                   int64_t now) {
  Detach(job);
  job->state = JobState::kRetryWait;
  job->retry_at_us = now + delay_ms * 1000;
  retries_.Push(job);
}

int64_t Producer::Impl::Jitter(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
}

}  // namespace yard
