// Private to the producer: included only by client/producer*.cc. Callers
// use client/producer.h.
//
// Submit() runs on caller threads and does the expensive per-job work there
// (encoding the job blob); everything else is owned by one I/O thread:
//
//   Submit --(mutex-guarded vector + eventfd when asleep)--> I/O thread
//
// (Not a lock-free queue: ticket-based queues make every other thread spin
// while one preempted pusher holds a ticket, which on oversubscribed cores,
// the normal case for this bus, costs milliseconds. A short critical
// section under a futex-based mutex degrades gracefully.)
//
// Per job the I/O thread keeps a PendingJob in a hash map by id and in at
// most these places at once:
//   ready_       FIFO of jobs waiting to be sent (lazy: stale entries skipped)
//   ack_         FIFO of sent, not yet accepted jobs, ordered by send time
//                (one ack timeout for all, so send order is deadline order)
//   retries_     min-heap by retry time (Busy / Unavailable backoff)
//   deadlines_   min-heap by the job's own deadline
// The heaps are intrusive (each job knows its slot) so that removing a
// finished job is O(log n) without stale entries piling up.
//
// A broker is live once it has said anything on the current socket and until
// it is silent for kHeartbeatLiveness heartbeat intervals; only live brokers
// get jobs.
//
// The definitions are split by concern:
//   producer.cc          the public API, Start/Close, intake from caller
//                        threads, the I/O loop and shutdown
//   producer_send.cc     batching, PickBroker, SendReady; acks, retries and
//                        deadlines
//   producer_receive.cc  ReceiveFrom, HandleMessage, OnAccepted/OnResult/
//                        OnError; delivering outcomes (Finish)
//   producer_brokers.cc  the broker set and liveness: CheckBrokers,
//                        BrokerDied, ResendHeld, OpenSocket
#ifndef YARD_CLIENT_PRODUCER_IMPL_H_
#define YARD_CLIENT_PRODUCER_IMPL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

#include "client/job_map.h"
#include "client/producer.h"
#include "common/job_id.h"
#include "common/status.h"
#include "link/broker_link.h"
#include "link/broker_set.h"
#include "schemas/codec.h"

namespace yard::producer_internal {

inline constexpr size_t kNoSlot = SIZE_MAX;

enum class JobState : uint8_t {
  kNew,        // not yet seen by the I/O thread
  kQueued,     // in ready_, waiting for a broker
  kRetryWait,  // in retries_, until retry_at_us
  kSent,       // sent to `broker`, in ack_, no Accepted yet
  kAccepted,   // `broker` holds it
  kDone,       // outcome delivered; freed when it leaves ready_
};

// One job, allocated together with its encoded blob (the bytes follow the
// struct): one allocation per job.
struct PendingJob {
  static PendingJob* New(Bytes blob) {
    void* mem = ::operator new(sizeof(PendingJob) + blob.size());
    auto* job = new (mem) PendingJob;
    job->blob_size = blob.size();
    if (!blob.empty()) std::memcpy(job->blob_data(), blob.data(), blob.size());
    return job;
  }
  static void Delete(PendingJob* job) {
    job->~PendingJob();
    ::operator delete(job);
  }
  uint8_t* blob_data() {
    return reinterpret_cast<uint8_t*>(this) + sizeof(PendingJob);
  }
  // The encoded Job, sent unchanged on every attempt.
  Bytes blob() { return {blob_data(), blob_size}; }
  // The job's trace context, read from the blob (which this producer
  // encoded); empty when refused before encoding.
  std::string_view traceparent() {
    if (blob_size == 0) return {};
    return AsString(
        flatbuffers::GetRoot<wire::Job>(blob_data())->traceparent());
  }

  JobId id;
  size_t blob_size = 0;
  OutcomeCallback done;  // empty for Push()
  std::string reject;    // non-empty: refused by Submit (too large, ...)
  int64_t submit_us = 0;
  int64_t deadline_us = 0;
  int64_t ack_deadline_us = 0;
  int64_t retry_at_us = 0;
  size_t deadline_slot = kNoSlot;
  size_t retry_slot = kNoSlot;
  PendingJob* ack_prev = nullptr;
  PendingJob* ack_next = nullptr;
  int broker = -1;  // the broker holding it (sent or accepted), -1: none
  JobState state = JobState::kNew;
  bool in_ready = false;
  bool in_ack = false;
  bool in_map = false;
  bool accepted = false;
  uint16_t sends = 0;
  uint16_t busy = 0;
  uint16_t unavailable = 0;
};

// A binary min-heap of jobs by one time field; each job stores its slot.
template <int64_t PendingJob::*kKey, size_t PendingJob::*kSlot>
class JobHeap {
 public:
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  PendingJob* top() const { return heap_.front(); }

  void Push(PendingJob* j) {
    heap_.push_back(j);
    SiftUp(heap_.size() - 1);
  }
  // No-op when the job is not in this heap.
  void Remove(PendingJob* j) {
    size_t i = j->*kSlot;
    if (i == kNoSlot) return;
    j->*kSlot = kNoSlot;
    PendingJob* last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    heap_[i] = last;
    if (i > 0 && last->*kKey < heap_[(i - 1) / 2]->*kKey) {
      SiftUp(i);
    } else {
      SiftDown(i);
    }
  }
  PendingJob* Pop() {
    PendingJob* t = heap_.front();
    Remove(t);
    return t;
  }
  std::vector<PendingJob*>& items() { return heap_; }

 private:
  void Place(size_t i, PendingJob* j) {
    heap_[i] = j;
    j->*kSlot = i;
  }
  void SiftUp(size_t i) {
    PendingJob* j = heap_[i];
    while (i > 0) {
      size_t parent = (i - 1) / 2;
      if (!(j->*kKey < heap_[parent]->*kKey)) break;
      Place(i, heap_[parent]);
      i = parent;
    }
    Place(i, j);
  }
  void SiftDown(size_t i) {
    PendingJob* j = heap_[i];
    const size_t n = heap_.size();
    while (true) {
      size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && heap_[c + 1]->*kKey < heap_[c]->*kKey) ++c;
      if (!(heap_[c]->*kKey < j->*kKey)) break;
      Place(i, heap_[c]);
      i = c;
    }
    Place(i, j);
  }

  std::vector<PendingJob*> heap_;
};

// Intrusive FIFO of jobs waiting for Accepted, in send order.
class AckList {
 public:
  PendingJob* front() const { return head_; }
  void PushBack(PendingJob* j) {
    j->in_ack = true;
    j->ack_next = nullptr;
    j->ack_prev = tail_;
    if (tail_) {
      tail_->ack_next = j;
    } else {
      head_ = j;
    }
    tail_ = j;
  }
  void Remove(PendingJob* j) {
    if (!j->in_ack) return;
    j->in_ack = false;
    if (j->ack_prev) {
      j->ack_prev->ack_next = j->ack_next;
    } else {
      head_ = j->ack_next;
    }
    if (j->ack_next) {
      j->ack_next->ack_prev = j->ack_prev;
    } else {
      tail_ = j->ack_prev;
    }
    j->ack_prev = j->ack_next = nullptr;
  }

 private:
  PendingJob* head_ = nullptr;
  PendingJob* tail_ = nullptr;
};
}  // namespace yard::producer_internal

namespace yard {

class Producer::Impl {
 public:
  explicit Impl(ProducerOptions options);
  ~Impl();

  // Any thread (the caller's).
  Status Start();
  // submit_us: the submit time (MonoMicros) when the caller has one for a
  // whole batch; 0: now.
  JobId Submit(const JobSpec& spec, OutcomeCallback done, int64_t timeout_ms,
               int64_t submit_us = 0);
  bool Flush(int64_t timeout_ms);
  void Close();
  ProducerCounters counters() const;
  void SetBrokers(std::vector<std::string> endpoints);
  void Cancel(std::span<const JobId> ids);
  void RequestStats();

 private:
  using JobState = producer_internal::JobState;
  using PendingJob = producer_internal::PendingJob;
  using AckList = producer_internal::AckList;
  template <int64_t PendingJob::*kKey, size_t PendingJob::*kSlot>
  using JobHeap = producer_internal::JobHeap<kKey, kSlot>;
  using Counter = std::atomic<uint64_t>;

  static void Bump(Counter& c, uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
  }

  // Room a Submit envelope needs around its blobs, and per blob (JobBlob
  // table, vector length, alignment padding), so that a batch stays under
  // the frame limit without encoding it twice.
  static constexpr size_t kEnvelopeOverhead = 256;
  static constexpr size_t kPerBlobOverhead = 64;

  // The link (socket, liveness, heartbeats; `retired`: left the broker set,
  // gets no new jobs, its socket stays while it answers and holds jobs, and
  // closes for good after that), and what this producer keeps per broker.
  struct Broker : BrokerLink {
    using BrokerLink::BrokerLink;
    JobId instance;          // the broker process last heard from (heartbeats)
    bool blocked = false;    // a send failed this turn: try others
    bool pipe_full = false;  // ... because the pipe is full: poll POLLOUT
    int64_t unavailable_until_us = 0;
    size_t outstanding = 0;  // jobs sent to or accepted by it, not finished
    int64_t last_log_us = 0;
    bool stats_asked = false;  // a StatsRequest went out, no answer yet
  };

  // ---- Caller threads (producer.cc) ----
  void Enqueue(PendingJob* job);
  void Wake();
  void FinishAfterClose(PendingJob* job);
  uint64_t InFlight() const;  // any thread

  // ---- I/O thread: the loop, intake and shutdown (producer.cc) ----
  void Run();
  // One turn of the loop: broker-set changes, intake, timers, liveness,
  // sending, then Poll.
  void Turn();
  // Waits in poll (the wake-up eventfd and every broker socket) until work
  // comes or a timer is due, then reads what came.
  void Poll(int64_t now, bool linger);
  // The poll timeout in ms (0 while work is left; a short linger sleeps here
  // instead). When it is not 0, asks Submit for a wake-up (sleeping_).
  int64_t PrepareToSleep(int64_t now, bool linger);
  // Returns the number of jobs taken; sets *pouring when they come fast.
  size_t DrainIntake(int64_t now, bool* pouring);
  void Admit(PendingJob* job, int64_t now);
  int64_t NextWakeUs(int64_t now) const;
  void NotifyFlushers();
  void Shutdown();
  bool LogAllowed(int64_t* last_us, int64_t now);

  // ---- I/O thread: sending, acks, retries, deadlines (producer_send.cc) ----
  bool ShouldLinger(bool pouring, int64_t now);
  void ExpireDeadlines(int64_t now);
  void ExpireAcks(int64_t now);
  void ReleaseRetries(int64_t now);
  void SendReady(int64_t now);
  int PickBroker(int64_t now);
  void Attach(PendingJob* job, size_t b);
  void Detach(PendingJob* job);
  void Requeue(PendingJob* job);
  void ScheduleRetry(PendingJob* job, int64_t delay_ms, int64_t now);
  int64_t Jitter(int64_t lo, int64_t hi);

  // ---- I/O thread: cancels (producer_cancel.cc) ----
  // Sends the cancels callers asked for since the last turn.
  void DrainCancels(int64_t now);
  // A broker's answer about a job we asked to cancel; false when we did not
  // ask (then it is not a cancel's answer).
  bool CancelAnswered(const JobId& id, CancelReply::Kind kind,
                      std::string_view message);

  // Sends a StatsRequest to every live broker, if one was asked for.
  void SendStatsRequests(int64_t now);
  void DeliverStats(BrokerStatsReply reply);

  // ---- I/O thread: what brokers send, outcomes (producer_receive.cc) ----
  bool ReceiveFrom(size_t b);
  void HandleMessage(size_t b, Bytes frame, int64_t now);
  void OnAccepted(size_t b, const JobId& id);
  void OnResult(const wire::JobResult* result, int64_t now);
  void OnError(size_t b, const wire::Error* error, int64_t now);
  void Finish(PendingJob* job, JobOutcome::Kind kind,
              const wire::JobResult* result, std::string_view error,
              int64_t now);
  // Runs the caller's callback (any thread: FinishAfterClose uses it too);
  // what it throws is logged, never passed on.
  static void Deliver(const OutcomeCallback& done, const JobOutcome& out);

  // ---- I/O thread: the broker set and liveness (producer_brokers.cc) ----
  void CheckBrokers(int64_t now);
  // Applies a SetBrokers update, if one came.
  void ApplyBrokerSet(int64_t now);
  void CloseRetired(Broker& b);
  void BrokerDied(size_t b, int64_t now);
  // Requeues every job sent to or accepted by broker b (same ids).
  void ResendHeld(size_t b);
  Status OpenSocket(Broker& b, int64_t now);
  // live_brokers_ follows the links' liveness: one less when a live link
  // closes or reopens.
  void CountDown(Broker& b);

  // ---- Fixed at construction; read by every thread ----
  const ProducerOptions options_;
  const size_t max_batch_;
  const int64_t heartbeat_us_;
  const int64_t ack_timeout_us_;

  // ---- Set up by Start, then the I/O thread's ----
  // Start opens them before it launches the I/O thread; ~Impl closes them
  // after Close has joined it. wake_fd_ is fixed after Start: any thread
  // writes it (Wake), the I/O thread polls it. thread_ is started by Start
  // and joined by Close, under close_mu_.
  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_ = nullptr;
  std::vector<Broker> brokers_;  // after own_context_: sockets close first
  int wake_fd_ = -1;
  std::thread thread_;

  // ---- Caller threads -> I/O thread ----
  // Submit appends to intake_; the I/O thread swaps the vector out whole.
  // intake_mu_ guards the four fields below it.
  std::mutex intake_mu_;
  std::vector<PendingJob*> intake_;
  bool sleeping_ = false;                  // the I/O thread waits in poll
  size_t wake_threshold_ = 1;              // wake it when this many wait
  bool io_done_ = false;                   // the I/O thread has exited
  std::atomic<bool> stop_{false};          // the I/O loop ends after this turn
  std::atomic<bool> closed_{false};        // Close() began: no new work
  BrokerSetMailbox new_set_;               // SetBrokers -> I/O thread
  std::atomic<bool> stats_wanted_{false};  // RequestStats -> I/O thread
  std::vector<JobId> cancel_intake_;       // Cancel -> I/O thread, intake_mu_
  std::mutex close_mu_;                    // one Close() at a time

  // Flush: a flusher counts itself in flush_waiters_ under flush_mu_ before
  // it tests InFlight(); the I/O thread counts an outcome before it reads
  // flush_waiters_ and notifies under flush_mu_, so no wake-up is lost.
  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  std::atomic<int> flush_waiters_{0};

  // Counters: `submitted` is bumped by callers, the rest mostly by the I/O
  // thread; `finished` (outcomes delivered) is bumped after the callback.
  // Only submitted_ and finished_ are ordered (seq_cst, for InFlight); the
  // rest are relaxed.
  alignas(64) Counter submitted_{0};
  alignas(64) Counter finished_{0};
  Counter accepted_{0}, completed_{0}, failed_{0}, timed_out_{0}, rejected_{0},
      resent_{0}, busy_{0}, unavailable_{0}, duplicates_{0}, errors_{0},
      live_brokers_{0}, cancels_refused_{0};

  // ---- I/O thread only ----
  std::vector<PendingJob*> intake_local_;
  std::vector<JobId> cancel_local_;
  // Ids we sent a Cancel for and have no answer about (bounded: cleared
  // wholesale past kMaxCancelsAsked).
  std::unordered_set<JobId, JobIdHash> cancel_asked_;
  internal::JobMap<PendingJob> jobs_;
  std::deque<PendingJob*> ready_;
  AckList ack_;
  JobHeap<&PendingJob::retry_at_us, &PendingJob::retry_slot> retries_;
  JobHeap<&PendingJob::deadline_us, &PendingJob::deadline_slot> deadlines_;
  std::vector<zmq::pollitem_t> items_;
  std::vector<size_t> item_broker_;
  std::vector<PendingJob*> batch_jobs_;
  BlobBatch batch_;
  Writer writer_;
  DealerMessage msg_;
  std::mt19937_64 rng_{std::random_device{}()};
  size_t rr_ = 0;
  int64_t last_send_us_ = 0;
  int64_t linger_until_us_ = 0;  // 0: not lingering
  size_t linger_bytes_ = 0;      // blob bytes admitted while lingering
  int64_t burst_start_us_ = 0;   // submit time opening the current window
  uint32_t burst_count_ = 0;     // jobs submitted in that window
  // For the debug line at shutdown.
  uint64_t turns_ = 0, messages_sent_ = 0, jobs_sent_ = 0;
  bool more_work_ = false;  // a bounded step left work: poll without waiting
  int64_t last_error_log_us_ = 0;
};

}  // namespace yard

#endif  // YARD_CLIENT_PRODUCER_IMPL_H_
