// Decode of arbitrary bytes, then a walk of everything a receiver may read
// of what Decode accepted (fuzz/walk.h). Two passes per input: the default
// Limits, and tight Limits picked by the input's last four bytes, so that
// every bound's edge is reached with small inputs.
#include <cstdint>
#include <cstring>
#include <memory>

#include "fuzz/walk.h"
#include "schemas/codec.h"

namespace {

// Small limits from four bytes: each bound between 0 and a few entries or
// bytes, the frame limit around the input's own size.
yard::Limits TightLimits(const uint8_t* tail, size_t size) {
  yard::Limits l;
  l.max_batch = tail[0] % 9;
  l.max_list_entries = tail[1] % 9;
  l.max_names_bytes = tail[1] / 4;
  l.max_text_bytes = tail[2] % 64;
  l.max_payload_bytes = tail[2] / 4;
  const size_t under = tail[3] % 32;
  l.max_frame_bytes = size + 16 > under ? size + 16 - under : 0;
  return l;
}

void DecodeAndWalk(yard::Bytes frame, const yard::Limits& limits) {
  yard::Decoded d = yard::Decode(frame, limits);
  if (!d.ok()) {
    yard::fuzz::Sink(static_cast<uint64_t>(d.error) + d.message.size());
    return;
  }
  yard::fuzz::Sink(yard::fuzz::WalkEnvelope(*d.envelope, limits));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // RecvRouter/RecvDealer hand Decode 8-aligned frames (schemas/frames.cc,
  // Align); a heap block of exactly `size` bytes is, and ASan sees any read
  // past its end.
  std::unique_ptr<uint8_t[]> frame(new uint8_t[size == 0 ? 1 : size]);
  if (size) std::memcpy(frame.get(), data, size);
  const yard::Bytes bytes(frame.get(), size);
  DecodeAndWalk(bytes, yard::Limits{});
  if (size >= 4) DecodeAndWalk(bytes, TightLimits(data + size - 4, size));
  return 0;
}
