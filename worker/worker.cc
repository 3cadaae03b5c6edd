#include "worker/worker.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <tbb/concurrent_queue.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <semaphore>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "common/clock.h"
#include "common/heartbeat.h"
#include "common/signals.h"
#include "link/broker_link.h"
#include "link/broker_set.h"

namespace yard {
namespace {

// Upper bound on one poll, so Stop() and stop signals are noticed promptly
// even without a wake-up.
constexpr int64_t kMaxPollMs = 100;
// Linger when closing sockets at the end of Run, so Disconnect goes out.
constexpr int kCloseLingerMs = 1000;
// Messages read from one socket per loop turn (fairness between brokers).
constexpr size_t kMaxReadsPerTurn = 256;
// Room for the Results envelope and per-blob headers and padding, when
// keeping a message under limits.max_frame_bytes.
constexpr size_t kEnvelopeSlackBytes = 256;
constexpr size_t kPerBlobSlackBytes = 32;
// While jobs are still queued, results wait at most this long for more
// results to share their Results message (Nagle-style coalescing: fewer,
// larger messages both ways, since the broker's next Dispatch follows the
// credit a Results message returns).
constexpr int64_t kMaxResultDelayUs = 1000;
// A broker that used up its credit this recently counts as having work
// (Rebalance), and a worker withdraws a broker's credit at most this often.
constexpr int64_t kHungryWindowMs = 200;

// What the I/O thread wants from runners while it sleeps in poll.
enum IoState : int {
  kIoAwake = 0,        // it will look at the done queue anyway
  kIoWakeOnAny = 1,    // wake it for any result
  kIoWakeOnBatch = 2,  // results are being held: wake it for a batch's worth,
                       // or when no job is left to start
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const {
    return std::hash<std::string_view>{}(s);
  }
};

std::string DefaultName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "worker");
  return std::string(host) + ":" + std::to_string(getpid());
}

// At most one log line per second per kind of trouble, so a misbehaving peer
// cannot flood the log; the next line says how many were skipped.
class LogLimiter {
 public:
  bool Allow(int64_t now_ms, uint64_t* suppressed) {
    if (now_ms < next_ms_) {
      ++suppressed_;
      return false;
    }
    next_ms_ = now_ms + 1000;
    *suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  int64_t next_ms_ = 0;
  uint64_t suppressed_ = 0;
};

std::string Suppressed(uint64_t n) {
  return n ? " (" + std::to_string(n) + " similar lines suppressed)" : "";
}

}  // namespace

class Worker::Impl {
 public:
  explicit Impl(WorkerOptions options);
  ~Impl();

  void Register(std::string task, Handler handler);
  Status Run();
  void Stop();
  WorkerCounters counters() const;
  void SetBrokers(std::vector<std::string> endpoints);

 private:
  struct Batch;

  // One dispatched job, from receipt until its result is sent. Lives inside
  // the Batch of the Dispatch message it came in.
  struct Job {
    Batch* batch = nullptr;
    const wire::JobBlob* blob = nullptr;  // points into batch->frame
    uint32_t broker = 0;
    uint64_t generation = 0;  // the broker's registration it came under
    std::string result;       // encoded JobResult blob, set by the runner
  };

  // One inbound Dispatch message: the frame stays alive (and its payloads
  // are handed to handlers without a copy) until every job is answered.
  struct Batch {
    zmq::message_t frame;
    std::vector<Job> jobs;
    size_t unanswered = 0;  // I/O thread only
  };

  // The link (socket, liveness, heartbeats; `retired`: left the broker set,
  // gets no new credit and no reconnect, its socket stays while it answers
  // and holds jobs of ours), and the credit this worker keeps per broker.
  struct Broker : BrokerLink {
    Broker(std::string endpoint, int64_t heartbeat_us, uint32_t i)
        : BrokerLink(std::move(endpoint), heartbeat_us), index(i) {}
    uint32_t index = 0;
    uint64_t generation = 0;  // bumped by every Ready
    int64_t share = 0;        // slots this broker may hold (credit + held)
    // Demand (Rebalance): when a Dispatch last used up its credit.
    int64_t last_starved_ms = INT64_MIN / 2;
    int64_t last_withdraw_ms = INT64_MIN / 2;
    // Credit withdrawn that the broker may have used before the withdraw
    // reached it: jobs beyond the credit up to this are not violations.
    int64_t withdraw_grace = 0;
    int64_t credit = 0;  // granted to this registration, not yet used
    int64_t held = 0;    // its jobs accepted here, not yet answered
    int64_t last_ready_ms = 0;
    std::vector<Job*> pending;  // finished; results not sent yet
    int64_t oldest_pending_us = 0;
  };

  // ---- Runner side (TBB arena threads) ----
  void StartRunners();
  void WakeRunners(size_t jobs);
  void StopRunners();
  void RunnerLoop();
  void Execute(Job& job, Writer& writer);
  void PushDone(Job* job);
  void WakeIo();

  // ---- I/O thread ----
  Status ValidateOptions() const;
  Status OpenSocket(Broker& b);
  void SendReady(Broker& b);
  bool Send(Broker& b, Bytes message, const char* what);
  // Logs a failed send (at most once a second); true when it went out.
  bool Sent(Broker& b, const Status& st, const char* what);
  void RebuildPollItems();
  void ReadBroker(Broker& b);
  void HandleFrame(Broker& b, zmq::message_t frame);
  void OnDispatch(Broker& b, zmq::message_t frame);
  void CollectResults();
  bool ShouldFlush(const Broker& b, int64_t now_us) const;
  void FlushResults(Broker& b);
  void Answered(Broker& b, Job* job);
  void Regrant();
  void Housekeeping();
  void Reconnect(Broker& b);
  void Beat(Broker& b);
  int64_t now_us() const { return now_ms_ * 1000; }
  // Splits the slots among the brokers in the set by demand (see the
  // definition).
  void Rebalance();
  bool Hungry(const Broker& b) const {
    return now_ms_ - b.last_starved_ms < kHungryWindowMs;
  }
  void ApplyBrokerSet();
  void Drop(Broker& b);
  // Takes back n of b's unused credit (Credit.withdraw); returns n, or 0
  // when the message could not be sent.
  int64_t Withdraw(Broker& b, int64_t n);
  void BeginDrain();
  void Shutdown();
  int64_t PollTimeoutMs() const;

  WorkerOptions options_;
  int concurrency_ = 1;
  int64_t slots_ = 1;  // concurrency + prefetch
  size_t max_result_batch_ = 1;
  std::unordered_map<std::string, Handler, StringHash, std::equal_to<>>
      handlers_;

  // Shared between threads.
  std::atomic<bool> stop_{false};
  std::atomic<bool> ran_{false};
  std::atomic<bool> abandon_{false};  // runners drop queued jobs
  std::atomic<int> io_state_{kIoAwake};
  std::atomic<int64_t> uncollected_{0};  // results in done_queue_
  int64_t wake_batch_ = 1;               // results that make a batch
  std::atomic<bool> runners_stop_{false};
  BrokerSetMailbox new_set_;
  std::atomic<int> parked_{0};      // runners waiting for jobs
  std::atomic<int64_t> queued_{0};  // jobs in run_queue_
  std::atomic<int> live_tasks_{0};  // arena tasks not yet returned
  std::counting_semaphore<> unpark_{0};
  int wake_fd_ = -1;
  tbb::concurrent_queue<Job*> run_queue_;
  tbb::concurrent_queue<Job*> done_queue_;
  std::unique_ptr<tbb::global_control> tbb_limit_;
  tbb::task_arena arena_;

  std::atomic<uint64_t> jobs_received_{0};
  std::atomic<uint64_t> jobs_ok_{0};
  std::atomic<uint64_t> jobs_failed_{0};
  std::atomic<uint64_t> bad_frames_{0};
  std::atomic<uint64_t> reconnects_{0};
  std::atomic<uint64_t> unexpected_{0};
  std::atomic<uint64_t> credit_violations_{0};

  // I/O thread only.
  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_ = nullptr;
  std::vector<Broker> brokers_;
  std::vector<zmq_pollitem_t> poll_items_;
  bool poll_items_dirty_ = true;
  std::unordered_set<Batch*> live_batches_;
  int64_t outstanding_ = 0;  // accepted jobs not yet answered
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  int64_t now_ms_ = 0;
  uint64_t dispatch_messages_ = 0;
  uint64_t results_messages_ = 0;
  Writer writer_;
  BlobBatch results_;
  std::vector<std::string> task_names_;
  LogLimiter frame_log_;
  LogLimiter send_log_;
  LogLimiter protocol_log_;
};

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

void Worker::Impl::Register(std::string task, Handler handler) {
  handlers_[std::move(task)] = std::move(handler);
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
  return c;
}

// ---------------------------------------------------------------------------
// Runner side.
//
// Runners are concurrency_ long-lived arena tasks (one per arena thread)
// that pop jobs from run_queue_. A runner with nothing to do parks on a
// semaphore rather than returning to TBB, whose idle threads spin (yielding)
// before they sleep: on a small machine that spinning competes with the
// broker and producers for the CPU. The I/O thread pushes jobs and counts
// them in queued_, then releases one permit per job for parked runners. A
// runner counts itself in parked_ before its last look at queued_; all four
// accesses are sequentially consistent, so a push racing with parking is
// never stranded: either the I/O thread sees the parked runner, or the
// runner sees the job. A stray permit only causes one spurious look.
// (Standalone fences are avoided: GCC's ThreadSanitizer rejects them.)

void Worker::Impl::StartRunners() {
  for (int i = 0; i < concurrency_; ++i) {
    live_tasks_.fetch_add(1);
    arena_.enqueue([this] { RunnerLoop(); });
  }
}

void Worker::Impl::WakeRunners(size_t jobs) {
  queued_.fetch_add(static_cast<int64_t>(jobs));
  const int parked = parked_.load();
  if (parked > 0)
    unpark_.release(std::min<ptrdiff_t>(parked, static_cast<ptrdiff_t>(jobs)));
}

void Worker::Impl::StopRunners() {
  runners_stop_.store(true);
  unpark_.release(concurrency_);
}

void Worker::Impl::RunnerLoop() {
  static thread_local Writer writer;
  while (!runners_stop_.load(std::memory_order_relaxed)) {
    Job* job = nullptr;
    if (run_queue_.try_pop(job)) {
      queued_.fetch_sub(1);
      if (abandon_.load(std::memory_order_relaxed)) continue;
      Execute(*job, writer);
      PushDone(job);
      continue;
    }
    parked_.fetch_add(1);
    if (queued_.load() == 0 && !runners_stop_.load()) unpark_.acquire();
    parked_.fetch_sub(1);
  }
  // Last touch of *this: ~Impl waits for live_tasks_ to reach zero.
  live_tasks_.fetch_sub(1, std::memory_order_release);
}

void Worker::Impl::Execute(Job& job, Writer& writer) {
  const wire::Job* j = job.blob->data_nested_root();
  JobContext ctx;
  ctx.id = FromWire(j->id());
  ctx.task = AsString(j->task());
  ctx.queue = AsString(j->queue());
  if (j->payload())
    ctx.payload = Bytes(j->payload()->data(), j->payload()->size());
  ctx.attempt = job.blob->attempt();
  ctx.deadline_ms = j->deadline_ms();
  ctx.job = j;

  wire::ResultStatus status = wire::ResultStatus::Ok;
  std::string output;
  std::string error;
  uint64_t duration_us = 0;
  int64_t now_unix = ctx.deadline_ms != 0 ? UnixMillis() : 0;
  if (ctx.deadline_ms != 0 && now_unix > ctx.deadline_ms) {
    status = wire::ResultStatus::Expired;
    error = "deadline passed " + std::to_string(now_unix - ctx.deadline_ms) +
            " ms before the job could start";
  } else if (auto it = handlers_.find(ctx.task); it == handlers_.end()) {
    status = wire::ResultStatus::UnknownTask;
    error = "unknown task '" + std::string(ctx.task) + "'";
  } else {
    int64_t start = MonoMicros();
    try {
      output = it->second(ctx);
    } catch (const std::exception& e) {
      status = wire::ResultStatus::Failed;
      error = e.what();
    } catch (...) {
      status = wire::ResultStatus::Failed;
      error = "handler threw a non-standard exception";
    }
    duration_us =
        static_cast<uint64_t>(std::max<int64_t>(0, MonoMicros() - start));
  }
  if (status != wire::ResultStatus::Ok) output.clear();

  Bytes blob = writer.EncodeResult(ctx.id, status, AsBytes(output), error,
                                   ctx.attempt, duration_us);
  if (blob.size() + kEnvelopeSlackBytes > options_.limits.max_frame_bytes) {
    status = wire::ResultStatus::Failed;
    error = "output of " + std::to_string(output.size()) +
            " bytes does not fit in a frame (limit " +
            std::to_string(options_.limits.max_frame_bytes) + " bytes)";
    blob = writer.EncodeResult(ctx.id, status, {}, error, ctx.attempt,
                               duration_us);
  }
  job.result.assign(reinterpret_cast<const char*>(blob.data()), blob.size());
  if (status == wire::ResultStatus::Ok) {
    jobs_ok_.fetch_add(1, std::memory_order_relaxed);
  } else {
    jobs_failed_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Worker::Impl::PushDone(Job* job) {
  done_queue_.push(job);
  // Sequentially consistent with the I/O thread publishing its state and
  // then reading uncollected_ (in Run): either it sees this result, or this
  // thread sees it sleeping.
  const int64_t uncollected = uncollected_.fetch_add(1) + 1;
  int state = io_state_.load();
  if (state == kIoAwake) return;
  if (state == kIoWakeOnBatch && uncollected < wake_batch_ &&
      queued_.load() > 0) {
    return;  // it wakes on its own within kMaxResultDelayUs
  }
  // One wake-up (one eventfd write) per sleep, whoever gets here first.
  if (io_state_.compare_exchange_strong(state, kIoAwake)) WakeIo();
}

void Worker::Impl::WakeIo() {
  if (wake_fd_ < 0) return;
  uint64_t one = 1;
  // EAGAIN (counter saturated) still leaves the fd readable; nothing to do.
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
}

// ---------------------------------------------------------------------------
// I/O thread.

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

Status Worker::Impl::OpenSocket(Broker& b) {
  poll_items_dirty_ = true;
  return b.Open(*context_, options_.limits, now_us());
}

void Worker::Impl::SendReady(Broker& b) {
  // A new registration: the broker forgets whatever credit it had from us.
  ++b.generation;
  b.credit = 0;
  ReadyInfo info;
  info.credit =
      draining_ ? 0
                : static_cast<uint32_t>(std::max<int64_t>(0, b.share - b.held));
  info.capacity = static_cast<uint32_t>(concurrency_);
  info.tasks = task_names_;
  info.tags = options_.tags;
  info.taints = options_.taints;
  info.name = options_.name;
  if (Send(b, writer_.EncodeReady(info), "Ready")) {
    b.credit = info.credit;
    b.last_ready_ms = now_ms_;
  }
}

bool Worker::Impl::Send(Broker& b, Bytes message, const char* what) {
  return Sent(b, b.Send(message), what);
}

bool Worker::Impl::Sent(Broker& b, const Status& st, const char* what) {
  if (st.ok()) return true;
  uint64_t suppressed = 0;
  if (send_log_.Allow(now_ms_, &suppressed)) {
    spdlog::warn("cannot send {} to broker {}: {}{}", what, b.endpoint(),
                 st.ToString(), Suppressed(suppressed));
  }
  return false;
}

void Worker::Impl::RebuildPollItems() {
  poll_items_.clear();
  poll_items_.push_back(zmq_pollitem_t{nullptr, wake_fd_, ZMQ_POLLIN, 0});
  for (auto& b : brokers_) {
    // A broker without a socket (it could not be reopened) gets an inert item.
    poll_items_.push_back(
        b.socket() ? zmq_pollitem_t{b.socket()->handle(), 0, ZMQ_POLLIN, 0}
                   : zmq_pollitem_t{nullptr, -1, 0, 0});
  }
  poll_items_dirty_ = false;
}

int64_t Worker::Impl::PollTimeoutMs() const {
  int64_t t = std::min<int64_t>(
      kMaxPollMs, std::max<int64_t>(1, options_.heartbeat_ms / 4));
  if (draining_) t = std::clamp<int64_t>(drain_deadline_ms_ - now_ms_, 0, t);
  return t;
}

void Worker::Impl::ReadBroker(Broker& b) {
  for (size_t i = 0; i < kMaxReadsPerTurn; ++i) {
    DealerMessage msg;
    try {
      if (!RecvDealer(*b.socket(), &msg)) return;
    } catch (const zmq::error_t& e) {
      spdlog::warn("receive from broker {} failed: {}", b.endpoint(), e.what());
      return;
    }
    // Any message, even a malformed one, shows the broker is alive.
    b.Heard(now_us());
    if (msg.framing_error != nullptr) {
      bad_frames_.fetch_add(1, std::memory_order_relaxed);
      uint64_t suppressed = 0;
      if (frame_log_.Allow(now_ms_, &suppressed)) {
        spdlog::warn("bad frame from broker {}: {}{}", b.endpoint(),
                     msg.framing_error, Suppressed(suppressed));
      }
      continue;
    }
    HandleFrame(b, std::move(msg.body));
  }
}

void Worker::Impl::HandleFrame(Broker& b, zmq::message_t frame) {
  Decoded d =
      Decode(Bytes(frame.data<uint8_t>(), frame.size()), options_.limits);
  uint64_t suppressed = 0;
  if (!d.ok()) {
    bad_frames_.fetch_add(1, std::memory_order_relaxed);
    if (frame_log_.Allow(now_ms_, &suppressed)) {
      spdlog::warn("bad frame from broker {}: {} ({}){}", b.endpoint(),
                   wire::EnumNameErrorCode(d.error), d.message,
                   Suppressed(suppressed));
    }
    return;
  }
  switch (d.kind()) {
    case wire::Body::Dispatch:
      OnDispatch(b, std::move(frame));
      return;
    case wire::Body::Heartbeat:
      return;
    case wire::Body::Disconnect: {
      const auto* disconnect = d.envelope->body_as_Disconnect();
      if (draining_) return;
      // A broker that lost us answers every message we sent with a
      // Disconnect; register once per heartbeat interval, not once per
      // answer. If it still does not know us, the answer to our next message
      // after the interval brings us back here.
      if (b.last_ready_ms != 0 &&
          now_ms_ - b.last_ready_ms < options_.heartbeat_ms) {
        spdlog::debug("broker {}: Disconnect right after Ready; ignored",
                      b.endpoint());
        return;
      }
      spdlog::info(
          "broker {} does not know this worker ({}); registering again",
          b.endpoint(), AsString(disconnect->reason()));
      SendReady(b);
      return;
    }
    case wire::Body::Error: {
      const auto* error = d.envelope->body_as_Error();
      if (protocol_log_.Allow(now_ms_, &suppressed)) {
        spdlog::warn("broker {} reports an error: {} {}{}", b.endpoint(),
                     wire::EnumNameErrorCode(error->code()),
                     AsString(error->message()), Suppressed(suppressed));
      }
      return;
    }
    default:
      unexpected_.fetch_add(1, std::memory_order_relaxed);
      if (protocol_log_.Allow(now_ms_, &suppressed)) {
        spdlog::warn("unexpected {} message from broker {}; ignored{}",
                     wire::EnumNameBody(d.kind()), b.endpoint(),
                     Suppressed(suppressed));
      }
      return;
  }
}

void Worker::Impl::OnDispatch(Broker& b, zmq::message_t frame) {
  auto batch = std::make_unique<Batch>();
  batch->frame = std::move(frame);
  // Decode verified these bytes; re-derive the root after the move (a very
  // small message's bytes live inside the message_t itself).
  const auto* env = flatbuffers::GetRoot<wire::Envelope>(batch->frame.data());
  const auto* blobs = env->body_as_Dispatch()->jobs();
  const size_t n = blobs->size();
  jobs_received_.fetch_add(n, std::memory_order_relaxed);
  ++dispatch_messages_;
  if (draining_) {
    // Not started: the broker puts them back in its queue when it gets our
    // Disconnect at the end of the drain.
    spdlog::debug("draining: not starting {} jobs from broker {}", n,
                  b.endpoint());
    return;
  }
  const auto count = static_cast<int64_t>(n);
  if (count > b.credit && count - b.credit <= b.withdraw_grace) {
    // It used credit we withdrew before the withdraw reached it.
    b.withdraw_grace -= count - b.credit;
    b.credit = 0;
  } else if (count > b.credit) {
    credit_violations_.fetch_add(static_cast<uint64_t>(count - b.credit),
                                 std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (protocol_log_.Allow(now_ms_, &suppressed)) {
      spdlog::warn(
          "broker {} dispatched {} jobs with only {} credit; running them "
          "anyway{}",
          b.endpoint(), count, b.credit, Suppressed(suppressed));
    }
    b.credit = 0;
  } else {
    b.credit -= count;
  }
  if (b.credit == 0) b.last_starved_ms = now_ms_;
  b.held += count;
  outstanding_ += count;

  batch->jobs.resize(n);
  batch->unanswered = n;
  for (size_t i = 0; i < n; ++i) {
    Job& job = batch->jobs[i];
    job.batch = batch.get();
    job.blob = blobs->Get(static_cast<flatbuffers::uoffset_t>(i));
    job.broker = b.index;
    job.generation = b.generation;
  }
  Batch* raw = batch.release();
  live_batches_.insert(raw);
  for (auto& job : raw->jobs) run_queue_.push(&job);
  WakeRunners(n);
}

void Worker::Impl::CollectResults() {
  Job* job = nullptr;
  int64_t collected = 0;
  const int64_t now_us = MonoMicros();
  while (done_queue_.try_pop(job)) {
    Broker& b = brokers_[job->broker];
    if (b.pending.empty()) b.oldest_pending_us = now_us;
    b.pending.push_back(job);
    ++collected;
  }
  if (collected != 0) uncollected_.fetch_sub(collected);
}

void Worker::Impl::SetBrokers(std::vector<std::string> endpoints) {
  new_set_.Put(std::move(endpoints));
  WakeIo();
}

// Credit split among brokers: every broker in the set keeps one
// slot, so none starves; the other slots go, in equal parts, to the brokers
// with work: those holding jobs of ours or that used up their credit within
// the last kHungryWindowMs. With none busy, all slots are split equally, so
// a burst can start anywhere at once. A broker above its share gives slots
// back: credit it has not used is withdrawn (Credit.withdraw, at most once
// per window), and results of its jobs return less credit (Results.
// withheld). Regrant grants only slots that are free, so the worker holds
// at most its slots (or one per broker, when it has fewer slots than
// brokers) once the give-backs arrive.
void Worker::Impl::Rebalance() {
  int64_t n = 0, busy = 0;
  for (const Broker& b : brokers_) {
    if (b.retired) continue;
    ++n;
    if (b.held > 0 || Hungry(b)) ++busy;
  }
  if (n == 0) return;
  const int64_t total = std::max(slots_, n);
  const int64_t floating = total - n;
  const int64_t takers = busy > 0 ? busy : n;
  int64_t i = 0;
  for (Broker& b : brokers_) {
    if (b.retired) {
      b.share = 0;
      continue;
    }
    const bool taker = busy == 0 || b.held > 0 || Hungry(b);
    b.share = 1;
    if (taker) {
      b.share += floating / takers + (i++ < floating % takers ? 1 : 0);
    }
  }
}

void Worker::Impl::ApplyBrokerSet() {
  std::vector<std::string> set;
  if (!new_set_.Take(&set)) return;
  MergeBrokerSet(
      brokers_, std::move(set), "", ValidateEndpoint,
      [](Broker& b) {
        spdlog::info("broker {} left the set ({} of its jobs in hand)",
                     b.endpoint(), b.held);
      },
      [](Broker&) {},  // registered below
      [this](const std::string& endpoint) {
        brokers_.emplace_back(endpoint, options_.heartbeat_ms * 1000,
                              static_cast<uint32_t>(brokers_.size()));
      });
  Rebalance();
  for (Broker& b : brokers_) {
    if (b.retired || b.socket()) continue;
    spdlog::info("broker {} joined: {} slots", b.endpoint(), b.share);
    if (Status st = OpenSocket(b); !st.ok()) {
      spdlog::warn("broker {}: {}", b.endpoint(), st.ToString());
      continue;
    }
    SendReady(b);
  }
  poll_items_dirty_ = true;
}

int64_t Worker::Impl::Withdraw(Broker& b, int64_t n) {
  if (!Send(b, writer_.EncodeCredit(0, static_cast<uint32_t>(n)), "Credit")) {
    return 0;
  }
  b.credit -= n;
  b.withdraw_grace += n;
  b.last_withdraw_ms = now_ms_;
  return n;
}

void Worker::Impl::Drop(Broker& b) {
  spdlog::info("broker {} dropped ({} results undeliverable)", b.endpoint(),
               b.held);
  if (b.socket()) {
    Send(b, writer_.EncodeDisconnect("left the set"), "Disconnect");
    b.Close(kCloseLingerMs);
  }
  // Its credit is gone with it (a rejoin registers afresh, and Ready bumps
  // the generation, so its old jobs' results return no credit).
  b.credit = 0;
  b.withdraw_grace = 0;
  poll_items_dirty_ = true;
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

void Worker::Impl::Regrant() {
  Rebalance();
  int64_t used = 0;
  for (auto& b : brokers_) {
    // Left the set: it gets no new jobs; take back all it has not used.
    if (b.retired && b.socket() && b.credit > 0) Withdraw(b, b.credit);
    used += b.held + b.credit;
  }
  int64_t total = 0;
  for (const auto& b : brokers_) total += b.share;
  for (auto& b : brokers_) {
    if (b.retired || !b.socket()) continue;
    const int64_t excess = b.credit + b.held - b.share;
    if (excess > 0 && b.credit > 0 && !Hungry(b) &&
        now_ms_ - b.last_withdraw_ms >= kHungryWindowMs) {
      // Idle above its share: take back what it has not used.
      used -= Withdraw(b, std::min(excess, b.credit));
      continue;
    }
    // Grant only free slots (the floor of one per broker always).
    int64_t deficit = b.share - b.held - b.credit;
    if (b.held + b.credit > 0) {
      deficit = std::min(deficit, total - used);
    }
    if (deficit <= 0) continue;
    if (Send(b, writer_.EncodeCredit(static_cast<uint32_t>(deficit)),
             "Credit")) {
      b.credit += deficit;
      used += deficit;
    }
  }
}

void Worker::Impl::Housekeeping() {
  const int64_t now = now_us();
  for (auto& b : brokers_) {
    if (b.retired) {
      if (!b.socket()) continue;
      if (b.held == 0 || b.Expired(now)) {
        Drop(b);
      } else if (b.HeartbeatDue(now)) {
        // It still holds our jobs (a draining broker waits for them): keep
        // it from taking us for dead.
        Beat(b);
      }
      continue;
    }
    if (!draining_ && b.Expired(now)) {
      Reconnect(b);
    } else if (b.HeartbeatDue(now)) {
      Beat(b);
    }
    // A withdraw the broker has long since seen excuses nothing any more.
    if (now_ms_ - b.last_withdraw_ms > options_.heartbeat_ms) {
      b.withdraw_grace = 0;
    }
  }
}

void Worker::Impl::Beat(Broker& b) {
  Sent(b, b.Beat(writer_.EncodeHeartbeat(), now_us()), "Heartbeat");
}

void Worker::Impl::Reconnect(Broker& b) {
  spdlog::warn("broker {} silent for {} ms; reconnecting", b.endpoint(),
               (now_us() - b.last_heard_us()) / 1000);
  reconnects_.fetch_add(1, std::memory_order_relaxed);
  // A fresh socket (the old one closes with linger 0: the broker is
  // presumed gone).
  if (Status st = OpenSocket(b); !st.ok()) {
    // Keep the (unconnected) socket if there is one; retried after expiry.
    spdlog::error("reconnect to {} failed: {}", b.endpoint(), st.ToString());
    if (!b.socket()) {
      // Could not even create a socket (context terminated?): stop serving.
      stop_.store(true);
      return;
    }
  }
  SendReady(b);
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

Status Worker::Impl::Run() {
  if (ran_.exchange(true)) {
    return Status::Internal("Worker::Run may be called only once");
  }
  if (Status st = ValidateOptions(); !st.ok()) return st;

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

  task_names_.clear();
  for (const auto& [task, handler] : handlers_) task_names_.push_back(task);
  std::sort(task_names_.begin(), task_names_.end());

  now_ms_ = MonoMillis();
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

  for (;;) {
    now_ms_ = MonoMillis();
    if (!draining_ && (stop_.load() || StopRequested())) BeginDrain();
    if (draining_ && (outstanding_ == 0 || now_ms_ >= drain_deadline_ms_))
      break;
    ApplyBrokerSet();
    if (poll_items_dirty_) RebuildPollItems();

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
    int ready = 0;
    try {
      ready = zmq::poll(poll_items_, std::chrono::milliseconds(timeout));
    } catch (const zmq::error_t& e) {
      io_state_.store(kIoAwake);
      if (e.num() == EINTR) continue;
      spdlog::error("poll failed: {}; stopping", e.what());
      stop_.store(true);
      continue;
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
    CollectResults();
    const int64_t now_us = MonoMicros();
    for (auto& b : brokers_) {
      if (ShouldFlush(b, now_us)) FlushResults(b);
    }
    if (!draining_) Regrant();
    Housekeeping();
  }

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

// ---------------------------------------------------------------------------

Worker::Worker(WorkerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
Worker::~Worker() = default;
void Worker::Register(std::string task, Handler handler) {
  impl_->Register(std::move(task), std::move(handler));
}
Status Worker::Run() { return impl_->Run(); }
void Worker::Stop() { impl_->Stop(); }
void Worker::SetBrokers(std::vector<std::string> endpoints) {
  impl_->SetBrokers(std::move(endpoints));
}
WorkerCounters Worker::counters() const { return impl_->counters(); }

}  // namespace yard
