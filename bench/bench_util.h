// Inputs the micro-benchmarks share: deterministic payloads and real Job
// blobs, the way `yard push --task echo` encodes them.
#ifndef YARD_BENCH_BENCH_UTIL_H_
#define YARD_BENCH_BENCH_UTIL_H_

#include <cstdint>
#include <random>
#include <vector>

#include "common/job_id.h"
#include "schemas/codec.h"

namespace yard {

// The batch sizes every per-job benchmark runs at.
inline constexpr int64_t kBenchBatchSizes[] = {1, 16, 256};

inline std::vector<uint8_t> MakePayload(size_t size) {
  std::vector<uint8_t> p(size);
  std::mt19937 rng(42);
  for (auto& b : p) b = static_cast<uint8_t>(rng());
  return p;
}

// A typical job: what `yard push --task echo` sends (id, task, payload,
// created time); no tags, deadline or keys.
inline JobSpec MakeSpec(const std::vector<uint8_t>& payload) {
  JobSpec spec;
  spec.id = JobId::Random();
  spec.task = "echo";
  spec.payload = Bytes(payload.data(), payload.size());
  spec.created_ms = 1700000000000;
  return spec;
}

// `batch` distinct job blobs (distinct ids) of the given payload size.
inline std::vector<std::vector<uint8_t>> MakeJobBlobs(size_t batch,
                                                      size_t payload) {
  auto bytes = MakePayload(payload);
  Writer w;
  std::vector<std::vector<uint8_t>> blobs;
  for (size_t i = 0; i < batch; ++i) {
    Bytes b = w.EncodeJob(MakeSpec(bytes));
    blobs.emplace_back(b.begin(), b.end());
  }
  return blobs;
}

}  // namespace yard

#endif  // YARD_BENCH_BENCH_UTIL_H_
