// Small helpers shared by the fuzz targets that drive a running broker or
// worker over inproc:// sockets: logging into a null sink, raw sends that
// break the framing on purpose, and a give-up that the fuzzer reports.
#ifndef YARD_FUZZ_PEER_UTIL_H_
#define YARD_FUZZ_PEER_UTIL_H_

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <zmq.hpp>

#include "schemas/codec.h"

namespace yard::fuzz {

// Every log line is still formatted (fuzzed names and reasons go through
// fmt) but written nowhere: the fuzzer's output stays readable.
inline void QuietLogging() {
  auto logger = std::make_shared<spdlog::logger>(
      "fuzz", std::make_shared<spdlog::sinks::null_sink_mt>());
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

// How a message's frames are laid out on the wire, from its selector:
// mostly as the protocol says, sometimes broken (framing errors).
enum class Framing { kProper, kNoDelimiter, kExtraFrame };
inline Framing FramingOf(uint8_t selector) {
  switch ((selector >> 4) % 8) {
    case 6:
      return Framing::kNoDelimiter;
    case 7:
      return Framing::kExtraFrame;
    default:
      return Framing::kProper;
  }
}

// Sends `frames` as one multipart message without blocking (a full pipe
// drops it: the fuzzer goes on).
inline void SendFrames(zmq::socket_t& s,
                       std::initializer_list<std::string_view> frames) {
  size_t i = 0;
  try {
    for (std::string_view f : frames) {
      auto flags = zmq::send_flags::dontwait;
      if (++i < frames.size()) flags = flags | zmq::send_flags::sndmore;
      if (!s.send(zmq::buffer(f.data(), f.size()), flags)) return;
    }
  } catch (const zmq::error_t&) {
    // A peer gone (ROUTER_MANDATORY): nothing to deliver to.
  }
}

// A broker or worker that stops answering is a finding: abort() so that
// libFuzzer saves the input.
[[noreturn]] inline void Hung(const char* what) {
  std::fprintf(stderr, "==fuzz== %s\n", what);
  std::fflush(stderr);
  std::abort();
}

// Limits of the broker and worker under fuzzing: small, so that inputs
// reach them quickly.
inline Limits FuzzLimits() {
  Limits l;
  l.max_frame_bytes = 1 << 20;
  l.max_batch = 64;
  return l;
}

// The one harness of a fuzz process (an in-process broker or worker and its
// peers), made on first use and destroyed at exit: atexit runs before
// LeakSanitizer's check, so the harness's threads are joined by then.
template <typename Harness>
Harness* TheHarness() {
  static Harness* harness = [] {
    auto* h = new Harness();
    std::atexit([] { delete TheHarness<Harness>(); });
    return h;
  }();
  return harness;
}

}  // namespace yard::fuzz

#endif  // YARD_FUZZ_PEER_UTIL_H_
