// Where one job of a durable queue is, for the dashboard's search box.
//
// A finished job is found by its stored result (admin::StoredResult). The
// queue keeps no index from id to record, so a job still in the queue is
// looked for among the first kLookupScan waiting/running jobs
// (admin::InspectJobs) and the first kLookupScan dead letters
// (admin::ListDead): bounded work per search, at the price of not finding a
// job deeper in a long queue ("scanned" says how far it looked).
//
// Thread-safety: as the QueueConnection (one thread at a time).
#ifndef YARD_DASHBOARD_JOB_LOOKUP_H_
#define YARD_DASHBOARD_JOB_LOOKUP_H_

#include <cstddef>

#include "admin/queue_admin.h"
#include "common/job_id.h"

namespace yard {

inline constexpr size_t kLookupScan = 1000;

// {id, state: "finished"|"ready"|"running"|"delayed"|"dead"|"unknown",
// result (finished), job (ready, running, delayed: InspectJobs' entry),
// dead (ListDead's entry, also for a failed job still a dead letter),
// scanned (unknown)}. Errors from Redis as they come.
Result<admin::Json> LookupJob(const admin::QueueConnection& q, const JobId& id);

}  // namespace yard

#endif  // YARD_DASHBOARD_JOB_LOOKUP_H_
