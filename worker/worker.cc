// The worker's public API, construction, and the I/O thread's Run: setup,
// the loop, the drain and Shutdown. Declarations and the threading model:
// worker/worker_impl.h.
#include "worker/worker.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <utility>

#include "common/clock.h"
#include "common/signals.h"
#include "worker/worker_impl.h"

namespace yard {
namespace {

// Upper bound on one poll, so Stop() and stop signals are noticed promptly
// even without a wake-up.
constexpr int64_t kMaxPollMs = 100;

std::string DefaultName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "worker");
  return std::string(host) + ":" + std::to_string(getpid());
}

}  // namespace

Worker::Impl::Impl(WorkerOptions options) : options_(std::move(options)) {
  concurrency_ =
      options_.concurrency > 0
          ? options_.concurrency
          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  slots_ = static_cast<int64_t>(concurrency_) + std::max(0, options_.prefetch);
  max_result_batch_ =
      std::clamp<size_t>(options_.max_result_batch, 1,
                         std::max<size_t>(1, options_.limits.max_batch));
  wake_batch_ = std::clamp<int64_t>(slots_ / 4, 1,
                                    static_cast<int64_t>(max_result_batch_));
  if (options_.name.empty()) options_.name = DefaultName();
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

Worker::Impl::~Impl() {
  // Runners may still be inside handlers (a drain that timed out, or Run
  // never called Stop). They skip queued jobs once abandon_ is set.
  abandon_.store(true);
  StopRunners();
  while (live_tasks_.load(std::memory_order_acquire) != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  for (Batch* batch : live_batches_) delete batch;
  live_batches_.clear();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void Worker::Impl::Register(std::string task, Handler handler,
                            std::shared_ptr<const BatchHandler> batch) {
  Registered& r = handlers_[std::move(task)];
  r.handler = std::move(handler);
  r.batch = std::move(batch);
}

void Worker::Impl::Stop() {
  stop_.store(true);
  WakeIo();
}

WorkerCounters Worker::Impl::counters() const {
  WorkerCounters c;
  c.jobs_received = jobs_received_.load(std::memory_order_relaxed);
  c.jobs_ok = jobs_ok_.load(std::memory_order_relaxed);
  c.jobs_failed = jobs_failed_.load(std::memory_order_relaxed);
  c.bad_frames = bad_frames_.load(std::memory_order_relaxed);
  c.reconnects = reconnects_.load(std::memory_order_relaxed);
  c.unexpected = unexpected_.load(std::memory_order_relaxed);
  c.credit_violations = credit_violations_.load(std::memory_order_relaxed);
  c.jobs_cancelled = jobs_cancelled_.load(std::memory_order_relaxed);
  c.batches = batches_.load(std::memory_order_relaxed);
  c.batched_jobs = batched_jobs_.load(std::memory_order_relaxed);
  return c;
}

WorkerObservation Worker::Impl::Observe() const {
  WorkerObservation o;
  o.counters = counters();
  o.running = running_.load(std::memory_order_relaxed);
  o.draining = draining_seen_.load(std::memory_order_relaxed);
  o.brokers = brokers_active_.load(std::memory_order_relaxed);
  o.brokers_connected = brokers_connected_.load(std::memory_order_relaxed);
  o.in_flight = in_flight_.load(std::memory_order_relaxed);
  o.concurrency = concurrency_;
  o.slots = slots_;
  auto add = [&](std::string_view task, const TaskMetrics& m) {
    TaskObservation t;
    t.task = task;
    for (size_t i = 0; i < t.outcomes.size(); ++i) {
      t.outcomes[i] = m.outcomes[i].load(std::memory_order_relaxed);
    }
    t.run_time = m.run_time.Read();
    o.tasks.push_back(std::move(t));
  };
  // handlers_ is fixed once Run starts; before, only Register changes it
  // (on the caller's thread, before any Observe that matters).
  for (const auto& [task, registered] : handlers_)
    add(task, *registered.metrics);
  add(kUnknownTaskLabel, unknown_task_);
  return o;
}

void Worker::Impl::SetBrokers(std::vector<std::string> endpoints) {
  new_set_.Put(std::move(endpoints));
  WakeIo();
}

// ---------------------------------------------------------------------------
// I/O thread: setup, the loop, the drain.

Status Worker::Impl::ValidateOptions() const {
  if (options_.brokers.empty()) {
    return Status::InvalidArgument("no broker endpoint given");
  }
  for (const auto& ep : options_.brokers) {
    if (Status st = ValidateEndpoint(ep); !st.ok()) return st;
  }
  if (options_.prefetch < 0) {
    return Status::InvalidArgument("prefetch must be >= 0");
  }
  if (options_.heartbeat_ms <= 0) {
    return Status::InvalidArgument("heartbeat_ms must be > 0");
  }
  if (wake_fd_ < 0) {
    return Status::Internal(std::string("eventfd: ") + std::strerror(errno));
  }
  return Status::OK();
}

Status Worker::Impl::Run() {
  if (ran_.exchange(true)) {
    return Status::Internal("Worker::Run may be called only once");
  }
  if (Status st = ValidateOptions(); !st.ok()) return st;
  StartArena();

  task_names_.clear();
  for (const auto& [task, registered] : handlers_) task_names_.push_back(task);
  std::sort(task_names_.begin(), task_names_.end());

  now_ms_ = MonoMillis();
  if (Status st = Connect(); !st.ok()) return st;
  PublishLinks();
  running_.store(true, std::memory_order_relaxed);
  while (Turn()) {
  }
  running_.store(false, std::memory_order_relaxed);

  Shutdown();
  auto c = counters();
  spdlog::info(
      "worker stopped: {} jobs received ({} Dispatch messages), {} ok, {} "
      "failed, "
      "{} Results messages",
      c.jobs_received, dispatch_messages_, c.jobs_ok, c.jobs_failed,
      results_messages_);
  return Status::OK();
}

void Worker::Impl::StartArena() {
  // TBB's default pool has hardware_concurrency - 1 workers; handlers block
  // (sleep, I/O), so every slot needs its own thread. Never lower the limit.
  size_t want = static_cast<size_t>(concurrency_) + 1;
  size_t current = tbb::global_control::active_value(
      tbb::global_control::max_allowed_parallelism);
  tbb_limit_ = std::make_unique<tbb::global_control>(
      tbb::global_control::max_allowed_parallelism, std::max(want, current));
  // All slots for arena workers: the I/O thread never joins the arena.
  arena_.initialize(concurrency_, /*reserved_for_masters=*/0);
  StartRunners();
}

Status Worker::Impl::Connect() {
  try {
    if (options_.context != nullptr) {
      context_ = options_.context;
    } else {
      own_context_ = std::make_unique<zmq::context_t>(1);
      context_ = own_context_.get();
    }
  } catch (const zmq::error_t& e) {
    return Status::IoError(std::string("zmq context: ") + e.what());
  }

  // Fixed shares of the slots; every broker gets at least one.
  brokers_.reserve(options_.brokers.size());
  for (const std::string& endpoint : options_.brokers) {
    brokers_.emplace_back(endpoint, options_.heartbeat_ms * 1000,
                          static_cast<uint32_t>(brokers_.size()));
  }
  Rebalance();
  int64_t total = 0;
  for (const Broker& b : brokers_) total += b.share;
  for (Broker& b : brokers_) {
    if (Status st = OpenSocket(b); !st.ok()) {
      for (auto& other : brokers_) other.Close();
      brokers_.clear();
      own_context_.reset();
      return st.code() == StatusCode::kInvalidArgument
                 ? st
                 : Status::InvalidArgument(st.message());
    }
  }
  for (auto& b : brokers_) SendReady(b);
  std::string tasks;
  for (const auto& t : task_names_) tasks += (tasks.empty() ? "" : ",") + t;
  spdlog::info(
      "worker {} serving {} broker(s): concurrency {}, {} slots, tasks [{}]",
      options_.name, brokers_.size(), concurrency_, total, tasks);
  return Status::OK();
}

bool Worker::Impl::Turn() {
  now_ms_ = MonoMillis();
  if (!draining_ && (stop_.load() || StopRequested())) BeginDrain();
  if (draining_ && (outstanding_ == 0 || now_ms_ >= drain_deadline_ms_))
    return false;
  ApplyBrokerSet();
  if (poll_items_dirty_) RebuildPollItems();
  if (!Poll()) return true;

  // Before results: a job's last reports reach the broker while it still
  // runs there.
  FlushProgress();
  CollectResults();
  const int64_t now_us = MonoMicros();
  for (auto& b : brokers_) {
    if (ShouldFlush(b, now_us)) FlushResults(b);
  }
  if (!draining_) Regrant();
  Housekeeping();
  return true;
}

bool Worker::Impl::Poll() {
  const int64_t timeout = PrepareToSleep();
  int ready = 0;
  try {
    ready = zmq::poll(poll_items_, std::chrono::milliseconds(timeout));
  } catch (const zmq::error_t& e) {
    io_state_.store(kIoAwake);
    if (e.num() == EINTR) return false;
    spdlog::error("poll failed: {}; stopping", e.what());
    stop_.store(true);
    return false;
  }
  io_state_.store(kIoAwake);
  now_ms_ = MonoMillis();

  if (ready > 0) {
    if (poll_items_[0].revents & ZMQ_POLLIN) {
      uint64_t value = 0;
      ssize_t r = read(wake_fd_, &value, sizeof(value));
      (void)r;
    }
    for (size_t i = 0; i < brokers_.size(); ++i) {
      if ((poll_items_[i + 1].revents & ZMQ_POLLIN) && brokers_[i].socket()) {
        ReadBroker(brokers_[i]);
      }
    }
  }
  return true;
}

int64_t Worker::Impl::PrepareToSleep() {
  // Tell runners when to wake us, then look once more (pairs with
  // PushDone).
  int64_t timeout = PollTimeoutMs();
  int64_t oldest_held_us = INT64_MAX;
  for (const auto& b : brokers_) {
    if (!b.pending.empty())
      oldest_held_us = std::min(oldest_held_us, b.oldest_pending_us);
  }
  const bool holding = oldest_held_us != INT64_MAX;
  if (holding) {
    int64_t left_us = oldest_held_us + kMaxResultDelayUs - MonoMicros();
    timeout = std::min(timeout, std::max<int64_t>(0, (left_us + 999) / 1000));
  }
  io_state_.store(holding ? kIoWakeOnBatch : kIoWakeOnAny);
  const int64_t uncollected = uncollected_.load();
  if (uncollected > 0 &&
      (!holding || uncollected >= wake_batch_ || queued_.load() == 0)) {
    timeout = 0;
  }
  return timeout;
}

int64_t Worker::Impl::PollTimeoutMs() const {
  int64_t t = std::min<int64_t>(
      kMaxPollMs, std::max<int64_t>(1, options_.heartbeat_ms / 4));
  if (draining_) t = std::clamp<int64_t>(drain_deadline_ms_ - now_ms_, 0, t);
  return t;
}

void Worker::Impl::BeginDrain() {
  draining_ = true;
  drain_deadline_ms_ =
      now_ms_ + std::max<int64_t>(0, options_.drain_timeout_ms);
  spdlog::info("draining: {} jobs in hand, waiting up to {} ms", outstanding_,
               std::max<int64_t>(0, options_.drain_timeout_ms));
}

void Worker::Impl::Shutdown() {
  if (outstanding_ > 0) {
    spdlog::warn(
        "drain timed out with {} jobs unanswered; the brokers will requeue "
        "them",
        outstanding_);
  }
  // Queued jobs are dropped; running handlers finish on their own and their
  // results are dropped (~Impl waits for them).
  abandon_.store(true);
  StopRunners();
  for (auto& b : brokers_) {
    if (!b.socket()) continue;
    Send(b, writer_.EncodeDisconnect("draining"), "Disconnect");
    b.Close(kCloseLingerMs);
  }
  poll_items_.clear();
  if (own_context_) {
    own_context_->close();  // waits up to the linger for Disconnect to go out
    own_context_.reset();
  }
  context_ = nullptr;
}

// ---------------------------------------------------------------------------

Worker::Worker(WorkerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Worker::~Worker() = default;
void Worker::Register(std::string task, Handler handler,
                      std::shared_ptr<const BatchHandler> batch) {
  impl_->Register(std::move(task), std::move(handler), std::move(batch));
}
Status Worker::Run() { return impl_->Run(); }
void Worker::Stop() { impl_->Stop(); }
void Worker::SetBrokers(std::vector<std::string> endpoints) {
  impl_->SetBrokers(std::move(endpoints));
}
WorkerCounters Worker::counters() const { return impl_->counters(); }
WorkerObservation Worker::Observe() const { return impl_->Observe(); }

}  // namespace yard
