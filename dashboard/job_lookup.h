// Where one job of a durable queue is, for the dashboard's search box, and
// an admin's cancel of a job found there.
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
// progress (a job not finished that reported some), scanned (unknown)}.
// Errors from Redis as they come.
Result<admin::Json> LookupJob(const admin::QueueConnection& q, const JobId& id);

// Whether a job in LookupJob's `state` can be cancelled: ready (waiting),
// delayed or running.
bool Cancellable(const admin::Json& state);

// An admin's cancel of job `id`: looked up first (LookupJob), and recorded
// (admin::RecordCancels) only when it is Cancellable, for the broker that
// holds or claims it to finish it Cancelled. {queue, id, state (as looked
// up), cancel: "requested" (recorded) | "full" (too many cancels recorded:
// nothing done) | "finished" (with its result's status) | "dead" | "not
// found" (not among the first kLookupScan: scanned)}. Errors from Redis as
// they come.
Result<admin::Json> CancelJob(const admin::QueueConnection& q, const JobId& id);

}  // namespace yard

#endif  // YARD_DASHBOARD_JOB_LOOKUP_H_
