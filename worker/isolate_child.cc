#include "worker/isolate_child.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string_view>
#include <unordered_map>

#include "common/clock.h"
#include "worker/exec_frame.h"

namespace yard {
namespace {

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void SetLimit(int resource, rlim_t soft, rlim_t hard, const char* what) {
  rlimit lim{soft, hard};
  if (setrlimit(resource, &lim) != 0) {
    std::fprintf(stderr, "yard worker-child: setrlimit(%s): %s\n", what,
                 std::strerror(errno));
  }
}

// A handler's ctx.Progress in a child: a progress frame to the worker,
// which passes it on as the in-process sink would. At most one frame per
// kProgressIntervalMs (the worker would drop the rest), each written whole.
class FrameProgressSink : public ProgressSink {
 public:
  FrameProgressSink(const JobId& id, int out_fd) : id_(id), out_fd_(out_fd) {}
  void Report(float fraction, std::string_view message) override {
    const int64_t now = MonoMillis();
    if (sent_ && now - last_ms_ < kProgressIntervalMs) return;
    sent_ = true;
    last_ms_ = now;
    exec::EncodeProgress(
        id_, fraction,
        message.substr(0, std::min(message.size(), kMaxProgressMessageBytes)),
        &frame_);
    WriteAll(out_fd_, frame_);  // a broken pipe shows at the result
  }

 private:
  JobId id_;
  int out_fd_;
  bool sent_ = false;
  int64_t last_ms_ = 0;
  std::string frame_;
};

exec::ResultCode RunOne(const NamedHandlers& handlers,
                        const exec::JobFrame& job, int out_fd,
                        std::string* data) {
  const Handler* handler = nullptr;
  for (const auto& [task, h] : handlers) {
    if (task == job.task) handler = &h;
  }
  if (handler == nullptr) {
    *data = "unknown task '" + std::string(job.task) + "'";
    return exec::ResultCode::kError;
  }
  JobContext ctx;
  ctx.id = job.id;
  ctx.task = job.task;
  ctx.payload = AsBytes(job.payload);
  ctx.attempt = job.attempt;
  FrameProgressSink progress(job.id, out_fd);
  ctx.progress = &progress;
  try {
    *data = (*handler)(ctx);
    return exec::ResultCode::kOk;
  } catch (const std::bad_alloc&) {
    data->clear();
    return exec::ResultCode::kOutOfMemory;
  } catch (const std::exception& e) {
    *data = e.what();
  } catch (...) {
    *data = "handler threw a non-standard exception";
  }
  return exec::ResultCode::kError;
}

}  // namespace

int ServeFrames(const NamedHandlers& handlers, int in_fd, int out_fd,
                size_t max_frame_bytes) {
  // Reads take whatever the worker wrote (a pipelined batch is one read);
  // each answer is written as its job ends, never held while the next job
  // runs: the worker times each job from the answer before it.
  exec::FrameReader reader(max_frame_bytes);
  std::string data, frame;
  // Ends at end of file or on an error: every pass reads at least a byte.
  for (;;) {
    std::string_view body;
    Result<bool> got = reader.Next(&body);
    if (!got.ok()) return 1;
    if (!*got) {
      ssize_t n = reader.ReadFrom(in_fd);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) return 0;
      if (n < 0) return 1;
      continue;
    }
    auto job = exec::DecodeJob(body);
    if (!job.ok()) return 1;
    const exec::ResultCode code = RunOne(handlers, *job, out_fd, &data);
    exec::EncodeResult(job->id, code, data, &frame);
    if (!WriteAll(out_fd, frame)) return 1;
  }
}

std::string ShellCommandFor(const std::string& command) {
  if (command.find_first_of(";&|(){}`\n") != std::string::npos) return command;
  const size_t start = command.find_first_not_of(" \t");
  if (start == std::string::npos) return command;
  const std::string_view first = std::string_view(command).substr(
      start, command.find_first_of(" \t", start) - start);
  for (std::string_view keyword :
       {"if", "while", "until", "for", "case", "!", "exec", "[[", "time"}) {
    if (first == keyword) return command;
  }
  return "exec " + command;
}

int RunIsolatedChild(const ChildOptions& options) {
  // The worker's death (even kill -9) ends this process too.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (options.parent_pid != 0 && getppid() != options.parent_pid) return 1;
  if (options.memory_mb > 0) {
    const rlim_t bytes = static_cast<rlim_t>(options.memory_mb) << 20;
    SetLimit(RLIMIT_AS, bytes, bytes, "RLIMIT_AS");
  }
  if (!options.exec.empty()) {
    const std::string command = ShellCommandFor(options.exec);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "yard worker-child: exec /bin/sh: %s\n",
                 std::strerror(errno));
    return 127;
  }
  NamedHandlers handlers = BuiltinHandlers();
  if (options.misbehaving) {
    for (auto& h : MisbehavingHandlers()) handlers.push_back(std::move(h));
  }
  // Frames get a private copy of stdout; a stray print goes to stderr.
  const int frames_out = dup(1);
  if (frames_out < 0 || dup2(2, 1) < 0) return 1;
  return ServeFrames(handlers, 0, frames_out, options.max_frame_bytes);
}

}  // namespace yard
