// The load test's report in three forms: a JSON document (a contract:
// scripts read its keys), a plain-text table for the terminal, and a
// self-contained HTML page with inline SVG charts (no script, no network).
//
// JSON top-level keys: config, totals {submitted, completed, failed,
// duplicated, lost, ...}, jobs_per_s, latency_us {p50, p90, p99, p999, max,
// mean, count}, series [points of 100 ms and up: SeriesSpanUs], events,
// problems, verdict, exit_code. Keys are only ever added, never renamed.
//
// Invariant: totals.submitted = completed + failed + lost + corrupt.
#ifndef YARD_LOADTEST_REPORT_H_
#define YARD_LOADTEST_REPORT_H_

#include <nlohmann/json.hpp>
#include <string>

#include "loadtest/loadtest.h"

namespace yard {

nlohmann::json ReportJson(const LoadtestReport& r);
// {p50, p90, p99, p999, max, mean, count} of a latency histogram (also the
// "latency_us" of `yard push --json`).
nlohmann::json LatencyJson(const Histogram& h);
std::string ReportTable(const LoadtestReport& r);
std::string ReportHtml(const LoadtestReport& r);
// "ok", "lost", "failed" (problems but nothing lost) or "interrupted".
std::string Verdict(const LoadtestReport& r);

}  // namespace yard

#endif  // YARD_LOADTEST_REPORT_H_
