#include "worker/isolate_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "common/clock.h"
#include "worker/exec_frame.h"

extern char** environ;

namespace yard {
namespace {

// Longest single sleep in poll while a job runs: how often cancel, the CPU
// backstop and stopping are looked at.
constexpr int64_t kCheckEveryMs = 100;
// A child that ignores SIGXCPU is killed this far past its CPU limit.
constexpr double kCpuBackstopSeconds = 1.5;
// How long a child whose stdout closed may take to exit before it is killed.
constexpr int64_t kDyingMs = 200;
// The stdin pipe buffer asked for (Linux's default pipe-max-size): what may
// be written to a child ahead of its answers without the write blocking.
constexpr int kPipeBytes = 1 << 20;
// Most job frames in one writev (two iovecs each, well under IOV_MAX).
constexpr size_t kMaxJobsPerWrite = 64;

size_t FrameBytes(const JobContext& ctx) {
  return exec::kLengthBytes + exec::kJobFixedBytes + ctx.task.size() +
         ctx.payload.size();
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string ErrnoText(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

}  // namespace

std::string ChildDeathReason(int wait_status) {
  int sig = 0;
  if (WIFSIGNALED(wait_status)) {
    sig = WTERMSIG(wait_status);
  } else if (WIFEXITED(wait_status)) {
    const int code = WEXITSTATUS(wait_status);
    if (code <= 128 || code - 128 >= NSIG) {
      return "crashed: exit status " + std::to_string(code);
    }
    sig = code - 128;
  } else {
    return "crashed";
  }
  if (sig == SIGXCPU) return "cpu limit";
  return "crashed: " + SignalName(sig);
}

struct IsolatePool::Child {
  explicit Child(size_t max_frame) : reader(max_frame) {}
  ~Child() {
    for (int fd : {pidfd, to_child, from_child}) {
      if (fd >= 0) close(fd);
    }
  }
  pid_t pid = -1;
  int pidfd = -1;
  int to_child = -1;    // its stdin
  int from_child = -1;  // its stdout
  clockid_t cpu_clock = 0;
  bool has_cpu_clock = false;
  int64_t cpu_armed_s = 0;         // the soft RLIMIT_CPU set last
  size_t pipe_bytes = 0;           // its stdin's pipe buffer
  std::vector<std::string> heads;  // reused for job frames' heads
  exec::FrameReader reader;
};

struct IsolatePool::Group {
  std::string name;               // for logs
  std::vector<std::string> argv;  // how a child is started
  std::mutex mu;
  std::vector<std::unique_ptr<Child>> idle;  // guarded by mu
};

// How far a child got with a batch.
struct IsolatePool::Outcome {
  size_t next = 0;    // the first job not finished
  bool keep = false;  // the child may take the next batch
};

IsolatePool::IsolatePool(IsolateOptions options)
    : options_(std::move(options)) {
  exe_ = options_.self_exe;
  if (exe_.empty()) {
    char path[4096] = {};
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    exe_ = n > 0 ? std::string(path, static_cast<size_t>(n)) : "/proc/self/exe";
  }
}

IsolatePool::~IsolatePool() {
  Shutdown();
  for (auto& g : groups_) {
    std::lock_guard lock(g->mu);
    for (auto& c : g->idle) Reap(*c);
    g->idle.clear();
  }
}

IsolateHandlers IsolatePool::AddBuiltin() {
  auto g = std::make_unique<Group>();
  g->name = "builtin";
  g->argv = {exe_, "worker-child", "--max-frame-bytes",
             std::to_string(options_.max_frame_bytes)};
  if (options_.misbehaving_handlers) g->argv.push_back("--misbehaving");
  return HandlersFor(std::move(g));
}

IsolateHandlers IsolatePool::AddExec(const std::string& task,
                                     const std::string& command) {
  auto g = std::make_unique<Group>();
  g->name = task;
  g->argv = {exe_, "worker-child", "--exec", command};
  return HandlersFor(std::move(g));
}

IsolateHandlers IsolatePool::HandlersFor(std::unique_ptr<Group> g) {
  Group* raw = g.get();
  groups_.push_back(std::move(g));
  IsolateHandlers h;
  auto batch = std::make_shared<BatchHandler>();
  batch->run = [this, raw](Jobs jobs, const BatchHandler::Finished& done) {
    RunBatch(*raw, jobs, done);
  };
  h.batch = std::move(batch);
  // One job: a batch of one, its answer turned back into a return or a
  // throw.
  h.handler = [this, raw](const JobContext& ctx) {
    const JobContext* one[] = {&ctx};
    JobAnswer answer;
    std::string data;
    RunBatch(*raw, one, [&](size_t, const JobAnswer& a) {
      answer.status = a.status;
      data.assign(a.data);
    });
    if (answer.status == wire::ResultStatus::Ok) return data;
    if (answer.status == wire::ResultStatus::Failed) {
      throw std::runtime_error(data);
    }
    throw JobFailure(answer.status, data);
  };
  return h;
}

Status IsolatePool::Start() {
  const std::string parent = std::to_string(getpid());
  for (auto& g : groups_) {
    g->argv.insert(g->argv.begin() + 2, {"--parent-pid", parent, "--memory-mb",
                                         std::to_string(options_.memory_mb)});
    for (int i = 0; i < options_.slots; ++i) {
      auto c = Spawn(*g);
      if (!c.ok()) return c.status();
      std::lock_guard lock(g->mu);
      g->idle.push_back(std::move(c).value());
    }
  }
  return Status::OK();
}

void IsolatePool::Shutdown() {
  stopping_.store(true);
  std::lock_guard lock(live_mu_);
  for (pid_t pid : live_) kill(-pid, SIGKILL);
}

IsolateCounters IsolatePool::counters() const {
  return {spawned_.load(), replaced_.load(), writes_.load(),
          jobs_written_.load()};
}

Result<std::unique_ptr<IsolatePool::Child>> IsolatePool::Spawn(Group& g) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return Status::IoError(ErrnoText("pipe"));
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return Status::IoError(ErrnoText("pipe"));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);  // SIGPIPE ignored here
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
                                      POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> argv;
  for (auto& a : g.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  auto c = std::make_unique<Child>(options_.max_frame_bytes);
  int rc;
  {
    // Registered before it can be reaped by anyone, so Shutdown sees it.
    std::lock_guard lock(live_mu_);
    rc = posix_spawn(&c->pid, exe_.c_str(), &fa, &attr, argv.data(), environ);
    if (rc == 0) live_.insert(c->pid);
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  close(out[1]);
  c->to_child = in[1];
  c->from_child = out[0];
  // A larger buffer lets a batch go in one write; the default (64 KiB)
  // stands when the system refuses.
  int pipe_bytes = fcntl(c->to_child, F_SETPIPE_SZ, kPipeBytes);
  if (pipe_bytes < 0) pipe_bytes = fcntl(c->to_child, F_GETPIPE_SZ);
  c->pipe_bytes = static_cast<size_t>(std::max(pipe_bytes, 4096));
  if (rc != 0) {
    return Status::IoError("cannot start a child for " + g.name + ": " +
                           std::strerror(rc));
  }
  spawned_.fetch_add(1, std::memory_order_relaxed);
  c->pidfd = static_cast<int>(syscall(SYS_pidfd_open, c->pid, 0));
  if (c->pidfd < 0) {
    Status st = Status::IoError(ErrnoText("pidfd_open"));
    Reap(*c);
    return st;
  }
  c->has_cpu_clock = clock_getcpuclockid(c->pid, &c->cpu_clock) == 0;
  // Armed here, not by the child: a limit the child set while starting
  // could land after the pool's re-arm for its first job, and undo it.
  if (!ArmCpu(*c)) {
    Status st = Status::IoError(ErrnoText("prlimit(RLIMIT_CPU)"));
    Reap(*c);
    return st;
  }
  if (stopping_.load()) Reap(*c);  // raced with Shutdown
  return c;
}

Result<std::unique_ptr<IsolatePool::Child>> IsolatePool::Acquire(Group& g) {
  {
    std::lock_guard lock(g.mu);
    if (!g.idle.empty()) {
      auto c = std::move(g.idle.back());
      g.idle.pop_back();
      return c;
    }
  }
  return Spawn(g);
}

void IsolatePool::Release(Group& g, std::unique_ptr<Child> c) {
  std::lock_guard lock(g.mu);
  g.idle.push_back(std::move(c));
}

void IsolatePool::RunBatch(Group& g, Jobs jobs,
                           const BatchHandler::Finished& finished) {
  size_t next = 0;
  while (next < jobs.size()) {
    auto fail_rest = [&](std::string_view reason) {
      for (; next < jobs.size(); ++next) {
        finished(next, {wire::ResultStatus::Failed, reason});
      }
    };
    if (stopping_.load()) return fail_rest("worker stopping");
    auto acquired = Acquire(g);
    if (!acquired.ok()) return fail_rest(acquired.status().message());
    std::unique_ptr<Child> c = std::move(acquired).value();
    const Outcome o = Drive(*c, jobs, next, finished);
    next = o.next;
    if (o.keep) {
      Release(g, std::move(c));
      continue;
    }
    replaced_.fetch_add(1, std::memory_order_relaxed);
    c.reset();
    if (!stopping_.load()) {
      // Replace it now, so the next job does not wait for a start.
      if (auto fresh = Spawn(g); fresh.ok()) {
        Release(g, std::move(fresh).value());
      } else {
        spdlog::warn("isolate: {}", fresh.status().message());
      }
    }
  }
}

bool IsolatePool::ArmCpu(Child& c) {
  if (options_.cpu_seconds <= 0 || !c.has_cpu_clock) return true;
  timespec ts{};
  if (clock_gettime(c.cpu_clock, &ts) != 0) return false;  // it died
  const int64_t want = static_cast<int64_t>(ts.tv_sec) + (ts.tv_nsec ? 1 : 0) +
                       options_.cpu_seconds;
  if (want == c.cpu_armed_s) return true;
  rlimit lim{static_cast<rlim_t>(want), RLIM_INFINITY};
  if (prlimit(c.pid, RLIMIT_CPU, &lim, nullptr) != 0) return false;
  c.cpu_armed_s = want;
  return true;
}

bool IsolatePool::SendJobs(Child& c, Jobs jobs) {
  if (c.heads.size() < jobs.size()) c.heads.resize(jobs.size());
  std::array<iovec, 2 * kMaxJobsPerWrite> iov;
  size_t count = 0, left = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const JobContext& ctx = *jobs[i];
    exec::EncodeJobHead(ctx.id, ctx.attempt, ctx.task, ctx.payload.size(),
                        &c.heads[i]);
    iov[count++] = {c.heads[i].data(), c.heads[i].size()};
    if (!ctx.payload.empty()) {
      iov[count++] = {const_cast<uint8_t*>(ctx.payload.data()),
                      ctx.payload.size()};
    }
    left += FrameBytes(ctx);
  }
  writes_.fetch_add(1, std::memory_order_relaxed);
  jobs_written_.fetch_add(jobs.size(), std::memory_order_relaxed);
  size_t first = 0;
  // Each pass writes something or fails: at most one pass per byte.
  while (left > 0) {
    ssize_t n =
        writev(c.to_child, iov.data() + first, static_cast<int>(count - first));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    left -= static_cast<size_t>(n);
    for (size_t done = static_cast<size_t>(n); done > 0;) {
      size_t step = std::min(done, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + step;
      iov[first].iov_len -= step;
      done -= step;
      if (iov[first].iov_len == 0 && first + 1 < count) ++first;
    }
  }
  return true;
}

IsolatePool::Outcome IsolatePool::Drive(
    Child& c, Jobs jobs, size_t first, const BatchHandler::Finished& finished) {
  // jobs[next] runs in the child; jobs[next + 1 .. sent) wait in its pipe,
  // `unanswered` bytes of frames in all.
  size_t next = first, sent = first, unanswered = 0;
  Outcome o;
  auto end_with = [&](wire::ResultStatus status, std::string_view reason) {
    finished(next, {status, reason});
    o.next = next + 1;
    return o;
  };
  auto kill_with = [&](wire::ResultStatus status, std::string_view reason) {
    Reap(c);
    return end_with(status, reason);
  };
  auto died = [&] {
    // Its stdout closed or a write failed: give it a moment to finish dying,
    // so that the wait status says how.
    pollfd exited{c.pidfd, POLLIN, 0};
    poll(&exited, 1, static_cast<int>(kDyingMs));
    return end_with(wire::ResultStatus::Failed, Reap(c));
  };
  // Writes the jobs that fit beside those unanswered in the child's pipe
  // buffer (at least one when none is): a write that could block would
  // wait for a child that may itself wait for its answers to be read.
  auto send_more = [&] {
    size_t end = sent, bytes = unanswered;
    while (end < jobs.size() && end - sent < kMaxJobsPerWrite &&
           (bytes == 0 || bytes + FrameBytes(*jobs[end]) <= c.pipe_bytes)) {
      bytes += FrameBytes(*jobs[end++]);
    }
    if (end == sent) return true;
    if (!SendJobs(c, jobs.subspan(sent, end - sent))) return false;
    sent = end;
    unanswered = bytes;
    return true;
  };
  // The running job's clocks, set when it starts: after the write for the
  // first, when the answer before it arrives for the others.
  int64_t run_deadline = INT64_MAX, cancel_deadline = INT64_MAX;
  auto start = [&](int64_t now) {
    const JobContext& ctx = *jobs[next];
    const int64_t timeout_ms =
        ctx.job && ctx.job->run_timeout_ms() > 0
            ? static_cast<int64_t>(ctx.job->run_timeout_ms())
            : options_.run_timeout_ms;
    run_deadline = timeout_ms > 0 ? now + timeout_ms : INT64_MAX;
    cancel_deadline = INT64_MAX;
  };
  if (!ArmCpu(c) || !send_more()) return died();
  start(MonoMillis());

  for (;;) {
    const JobContext& ctx = *jobs[next];
    const int64_t now = MonoMillis();
    if (stopping_.load()) {
      return kill_with(wire::ResultStatus::Failed, "worker stopping");
    }
    if (now >= run_deadline) {
      return kill_with(wire::ResultStatus::Failed, "timed out");
    }
    if (cancel_deadline == INT64_MAX && ctx.Cancelled()) {
      cancel_deadline = now + std::max<int64_t>(0, options_.cancel_grace_ms);
    }
    if (now >= cancel_deadline) {
      return kill_with(wire::ResultStatus::Cancelled, "cancelled");
    }
    if (options_.cpu_seconds > 0 && c.has_cpu_clock) {
      timespec ts{};
      if (clock_gettime(c.cpu_clock, &ts) == 0 &&
          static_cast<double>(ts.tv_sec) + ts.tv_nsec / 1e9 >
              static_cast<double>(c.cpu_armed_s) + kCpuBackstopSeconds) {
        return kill_with(wire::ResultStatus::Failed, "cpu limit");
      }
    }
    const int64_t wait = std::clamp<int64_t>(
        std::min({run_deadline, cancel_deadline, now + kCheckEveryMs}) - now, 0,
        kCheckEveryMs);
    pollfd fds[2] = {{c.from_child, POLLIN, 0}, {c.pidfd, POLLIN, 0}};
    int ready = poll(fds, 2, static_cast<int>(wait));
    if (ready < 0 && errno != EINTR) return died();
    if (ready <= 0) continue;
    if (fds[0].revents == 0) {
      if (fds[1].revents != 0) return died();
      continue;
    }
    ssize_t n = c.reader.ReadFrom(c.from_child);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return died();  // end of file: it closed stdout or died
    const int64_t read_ms = MonoMillis();
    // Per job: progress frames, then its result; the result of the last
    // job written must be the last thing the child wrote.
    for (;;) {
      std::string_view body;
      Result<bool> got = c.reader.Next(&body);
      if (!got.ok()) {
        return kill_with(wire::ResultStatus::Failed,
                         "handler protocol error: " + got.status().message());
      }
      if (!*got) break;
      const JobContext& running = *jobs[next];
      auto r = exec::DecodeResult(body);
      if (r.ok() && r->id == running.id &&
          r->code == exec::ResultCode::kProgress) {
        auto p = exec::DecodeProgress(r->data);
        if (!p.ok()) {
          return kill_with(wire::ResultStatus::Failed,
                           "handler protocol error: " + p.status().message());
        }
        running.Progress(p->fraction, p->message);
        continue;
      }
      if (!r.ok() || !(r->id == running.id) ||
          (next + 1 == sent && c.reader.buffered() != 0)) {
        return kill_with(
            wire::ResultStatus::Failed,
            "handler protocol error: " +
                (r.ok() ? std::string("a result for another job or more "
                                      "than one result")
                        : r.status().message()));
      }
      if (r->code == exec::ResultCode::kOutOfMemory) {
        // Its heap is in doubt: replaced, like one that died.
        return kill_with(wire::ResultStatus::Failed, "memory limit");
      }
      const JobAnswer answer{r->code == exec::ResultCode::kOk
                                 ? wire::ResultStatus::Ok
                                 : wire::ResultStatus::Failed,
                             r->data};
      unanswered -= FrameBytes(running);  // before finished: not touched after
      // The next job is running already: its CPU limit first.
      const bool more = next + 1 < sent;
      const bool armed = !more || ArmCpu(c);
      finished(next, answer);
      if (++next == jobs.size()) {
        o.next = next;
        o.keep = true;
        return o;
      }
      if (!armed) return died();
      if (!more) {
        if (!ArmCpu(c) || !send_more()) return died();
        start(MonoMillis());
        break;  // nothing else is buffered (checked above)
      }
      start(read_ms);
      if (!send_more()) return died();
    }
  }
}

std::string IsolatePool::Reap(Child& c) {
  if (c.pid <= 0) return "crashed";
  {
    std::lock_guard lock(live_mu_);
    live_.erase(c.pid);
    // The whole group: a shell's command and whatever it started. The
    // group's leader is not reaped yet, so its id is not reused.
    kill(-c.pid, SIGKILL);
  }
  int status = 0;
  pid_t r;
  do {
    r = waitpid(c.pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  c.pid = -1;
  return r > 0 ? ChildDeathReason(status) : ErrnoText("waitpid");
}

}  // namespace yard
