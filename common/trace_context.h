// W3C trace context (https://www.w3.org/TR/trace-context/): the
// `traceparent` a job carries from its producer, through brokers and the
// durable queue, to the worker and back in its result.
//
//   00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//   ^^ ^ trace-id (32 hex)              ^ parent-id (16)  ^ flags (2)
//   version
//
// Version 00 is exactly 55 characters, lowercase hex, and neither id is all
// zeros. A later version may append "-..." fields: it is accepted when its
// first 55 characters parse as above (except the version, which is any two
// hex digits but "ff") and it is at most kMaxTraceParentBytes long.
//
// Thread-safety: pure functions; NewTraceParent and ChildTraceParent draw
// from JobId::Random's per-thread pool.
#ifndef YARD_COMMON_TRACE_CONTEXT_H_
#define YARD_COMMON_TRACE_CONTEXT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace yard {

inline constexpr size_t kTraceParentBytes = 55;  // version 00
inline constexpr size_t kMaxTraceParentBytes = 256;

bool ValidTraceParent(std::string_view traceparent);

// The 32 hex digits of the trace id, or empty when `traceparent` is not
// valid.
std::string_view TraceIdOf(std::string_view traceparent);

// A fresh version-00 traceparent: a random trace id and parent id, flags 01
// (sampled). For a caller that starts a trace of its own (several jobs in
// one trace: give each job this value); the producer library does not call
// it, a job without a traceparent is its own trace (JobTraceParent).
std::string NewTraceParent();

// The trace context of a job its producer sent without one: the job is its
// own trace (trace id = the job id's 32 hex digits, parent id = its low 64
// bits, or 1 when those are 0; flags 01). Nothing travels on the wire for
// it: every hop derives the same value from the id. Empty for the zero id.
std::string JobTraceParent(uint64_t id_hi, uint64_t id_lo);

// A random non-zero span id (what a traceparent's parent-id names).
uint64_t NewSpanId();

// `parent`'s trace id and flags with `span_id` as the parent-id, as
// version 00: what a hop passes on for its own span. Empty when `parent` is
// not valid or span_id is 0. The second form writes into *out (no
// allocation) and returns a view of it.
std::string ChildTraceParent(std::string_view parent, uint64_t span_id);
using TraceParentBuffer = std::array<char, kTraceParentBytes>;
std::string_view ChildTraceParent(std::string_view parent, uint64_t span_id,
                                  TraceParentBuffer* out);

}  // namespace yard

#endif  // YARD_COMMON_TRACE_CONTEXT_H_
