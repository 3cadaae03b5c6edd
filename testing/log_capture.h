// LogCapture: while it lives, every line spdlog's default logger writes is
// also kept here, so a test can wait for what the code under test says it
// did (a condition, not a time) and check that it said it.
//
//   LogCapture log;  // before the code under test starts logging
//   ...
//   ASSERT_TRUE(log.Await("draining: 2 jobs in hand", Millis(20000)));
//
// Thread-safety: lines may be written from any thread. Construct and
// destroy while nothing else logs (it adds and removes a sink of the
// default logger, which spdlog does not lock).
#ifndef YARD_TESTING_LOG_CAPTURE_H_
#define YARD_TESTING_LOG_CAPTURE_H_

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace yard {

class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<Sink>()) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // The lines logged so far (the message only, no time or level).
  std::vector<std::string> Lines() const { return sink_->Lines(); }

  // The first line logged so far that contains `text`; empty if none.
  std::string Find(std::string_view text) const {
    for (const std::string& line : Lines()) {
      if (line.find(text) != std::string::npos) return line;
    }
    return "";
  }

  // Waits up to `timeout` for a line that contains `text`; that line, or
  // empty when none came.
  std::string Await(std::string_view text,
                    std::chrono::milliseconds timeout) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      std::string line = Find(text);
      if (!line.empty() || std::chrono::steady_clock::now() >= deadline) {
        return line;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  class Sink final : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::vector<std::string> Lines() {
      std::lock_guard<std::mutex> lock(mutex_);
      return lines_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
      lines_.emplace_back(msg.payload.data(), msg.payload.size());
    }
    void flush_() override {}

   private:
    std::vector<std::string> lines_;
  };

  std::shared_ptr<Sink> sink_;
};

}  // namespace yard

#endif  // YARD_TESTING_LOG_CAPTURE_H_
