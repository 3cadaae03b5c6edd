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
#include <exception>
#include <string>

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
  ctx.cancel = &job.cancel;
  // Brokers refuse malformed values; stored bytes are checked again. A job
  // sent without one is its own trace (JobTraceParent): nothing to carry,
  // nothing to compute unless the handler asks (ctx.TraceParent()).
  TraceParentBuffer buffer;
  std::string_view attempt_traceparent;
  if (const std::string_view tp = AsString(j->traceparent());
      !tp.empty() && ValidTraceParent(tp)) {
    ctx.traceparent = tp;
    ctx.span_id = NewSpanId();
    attempt_traceparent = ChildTraceParent(tp, ctx.span_id, &buffer);
  }
  struct Sink : ProgressSink {
    Sink(Impl* owner, Job* target) : owner_(owner), target_(target) {}
    void Report(float fraction, std::string_view message) override {
      owner_->ReportProgress(*target_, fraction, message);
    }
    Impl* owner_;
    Job* target_;
  } sink(this, &job);
  ctx.progress = &sink;

  const auto registered = handlers_.find(ctx.task);
  TaskMetrics& metrics = registered == handlers_.end()
                             ? unknown_task_
                             : *registered->second.metrics;
  wire::ResultStatus status = wire::ResultStatus::Ok;
  std::string output;
  std::string error;
  uint64_t duration_us = 0;
  int64_t now_unix = ctx.deadline_ms != 0 ? UnixMillis() : 0;
  if (ctx.Cancelled()) {
    status = wire::ResultStatus::Cancelled;
    error = "cancelled before it started";
  } else if (ctx.deadline_ms != 0 && now_unix > ctx.deadline_ms) {
    status = wire::ResultStatus::Expired;
    // Unsigned: any int64 deadline may arrive, and the distance from a very
    // negative one does not fit in an int64.
    const uint64_t late = static_cast<uint64_t>(now_unix) -
                          static_cast<uint64_t>(ctx.deadline_ms);
    error = "deadline passed " + std::to_string(late) +
            " ms before the job could start";
  } else if (registered == handlers_.end()) {
    status = wire::ResultStatus::UnknownTask;
    error = "unknown task '" + std::string(ctx.task) + "'";
  } else {
    LogJob(spdlog::level::debug, ctx.id, attempt_traceparent,
           "started: task {}, attempt {}", ctx.task, ctx.attempt);
    int64_t start = MonoMicros();
    try {
      output = registered->second.handler(ctx);
    } catch (const JobFailure& e) {
      status = e.status();
      error = e.what();
    } catch (const std::exception& e) {
      status = wire::ResultStatus::Failed;
      error = e.what();
    } catch (...) {
      status = wire::ResultStatus::Failed;
      error = "handler threw a non-standard exception";
    }
    duration_us =
        static_cast<uint64_t>(std::max<int64_t>(0, MonoMicros() - start));
    job.ran = true;
    if (ctx.Cancelled()) {
      status = wire::ResultStatus::Cancelled;
      error = "cancelled while it ran";
    }
  }
  if (status != wire::ResultStatus::Ok) output.clear();
  LogJob(spdlog::level::debug, ctx.id, attempt_traceparent,
         "finished: {} after {} us{}{}", wire::EnumNameResultStatus(status),
         duration_us, error.empty() ? "" : ": ", error);

  Bytes blob =
      writer.EncodeResult(ctx.id, status, AsBytes(output), error, ctx.attempt,
                          duration_us, {}, attempt_traceparent);
  if (blob.size() + kEnvelopeSlackBytes > options_.limits.max_frame_bytes) {
    status = wire::ResultStatus::Failed;
    error = "output of " + std::to_string(output.size()) +
            " bytes does not fit in a frame (limit " +
            std::to_string(options_.limits.max_frame_bytes) + " bytes)";
    blob = writer.EncodeResult(ctx.id, status, {}, error, ctx.attempt,
                               duration_us, {}, attempt_traceparent);
  }
  job.result.assign(reinterpret_cast<const char*>(blob.data()), blob.size());
  job.metrics = &metrics;
  job.status = status;
  job.duration_us = duration_us;
  if (status == wire::ResultStatus::Ok) {
    jobs_ok_.fetch_add(1, std::memory_order_relaxed);
  } else if (status == wire::ResultStatus::Cancelled) {
    jobs_cancelled_.fetch_add(1, std::memory_order_relaxed);
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
