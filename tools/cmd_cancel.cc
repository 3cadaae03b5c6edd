// yard cancel (--connect EP | --discover URL) JOB_ID...: asks the brokers to
// cancel jobs wherever they are (waiting, delayed or running); the owner of
// each job gets a Cancelled result. Only the producer that submitted a job
// (with CURVE: the same key) or an admin key may cancel it.
// Prints one line per job: "ID cancelled", "ID refused: WHY" or
// "ID not found". Exit 0: all cancelled; 1: any not; 2: usage.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "client/producer.h"
#include "common/clock.h"
#include "common/logging.h"
#include "tools/cli.h"

namespace yard {
namespace {

// What the brokers said about one job.
struct Answer {
  CancelReply::Kind kind = CancelReply::Kind::kNotFound;
  std::string message;
  size_t not_found = 0;  // brokers that do not hold it
  bool final = false;
};

}  // namespace

int RunCancel(int argc, char** argv) {
  CLI::App app{"Cancel jobs wherever they are (waiting, delayed or running)."};
  std::string connect, discover, queue = "default", log_level = "warn";
  cli::RedisAuthFlags auth;
  cli::CurveFlags curve;
  std::vector<std::string> id_texts;
  double timeout_s = 10;
  cli::AddBrokerSourceFlags(app, "frontend", &connect, &discover, &auth);
  cli::AddCurveClientFlags(app, &curve);
  app.add_option("JOB_ID", id_texts, "job ids: 32 hex digits each")->required();
  app.add_option("--timeout", timeout_s,
                 "seconds to wait for the brokers' answers")
      ->capture_default_str();
  app.add_option("--log-level", log_level)->capture_default_str();
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
  InitLogging("cancel", log_level);
  const int64_t deadline_us =
      MonoMicros() + static_cast<int64_t>(timeout_s * 1e6);
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
    const Answer& a = answers[id];
    std::string line = id.ToString();
    if (!a.final) {
      line += " no answer";
    } else if (a.kind == CancelReply::Kind::kCancelled) {
      line += " cancelled";
    } else if (a.kind == CancelReply::Kind::kRefused) {
      line += " refused: " + a.message;
    } else {
      line += " not found";
    }
    if (!a.final || a.kind != CancelReply::Kind::kCancelled) rc = 1;
    std::cout << line << "\n";
  }
  return rc;
}

}  // namespace yard
