// The worker's metrics: its counters (WorkerCounters), its links to
// brokers, and per task the outcomes and run times of its jobs.
#include "metrics/exposition.h"
#include "metrics/service_metrics.h"

namespace yard {
namespace {

// Outcome labels, indexed by wire::ResultStatus.
constexpr const char* kOutcomes[] = {"ok", "failed", "unknown_task", "expired",
                                     "cancelled"};
static_assert(std::size(kOutcomes) ==
              std::tuple_size_v<decltype(TaskObservation::outcomes)>);

}  // namespace

std::string WorkerMetricsText(const WorkerObservation& o) {
  Exposition e;
  const WorkerCounters& c = o.counters;
  e.Counter("switchyard_worker_jobs_received_total",
            "Jobs received from brokers.", c.jobs_received);
  for (const TaskObservation& t : o.tasks) {
    for (size_t i = 0; i < t.outcomes.size(); ++i) {
      e.Counter("switchyard_worker_jobs_total",
                "Jobs answered, by task and outcome.", t.outcomes[i],
                {{"task", t.task}, {"outcome", kOutcomes[i]}});
    }
  }
  for (const TaskObservation& t : o.tasks) {
    e.Histogram("switchyard_worker_job_run_seconds",
                "Handler run time, by task.", t.run_time, {{"task", t.task}});
  }
  e.Counter("switchyard_worker_batches_total",
            "Calls of batch handlers (isolate pool: jobs written to a child "
            "together).",
            c.batches);
  e.Counter("switchyard_worker_batched_jobs_total", "Jobs in those batches.",
            c.batched_jobs);
  e.Counter("switchyard_worker_frames_refused_total",
            "Inbound messages refused by framing or Decode.", c.bad_frames);
  e.Counter("switchyard_worker_unexpected_messages_total",
            "Valid messages of a kind brokers never send.", c.unexpected);
  e.Counter("switchyard_worker_reconnects_total",
            "Reconnects to brokers that fell silent.", c.reconnects);
  e.Counter("switchyard_worker_credit_violations_total",
            "Jobs a broker dispatched beyond the credit granted.",
            c.credit_violations);
  e.Gauge("switchyard_worker_brokers", "Brokers in this worker's set.",
          o.brokers);
  e.Gauge("switchyard_worker_brokers_connected",
          "Brokers heard from within the heartbeat liveness.",
          o.brokers_connected);
  e.Gauge("switchyard_worker_jobs_in_flight",
          "Jobs received and not answered yet (running or prefetched).",
          static_cast<double>(o.in_flight));
  e.Gauge("switchyard_worker_concurrency", "Jobs run at once at most.",
          o.concurrency);
  e.Gauge("switchyard_worker_slots",
          "Jobs held at once at most (concurrency + prefetch).",
          static_cast<double>(o.slots));
  e.Gauge("switchyard_worker_draining", "1 while the worker drains.",
          o.draining ? 1 : 0);
  return e.Text();
}

std::string WorkerNotReady(const WorkerObservation& o) {
  if (!o.running) return "worker loop not running";
  if (o.draining) return "draining";
  if (o.brokers_connected == 0) {
    return "no broker connected (0 of " + std::to_string(o.brokers) + ")";
  }
  return "";
}

MetricsEndpoints WorkerEndpoints(const Worker& worker) {
  return {[&worker] { return WorkerMetricsText(worker.Observe()); },
          [&worker] { return WorkerNotReady(worker.Observe()); }};
}

}  // namespace yard
