#include "tools/push_failures.h"

#include <cinttypes>

namespace yard {

void PushFailures::Add(const JobOutcome& o) {
  std::string kind;
  if (o.kind == JobOutcome::Kind::kFailed) {
    kind = wire::EnumNameResultStatus(o.status);
  } else if (o.kind == JobOutcome::Kind::kRejected) {
    kind = "Rejected";
  } else {
    return;
  }
  ++total_;
  ++by_kind_[kind];
  if (examples_.size() < kExamples) {
    examples_.push_back({o.id.ToString(), kind, o.error});
  }
}

nlohmann::json PushFailures::Json() const {
  nlohmann::json examples = nlohmann::json::array();
  for (const Example& e : examples_) {
    examples.push_back({{"id", e.id}, {"kind", e.kind}, {"error", e.error}});
  }
  return {{"by_kind", by_kind_}, {"examples", examples}};
}

void PushFailures::Print(std::FILE* out) const {
  if (total_ == 0) return;
  std::string kinds;
  for (const auto& [kind, n] : by_kind_) {
    kinds += (kinds.empty() ? "" : ", ") + std::to_string(n) + " " + kind;
  }
  std::fprintf(out, "%-12s %s; the first %zu:\n", "failures", kinds.c_str(),
               examples_.size());
  for (const Example& e : examples_) {
    std::fprintf(out, "  %s %s: %s\n", e.id.c_str(), e.kind.c_str(),
                 e.error.empty() ? "(no message)" : e.error.c_str());
  }
}

}  // namespace yard
