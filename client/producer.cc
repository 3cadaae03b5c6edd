// Producer internals. Submit() runs on caller threads and does the expensive
// per-job work there (encoding the job blob); everything else is owned by one
// I/O thread:
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
#include "client/producer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "client/job_map.h"
#include "common/clock.h"
#include "common/heartbeat.h"
#include "link/broker_link.h"
#include "link/broker_set.h"

namespace yard {
namespace {

constexpr size_t kNoSlot = SIZE_MAX;
// Room a Submit envelope needs around its blobs, and per blob (JobBlob table,
// vector length, alignment padding), so that a batch stays under the frame
// limit without encoding it twice.
constexpr size_t kEnvelopeOverhead = 256;
constexpr size_t kPerBlobOverhead = 64;
// Bound on one loop turn so that one chatty socket starves nothing.
constexpr int kMaxRecvPerTurn = 1024;
// After Unavailable, prefer other brokers for this long.
constexpr int64_t kUnavailableCooldownUs = 1'000'000;
constexpr int64_t kUnavailableBaseMs = 20;
constexpr int64_t kUnavailableMaxMs = 1000;
constexpr int64_t kBusyBaseMs = 10;
constexpr int64_t kBusyMaxMs = 5000;
constexpr int64_t kLogEveryUs = 1'000'000;
// Lingering starts when at least kLingerMinJobs jobs were submitted within
// kBurstWindowUs (by their submit times, so whatever the loop's timing):
// jobs pour in (>= 20k/s). Lone jobs and moderate rates see no delay.
constexpr uint32_t kLingerMinJobs = 4;
constexpr int64_t kBurstWindowUs = 200;
// Lingers shorter than this are a plain sleep (poll's timeout is in ms).
constexpr int64_t kLingerSleepUs = 2000;

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

using Counter = std::atomic<uint64_t>;
inline void Bump(Counter& c, uint64_t n = 1) {
  c.fetch_add(n, std::memory_order_relaxed);
}

std::string_view CodeName(wire::ErrorCode code) {
  const char* name = wire::EnumNameErrorCode(code);
  return name && *name ? name : "Unknown";
}

}  // namespace

class Producer::Impl {
 public:
  explicit Impl(ProducerOptions options);
  ~Impl();

  Status Start();
  JobId Submit(const JobSpec& spec, OutcomeCallback done, int64_t timeout_ms);
  bool Flush(int64_t timeout_ms);
  void Close();
  ProducerCounters counters() const;
  void SetBrokers(std::vector<std::string> endpoints);

 private:
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
  };

  // ---- Caller threads ----
  void Enqueue(PendingJob* job);
  void Wake();
  void FinishAfterClose(PendingJob* job);
  uint64_t InFlight() const;

  // ---- I/O thread ----
  void Run();
  void Turn();
  // Returns the number of jobs taken; sets *pouring when they come fast.
  size_t DrainIntake(int64_t now, bool* pouring);
  bool ShouldLinger(bool pouring, int64_t now);
  void Admit(PendingJob* job, int64_t now);
  void ExpireDeadlines(int64_t now);
  void ExpireAcks(int64_t now);
  void ReleaseRetries(int64_t now);
  void CheckBrokers(int64_t now);
  // Applies a SetBrokers update, if one came.
  void ApplyBrokerSet(int64_t now);
  void CloseRetired(Broker& b);
  void SendReady(int64_t now);
  int PickBroker(int64_t now);
  int64_t NextWakeUs(int64_t now) const;
  bool ReceiveFrom(size_t b);
  void HandleMessage(size_t b, Bytes frame, int64_t now);
  void OnAccepted(size_t b, const JobId& id);
  void OnResult(const wire::JobResult* result, int64_t now);
  void OnError(size_t b, const wire::Error* error, int64_t now);
  void BrokerDied(size_t b, int64_t now);
  // Requeues every job sent to or accepted by broker b (same ids).
  void ResendHeld(size_t b);
  Status OpenSocket(Broker& b, int64_t now);
  // live_brokers_ follows the links' liveness: one less when a live link
  // closes or reopens.
  void CountDown(Broker& b);
  void Attach(PendingJob* job, size_t b);
  void Detach(PendingJob* job);
  void Requeue(PendingJob* job);
  void ScheduleRetry(PendingJob* job, int64_t delay_ms, int64_t now);
  int64_t Jitter(int64_t lo, int64_t hi);
  void Finish(PendingJob* job, JobOutcome::Kind kind,
              const wire::JobResult* result, std::string_view error,
              int64_t now);
  void NotifyFlushers();
  void Shutdown();
  bool LogAllowed(int64_t* last_us, int64_t now);

  const ProducerOptions options_;
  const size_t max_batch_;
  const int64_t heartbeat_us_;
  const int64_t ack_timeout_us_;

  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_ = nullptr;
  std::vector<Broker> brokers_;  // after own_context_: sockets close first
  int wake_fd_ = -1;
  std::thread thread_;

  // Submit -> I/O thread: the I/O thread swaps the vector out whole.
  std::mutex intake_mu_;
  std::vector<PendingJob*> intake_;  // guarded by intake_mu_
  bool sleeping_ = false;            // guarded: the I/O thread waits in poll
  size_t wake_threshold_ = 1;        // guarded: wake it when this many wait
  bool io_done_ = false;             // guarded: the I/O thread has exited
  std::vector<PendingJob*> intake_local_;  // I/O thread
  std::atomic<bool> stop_{false};
  std::atomic<bool> closed_{false};  // Close() began: no new work
  BrokerSetMailbox new_set_;         // SetBrokers -> I/O thread
  std::mutex close_mu_;

  // Flush.
  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  std::atomic<int> flush_waiters_{0};

  // Counters: `submitted` is bumped by callers, the rest mostly by the I/O
  // thread; `finished` (outcomes delivered) is bumped after the callback.
  alignas(64) Counter submitted_{0};
  alignas(64) Counter finished_{0};
  Counter accepted_{0}, completed_{0}, failed_{0}, timed_out_{0}, rejected_{0},
      resent_{0}, busy_{0}, duplicates_{0}, errors_{0}, live_brokers_{0};

  // I/O thread state.
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

// ---------------------------------------------------------------------------
// Construction and caller-side API

Producer::Impl::Impl(ProducerOptions options)
    : options_(std::move(options)),
      max_batch_(
          std::clamp<size_t>(options_.max_batch, 1,
                             std::max<size_t>(options_.limits.max_batch, 1))),
      heartbeat_us_(options_.heartbeat_ms * 1000),
      ack_timeout_us_(options_.ack_timeout_ms * 1000) {}

Producer::Impl::~Impl() {
  Close();
  brokers_.clear();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status Producer::Impl::Start() {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    return Status::IoError(std::string("eventfd: ") + std::strerror(errno));
  }
  try {
    if (options_.context) {
      context_ = options_.context;
    } else {
      own_context_ = std::make_unique<zmq::context_t>(1);
      context_ = own_context_.get();
    }
  } catch (const zmq::error_t& e) {
    return Status::IoError(std::string("zmq context: ") + e.what());
  }
  const int64_t now = MonoMicros();
  brokers_.reserve(options_.brokers.size());
  for (const std::string& endpoint : options_.brokers) {
    Broker& b = brokers_.emplace_back(endpoint, heartbeat_us_);
    if (Status st = OpenSocket(b, now); !st.ok()) return st;
  }
  batch_jobs_.reserve(max_batch_);
  thread_ = std::thread([this] { Run(); });
  return Status::OK();
}

JobId Producer::Impl::Submit(const JobSpec& spec, OutcomeCallback done,
                             int64_t timeout_ms) {
  const int64_t now = MonoMicros();
  const JobId id = spec.id.IsZero() ? JobId::Random() : spec.id;
  const Limits& limits = options_.limits;
  std::string reject;
  Bytes blob;
  if (spec.task.empty()) {
    reject = "job has an empty task name";
  } else if (spec.payload.size() > limits.max_payload_bytes) {
    reject = "payload of " + std::to_string(spec.payload.size()) +
             " bytes exceeds the limit of " +
             std::to_string(limits.max_payload_bytes);
  } else if (!closed_.load(std::memory_order_acquire)) {
    thread_local Writer writer;
    if (spec.id.IsZero() || spec.created_ms == 0) {
      JobSpec filled = spec;
      filled.id = id;
      if (filled.created_ms == 0) filled.created_ms = UnixMillis();
      blob = writer.EncodeJob(filled);
    } else {
      blob = writer.EncodeJob(spec);
    }
    if (blob.size() + kPerBlobOverhead + kEnvelopeOverhead >
        limits.max_frame_bytes) {
      reject = "job of " + std::to_string(blob.size()) +
               " bytes does not fit in a frame of " +
               std::to_string(limits.max_frame_bytes) + " bytes";
      blob = {};
    }
  }
  PendingJob* job = PendingJob::New(blob);
  job->id = id;
  job->done = std::move(done);
  job->reject = std::move(reject);
  job->submit_us = now;
  if (timeout_ms <= 0) timeout_ms = options_.default_timeout_ms;
  job->deadline_us = now + timeout_ms * 1000;
  Bump(submitted_);
  if (closed_.load(std::memory_order_acquire)) {
    FinishAfterClose(job);
  } else {
    Enqueue(job);
  }
  return id;
}

void Producer::Impl::Enqueue(PendingJob* job) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(intake_mu_);
    if (!io_done_) {
      intake_.push_back(job);
      // A syscall only when the I/O thread sleeps and enough jobs wait.
      if (sleeping_ && intake_.size() >= wake_threshold_) {
        sleeping_ = false;
        wake = true;
      }
      job = nullptr;
    }
  }
  if (wake) Wake();
  if (job) FinishAfterClose(job);  // Close() won the race: nobody will pop it
}

void Producer::Impl::Wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  (void)n;  // EAGAIN: the counter is already non-zero, which is enough
}

void Producer::Impl::FinishAfterClose(PendingJob* job) {
  JobOutcome::Kind kind = job->reject.empty() ? JobOutcome::Kind::kTimedOut
                                              : JobOutcome::Kind::kRejected;
  Bump(kind == JobOutcome::Kind::kTimedOut ? timed_out_ : rejected_);
  if (job->done) {
    JobOutcome out;
    out.id = job->id;
    out.kind = kind;
    out.error = job->reject.empty() ? "producer is closed" : job->reject;
    out.latency_us = MonoMicros() - job->submit_us;
    try {
      job->done(out);
    } catch (const std::exception& e) {
      spdlog::error("producer: outcome callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("producer: outcome callback threw");
    }
  }
  finished_.fetch_add(1, std::memory_order_seq_cst);
  PendingJob::Delete(job);
}

uint64_t Producer::Impl::InFlight() const {
  // finished first: it never exceeds submitted at any instant.
  uint64_t finished = finished_.load(std::memory_order_seq_cst);
  uint64_t submitted = submitted_.load(std::memory_order_seq_cst);
  return submitted > finished ? submitted - finished : 0;
}

bool Producer::Impl::Flush(int64_t timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0));
  std::unique_lock<std::mutex> lock(flush_mu_);
  flush_waiters_.fetch_add(1, std::memory_order_seq_cst);
  bool done =
      flush_cv_.wait_until(lock, deadline, [&] { return InFlight() == 0; });
  flush_waiters_.fetch_sub(1, std::memory_order_seq_cst);
  return done;
}

void Producer::Impl::Close() {
  std::lock_guard<std::mutex> lock(close_mu_);
  closed_.store(true, std::memory_order_seq_cst);
  if (thread_.joinable()) {
    if (std::this_thread::get_id() == thread_.get_id()) {
      // Close() from an outcome callback: the loop exits after this turn;
      // the destructor (on another thread) joins.
      stop_.store(true);
      return;
    }
    stop_.store(true);
    Wake();
    thread_.join();
  }
  std::vector<PendingJob*> left;
  {
    std::lock_guard<std::mutex> intake_lock(intake_mu_);
    io_done_ = true;
    left.swap(intake_);
  }
  for (PendingJob* job : left) FinishAfterClose(job);
  std::lock_guard<std::mutex> flush_lock(flush_mu_);
  flush_cv_.notify_all();
}

ProducerCounters Producer::Impl::counters() const {
  ProducerCounters c;
  auto get = [](const Counter& x) { return x.load(std::memory_order_relaxed); };
  c.in_flight = InFlight();
  c.submitted = get(submitted_);
  c.accepted = get(accepted_);
  c.completed = get(completed_);
  c.failed = get(failed_);
  c.timed_out = get(timed_out_);
  c.rejected = get(rejected_);
  c.resent = get(resent_);
  c.busy = get(busy_);
  c.duplicates = get(duplicates_);
  c.errors = get(errors_);
  c.live_brokers = get(live_brokers_);
  return c;
}

// ---------------------------------------------------------------------------
// I/O thread

void Producer::Impl::Run() {
  pthread_setname_np(pthread_self(), "yard-producer");
  while (!stop_.load(std::memory_order_acquire)) {
    try {
      Turn();
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) {
        spdlog::error("producer: zmq context terminated; stopping");
        break;
      }
      int64_t now = MonoMicros();
      if (LogAllowed(&last_error_log_us_, now)) {
        spdlog::warn("producer: zmq error in I/O loop: {}", e.what());
      }
    }
  }
  Shutdown();
}

void Producer::Impl::Turn() {
  int64_t now = MonoMicros();
  more_work_ = false;
  ++turns_;
  bool pouring = false;
  ApplyBrokerSet(now);
  DrainIntake(now, &pouring);
  ExpireDeadlines(now);
  ExpireAcks(now);
  ReleaseRetries(now);
  CheckBrokers(now);
  const bool linger = ShouldLinger(pouring, now);
  if (!linger) SendReady(now);
  NotifyFlushers();

  // Poll set: the wake-up eventfd and every broker socket.
  items_.clear();
  item_broker_.clear();
  items_.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
  bool want_send = !ready_.empty();
  for (size_t i = 0; i < brokers_.size(); ++i) {
    Broker& b = brokers_[i];
    if (!b.socket()) continue;
    short events = ZMQ_POLLIN;
    if (b.pipe_full && b.alive() && want_send) events |= ZMQ_POLLOUT;
    items_.push_back({b.socket()->handle(), 0, events, 0});
    item_broker_.push_back(i);
  }

  int64_t timeout_ms = 0;
  if (!more_work_) {
    int64_t wait_us = NextWakeUs(now) - now;
    if (linger && linger_until_us_ - now < kLingerSleepUs && wait_us > 0) {
      // A short linger: sleep exactly that long, then look at the sockets.
      // Submitters see no sleeper, so they make no wake-up syscalls.
      std::this_thread::sleep_for(std::chrono::microseconds(wait_us));
      wait_us = 0;
    }
    timeout_ms = wait_us <= 0 ? 0 : (wait_us + 999) / 1000;
  }
  if (timeout_ms > 0) {
    // Lingering: be woken early only for a full batch.
    const size_t threshold =
        linger ? max_batch_ - std::min(max_batch_ - 1, ready_.size()) : 1;
    std::lock_guard<std::mutex> lock(intake_mu_);
    if (intake_.size() >= threshold || stop_.load(std::memory_order_relaxed)) {
      timeout_ms = 0;
    } else {
      sleeping_ = true;
      wake_threshold_ = threshold;
    }
  }
  int rc = 0;
  try {
    rc = zmq::poll(items_.data(), items_.size(),
                   std::chrono::milliseconds(timeout_ms));
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
  }
  if (timeout_ms > 0) {
    std::lock_guard<std::mutex> lock(intake_mu_);
    sleeping_ = false;
  }
  if (rc <= 0) return;
  if (items_[0].revents & ZMQ_POLLIN) {
    uint64_t value;
    ssize_t n = ::read(wake_fd_, &value, sizeof(value));
    (void)n;
  }
  for (size_t k = 1; k < items_.size(); ++k) {
    if (items_[k].revents & ZMQ_POLLIN) ReceiveFrom(item_broker_[k - 1]);
  }
}

size_t Producer::Impl::DrainIntake(int64_t now, bool* pouring) {
  {
    std::lock_guard<std::mutex> lock(intake_mu_);
    intake_local_.swap(intake_);
  }
  for (PendingJob* job : intake_local_) {
    if (linger_until_us_) linger_bytes_ += job->blob_size;
    if (job->submit_us - burst_start_us_ > kBurstWindowUs) {
      burst_start_us_ = job->submit_us;
      burst_count_ = 0;
    }
    if (++burst_count_ >= kLingerMinJobs) *pouring = true;
    Admit(job, now);
  }
  const size_t n = intake_local_.size();
  intake_local_.clear();
  return n;
}

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

void Producer::Impl::Admit(PendingJob* job, int64_t now) {
  if (!job->reject.empty()) {
    Finish(job, JobOutcome::Kind::kRejected, nullptr, job->reject, now);
    return;
  }
  if (!jobs_.Insert(job->id, job)) {
    Finish(job, JobOutcome::Kind::kRejected, nullptr,
           "a job with id " + job->id.ToString() + " is already in flight",
           now);
    return;
  }
  job->in_map = true;
  deadlines_.Push(job);
  job->state = JobState::kQueued;
  job->in_ready = true;
  ready_.push_back(job);
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

void Producer::Impl::SetBrokers(std::vector<std::string> endpoints) {
  new_set_.Put(std::move(endpoints));
  Wake();
}

void Producer::Impl::ApplyBrokerSet(int64_t now) {
  std::vector<std::string> set;
  if (!new_set_.Take(&set)) return;
  MergeBrokerSet(
      brokers_, std::move(set), "producer: ", ValidateEndpoint,
      [](Broker& b) {
        spdlog::info("producer: broker {} left the set ({} jobs with it)",
                     b.endpoint(), b.outstanding);
      },
      [&](Broker& b) {
        spdlog::info("producer: broker {} is back in the set", b.endpoint());
        if (!b.socket()) (void)OpenSocket(b, now);
      },
      [&](const std::string& endpoint) {
        spdlog::info("producer: broker {} joined", endpoint);
        Broker& b = brokers_.emplace_back(endpoint, heartbeat_us_);
        if (Status st = OpenSocket(b, now); !st.ok()) {
          spdlog::warn("producer: {}", st.ToString());
        }
      });
}

void Producer::Impl::CloseRetired(Broker& b) {
  CountDown(b);
  b.Close();
}

void Producer::Impl::ReleaseRetries(int64_t now) {
  while (!retries_.empty() && retries_.top()->retry_at_us <= now) {
    Requeue(retries_.Pop());
  }
}

void Producer::Impl::CheckBrokers(int64_t now) {
  for (size_t i = 0; i < brokers_.size(); ++i) {
    Broker& b = brokers_[i];
    if (b.retired) {
      if (!b.socket()) continue;
      // Gone for good once it is silent (its jobs go elsewhere) or has
      // nothing of ours left.
      if (b.Expired(now)) {
        ResendHeld(i);
        CloseRetired(b);
        continue;
      }
      if (b.outstanding == 0) {
        CloseRetired(b);
        continue;
      }
    }
    if (b.alive() && b.Expired(now)) {
      BrokerDied(i, now);
    } else if (!b.alive() && b.Expired(now)) {
      // Still silent: probe again on a fresh socket.
      if (Status st = OpenSocket(b, now);
          !st.ok() && LogAllowed(&b.last_log_us, now)) {
        spdlog::warn("producer: {}", st.ToString());
      }
    }
    if (b.HeartbeatDue(now)) (void)b.Beat(writer_.EncodeHeartbeat(), now);
  }
}

void Producer::Impl::BrokerDied(size_t bi, int64_t now) {
  Broker& b = brokers_[bi];
  spdlog::warn("producer: broker {} silent for {} ms; resending its {} jobs",
               b.endpoint(), (now - b.last_heard_us()) / 1000, b.outstanding);
  ResendHeld(bi);
  if (Status st = OpenSocket(b, now); !st.ok()) {  // no longer alive
    spdlog::warn("producer: {}", st.ToString());
  }
}

void Producer::Impl::ResendHeld(size_t bi) {
  Broker& b = brokers_[bi];
  std::vector<PendingJob*> held;
  held.reserve(b.outstanding);
  jobs_.ForEach([&](PendingJob* job) {
    if (job->broker == static_cast<int>(bi)) held.push_back(job);
  });
  // Oldest first, so that they keep their place.
  std::sort(held.begin(), held.end(),
            [](const PendingJob* x, const PendingJob* y) {
              return x->submit_us < y->submit_us;
            });
  for (PendingJob* job : held) {
    Detach(job);
    Requeue(job);
  }
}

void Producer::Impl::CountDown(Broker& b) {
  if (b.alive()) live_brokers_.fetch_sub(1, std::memory_order_relaxed);
}

Status Producer::Impl::OpenSocket(Broker& b, int64_t now) {
  CountDown(b);
  b.blocked = false;
  return b.Open(*context_, options_.limits, now);
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

int64_t Producer::Impl::NextWakeUs(int64_t now) const {
  int64_t wake = now + heartbeat_us_;
  for (const Broker& b : brokers_) {
    if (!b.socket()) continue;
    wake = std::min(wake, b.HeartbeatAt());
    wake = std::min(wake, b.ExpiresAt() + 1);
  }
  if (const PendingJob* j = ack_.front())
    wake = std::min(wake, j->ack_deadline_us);
  if (!deadlines_.empty()) wake = std::min(wake, deadlines_.top()->deadline_us);
  if (!retries_.empty()) wake = std::min(wake, retries_.top()->retry_at_us);
  if (linger_until_us_) wake = std::min(wake, linger_until_us_);
  return wake;
}

bool Producer::Impl::ReceiveFrom(size_t bi) {
  Broker& b = brokers_[bi];
  for (int n = 0; n < kMaxRecvPerTurn; ++n) {
    if (!b.socket()) return false;
    bool got = false;
    try {
      got = RecvDealer(*b.socket(), &msg_);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) throw;
      if (e.num() != EINTR && LogAllowed(&b.last_log_us, MonoMicros())) {
        spdlog::warn("producer: receiving from {}: {}", b.endpoint(), e.what());
      }
      return false;
    }
    if (!got) return false;
    const int64_t now = MonoMicros();
    const bool was_alive = b.was_alive();
    if (b.Heard(now)) {
      Bump(live_brokers_);
      if (was_alive) {
        spdlog::info("producer: broker {} is back", b.endpoint());
      } else {
        spdlog::debug("producer: broker {} is up", b.endpoint());
      }
    }
    if (msg_.framing_error) {
      Bump(errors_);
      if (LogAllowed(&b.last_log_us, now)) {
        spdlog::warn("producer: bad frame from {}: {}", b.endpoint(),
                     msg_.framing_error);
      }
      continue;
    }
    HandleMessage(bi, msg_.bytes(), now);  // RecvDealer aligned it
  }
  more_work_ = true;
  return true;
}

void Producer::Impl::HandleMessage(size_t bi, Bytes frame, int64_t now) {
  Broker& b = brokers_[bi];
  Decoded d = Decode(frame, options_.limits);
  if (!d.ok()) {
    Bump(errors_);
    if (LogAllowed(&b.last_log_us, now)) {
      spdlog::warn("producer: undecodable message from {}: {}", b.endpoint(),
                   d.message);
    }
    return;
  }
  switch (d.kind()) {
    case wire::Body::Heartbeat: {
      JobId instance = FromWire(d.envelope->body_as_Heartbeat()->instance());
      if (!instance.IsZero()) {
        if (!b.instance.IsZero() && instance != b.instance) {
          // Restarted between two heartbeats: the old process's jobs are gone
          // (memory mode); resend them, the same ids, to whoever is alive.
          spdlog::warn("producer: broker {} restarted; resending its jobs",
                       b.endpoint());
          ResendHeld(bi);
        }
        b.instance = instance;
      }
      break;
    }
    case wire::Body::Accepted:
      for (const wire::Id* id : *d.envelope->body_as_Accepted()->ids()) {
        OnAccepted(bi, FromWire(id));
      }
      break;
    case wire::Body::Results:
      if (const auto* accepted = d.envelope->body_as_Results()->accepted()) {
        for (const wire::Id* id : *accepted) OnAccepted(bi, FromWire(id));
      }
      for (const wire::ResultBlob* blob :
           *d.envelope->body_as_Results()->results()) {
        OnResult(blob->data_nested_root(), now);
      }
      break;
    case wire::Body::Error:
      OnError(bi, d.envelope->body_as_Error(), now);
      break;
    default:
      Bump(errors_);
      if (LogAllowed(&b.last_log_us, now)) {
        spdlog::warn("producer: unexpected {} from {}",
                     wire::EnumNameBody(d.kind()), b.endpoint());
      }
      break;
  }
}

void Producer::Impl::OnAccepted(size_t bi, const JobId& id) {
  PendingJob* job = jobs_.Find(id);
  if (job == nullptr) return;
  if (!job->accepted) {
    job->accepted = true;
    Bump(accepted_);
  }
  switch (job->state) {
    case JobState::kSent:
    case JobState::kQueued:
    case JobState::kRetryWait:
      // The acceptor holds it now (a queued entry in ready_ goes stale).
      Detach(job);
      retries_.Remove(job);
      job->state = JobState::kAccepted;
      Attach(job, bi);
      break;
    default:
      break;
  }
}

void Producer::Impl::OnResult(const wire::JobResult* result, int64_t now) {
  PendingJob* job = jobs_.Find(FromWire(result->id()));
  if (job == nullptr) {
    Bump(duplicates_);
    return;
  }
  JobOutcome::Kind kind = result->status() == wire::ResultStatus::Ok
                              ? JobOutcome::Kind::kCompleted
                              : JobOutcome::Kind::kFailed;
  Finish(job, kind, result, {}, now);
}

void Producer::Impl::OnError(size_t bi, const wire::Error* error, int64_t now) {
  Broker& b = brokers_[bi];
  const wire::ErrorCode code = error->code();
  const auto* ids = error->ids();
  if (code == wire::ErrorCode::Busy) Bump(busy_);
  if (code == wire::ErrorCode::Unavailable ||
      code == wire::ErrorCode::Internal) {
    b.unavailable_until_us = now + kUnavailableCooldownUs;
  }
  if (ids == nullptr || ids->size() == 0) {
    // A frame-level refusal: we cannot tell which jobs it means; ack timeouts
    // resend them.
    Bump(errors_);
    if (LogAllowed(&b.last_log_us, now)) {
      spdlog::warn("producer: {} from {}: {}", CodeName(code), b.endpoint(),
                   AsString(error->message()));
    }
    return;
  }
  for (const wire::Id* wid : *ids) {
    PendingJob* job = jobs_.Find(FromWire(wid));
    if (job == nullptr) continue;
    const bool held_here =
        job->broker == static_cast<int>(bi) &&
        (job->state == JobState::kSent || job->state == JobState::kAccepted);
    switch (code) {
      case wire::ErrorCode::Busy: {
        if (!held_here) break;
        int64_t after = std::max<int64_t>(error->retry_after_ms(), kBusyBaseMs);
        int shift = std::min<int>(job->busy++, 10);
        int64_t delay = std::min(after << shift, std::max(kBusyMaxMs, after));
        ScheduleRetry(job, delay + Jitter(0, delay / 2), now);
        break;
      }
      case wire::ErrorCode::Unavailable:
      case wire::ErrorCode::Internal: {
        if (!held_here) break;
        int shift = std::min<int>(job->unavailable++, 10);
        int64_t delay =
            std::min(kUnavailableBaseMs << shift, kUnavailableMaxMs);
        ScheduleRetry(job, Jitter(delay / 2, delay), now);
        break;
      }
      default: {
        std::string message = std::string(CodeName(code));
        if (error->message() && error->message()->size()) {
          message += ": " + std::string(AsString(error->message()));
        }
        Finish(job, JobOutcome::Kind::kRejected, nullptr, message, now);
        break;
      }
    }
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

void Producer::Impl::Finish(PendingJob* job, JobOutcome::Kind kind,
                            const wire::JobResult* result,
                            std::string_view error, int64_t now) {
  Detach(job);
  retries_.Remove(job);
  deadlines_.Remove(job);
  if (job->in_map) {
    jobs_.Erase(job->id);
    job->in_map = false;
  }
  job->state = JobState::kDone;
  // Counted before the caller hears of it, so a caller that reads the
  // counters after its callback or future sees this outcome.
  switch (kind) {
    case JobOutcome::Kind::kCompleted:
      Bump(completed_);
      break;
    case JobOutcome::Kind::kFailed:
      Bump(failed_);
      break;
    case JobOutcome::Kind::kTimedOut:
      Bump(timed_out_);
      break;
    case JobOutcome::Kind::kRejected:
      Bump(rejected_);
      break;
  }
  if (job->done) {
    JobOutcome out;
    out.id = job->id;
    out.kind = kind;
    out.latency_us = now - job->submit_us;
    if (result) {
      out.status = result->status();
      out.output = AsString(result->output());
      out.error = AsString(result->error());
      out.attempt = result->attempt();
      if (result->duplicate_of())
        out.duplicate_of = FromWire(result->duplicate_of());
      if (kind == JobOutcome::Kind::kFailed && out.error.empty()) {
        out.error = wire::EnumNameResultStatus(out.status);
      }
    } else {
      out.error = error;
    }
    try {
      job->done(out);
    } catch (const std::exception& e) {
      spdlog::error("producer: outcome callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("producer: outcome callback threw");
    }
  }
  finished_.fetch_add(1, std::memory_order_seq_cst);
  if (!job->in_ready) PendingJob::Delete(job);  // else when it leaves ready_
}

void Producer::Impl::NotifyFlushers() {
  if (flush_waiters_.load(std::memory_order_seq_cst) > 0 && InFlight() == 0) {
    std::lock_guard<std::mutex> lock(flush_mu_);
    flush_cv_.notify_all();
  }
}

void Producer::Impl::Shutdown() {
  const int64_t now = MonoMicros();
  spdlog::debug("producer: sent {} jobs in {} messages over {} loop turns",
                jobs_sent_, messages_sent_, turns_);
  bool pouring = false;
  DrainIntake(now, &pouring);
  std::vector<PendingJob*> left;
  left.reserve(jobs_.size());
  jobs_.ForEach([&](PendingJob* j) { left.push_back(j); });
  std::sort(left.begin(), left.end(),
            [](const PendingJob* x, const PendingJob* y) {
              return x->submit_us < y->submit_us;
            });
  for (PendingJob* j : left) {
    Finish(j, JobOutcome::Kind::kTimedOut, nullptr, "producer closed", now);
  }
  for (PendingJob* j : ready_) PendingJob::Delete(j);  // all kDone now
  ready_.clear();
  for (Broker& b : brokers_) b.Close();
  NotifyFlushers();
}

bool Producer::Impl::LogAllowed(int64_t* last_us, int64_t now) {
  if (now - *last_us < kLogEveryUs) return false;
  *last_us = now;
  return true;
}

// ---------------------------------------------------------------------------
// Producer

Result<std::unique_ptr<Producer>> Producer::Create(ProducerOptions options) {
  if (options.brokers.empty()) {
    return Status::InvalidArgument("no broker endpoints given");
  }
  for (const std::string& ep : options.brokers) {
    if (Status st = ValidateEndpoint(ep); !st.ok()) return st;
  }
  if (options.ack_timeout_ms <= 0 || options.heartbeat_ms <= 0 ||
      options.default_timeout_ms <= 0) {
    return Status::InvalidArgument(
        "ack_timeout_ms, heartbeat_ms and default_timeout_ms must be positive");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  if (Status st = impl->Start(); !st.ok()) return st;
  return std::unique_ptr<Producer>(new Producer(std::move(impl)));
}

Producer::Producer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Producer::~Producer() { Close(); }

JobId Producer::Submit(const JobSpec& job, OutcomeCallback done,
                       int64_t timeout_ms) {
  return impl_->Submit(job, std::move(done), timeout_ms);
}

std::future<JobOutcome> Producer::Submit(const JobSpec& job,
                                         int64_t timeout_ms) {
  auto promise = std::make_shared<std::promise<JobOutcome>>();
  std::future<JobOutcome> future = promise->get_future();
  impl_->Submit(
      job,
      [promise](const JobOutcome& outcome) { promise->set_value(outcome); },
      timeout_ms);
  return future;
}

std::vector<JobId> Producer::SubmitBatch(std::span<const JobSpec> jobs,
                                         OutcomeCallback done,
                                         int64_t timeout_ms) {
  std::vector<JobId> ids;
  ids.reserve(jobs.size());
  for (const JobSpec& job : jobs)
    ids.push_back(impl_->Submit(job, done, timeout_ms));
  return ids;
}

std::vector<std::future<JobOutcome>> Producer::SubmitBatch(
    std::span<const JobSpec> jobs, int64_t timeout_ms) {
  std::vector<std::future<JobOutcome>> futures;
  futures.reserve(jobs.size());
  for (const JobSpec& job : jobs) futures.push_back(Submit(job, timeout_ms));
  return futures;
}

JobId Producer::Push(const JobSpec& job) {
  return impl_->Submit(job, nullptr, 0);
}

bool Producer::Flush(int64_t timeout_ms) { return impl_->Flush(timeout_ms); }

void Producer::Close() { impl_->Close(); }

void Producer::SetBrokers(std::vector<std::string> endpoints) {
  impl_->SetBrokers(std::move(endpoints));
}

ProducerCounters Producer::counters() const { return impl_->counters(); }

}  // namespace yard
