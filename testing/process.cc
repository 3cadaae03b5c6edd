#include "testing/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <thread>
#include <utility>

namespace yard {
namespace {

using Clock = std::chrono::steady_clock;

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

void CloseFd(int& fd) {
  if (fd >= 0) {
    ::close(fd);
    fd = -1;
  }
}

// In the child after fork: async-signal-safe calls only. Sets the child up
// (death signal, process group, signals, stdio); false (with errno written
// to error_w) when that fails.
bool SetUpChild(pid_t parent, int devnull, int stdout_w, int stderr_fd,
                int error_w) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the parent died already
  // A group of its own: a terminal's Ctrl-C reaches the parent only, which
  // then stops its children in order.
  ::setpgid(0, 0);
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  ::signal(SIGINT, SIG_DFL);
  if (::dup2(devnull, STDIN_FILENO) < 0 ||
      ::dup2(stdout_w, STDOUT_FILENO) < 0 ||
      (stderr_fd >= 0 && ::dup2(stderr_fd, STDERR_FILENO) < 0)) {
    int err = errno;
    (void)!::write(error_w, &err, sizeof(err));
    return false;
  }
  return true;
}

[[noreturn]] void ExecChild(char* const* argv, int error_w) {
  ::execv(argv[0], argv);
  int err = errno;
  (void)!::write(error_w, &err, sizeof(err));
  ::_exit(127);
}

// Runs `body` in the forked child and ends it with body's return value,
// without unwinding into the parent's stack (no destructors, no atexit).
// `fds`: the launch's descriptors, which no exec closes here; closing
// error_w tells the parent the child started.
[[noreturn]] void RunChild(const std::function<int()>& body,
                           std::initializer_list<int> fds) {
  for (int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  int code = 126;
  try {
    code = body();
  } catch (...) {
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(code);
}

ExitInfo FromWaitStatus(int status) {
  ExitInfo info;
  if (WIFEXITED(status)) {
    info.exited = true;
    info.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    info.signal = WTERMSIG(status);
  }
  return info;
}

}  // namespace

std::string ExitInfo::ToString() const {
  if (exited) return "exit " + std::to_string(code);
  if (signal) {
    return "signal " + std::to_string(signal) + " (" + ::strsignal(signal) +
           ")";
  }
  return "unknown exit";
}

std::string ReadFileOrEmpty(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<std::unique_ptr<Process>> Process::Spawn(std::vector<std::string> args,
                                                std::string stderr_path) {
  if (args.empty()) return Status::InvalidArgument("no program");
  return Launch(std::move(args), std::move(stderr_path), nullptr);
}

Result<std::unique_ptr<Process>> Process::Fork(std::string name,
                                               std::function<int()> body,
                                               std::string stderr_path) {
  if (!body) return Status::InvalidArgument("no body");
  return Launch({"(fork) " + name}, std::move(stderr_path), &body);
}

Result<std::unique_ptr<Process>> Process::Launch(
    std::vector<std::string> args, std::string stderr_path,
    const std::function<int()>* body) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out[2] = {-1, -1};
  int error_pipe[2] = {-1, -1};
  int devnull = -1;
  int stderr_fd = -1;
  auto cleanup = [&] {
    CloseFd(out[0]);
    CloseFd(out[1]);
    CloseFd(error_pipe[0]);
    CloseFd(error_pipe[1]);
    CloseFd(devnull);
    CloseFd(stderr_fd);
  };
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(error_pipe, O_CLOEXEC) != 0) {
    cleanup();
    return Status::IoError(std::string("pipe2: ") + std::strerror(errno));
  }
  devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) {
    cleanup();
    return Status::IoError(std::string("/dev/null: ") + std::strerror(errno));
  }
  if (!stderr_path.empty()) {
    stderr_fd = ::open(stderr_path.c_str(),
                       O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (stderr_fd < 0) {
      int err = errno;
      cleanup();
      return Status::IoError(stderr_path + ": " + std::strerror(err));
    }
  }

  // What this process has buffered must not be written twice (the child
  // inherits the buffers).
  std::fflush(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    cleanup();
    return Status::IoError(std::string("fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    if (!SetUpChild(parent, devnull, out[1], stderr_fd, error_pipe[1])) {
      ::_exit(127);
    }
    if (body != nullptr) {
      RunChild(*body, {out[0], out[1], error_pipe[0], error_pipe[1], devnull,
                       stderr_fd});
    }
    ExecChild(argv.data(), error_pipe[1]);
  }

  // Parent. The error pipe reads end of file once exec succeeded (CLOEXEC)
  // or the forked body started.
  int stdout_fd = out[0];
  out[0] = -1;
  CloseFd(error_pipe[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(error_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  cleanup();
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ::close(stdout_fd);
    return Status::IoError("cannot execute " + args[0] + ": " +
                           std::strerror(child_errno));
  }
  return std::unique_ptr<Process>(
      new Process(pid, stdout_fd, std::move(args), std::move(stderr_path)));
}

Process::Process(pid_t pid, int stdout_fd, std::vector<std::string> args,
                 std::string stderr_path)
    : pid_(pid),
      stdout_fd_(stdout_fd),
      args_(std::move(args)),
      stderr_path_(std::move(stderr_path)) {}

Process::~Process() {
  Kill();
  CloseFd(stdout_fd_);
}

std::string Process::CommandLine() const {
  std::string s;
  for (const auto& a : args_) {
    if (!s.empty()) s += ' ';
    s += a;
  }
  return s;
}

bool Process::Fill(int timeout_ms) {
  if (eof_) return true;
  pollfd pfd{stdout_fd_, POLLIN, 0};
  int r;
  do {
    r = ::poll(&pfd, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return false;
  char chunk[65536];
  ssize_t n;
  do {
    n = ::read(stdout_fd_, chunk, sizeof(chunk));
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    eof_ = true;
  } else {
    buffer_.append(chunk, static_cast<size_t>(n));
  }
  return true;
}

std::optional<std::string> Process::ReadLine(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  // Each turn takes a line, reaches end of file, or reads more (waiting at
  // most until the deadline); a child that floods stdout without a newline
  // still ends the loop at the deadline.
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (eof_) {
      if (buffer_.empty()) return std::nullopt;
      return std::exchange(buffer_, std::string());
    }
    if (!Fill(RemainingMs(deadline))) return std::nullopt;
    if (buffer_.find('\n') == std::string::npos && !eof_ &&
        Clock::now() >= deadline) {
      return std::nullopt;
    }
  }
}

std::optional<std::string> Process::ReadAll(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (!eof_) {
    if (!Fill(RemainingMs(deadline))) return std::nullopt;
    if (!eof_ && Clock::now() >= deadline) return std::nullopt;
  }
  return std::exchange(buffer_, std::string());
}

bool Process::TryReap(int flags) {
  if (exit_) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, flags);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    exit_ = FromWaitStatus(status);
    return true;
  }
  if (r < 0) {  // not our child any more (should not happen): treat as gone
    exit_ = ExitInfo{};
    return true;
  }
  return false;
}

bool Process::Signal(int sig) {
  if (exit_) return false;
  return ::kill(pid_, sig) == 0;
}

bool Process::Running() { return !TryReap(WNOHANG); }

std::optional<ExitInfo> Process::Wait(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  // Polls waitpid every 2 ms until the deadline.
  while (!TryReap(WNOHANG)) {
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return exit_;
}

ExitInfo Process::Kill() {
  if (!exit_) {
    ::kill(pid_, SIGKILL);
    TryReap(0);
  }
  return *exit_;
}

std::string Process::Stderr() const { return ReadFileOrEmpty(stderr_path_); }

std::string Process::StderrTail(size_t max_bytes) const {
  std::string all = Stderr();
  if (all.size() <= max_bytes) return all;
  return "..." + all.substr(all.size() - max_bytes);
}

}  // namespace yard
