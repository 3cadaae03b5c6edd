#include "common/trace_context.h"

#include <algorithm>

#include "common/job_id.h"

namespace yard {
namespace {

constexpr char kHex[] = "0123456789abcdef";

bool LowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

bool AllZeros(std::string_view s) {
  return s.find_first_not_of('0') == std::string_view::npos;
}

void PutHex(uint64_t v, char* out) {
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = kHex[v & 0xf];
}

}  // namespace

bool ValidTraceParent(std::string_view tp) {
  if (tp.size() < kTraceParentBytes || tp.size() > kMaxTraceParentBytes) {
    return false;
  }
  const std::string_view version = tp.substr(0, 2);
  const std::string_view trace_id = tp.substr(3, 32);
  const std::string_view parent_id = tp.substr(36, 16);
  const std::string_view flags = tp.substr(53, 2);
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return false;
  if (!LowerHex(version) || version == "ff") return false;
  if (!LowerHex(trace_id) || AllZeros(trace_id)) return false;
  if (!LowerHex(parent_id) || AllZeros(parent_id)) return false;
  if (!LowerHex(flags)) return false;
  if (version == "00") return tp.size() == kTraceParentBytes;
  return tp.size() == kTraceParentBytes || tp[kTraceParentBytes] == '-';
}

std::string_view TraceIdOf(std::string_view traceparent) {
  return ValidTraceParent(traceparent) ? traceparent.substr(3, 32)
                                       : std::string_view();
}

uint64_t NewSpanId() {
  const JobId r = JobId::Random();
  return r.lo != 0 ? r.lo : r.hi | 1;
}

std::string NewTraceParent() {
  const JobId trace = JobId::Random();  // never zero
  std::string tp = "00-00000000000000000000000000000000-0000000000000000-01";
  PutHex(trace.hi, tp.data() + 3);
  PutHex(trace.lo, tp.data() + 19);
  PutHex(NewSpanId(), tp.data() + 36);
  return tp;
}

std::string JobTraceParent(uint64_t id_hi, uint64_t id_lo) {
  if (id_hi == 0 && id_lo == 0) return {};
  std::string tp = "00-00000000000000000000000000000000-0000000000000000-01";
  PutHex(id_hi, tp.data() + 3);
  PutHex(id_lo, tp.data() + 19);
  PutHex(id_lo != 0 ? id_lo : 1, tp.data() + 36);
  return tp;
}

std::string_view ChildTraceParent(std::string_view parent, uint64_t span_id,
                                  TraceParentBuffer* out) {
  if (span_id == 0 || !ValidTraceParent(parent)) return {};
  std::copy_n(parent.data(), kTraceParentBytes, out->data());
  (*out)[0] = '0';
  (*out)[1] = '0';
  PutHex(span_id, out->data() + 36);
  return {out->data(), out->size()};
}

std::string ChildTraceParent(std::string_view parent, uint64_t span_id) {
  TraceParentBuffer buffer;
  return std::string(ChildTraceParent(parent, span_id, &buffer));
}

}  // namespace yard
