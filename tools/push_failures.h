// PushFailures: why the jobs of a `yard push` run failed, so that a run with
// failures says more than a count. Failures are counted by kind (the result
// status: Failed, UnknownTask, Expired, Cancelled; or Rejected, a refusal
// for good) and the first few keep their job id and message.
//
// Thread-safety: none. Add() runs on the producer's I/O thread only; the
// other methods run after Producer::Close() has joined that thread.
#ifndef YARD_TOOLS_PUSH_FAILURES_H_
#define YARD_TOOLS_PUSH_FAILURES_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "client/producer.h"

namespace yard {

class PushFailures {
 public:
  static constexpr size_t kExamples = 5;

  // Records `o` when it is a failure (kFailed or kRejected).
  void Add(const JobOutcome& o);

  uint64_t total() const { return total_; }
  // {"by_kind": {KIND: N, ...}, "examples": [{"id", "kind", "error"}, ...]}
  nlohmann::json Json() const;
  // "failures: 3 UnknownTask" and one indented line per example.
  void Print(std::FILE* out) const;

 private:
  struct Example {
    std::string id, kind, error;
  };
  uint64_t total_ = 0;
  std::map<std::string, uint64_t> by_kind_;
  std::vector<Example> examples_;
};

}  // namespace yard

#endif  // YARD_TOOLS_PUSH_FAILURES_H_
