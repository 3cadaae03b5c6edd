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
  int64_t cpu_armed_s = 0;  // the soft RLIMIT_CPU set last
  std::string head;         // reused for each job frame's head
  exec::FrameReader reader;
};

struct IsolatePool::Group {
  std::string name;               // for logs
  std::vector<std::string> argv;  // how a child is started
  std::mutex mu;
  std::vector<std::unique_ptr<Child>> idle;  // guarded by mu
};

// How a job in a child ended.
struct IsolatePool::Outcome {
  wire::ResultStatus status = wire::ResultStatus::Ok;
  std::string data;   // output (Ok) or the reason
  bool keep = false;  // the child may take the next job
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

Handler IsolatePool::AddBuiltin() {
  auto g = std::make_unique<Group>();
  g->name = "builtin";
  g->argv = {exe_, "worker-child", "--max-frame-bytes",
             std::to_string(options_.max_frame_bytes)};
  if (options_.misbehaving_handlers) g->argv.push_back("--misbehaving");
  Group* raw = g.get();
  groups_.push_back(std::move(g));
  return [this, raw](const JobContext& ctx) { return RunJob(*raw, ctx); };
}

Handler IsolatePool::AddExec(const std::string& task,
                             const std::string& command) {
  auto g = std::make_unique<Group>();
  g->name = task;
  g->argv = {exe_, "worker-child", "--exec", command};
  Group* raw = g.get();
  groups_.push_back(std::move(g));
  return [this, raw](const JobContext& ctx) { return RunJob(*raw, ctx); };
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
  return {spawned_.load(), replaced_.load()};
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

std::unique_ptr<IsolatePool::Child> IsolatePool::Acquire(Group& g) {
  {
    std::lock_guard lock(g.mu);
    if (!g.idle.empty()) {
      auto c = std::move(g.idle.back());
      g.idle.pop_back();
      return c;
    }
  }
  auto c = Spawn(g);
  if (!c.ok()) throw std::runtime_error(c.status().message());
  return std::move(c).value();
}

void IsolatePool::Release(Group& g, std::unique_ptr<Child> c) {
  std::lock_guard lock(g.mu);
  g.idle.push_back(std::move(c));
}

std::string IsolatePool::RunJob(Group& g, const JobContext& ctx) {
  if (stopping_.load()) throw std::runtime_error("worker stopping");
  std::unique_ptr<Child> c = Acquire(g);
  Outcome o = Drive(*c, ctx);
  if (o.keep) {
    Release(g, std::move(c));
  } else {
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
  if (o.status == wire::ResultStatus::Ok) return std::move(o.data);
  if (o.status == wire::ResultStatus::Failed) throw std::runtime_error(o.data);
  throw JobFailure(o.status, o.data);
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

bool IsolatePool::SendJob(Child& c, const JobContext& ctx) {
  exec::EncodeJobHead(ctx.id, ctx.attempt, ctx.task, ctx.payload.size(),
                      &c.head);
  iovec iov[2] = {
      {c.head.data(), c.head.size()},
      {const_cast<uint8_t*>(ctx.payload.data()), ctx.payload.size()}};
  size_t left = c.head.size() + ctx.payload.size();
  int first = 0;
  // Each pass writes something or fails: at most one pass per byte.
  while (left > 0) {
    ssize_t n = writev(c.to_child, iov + first, 2 - first);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    left -= static_cast<size_t>(n);
    for (size_t done = static_cast<size_t>(n); done > 0;) {
      size_t step = std::min(done, iov[first].iov_len);
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + step;
      iov[first].iov_len -= step;
      done -= step;
      if (iov[first].iov_len == 0 && first < 1) ++first;
    }
  }
  return true;
}

IsolatePool::Outcome IsolatePool::Drive(Child& c, const JobContext& ctx) {
  Outcome o;
  auto kill_with = [&](wire::ResultStatus status, std::string reason) {
    Reap(c);
    o.status = status;
    o.data = std::move(reason);
    return o;
  };
  auto died = [&] {
    // Its stdout closed or a write failed: give it a moment to finish dying,
    // so that the wait status says how.
    pollfd exited{c.pidfd, POLLIN, 0};
    poll(&exited, 1, static_cast<int>(kDyingMs));
    o.status = wire::ResultStatus::Failed;
    o.data = Reap(c);
    return o;
  };
  if (!ArmCpu(c) || !SendJob(c, ctx)) return died();

  const int64_t start_ms = MonoMillis();
  const int64_t timeout_ms =
      ctx.job && ctx.job->run_timeout_ms() > 0
          ? static_cast<int64_t>(ctx.job->run_timeout_ms())
          : options_.run_timeout_ms;
  const int64_t run_deadline =
      timeout_ms > 0 ? start_ms + timeout_ms : INT64_MAX;
  int64_t cancel_deadline = INT64_MAX;
  for (;;) {
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
    if (fds[0].revents != 0) {
      ssize_t n = c.reader.ReadFrom(c.from_child);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return died();  // end of file: it closed stdout or died
      // Progress frames first, then at most one result, which must be the
      // last thing the child wrote for this job.
      for (;;) {
        std::string_view body;
        Result<bool> got = c.reader.Next(&body);
        if (!got.ok()) {
          return kill_with(wire::ResultStatus::Failed,
                           "handler protocol error: " + got.status().message());
        }
        if (!*got) break;
        auto r = exec::DecodeResult(body);
        if (r.ok() && r->id == ctx.id &&
            r->code == exec::ResultCode::kProgress) {
          auto p = exec::DecodeProgress(r->data);
          if (!p.ok()) {
            return kill_with(wire::ResultStatus::Failed,
                             "handler protocol error: " + p.status().message());
          }
          ctx.Progress(p->fraction, p->message);
          continue;
        }
        if (!r.ok() || !(r->id == ctx.id) || c.reader.buffered() != 0) {
          return kill_with(
              wire::ResultStatus::Failed,
              "handler protocol error: " +
                  (r.ok() ? std::string("a result for another job or more "
                                        "than one result")
                          : r.status().message()));
        }
        switch (r->code) {
          case exec::ResultCode::kOk:
            o.status = wire::ResultStatus::Ok;
            o.keep = true;
            break;
          case exec::ResultCode::kError:
            o.status = wire::ResultStatus::Failed;
            o.keep = true;
            break;
          case exec::ResultCode::kOutOfMemory:
            // Its heap is in doubt: replaced, like one that died.
            Reap(c);
            o.status = wire::ResultStatus::Failed;
            o.data = "memory limit";
            return o;
          case exec::ResultCode::kProgress:
            break;  // handled above
        }
        o.data.assign(r->data);
        return o;
      }
      continue;
    }
    if (fds[1].revents != 0) return died();
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
