// The broker's metrics: its counters (BrokerCounters) as they are, the
// gauges and durable-queue counters of its stats JSON, and its latency
// histograms.
#include <nlohmann/json.hpp>

#include "metrics/exposition.h"
#include "metrics/service_metrics.h"
#include "redis/redis_client.h"

namespace yard {
namespace {

// A number from the stats JSON; 0 when absent (memory mode, no CURVE).
double Num(const nlohmann::json& j, const char* pointer) {
  const nlohmann::json::json_pointer p(pointer);
  if (!j.contains(p)) return 0;
  const auto& v = j.at(p);
  if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
  return v.is_number() ? v.get<double>() : 0;
}

void Counters(const BrokerCounters& c, Exposition* e) {
  e->Counter("switchyard_jobs_submitted_total",
             "Jobs received in Submit messages.", c.submitted);
  e->Counter("switchyard_jobs_accepted_total",
             "Jobs accepted (durable mode: written to Redis).", c.accepted);
  e->Counter("switchyard_jobs_duplicate_total",
             "Resubmits of jobs already held, answered without a new copy.",
             c.duplicates);
  const char* refused = "switchyard_jobs_refused_total";
  const char* refused_help = "Jobs refused at submit, by reason.";
  e->Counter(refused, refused_help, c.busy - c.busy_bytes - c.busy_quota,
             {{"reason", "queue_full"}});
  e->Counter(refused, refused_help, c.busy_bytes, {{"reason", "queue_bytes"}});
  e->Counter(refused, refused_help, c.busy_quota,
             {{"reason", "producer_quota"}});
  e->Counter(refused, refused_help, c.refused, {{"reason", "draining"}});
  e->Counter(refused, refused_help, c.unavailable, {{"reason", "unavailable"}});
  e->Counter(refused, refused_help, c.invalid, {{"reason", "invalid"}});
  e->Counter("switchyard_jobs_dispatched_total",
             "Job attempts sent to workers.", c.dispatched);
  e->Counter("switchyard_jobs_completed_total",
             "Jobs finished with an Ok result.", c.completed);
  e->Counter("switchyard_jobs_failed_total",
             "Jobs finished without an Ok result (expired included).",
             c.failed);
  e->Counter("switchyard_jobs_cancelled_total",
             "Jobs finished as Cancelled (by a Cancel, or by their worker).",
             c.cancelled);
  e->Counter("switchyard_jobs_expired_total",
             "Jobs whose deadline passed before they could start.", c.expired);
  e->Counter("switchyard_jobs_retried_total",
             "Failed attempts scheduled to run again.", c.retried);
  e->Counter("switchyard_jobs_redispatched_total",
             "Jobs given back by workers that died or left.", c.redispatched);
  e->Counter("switchyard_jobs_timed_out_total",
             "Attempts taken back past their run timeout.", c.timed_out);
  e->Counter("switchyard_jobs_poisoned_total",
             "Jobs failed after killing too many workers.", c.poisoned);
  const char* dropped = "switchyard_results_dropped_total";
  const char* dropped_help = "Results not forwarded, by reason.";
  e->Counter(dropped, dropped_help, c.results_unroutable,
             {{"reason", "unroutable"}});
  e->Counter(dropped, dropped_help, c.results_foreign, {{"reason", "foreign"}});
  e->Counter(dropped, dropped_help, c.results_late, {{"reason", "late"}});
  const char* frames = "switchyard_frames_refused_total";
  const char* frames_help = "Inbound messages refused, by reason.";
  e->Counter(frames, frames_help, c.bad_frames, {{"reason", "bad_frame"}});
  e->Counter(frames, frames_help, c.unexpected, {{"reason", "unexpected"}});
  e->Counter("switchyard_cancels_refused_total",
             "Cancels of another producer's job.", c.cancels_refused);
  e->Counter("switchyard_cancels_recorded_total",
             "Cancels of jobs not held here, recorded in Redis for the "
             "broker that holds or claims them.",
             c.cancels_recorded);
  e->Counter("switchyard_sends_failed_total",
             "Messages not sent: the peer gone or its pipe full.",
             c.sends_failed);
  e->Counter("switchyard_workers_expired_total",
             "Workers presumed dead after missing heartbeats.",
             c.workers_expired);
  e->Counter("switchyard_workers_refused_total",
             "Worker registrations refused beyond --max-workers.",
             c.workers_refused);
  e->Counter("switchyard_worker_quarantines_total",
             "Workers quarantined after repeated run timeouts.", c.quarantines);
  const char* messages = "switchyard_messages_total";
  const char* messages_help = "ZeroMQ messages, by socket and direction.";
  e->Counter(messages, messages_help, c.frontend_in,
             {{"socket", "frontend"}, {"direction", "in"}});
  e->Counter(messages, messages_help, c.frontend_out,
             {{"socket", "frontend"}, {"direction", "out"}});
  e->Counter(messages, messages_help, c.backend_in,
             {{"socket", "backend"}, {"direction", "in"}});
  e->Counter(messages, messages_help, c.dispatch_out,
             {{"socket", "backend"}, {"direction", "out"}});
}

void Gauges(const nlohmann::json& j, Exposition* e) {
  const bool durable = j.contains("durable");
  const std::string queue =
      durable ? j["durable"].value("queue", "default") : "default";
  const char* depth = "switchyard_queue_jobs";
  const char* depth_help =
      "Jobs in the queue by state (durable mode: the whole queue in Redis, "
      "as this broker last counted it).";
  if (durable) {
    e->Gauge(depth, depth_help, Num(j, "/durable/ready_records"),
             {{"queue", queue}, {"state", "ready"}});
    e->Gauge(depth, depth_help, Num(j, "/durable/delayed"),
             {{"queue", queue}, {"state", "delayed"}});
    e->Gauge(depth, depth_help, Num(j, "/durable/running_records"),
             {{"queue", queue}, {"state", "running"}});
    e->Gauge(depth, depth_help, Num(j, "/durable/dead_records"),
             {{"queue", queue}, {"state", "dead"}});
  } else {
    e->Gauge(depth, depth_help, Num(j, "/queue/ready"),
             {{"queue", queue}, {"state", "ready"}});
    e->Gauge(depth, depth_help, Num(j, "/queue/delayed"),
             {{"queue", queue}, {"state", "delayed"}});
    e->Gauge(depth, depth_help, Num(j, "/queue/running"),
             {{"queue", queue}, {"state", "running"}});
  }
  e->Gauge("switchyard_queue_capacity_jobs",
           "Jobs the queue may hold before submits are Busy.",
           Num(j, "/queue/capacity"), {{"queue", queue}});
  e->Gauge("switchyard_jobs_in_flight",
           "Jobs this broker dispatched whose result has not come back.",
           Num(j, "/in_flight"));
  const char* waiting = "switchyard_jobs_waiting";
  const char* waiting_help =
      "Claimed jobs held for a worker: none admits them (no_worker), or "
      "those that do have no credit (worker_busy).";
  e->Gauge(waiting, waiting_help, Num(j, "/waiting/no_worker"),
           {{"reason", "no_worker"}});
  e->Gauge(waiting, waiting_help, Num(j, "/waiting/worker_busy"),
           {{"reason", "worker_busy"}});
  double credit = 0, capacity = 0, outstanding = 0, workers = 0;
  if (j.contains("workers") && j["workers"].is_array()) {
    for (const auto& w : j["workers"]) {
      ++workers;
      credit += Num(w, "/credit");
      capacity += Num(w, "/capacity");
      outstanding += Num(w, "/outstanding");
    }
  }
  e->Gauge("switchyard_workers", "Workers registered with this broker.",
           workers);
  e->Gauge("switchyard_workers_quarantined",
           "Workers that get no jobs after repeated run timeouts.",
           Num(j, "/workers_quarantined"));
  e->Gauge("switchyard_worker_credit",
           "Free slots the registered workers granted, in all.", credit);
  e->Gauge("switchyard_worker_capacity",
           "Concurrency of the registered workers, in all.", capacity);
  e->Gauge("switchyard_worker_outstanding",
           "Jobs the registered workers hold, in all.", outstanding);
  e->Gauge("switchyard_memory_bytes",
           "Bytes of jobs held in this process (--max-queue-bytes).",
           Num(j, "/memory/bytes"));
  e->Gauge("switchyard_memory_limit_bytes", "--max-queue-bytes.",
           Num(j, "/memory/max_bytes"));
  e->Gauge("switchyard_draining", "1 while the broker drains.",
           Num(j, "/draining"));
  if (j.contains("auth_refused") && j["auth_refused"].is_object()) {
    for (const auto& [reason, n] : j["auth_refused"].items()) {
      e->Counter("switchyard_handshakes_refused_total",
                 "CURVE handshakes refused, by reason.",
                 n.is_number() ? n.get<double>() : 0, {{"reason", reason}});
    }
    e->Counter("switchyard_role_violations_total",
               "Messages refused because the sender's role may not send them.",
               Num(j, "/role_violations"));
  }
  if (!durable) return;
  e->Gauge("switchyard_redis_up",
           "1 when every Redis this broker uses answers; 0 otherwise.",
           j["durable"].value("redis", "") == "up" ? 1 : 0);
  e->Gauge("switchyard_leader",
           "1 while this broker runs the queue's maintenance.",
           Num(j, "/durable/leader"));
  e->Gauge("switchyard_queue_paused", "1 while the queue is paused.",
           Num(j, "/durable/paused"), {{"queue", queue}});
  struct Mirror {
    const char* name;
    const char* help;
    const char* pointer;
  };
  static constexpr Mirror kDurable[] = {
      {"switchyard_jobs_dead_total", "Jobs moved to the dead-letter queue.",
       "/durable/counters/dead_lettered"},
      {"switchyard_jobs_reclaimed_total",
       "Jobs whose lease expired, taken back for another broker.",
       "/durable/counters/reclaimed"},
      {"switchyard_jobs_promoted_total",
       "Delayed jobs made ready (not-before time or retry backoff).",
       "/durable/counters/promoted"},
      {"switchyard_queue_rate_limited_total",
       "Claims held back by the queue's rate limit (yard queue limit).",
       "/durable/counters/tokens_refused"},
      {"switchyard_redis_reconnects_total", "Reconnects to Redis.",
       "/durable/counters/reconnects"},
      {"switchyard_redis_commands_total", "Redis commands sent.",
       "/durable/counters/redis_commands"},
      {"switchyard_redis_round_trips_total",
       "Redis round trips (pipelined batches) of the queue.",
       "/durable/counters/redis_round_trips"},
  };
  for (const Mirror& m : kDurable)
    e->Counter(m.name, m.help, Num(j, m.pointer));
  const char* recorded = "switchyard_recorded_cancels_total";
  const char* recorded_help =
      "Cancels recorded in Redis that this broker found on a job it holds, "
      "by outcome (refused: not the owner's).";
  e->Counter(recorded, recorded_help,
             Num(j, "/durable/counters/recorded_cancels_done"),
             {{"outcome", "done"}});
  e->Counter(recorded, recorded_help,
             Num(j, "/durable/counters/recorded_cancels_refused"),
             {{"outcome", "refused"}});
  e->Gauge("switchyard_cancel_records_present",
           "1 while recorded cancels exist, so that every claim and lease "
           "renewal looks them up.",
           Num(j, "/durable/cancel_records"), {{"queue", queue}});
}

}  // namespace

std::string BrokerMetricsText(const BrokerObservation& o,
                              const BrokerHistograms& h) {
  Exposition e;
  Counters(o.counters, &e);
  const nlohmann::json j = nlohmann::json::parse(o.stats_json, nullptr,
                                                 /*allow_exceptions=*/false);
  if (j.is_object()) {
    Gauges(j, &e);
    if (j.contains("durable")) {
      e.Histogram("switchyard_redis_round_trip_seconds",
                  "Redis commands from queued to answered (blocking reads "
                  "left out).",
                  RedisRoundTrips().Read());
    }
  }
  e.Histogram("switchyard_job_queue_wait_seconds",
              "From a job's creation (producer clock) to its first dispatch.",
              h.queue_wait.Read());
  e.Histogram("switchyard_job_run_seconds",
              "Run time of each attempt, as its worker measured it.",
              h.run_time.Read());
  e.Histogram("switchyard_job_latency_seconds",
              "From a job's creation (producer clock) to its final result "
              "reaching the broker.",
              h.end_to_end.Read());
  e.Gauge("switchyard_stats_age_seconds",
          "Age of the loop's stats this scrape used.", o.age_ms / 1000.0);
  return e.Text();
}

std::string BrokerNotReady(const BrokerObservation& o) {
  if (!o.serving) return "broker loop not running";
  // The loop publishes every heartbeat and at each scrape's request.
  if (o.age_ms > 5000) {
    return "broker loop has not answered for " + std::to_string(o.age_ms) +
           " ms";
  }
  const nlohmann::json j = nlohmann::json::parse(o.stats_json, nullptr,
                                                 /*allow_exceptions=*/false);
  if (!j.is_object()) return "no stats published yet";
  if (j.value("draining", false)) return "draining";
  if (j.contains("durable")) {
    const std::string redis = j["durable"].value("redis", "");
    if (redis == "down") return "redis down";
  }
  return "";
}

MetricsEndpoints BrokerEndpoints(const Broker& broker) {
  return {[&broker] {
            return BrokerMetricsText(broker.Observe(kScrapeWaitMs),
                                     broker.histograms());
          },
          [&broker] { return BrokerNotReady(broker.Observe(kScrapeWaitMs)); }};
}

}  // namespace yard
