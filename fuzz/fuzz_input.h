// The input format of the fuzz targets that drive a running broker or
// worker: a sequence of messages, each
//
//   [selector: 1 byte] [length: 2 bytes, little-endian] [body: length bytes]
//
// The selector says where the body goes (which socket and peer, whether it
// is framed properly); a length past the end takes the rest of the input.
// Example: 01 05 00 'h' 'e' 'l' 'l' 'o' is one 5-byte body with selector 1.
//
// The seed generator (make_seeds.cc) writes the same format with
// AppendMessage, so seeds and targets cannot disagree on it.
#ifndef YARD_FUZZ_FUZZ_INPUT_H_
#define YARD_FUZZ_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace yard::fuzz {

struct FuzzMessage {
  uint8_t selector = 0;
  std::string_view body;
};

// At most `max_messages` messages (the rest of the input is ignored).
inline std::vector<FuzzMessage> SplitMessages(const uint8_t* data, size_t size,
                                              size_t max_messages) {
  std::vector<FuzzMessage> out;
  size_t at = 0;
  while (at < size && out.size() < max_messages) {
    FuzzMessage m;
    m.selector = data[at++];
    size_t length = 0;
    if (at + 2 <= size) length = data[at] | (size_t{data[at + 1]} << 8);
    at = std::min(at + 2, size);
    length = std::min(length, size - at);
    m.body = {reinterpret_cast<const char*>(data + at), length};
    at += length;
    out.push_back(m);
  }
  return out;
}

// Appends one message in the format above (bodies of at most 65535 bytes).
inline void AppendMessage(std::string* out, uint8_t selector,
                          std::string_view body) {
  const size_t n = std::min<size_t>(body.size(), 0xffff);
  out->push_back(static_cast<char>(selector));
  out->push_back(static_cast<char>(n & 0xff));
  out->push_back(static_cast<char>(n >> 8));
  out->append(body.substr(0, n));
}

}  // namespace yard::fuzz

#endif  // YARD_FUZZ_FUZZ_INPUT_H_
