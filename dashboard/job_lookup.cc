#include "dashboard/job_lookup.h"

#include <string>

namespace yard {
namespace {

// The entry of `list` whose "id" is `id`, or null.
const admin::Json* FindId(const admin::Json& list, const std::string& id) {
  for (const admin::Json& entry : list) {
    if (entry.contains("id") && entry["id"] == id) return &entry;
  }
  return nullptr;
}

}  // namespace

Result<admin::Json> LookupJob(const admin::QueueConnection& q,
                              const JobId& id) {
  const std::string text = id.ToString();
  admin::Json out = {{"id", text}, {"state", "unknown"}};
  Result<admin::Json> result = admin::StoredResult(q, id);
  if (!result.ok() && result.status().code() != StatusCode::kNotFound) {
    return result.status();
  }
  // Progress without a result: the job has not finished (or its result
  // expired first), so it is looked for in the queue like one with neither.
  const bool finished = result.ok() && (*result)["status"] != "Unfinished";
  if (finished) {
    out["state"] = "finished";
    out["result"] = *result;
    // A job that failed for good is also a dead letter (until requeued).
    if ((*result)["status"] == "Ok") return out;
  } else {
    if (result.ok()) out["progress"] = (*result)["progress"];
    Result<admin::Json> jobs = admin::InspectJobs(q, kLookupScan);
    if (!jobs.ok()) return jobs.status();
    if (const admin::Json* job = FindId((*jobs)["jobs"], text)) {
      out["state"] = (*job)["state"];
      out["job"] = *job;
      return out;
    }
  }
  Result<admin::Json> dead = admin::ListDead(q, kLookupScan);
  if (!dead.ok()) return dead.status();
  if (const admin::Json* letter = FindId((*dead)["dead"], text)) {
    out["state"] = "dead";
    out["dead"] = *letter;
    return out;
  }
  if (out["state"] == "unknown") out["scanned"] = kLookupScan;
  return out;
}

bool Cancellable(const admin::Json& state) {
  return state == "ready" || state == "delayed" || state == "running";
}

Result<admin::Json> CancelJob(const admin::QueueConnection& q,
                              const JobId& id) {
  Result<admin::Json> found = LookupJob(q, id);
  if (!found.ok()) return found.status();
  const admin::Json& state = (*found)["state"];
  admin::Json out = {{"queue", q.shards.front().keys.name},
                     {"id", id.ToString()},
                     {"state", state}};
  if (!Cancellable(state)) {
    // Nothing recorded: a record for a job no broker will claim would stay
    // until it expires, and cost every claim a look at it meanwhile.
    if (state == "finished") {
      out["cancel"] = "finished";
      out["status"] = (*found)["result"]["status"];
    } else {
      out["cancel"] = state == "dead" ? "dead" : "not found";
      if (found->contains("scanned")) out["scanned"] = (*found)["scanned"];
    }
    return out;
  }
  Result<admin::Json> recorded = admin::RecordCancels(q, {&id, 1});
  if (!recorded.ok()) return recorded.status();
  out["cancel"] = (*recorded)["jobs"][id.ToString()];
  return out;
}

}  // namespace yard
