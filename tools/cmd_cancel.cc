// yard cancel (--connect EP | --discover URL) JOB_ID...: asks the brokers to
// cancel jobs wherever they are (waiting, delayed or running); the owner of
// each job gets a Cancelled result. Only the producer that submitted a job
// (with CURVE: the same key) or an admin key may cancel it.
// yard cancel --redis URL [--queue Q] JOB_ID...: an admin's cancel written
// straight into the durable queue (admin::RecordCancels, an audit line),
// then the stored results are watched until --timeout.
// Prints one line per job: "ID cancelled", "ID refused: WHY", "ID not
// found", "ID cancel requested" (recorded in Redis, not finished yet) or
// "ID no answer". Exit 0: all cancelled; 1: any not; 2: usage.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "admin/queue_admin.h"
#include "client/producer.h"
#include "common/audit.h"
#include "common/clock.h"
#include "common/logging.h"
#include "tools/cli.h"

namespace yard {
namespace {

// What the brokers said about one job.
struct Answer {
  CancelReply::Kind kind = CancelReply::Kind::kNotFound;
  std::string message;
  size_t not_found = 0;    // brokers that do not hold it
  bool requested = false;  // a broker recorded it in Redis (kRequested)
  bool final = false;
};

// The line for one job, and whether it was cancelled.
bool PrintAnswer(const JobId& id, const Answer& a) {
  std::string line = id.ToString();
  if (a.final && a.kind == CancelReply::Kind::kCancelled) {
    line += " cancelled";
  } else if (a.final && a.kind == CancelReply::Kind::kRefused) {
    line += " refused: " + a.message;
  } else if (a.requested) {
    line += " cancel requested";
  } else if (a.final) {
    line += " not found";
  } else {
    line += " no answer";
  }
  std::cout << line << "\n";
  return a.final && a.kind == CancelReply::Kind::kCancelled;
}

// --redis: record the cancels, then watch for their stored results.
int CancelInRedis(const std::string& name, const cli::QueueFlags& flags,
                  const std::vector<JobId>& ids, int64_t deadline_us) {
  Result<admin::QueueConnection> q = cli::ConnectQueue(flags);
  if (!q.ok()) return cli::UsageError(name, q.status().message());
  Result<admin::Json> recorded = admin::RecordCancels(*q, ids);
  if (!recorded.ok()) return cli::RuntimeError(name, recorded.status());
  const char* user = std::getenv("USER");
  AuditLog().Write("admin_cancel", user ? user : "", {{"outcome", *recorded}},
                   MonoMillis());
  std::vector<Answer> answers(ids.size());
  size_t open = ids.size();
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& s = (*recorded)["jobs"][ids[i].ToString()];
    if (s == "requested") {
      answers[i].requested = true;
    } else {
      answers[i].kind = CancelReply::Kind::kRefused;
      answers[i].message = "too many cancels recorded";
      answers[i].final = true;
      --open;
    }
  }
  // A broker finishes a cancelled job with a stored Cancelled result; a
  // job that finished otherwise (before the cancel) has its own.
  while (open > 0) {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (answers[i].final) continue;
      Result<admin::Json> r = admin::StoredResult(*q, ids[i]);
      if (!r.ok()) continue;
      const std::string status = (*r)["status"];
      if (status == "Unfinished") continue;  // progress, no result yet
      answers[i].final = true;
      --open;
      if (status == "Cancelled") {
        answers[i].kind = CancelReply::Kind::kCancelled;
      } else {
        answers[i].kind = CancelReply::Kind::kRefused;
        answers[i].message = "it finished first: " + status;
      }
    }
    if (open == 0 || MonoMicros() >= deadline_us) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  int rc = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!PrintAnswer(ids[i], answers[i])) rc = 1;
  }
  return rc;
}

}  // namespace

int RunCancel(int argc, char** argv) {
  CLI::App app{"Cancel jobs wherever they are (waiting, delayed or running)."};
  std::string connect, discover, queue = "default";
  std::string redis;
  cli::LogFlags log{.level = "warn"};
  cli::RedisAuthFlags auth;
  cli::CurveFlags curve;
  std::vector<std::string> id_texts;
  double timeout_s = 10;
  CLI::Option* d =
      cli::AddBrokerSourceFlags(app, "frontend", &connect, &discover, &auth);
  CLI::Option* redis_flag =
      app.add_option("--redis", redis,
                     "an admin's cancel, recorded in this Redis for the "
                     "brokers of --queue (no broker is asked)");
  redis_flag->excludes(d);
  redis_flag->excludes(app.get_option("--connect"));
  app.get_option("--redis-password-file")->remove_needs(d);
  app.add_option("--queue", queue, "queue name (--redis, --discover)")
      ->capture_default_str();
  cli::AddCurveClientFlags(app, &curve);
  app.add_option("JOB_ID", id_texts, "job ids: 32 hex digits each")->required();
  app.add_option("--timeout", timeout_s,
                 "seconds to wait for the brokers' answers")
      ->capture_default_str();
  cli::AddLogFlags(app, &log);
  int code = 0;
  if (!cli::Parse(app, argc, argv, &code)) return code;
  const std::string name = app.get_name();
  if (!(timeout_s > 0)) {
    return cli::UsageError(name, "--timeout: must be greater than 0");
  }
  std::vector<JobId> ids;
  for (const std::string& text : id_texts) {
    const std::optional<JobId> id = JobId::Parse(text);
    if (!id) {
      return cli::UsageError(name,
                             "JOB_ID '" + text + "': expected 32 hex digits");
    }
    ids.push_back(*id);
  }
  cli::StartLogging("cancel", log);
  const int64_t deadline_us =
      MonoMicros() + static_cast<int64_t>(timeout_s * 1e6);
  if (!redis.empty()) {
    cli::QueueFlags flags;
    flags.redis_url = redis;
    flags.auth = auth;
    flags.queue = queue;
    return CancelInRedis(name, flags, ids, deadline_us);
  }
  cli::BrokerSource source;
  if (int rc = cli::ResolveBrokerSource(
          name, connect, discover, auth, Discovery::Side::kFrontend, queue,
          static_cast<int64_t>(timeout_s * 1000), &source)) {
    return rc;
  }
  ProducerOptions opts;
  opts.brokers = source.endpoints;
  if (int rc = cli::ResolveCurveClient(name, curve, source, &opts.curve)) {
    return rc;
  }
  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<JobId, Answer, JobIdHash> answers;
  for (const JobId& id : ids) answers[id];
  size_t asked_brokers = 0;  // set before the first answer can come
  size_t open = answers.size();
  opts.on_cancel = [&](const CancelReply& r) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = answers.find(r.id);
    if (it == answers.end() || it->second.final) return;
    Answer& a = it->second;
    if (r.kind == CancelReply::Kind::kRequested) {
      a.requested = true;  // the Cancelled result is to follow
      return;
    }
    if (r.kind == CancelReply::Kind::kNotFound &&
        ++a.not_found < asked_brokers) {
      return;  // another broker may hold it
    }
    a.kind = r.kind;
    a.message = r.message;
    a.final = true;
    if (--open == 0) cv.notify_all();
  };
  auto created = Producer::Create(std::move(opts));
  if (!created.ok()) return cli::UsageError(name, created.status().message());
  std::unique_ptr<Producer> producer = std::move(created).value();
  // Every broker is asked about an id we did not submit: wait until all
  // answer heartbeats (or the time is up), then ask the live ones.
  const size_t want = source.endpoints.size();
  while (producer->counters().live_brokers < want &&
         MonoMicros() < deadline_us) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    asked_brokers = producer->counters().live_brokers;
  }
  if (asked_brokers == 0) {
    std::cerr << name << ": error: no broker answered within " << timeout_s
              << " s\n";
    return 1;
  }
  producer->Cancel(ids);
  {
    std::unique_lock<std::mutex> lock(mu);
    const int64_t left_us = std::max<int64_t>(0, deadline_us - MonoMicros());
    cv.wait_for(lock, std::chrono::microseconds(left_us),
                [&] { return open == 0; });
  }
  producer->Close();
  int rc = 0;
  for (const JobId& id : ids) {
    if (!PrintAnswer(id, answers[id])) rc = 1;
  }
  return rc;
}

}  // namespace yard
