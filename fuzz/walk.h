// Walks of decoded messages for the fuzz targets: every field a receiver
// may read, every byte of every string and vector, so that ASan and UBSan
// see any read the codec's checks did not cover (an offset out of the
// frame, a string without its terminator, a misaligned scalar).
//
// Each walk returns a checksum of what it read; callers keep it in a
// volatile so that no read is optimised away.
//
// Thread-safety: pure functions.
#ifndef YARD_FUZZ_WALK_H_
#define YARD_FUZZ_WALK_H_

#include <cstdint>

#include "schemas/codec.h"

namespace yard::fuzz {

// A decoded envelope (Decode succeeded with `limits`): its body by kind,
// every nested Job and JobResult through data_nested_root(), and CheckJob
// on the jobs of a Submit or Dispatch, as a broker or worker would.
uint64_t WalkEnvelope(const wire::Envelope& env, const Limits& limits);

// One verified Job or JobResult (a nested blob, or a blob read from Redis).
uint64_t WalkJob(const wire::Job& job);
uint64_t WalkResult(const wire::JobResult& result);

// Keeps `sum` observable.
void Sink(uint64_t sum);

}  // namespace yard::fuzz

#endif  // YARD_FUZZ_WALK_H_
