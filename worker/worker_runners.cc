// The worker's runner side.
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
#include <unistd.h>

#include <algorithm>
#include <array>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "common/clock.h"
#include "common/logging.h"
#include "common/trace_context.h"
#include "worker/worker_impl.h"

namespace yard {

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
      // A batch may end on a job it took but could not run (another kind).
      while (job != nullptr) job = Execute(*job, writer);
      continue;
    }
    parked_.fetch_add(1);
    if (queued_.load() == 0 && !runners_stop_.load()) unpark_.acquire();
    parked_.fetch_sub(1);
  }
  // Last touch of *this: ~Impl waits for live_tasks_ to reach zero.
  live_tasks_.fetch_sub(1, std::memory_order_release);
}

// Execution's steps are forced inline into Execute (and ExecuteBatch), so
// the thread path costs what it did as one function (bench/instructions.sh).
[[gnu::always_inline]] inline Worker::Impl::Execution::Execution(Impl* owner,
                                                                 Job& j)
    : job(j) {
  const wire::Job* w = job.blob->data_nested_root();
  ctx.id = FromWire(w->id());
  ctx.task = AsString(w->task());
  ctx.queue = AsString(w->queue());
  if (w->payload())
    ctx.payload = Bytes(w->payload()->data(), w->payload()->size());
  ctx.attempt = job.blob->attempt();
  ctx.deadline_ms = w->deadline_ms();
  ctx.job = w;
  ctx.cancel = &job.cancel;
  // Brokers refuse malformed values; stored bytes are checked again. A job
  // sent without one is its own trace (JobTraceParent): nothing to carry,
  // nothing to compute unless the handler asks (ctx.TraceParent()).
  if (const std::string_view tp = AsString(w->traceparent());
      !tp.empty() && ValidTraceParent(tp)) {
    ctx.traceparent = tp;
    ctx.span_id = NewSpanId();
    attempt_traceparent = ChildTraceParent(tp, ctx.span_id, &buffer);
  }
  sink.owner = owner;
  sink.job = &job;
  ctx.progress = &sink;
  const auto found = owner->handlers_.find(ctx.task);
  if (found != owner->handlers_.end()) registered = &found->second;
}

Worker::Impl::Job* Worker::Impl::Execute(Job& job, Writer& writer) {
  Execution e(this, job);
  if (Begin(e)) {
    if (e.registered->batch) return ExecuteBatch(e, writer);
    CallHandler(e);
  }
  Finish(e, writer);
  return nullptr;
}

[[gnu::always_inline]] inline bool Worker::Impl::Begin(Execution& e) {
  const JobContext& ctx = e.ctx;
  int64_t now_unix = ctx.deadline_ms != 0 ? UnixMillis() : 0;
  if (ctx.Cancelled()) {
    e.status = wire::ResultStatus::Cancelled;
    e.error = "cancelled before it started";
  } else if (ctx.deadline_ms != 0 && now_unix > ctx.deadline_ms) {
    e.status = wire::ResultStatus::Expired;
    // Unsigned: any int64 deadline may arrive, and the distance from a very
    // negative one does not fit in an int64.
    const uint64_t late = static_cast<uint64_t>(now_unix) -
                          static_cast<uint64_t>(ctx.deadline_ms);
    e.error = "deadline passed " + std::to_string(late) +
              " ms before the job could start";
  } else if (e.registered == nullptr) {
    e.status = wire::ResultStatus::UnknownTask;
    e.error = "unknown task '" + std::string(ctx.task) + "'";
  } else {
    LogJob(spdlog::level::debug, ctx.id, e.attempt_traceparent,
           "started: task {}, attempt {}", ctx.task, ctx.attempt);
    e.start_us = MonoMicros();
    return true;
  }
  return false;
}

[[gnu::always_inline]] inline void Worker::Impl::CallHandler(Execution& e) {
  wire::ResultStatus status = wire::ResultStatus::Ok;
  try {
    e.output = e.registered->handler(e.ctx);
  } catch (const JobFailure& failure) {
    status = failure.status();
    e.error = failure.what();
  } catch (const std::exception& ex) {
    status = wire::ResultStatus::Failed;
    e.error = ex.what();
  } catch (...) {
    status = wire::ResultStatus::Failed;
    e.error = "handler threw a non-standard exception";
  }
  Ran(e, status, {}, e.start_us);
}

[[gnu::always_inline]] inline void Worker::Impl::Ran(Execution& e,
                                                     wire::ResultStatus status,
                                                     std::string_view data,
                                                     int64_t start_us) {
  e.status = status;
  if (!data.empty()) {
    (status == wire::ResultStatus::Ok ? e.output : e.error).assign(data);
  }
  e.duration_us =
      static_cast<uint64_t>(std::max<int64_t>(0, MonoMicros() - start_us));
  e.job.ran = true;
  if (e.ctx.Cancelled()) {
    e.status = wire::ResultStatus::Cancelled;
    e.error = "cancelled while it ran";
  }
}

[[gnu::always_inline]] inline void Worker::Impl::Finish(Execution& e,
                                                        Writer& writer) {
  const JobContext& ctx = e.ctx;
  Job& job = e.job;
  if (e.status != wire::ResultStatus::Ok) e.output.clear();
  LogJob(spdlog::level::debug, ctx.id, e.attempt_traceparent,
         "finished: {} after {} us{}{}", wire::EnumNameResultStatus(e.status),
         e.duration_us, e.error.empty() ? "" : ": ", e.error);

  Bytes blob = writer.EncodeResult(ctx.id, e.status, AsBytes(e.output), e.error,
                                   ctx.attempt, e.duration_us, {},
                                   e.attempt_traceparent);
  if (blob.size() + kEnvelopeSlackBytes > options_.limits.max_frame_bytes) {
    e.status = wire::ResultStatus::Failed;
    e.error = "output of " + std::to_string(e.output.size()) +
              " bytes does not fit in a frame (limit " +
              std::to_string(options_.limits.max_frame_bytes) + " bytes)";
    blob = writer.EncodeResult(ctx.id, e.status, {}, e.error, ctx.attempt,
                               e.duration_us, {}, e.attempt_traceparent);
  }
  job.result.assign(reinterpret_cast<const char*>(blob.data()), blob.size());
  job.metrics =
      e.registered != nullptr ? e.registered->metrics.get() : &unknown_task_;
  job.status = e.status;
  job.duration_us = e.duration_us;
  if (e.status == wire::ResultStatus::Ok) {
    jobs_ok_.fetch_add(1, std::memory_order_relaxed);
  } else if (e.status == wire::ResultStatus::Cancelled) {
    jobs_cancelled_.fetch_add(1, std::memory_order_relaxed);
  } else {
    jobs_failed_.fetch_add(1, std::memory_order_relaxed);
  }
  PushDone(&job);
}

Worker::Impl::Job* Worker::Impl::ExecuteBatch(Execution& first,
                                              Writer& writer) {
  const BatchHandler& batch = *first.registered->batch;
  const size_t max_jobs = std::min(batch.max_jobs, kMaxBatchJobs);
  std::array<std::optional<Execution>, kMaxBatchJobs> more;
  std::array<Execution*, kMaxBatchJobs> runs;
  std::array<const JobContext*, kMaxBatchJobs> contexts;
  size_t n = 0;
  runs[n] = &first;
  contexts[n++] = &first.ctx;
  size_t payload_bytes = first.ctx.payload.size();
  // The jobs of this group already queued, in order; a job of another
  // kind ends the batch and is run next by this runner. more[0..m) hold the
  // jobs in the batch after the first (m < n <= max_jobs).
  Job* next = nullptr;
  for (size_t m = 0; n < max_jobs && payload_bytes < batch.max_payload_bytes &&
                     queued_.load(std::memory_order_relaxed) > 0;) {
    Job* job = nullptr;
    if (!run_queue_.try_pop(job)) break;
    queued_.fetch_sub(1);
    if (abandon_.load(std::memory_order_relaxed)) continue;  // dropped
    Execution& e = more[m].emplace(this, *job);
    if (e.registered != nullptr && e.registered->batch.get() != &batch) {
      more[m].reset();
      next = job;
      break;
    }
    if (!Begin(e)) {  // answered at once; its slot is reused
      Finish(e, writer);
      more[m].reset();
      continue;
    }
    ++m;
    runs[n] = &e;
    contexts[n++] = &e.ctx;
    payload_bytes += e.ctx.payload.size();
  }
  batches_.fetch_add(1, std::memory_order_relaxed);
  batched_jobs_.fetch_add(n, std::memory_order_relaxed);
  // A job in a batch runs from the end of the one before it.
  int64_t last_end_us = first.start_us;
  std::array<bool, kMaxBatchJobs> done{};
  auto finished = [&](size_t i, const JobAnswer& answer) {
    if (i >= n || done[i]) return;
    done[i] = true;
    Execution& e = *runs[i];
    Ran(e, answer.status, answer.data, std::max(e.start_us, last_end_us));
    last_end_us = MonoMicros();
    Finish(e, writer);
  };
  std::string error = "handler did not answer";
  try {
    batch.run(std::span(contexts.data(), n), finished);
  } catch (const std::exception& ex) {
    error = ex.what();
  } catch (...) {
    error = "handler threw a non-standard exception";
  }
  for (size_t i = 0; i < n; ++i) {
    finished(i, {wire::ResultStatus::Failed, error});
  }
  return next;
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

void Worker::Impl::ReportProgress(Job& job, float fraction,
                                  std::string_view message) {
  const int64_t now = MonoMillis();
  if (job.last_progress_ms != 0 &&
      now - job.last_progress_ms < kProgressIntervalMs) {
    return;
  }
  job.last_progress_ms = now;
  const wire::Job* j = job.blob->data_nested_root();
  OutgoingProgress p;
  p.broker = job.broker;
  p.generation = job.generation;
  p.update.id = FromWire(j->id());
  p.update.attempt = job.blob->attempt();
  p.update.fraction = fraction;
  p.update.message.assign(message.substr(0, kMaxProgressMessageBytes));
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    if (progress_out_.size() >= kMaxProgressQueued) return;
    progress_out_.push_back(std::move(p));
    progress_pending_.store(true, std::memory_order_release);
  }
  WakeIo();
}

void Worker::Impl::WakeIo() {
  if (wake_fd_ < 0) return;
  uint64_t one = 1;
  // EAGAIN (counter saturated) still leaves the fd readable; nothing to do.
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
}

}  // namespace yard
