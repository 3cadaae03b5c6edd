// zmq_baseline: the raw ZeroMQ request-reply yardstick that Switchyard's
// end-to-end throughput is stated against. Three processes, as in
// Switchyard (producer -> broker -> worker), with nothing but ZeroMQ in
// between:
//
//   client (DEALER) -> proxy (ROUTER frontend, zmq::proxy, DEALER backend)
//                   -> echo (DEALER, sends every message back unchanged)
//
// One message per job, no batching: the client sends [""][seq | payload]
// (the same two frames a Switchyard DEALER peer sends), keeps `window`
// messages in flight and measures each message's round trip. The proxy's
// ROUTER adds the client's identity on the way in and routes on it on the way
// back; the echo worker returns all frames, identity included.
//
//   zmq_baseline proxy  --frontend EP --backend EP
//   zmq_baseline echo   --connect EP
//   zmq_baseline client --connect EP --count N --size BYTES --window W
//                       [--timeout S] [--json]
//   zmq_baseline all    --count N --size BYTES --window W [--timeout S]
//   [--json]
//
// `all` runs itself as the three processes on tcp://127.0.0.1 (the proxy binds
// port * and reports the ports it got), prints the client's output and stops
// the other two. Sockets get Switchyard's high-water marks (100000).
//
// Exit codes: 0 ok, 1 run failed or timed out, 2 usage.
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/histogram.h"
#include "common/signals.h"

namespace yard {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kHwm = 100000;  // as schemas/frames.cc ConfigureSocket
constexpr int kPollMs = 100;
constexpr size_t kHeaderBytes = sizeof(uint64_t);  // the sequence number
constexpr uint64_t kWarmupSeq = UINT64_MAX;

const char kUsage[] =
    "usage:\n"
    "  zmq_baseline proxy  --frontend EP --backend EP\n"
    "  zmq_baseline echo   --connect EP\n"
    "  zmq_baseline client --connect EP --count N --size BYTES --window W\n"
    "                      [--timeout SECONDS] [--json]\n"
    "  zmq_baseline all    --count N --size BYTES --window W\n"
    "                      [--timeout SECONDS] [--json]\n";

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- Flags ----

struct Flags {
  std::map<std::string, std::string> values;
  bool json = false;

  std::string Get(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? std::string() : it->second;
  }
};

int Usage(const char* mode, const std::string& message) {
  std::fprintf(stderr, "zmq_baseline %s: error: %s\n%s", mode, message.c_str(),
               kUsage);
  return kExitUsage;
}

// Parses `--name value` pairs (and the --json switch) against `allowed`.
std::optional<Flags> ParseFlags(const char* mode, int argc, char** argv,
                                const std::vector<std::string>& allowed,
                                bool allow_json) {
  Flags f;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (allow_json && arg == "--json") {
      f.json = true;
      continue;
    }
    std::string name = arg.rfind("--", 0) == 0 ? arg.substr(2) : std::string();
    bool known = false;
    for (const auto& a : allowed) known = known || a == name;
    if (!known) {
      Usage(mode, "unknown argument '" + arg + "'");
      return std::nullopt;
    }
    if (i + 1 >= argc) {
      Usage(mode, "missing value for " + arg);
      return std::nullopt;
    }
    f.values[name] = argv[++i];
  }
  return f;
}

// A positive integer flag, or nullopt (after a usage message).
std::optional<uint64_t> PositiveFlag(const char* mode, const Flags& f,
                                     const std::string& name,
                                     std::optional<uint64_t> fallback) {
  std::string v = f.Get(name);
  if (v.empty()) {
    if (!fallback) Usage(mode, "--" + name + " is required");
    return fallback;
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (errno != 0 || end == v.c_str() || *end != '\0' || n == 0 || v[0] == '-') {
    Usage(mode, "--" + name + " must be a positive integer, got '" + v + "'");
    return std::nullopt;
  }
  return n;
}

void Configure(zmq::socket_t& s) {
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::sndhwm, kHwm);
  s.set(zmq::sockopt::rcvhwm, kHwm);
}

bool Interrupted(const zmq::error_t& e) {
  return e.num() == EINTR || e.num() == ETERM;
}

// ---- proxy ----

int RunProxy(int argc, char** argv) {
  auto f = ParseFlags("proxy", argc, argv, {"frontend", "backend"}, false);
  if (!f) return kExitUsage;
  if (f->Get("frontend").empty() || f->Get("backend").empty()) {
    return Usage("proxy", "--frontend and --backend are required");
  }
  InstallStopHandlers();
  try {
    zmq::context_t ctx(1);
    zmq::socket_t frontend(ctx, zmq::socket_type::router);
    zmq::socket_t backend(ctx, zmq::socket_type::dealer);
    Configure(frontend);
    Configure(backend);
    frontend.bind(f->Get("frontend"));
    backend.bind(f->Get("backend"));
    std::printf("zmq_baseline proxy ready frontend=%s backend=%s\n",
                frontend.get(zmq::sockopt::last_endpoint).c_str(),
                backend.get(zmq::sockopt::last_endpoint).c_str());
    std::fflush(stdout);
    try {
      zmq::proxy(frontend, backend);  // returns only by a signal (EINTR)
    } catch (const zmq::error_t& e) {
      if (!Interrupted(e)) throw;
    }
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "zmq_baseline proxy: %s\n", e.what());
    return kExitFailed;
  }
  return 0;
}

// ---- echo ----

int RunEcho(int argc, char** argv) {
  auto f = ParseFlags("echo", argc, argv, {"connect"}, false);
  if (!f) return kExitUsage;
  if (f->Get("connect").empty()) return Usage("echo", "--connect is required");
  InstallStopHandlers();
  try {
    zmq::context_t ctx(1);
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    Configure(sock);
    sock.set(zmq::sockopt::rcvtimeo, kPollMs);
    sock.connect(f->Get("connect"));
    std::vector<zmq::message_t> parts;
    while (!StopRequested()) {
      parts.clear();
      try {
        parts.emplace_back();
        if (!sock.recv(parts.back())) continue;  // timeout: check stop flag
        // The remaining frames of a message arrive with the first.
        while (parts.back().more()) {
          parts.emplace_back();
          if (!sock.recv(parts.back())) break;
        }
        for (size_t i = 0; i < parts.size(); ++i) {
          sock.send(parts[i], i + 1 < parts.size() ? zmq::send_flags::sndmore
                                                   : zmq::send_flags::none);
        }
      } catch (const zmq::error_t& e) {
        if (!Interrupted(e)) throw;
      }
    }
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "zmq_baseline echo: %s\n", e.what());
    return kExitFailed;
  }
  return 0;
}

// ---- client ----

struct ClientConfig {
  std::string connect;
  uint64_t count = 0;
  uint64_t size = 0;
  uint64_t window = 0;
  uint64_t timeout_s = 60;
  bool json = false;
};

std::optional<ClientConfig> ParseClient(const char* mode, int argc, char** argv,
                                        bool need_connect) {
  std::vector<std::string> allowed = {"count", "size", "window", "timeout"};
  if (need_connect) allowed.push_back("connect");
  auto f = ParseFlags(mode, argc, argv, allowed, true);
  if (!f) return std::nullopt;
  ClientConfig c;
  c.connect = f->Get("connect");
  c.json = f->json;
  if (need_connect && c.connect.empty()) {
    Usage(mode, "--connect is required");
    return std::nullopt;
  }
  auto count = PositiveFlag(mode, *f, "count", std::nullopt);
  if (!count) return std::nullopt;
  auto size = PositiveFlag(mode, *f, "size", std::nullopt);
  if (!size) return std::nullopt;
  auto window = PositiveFlag(mode, *f, "window", std::nullopt);
  if (!window) return std::nullopt;
  auto timeout = PositiveFlag(mode, *f, "timeout", 60);
  if (!timeout) return std::nullopt;
  if (*size > (64u << 20)) {
    Usage(mode, "--size is at most 64 MiB");
    return std::nullopt;
  }
  c.count = *count;
  c.size = *size;
  c.window = *window;
  c.timeout_s = *timeout;
  return c;
}

void SendJob(zmq::socket_t& sock, std::vector<uint8_t>& buf, uint64_t seq) {
  std::memcpy(buf.data(), &seq, sizeof(seq));
  sock.send(zmq::message_t(), zmq::send_flags::sndmore);  // "" delimiter
  sock.send(zmq::message_t(buf.data(), buf.size()), zmq::send_flags::none);
}

// Receives one [""][seq | payload] reply; nullopt on timeout. A malformed
// reply yields kWarmupSeq - 1 (never a valid sequence number).
std::optional<uint64_t> RecvJob(zmq::socket_t& sock, size_t expected_size) {
  constexpr uint64_t kBad = kWarmupSeq - 1;
  zmq::message_t delim;
  if (!sock.recv(delim)) return std::nullopt;
  if (!delim.more()) return kBad;
  zmq::message_t body;
  if (!sock.recv(body)) return kBad;
  bool bad = delim.size() != 0 || body.more() || body.size() != expected_size;
  while (body.more()) {  // drop stray frames
    zmq::message_t extra;
    if (!sock.recv(extra)) break;
    body = std::move(extra);
  }
  if (bad) return kBad;
  uint64_t seq;
  std::memcpy(&seq, body.data(), sizeof(seq));
  return seq;
}

int RunClientWith(const ClientConfig& c) {
  InstallStopHandlers();
  std::vector<uint8_t> buf(kHeaderBytes + c.size);
  for (size_t i = kHeaderBytes; i < buf.size(); ++i) {
    buf[i] = static_cast<uint8_t>('a' + i % 26);
  }
  std::vector<int64_t> sent_ns(c.count, -1);  // -1: not in flight
  Histogram latency_us;
  uint64_t next = 0;
  uint64_t done = 0;
  uint64_t errors = 0;
  bool warm = false;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  const int64_t deadline_ns =
      NowNanos() + static_cast<int64_t>(c.timeout_s) * 1'000'000'000;
  try {
    zmq::context_t ctx(1);
    zmq::socket_t sock(ctx, zmq::socket_type::dealer);
    Configure(sock);
    sock.set(zmq::sockopt::rcvtimeo, kPollMs);
    sock.connect(c.connect);
    // One uncounted round trip first, so that connection setup (and the echo
    // worker's connect to the proxy) is not timed.
    SendJob(sock, buf, kWarmupSeq);
    while (done < c.count && !StopRequested() && NowNanos() < deadline_ns) {
      std::optional<uint64_t> seq;
      try {
        seq = RecvJob(sock, buf.size());
      } catch (const zmq::error_t& e) {
        if (!Interrupted(e)) throw;
      }
      if (!seq) continue;
      int64_t now = NowNanos();
      if (*seq == kWarmupSeq && !warm) {
        warm = true;
        start_ns = now;
        for (; next < c.window && next < c.count; ++next) {
          sent_ns[next] = NowNanos();
          SendJob(sock, buf, next);
        }
        continue;
      }
      if (*seq >= c.count || sent_ns[*seq] < 0) {
        ++errors;  // malformed, unknown or duplicate reply
        continue;
      }
      latency_us.Record(static_cast<uint64_t>(now - sent_ns[*seq]) / 1000);
      sent_ns[*seq] = -1;
      ++done;
      end_ns = now;
      if (next < c.count) {
        sent_ns[next] = NowNanos();
        SendJob(sock, buf, next);
        ++next;
      }
    }
  } catch (const zmq::error_t& e) {
    std::fprintf(stderr, "zmq_baseline client: %s\n", e.what());
    return kExitFailed;
  }
  double elapsed_s = done ? static_cast<double>(end_ns - start_ns) / 1e9 : 0;
  double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0;
  bool complete = done == c.count && errors == 0;
  auto p50 = static_cast<unsigned long long>(latency_us.Percentile(0.5));
  auto p99 = static_cast<unsigned long long>(latency_us.Percentile(0.99));
  auto p999 = static_cast<unsigned long long>(latency_us.Percentile(0.999));
  auto max = static_cast<unsigned long long>(latency_us.max());
  if (c.json) {
    std::printf(
        "{\"round_trips\": %llu, \"round_trips_per_s\": %.1f, "
        "\"latency_us\": {\"p50\": %llu, \"p99\": %llu, \"p999\": %llu, "
        "\"max\": %llu}, \"count\": %llu, \"size\": %llu, \"window\": %llu, "
        "\"elapsed_s\": %.3f, \"errors\": %llu, \"complete\": %s}\n",
        static_cast<unsigned long long>(done), rate, p50, p99, p999, max,
        static_cast<unsigned long long>(c.count),
        static_cast<unsigned long long>(c.size),
        static_cast<unsigned long long>(c.window), elapsed_s,
        static_cast<unsigned long long>(errors), complete ? "true" : "false");
  } else {
    std::printf(
        "zmq_baseline: %llu/%llu round trips in %.3f s = %.0f round trips/s "
        "(payload %llu B + %zu B header, window %llu)\n"
        "latency us: p50 %llu  p99 %llu  p99.9 %llu  max %llu\n",
        static_cast<unsigned long long>(done),
        static_cast<unsigned long long>(c.count), elapsed_s, rate,
        static_cast<unsigned long long>(c.size), kHeaderBytes,
        static_cast<unsigned long long>(c.window), p50, p99, p999, max);
  }
  std::fflush(stdout);
  if (!complete) {
    std::fprintf(stderr,
                 "zmq_baseline client: incomplete: %llu of %llu round trips, "
                 "%llu bad replies%s\n",
                 static_cast<unsigned long long>(done),
                 static_cast<unsigned long long>(c.count),
                 static_cast<unsigned long long>(errors),
                 StopRequested() ? " (stopped)" : " (timeout)");
    return kExitFailed;
  }
  return 0;
}

int RunClient(int argc, char** argv) {
  auto c = ParseClient("client", argc, argv, true);
  if (!c) return kExitUsage;
  return RunClientWith(*c);
}

// ---- all ----

std::string SelfPath() {
  std::vector<char> buf(4096);
  ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  return std::string(buf.data(), static_cast<size_t>(n));
}

// fork + exec; the child dies with us (PR_SET_PDEATHSIG). stdout_fd >= 0
// replaces the child's stdout; close_fd is closed in the child.
pid_t Spawn(const std::vector<std::string>& args, int stdout_fd, int close_fd) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;  // parent (or -1)
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(127);
  if (stdout_fd >= 0) dup2(stdout_fd, STDOUT_FILENO);
  if (close_fd >= 0) close(close_fd);
  execv(argv[0], argv.data());
  _exit(127);
}

// Waits up to timeout_ms for pid; returns its wait status, or nullopt.
std::optional<int> WaitFor(pid_t pid, int64_t timeout_ms, bool stop_on_signal) {
  int64_t deadline = NowNanos() + timeout_ms * 1'000'000;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (NowNanos() >= deadline) return std::nullopt;
    if (stop_on_signal && StopRequested()) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// SIGTERM, a grace period, then SIGKILL; always reaps.
void Stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  if (WaitFor(pid, 3000, false)) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

// Reads the proxy's ready line ("... frontend=EP backend=EP") from fd.
bool ReadReady(int fd, int64_t timeout_ms, std::string* frontend,
               std::string* backend) {
  std::string line;
  int64_t deadline = NowNanos() + timeout_ms * 1'000'000;
  while (line.find('\n') == std::string::npos) {
    int64_t left_ms = (deadline - NowNanos()) / 1'000'000;
    if (left_ms <= 0 || StopRequested()) return false;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left_ms));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char chunk[256];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;  // proxy exited
    line.append(chunk, static_cast<size_t>(n));
  }
  auto field = [&](const std::string& key, std::string* out) {
    auto pos = line.find(key);
    if (pos == std::string::npos) return false;
    pos += key.size();
    auto end = line.find_first_of(" \n", pos);
    *out = line.substr(pos, end - pos);
    return !out->empty();
  };
  return field("frontend=", frontend) && field("backend=", backend);
}

int RunAll(int argc, char** argv) {
  auto c = ParseClient("all", argc, argv, false);
  if (!c) return kExitUsage;
  InstallStopHandlers();
  std::string self = SelfPath();
  if (self.empty()) {
    std::fprintf(stderr, "zmq_baseline all: cannot find /proc/self/exe\n");
    return kExitFailed;
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    std::perror("zmq_baseline all: pipe");
    return kExitFailed;
  }
  pid_t proxy = Spawn({self, "proxy", "--frontend", "tcp://127.0.0.1:*",
                       "--backend", "tcp://127.0.0.1:*"},
                      pipe_fds[1], pipe_fds[0]);
  close(pipe_fds[1]);
  pid_t echo = -1;
  pid_t client = -1;
  int rc = kExitFailed;
  std::string frontend;
  std::string backend;
  if (proxy < 0) {
    std::perror("zmq_baseline all: fork");
  } else if (!ReadReady(pipe_fds[0], 10000, &frontend, &backend)) {
    std::fprintf(stderr, "zmq_baseline all: the proxy did not get ready\n");
  } else {
    echo = Spawn({self, "echo", "--connect", backend}, -1, pipe_fds[0]);
    std::vector<std::string> args = {self,        "client",
                                     "--connect", frontend,
                                     "--count",   std::to_string(c->count),
                                     "--size",    std::to_string(c->size),
                                     "--window",  std::to_string(c->window),
                                     "--timeout", std::to_string(c->timeout_s)};
    if (c->json) args.push_back("--json");
    client = echo < 0 ? -1 : Spawn(args, -1, pipe_fds[0]);
    if (client < 0) {
      std::perror("zmq_baseline all: fork");
    } else {
      // The client bounds itself by --timeout; give it a margin to report.
      auto status = WaitFor(
          client, static_cast<int64_t>(c->timeout_s) * 1000 + 10000, true);
      if (status) {
        client = -1;  // reaped
        rc = WIFEXITED(*status) ? WEXITSTATUS(*status) : kExitFailed;
      } else {
        std::fprintf(stderr, "zmq_baseline all: %s; stopping the client\n",
                     StopRequested() ? "interrupted" : "the client hung");
      }
    }
  }
  Stop(client);
  Stop(echo);
  Stop(proxy);
  close(pipe_fds[0]);
  return rc;
}

}  // namespace
}  // namespace yard

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(yard::kUsage, stderr);
    return yard::kExitUsage;
  }
  std::string mode = argv[1];
  if (mode == "-h" || mode == "--help" || mode == "help") {
    std::fputs(yard::kUsage, stdout);
    return 0;
  }
  if (mode == "proxy") return yard::RunProxy(argc - 2, argv + 2);
  if (mode == "echo") return yard::RunEcho(argc - 2, argv + 2);
  if (mode == "client") return yard::RunClient(argc - 2, argv + 2);
  if (mode == "all") return yard::RunAll(argc - 2, argv + 2);
  std::fprintf(stderr, "zmq_baseline: unknown mode '%s'\n%s", mode.c_str(),
               yard::kUsage);
  return yard::kExitUsage;
}
