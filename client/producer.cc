// The producer's public API and its caller-thread side (Start, Submit and
// the intake, Flush, Close), and the I/O thread's loop: intake, the poll,
// shutdown. Declarations and the threading model: client/producer_impl.h.
#include "client/producer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

#include "client/producer_impl.h"
#include "common/clock.h"
#include "common/trace_context.h"

namespace yard {
namespace {

// LogAllowed: at most one line per this long for each timestamp it keeps
// (one per broker, one for errors in the loop).
constexpr int64_t kLogEveryUs = 1'000'000;
// Lingering starts when at least kLingerMinJobs jobs were submitted within
// kBurstWindowUs (by their submit times, so whatever the loop's timing):
// jobs pour in (>= 20k/s). Lone jobs and moderate rates see no delay.
constexpr uint32_t kLingerMinJobs = 4;
constexpr int64_t kBurstWindowUs = 200;
// Lingers shorter than this are a plain sleep (poll's timeout is in ms).
constexpr int64_t kLingerSleepUs = 2000;

}  // namespace

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
                             int64_t timeout_ms, int64_t submit_us) {
  const int64_t now = submit_us != 0 ? submit_us : MonoMicros();
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
  } else if (!spec.traceparent.empty() && !ValidTraceParent(spec.traceparent)) {
    reject = "traceparent is not a W3C trace context";
  } else if (!closed_.load(std::memory_order_acquire)) {
    thread_local Writer writer;
    if (spec.id.IsZero() || spec.created_ms == 0 ||
        (spec.run_timeout_ms == 0 && options_.run_timeout_ms != 0)) {
      JobSpec filled = spec;
      filled.id = id;
      if (filled.created_ms == 0) filled.created_ms = UnixMillis();
      if (filled.run_timeout_ms == 0)
        filled.run_timeout_ms = options_.run_timeout_ms;
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
    out.traceparent = job->traceparent();
    out.latency_us = MonoMicros() - job->submit_us;
    Deliver(job->done, out);
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
  c.unavailable = get(unavailable_);
  c.duplicates = get(duplicates_);
  c.errors = get(errors_);
  c.live_brokers = get(live_brokers_);
  c.cancels_refused = get(cancels_refused_);
  return c;
}

void Producer::Impl::SetBrokers(std::vector<std::string> endpoints) {
  new_set_.Put(std::move(endpoints));
  Wake();
}

// ---------------------------------------------------------------------------
// I/O thread: the loop, intake, shutdown

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
  DrainCancels(now);
  SendStatsRequests(now);
  ExpireDeadlines(now);
  ExpireAcks(now);
  ReleaseRetries(now);
  CheckBrokers(now);
  const bool linger = ShouldLinger(pouring, now);
  if (!linger) SendReady(now);
  NotifyFlushers();
  Poll(now, linger);
}

void Producer::Impl::Poll(int64_t now, bool linger) {
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

  const int64_t timeout_ms = PrepareToSleep(now, linger);
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

int64_t Producer::Impl::PrepareToSleep(int64_t now, bool linger) {
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
  return timeout_ms;
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

namespace {

// A job's outcome as a future: the promise it fulfils, and the callback
// that does.
std::pair<std::future<JobOutcome>, OutcomeCallback> Promised() {
  auto promise = std::make_shared<std::promise<JobOutcome>>();
  std::future<JobOutcome> future = promise->get_future();
  return {std::move(future), [promise](const JobOutcome& outcome) {
            promise->set_value(outcome);
          }};
}

}  // namespace

std::future<JobOutcome> Producer::Submit(const JobSpec& job,
                                         int64_t timeout_ms) {
  auto [future, done] = Promised();
  impl_->Submit(job, std::move(done), timeout_ms);
  return std::move(future);
}

// A batch's jobs share one submit time: they are submitted together, which
// is what makes the I/O thread linger for more (a burst, by submit times),
// however long encoding them takes or the calling thread is descheduled.
std::vector<JobId> Producer::SubmitBatch(std::span<const JobSpec> jobs,
                                         OutcomeCallback done,
                                         int64_t timeout_ms) {
  const int64_t now = MonoMicros();
  std::vector<JobId> ids;
  ids.reserve(jobs.size());
  for (const JobSpec& job : jobs)
    ids.push_back(impl_->Submit(job, done, timeout_ms, now));
  return ids;
}

std::vector<std::future<JobOutcome>> Producer::SubmitBatch(
    std::span<const JobSpec> jobs, int64_t timeout_ms) {
  const int64_t now = MonoMicros();
  std::vector<std::future<JobOutcome>> futures;
  futures.reserve(jobs.size());
  for (const JobSpec& job : jobs) {
    auto [future, done] = Promised();
    impl_->Submit(job, std::move(done), timeout_ms, now);
    futures.push_back(std::move(future));
  }
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

void Producer::Cancel(std::span<const JobId> ids) { impl_->Cancel(ids); }

void Producer::RequestStats() { impl_->RequestStats(); }

}  // namespace yard
