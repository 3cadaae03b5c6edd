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
  if (result.ok()) {
    out["state"] = "finished";
    out["result"] = *result;
    // A job that failed for good is also a dead letter (until requeued).
    if ((*result)["status"] == "Ok") return out;
  } else if (result.status().code() != StatusCode::kNotFound) {
    return result.status();
  } else {
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

}  // namespace yard
