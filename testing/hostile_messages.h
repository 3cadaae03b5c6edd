// Messages that are legal FlatBuffers (they verify) but built to be
// expensive for whoever walks or copies them: many offsets to one object,
// and nested blobs placed where their scalars are misaligned. The codec's
// tests, the broker's tests against the real binary, and the fuzzers' seed
// corpus use the same shapes.
//
// Each returns a whole envelope (or, for JobWithSharedTags, a Job blob) as
// bytes; std::string's heap buffer keeps the builder's alignment.
#ifndef YARD_TESTING_HOSTILE_MESSAGES_H_
#define YARD_TESTING_HOSTILE_MESSAGES_H_

#include <cstddef>
#include <string>

namespace yard::testing {

// A Ready whose tasks are `n` offsets to one string of `bytes` bytes, and
// whose tags are `tags` more offsets to it.
std::string SharedNamesReady(size_t n, size_t bytes, size_t tags = 0);

// A Job blob whose `n` tags all point at one short string.
std::string JobWithSharedTags(size_t n);

// A Submit of `n` JobBlobs whose data vectors are one and the same `job`.
std::string SharedBlobSubmit(const std::string& job, size_t n);

// A Submit of `n` offsets to one JobBlob table holding a small job.
std::string SharedTableSubmit(size_t n);

// A Submit of one small job whose nested blob starts at 4 mod 8 in the
// buffer (its int64 fields then sit misaligned in memory).
std::string MisalignedBlobSubmit();

// A Cancel whose vector of `n` ids starts at 4 mod 8 in the buffer: the
// Verifier accepts it (it checks a vector of structs for the alignment of
// its length only), and its uint64 fields sit misaligned.
std::string MisalignedIdsCancel(size_t n);

}  // namespace yard::testing

#endif  // YARD_TESTING_HOSTILE_MESSAGES_H_
