// yard top (--connect EP,... | --discover URL | --redis URL) [--queue Q]
//          [--interval-ms N] [--once] [--json] [CURVE client flags]
// A live view of the brokers, workers, durable queue, rates and latency:
// admin/overview.h collects, admin/top_view.h lays out, tools/terminal.h
// draws on the terminal's alternate screen every --interval-ms until `q`,
// Ctrl-C or SIGTERM, then restores the terminal (exit 0).
//
// --once prints one screen (with --json: the collector's snapshot as one
// line of JSON) made from two samples --interval-ms apart, so its rates are
// filled: exit 0, or 1 with a one-line message when no broker answered (a
// broker refusing a key that is not an admin's says so). --json alone
// prints such a snapshot every --interval-ms, one per line, until stopped.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "admin/overview.h"
#include "admin/top_view.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/signals.h"
#include "tools/cli.h"
#include "tools/terminal.h"

namespace yard {
namespace {

using Json = nlohmann::ordered_json;

struct TopFlags {
  std::string connect, discover, redis, queue = "default", log_level = "off";
  cli::RedisAuthFlags auth;
  cli::CurveFlags curve;
  int64_t interval_ms = 1000;
  int64_t timeout_ms = 2000;
  bool once = false;
  bool json = false;
};

void AddTopFlags(CLI::App& app, TopFlags* f) {
  CLI::Option* discover = cli::AddBrokerSourceFlags(
      app, "frontend", &f->connect, &f->discover, &f->auth);
  app.add_option("--redis", f->redis,
                 "a durable queue's Redis: show its ready, delayed, running "
                 "and dead jobs and its counters (without --connect or "
                 "--discover, also the brokers of its registry)");
  // The Redis credentials serve --redis as well as --discover.
  for (const char* name : {"--redis-password-file", "--redis-timeout-ms"}) {
    app.get_option(name)->remove_needs(discover);
  }
  app.add_option("--queue", f->queue, "the durable queue to show")
      ->capture_default_str();
  cli::AddCurveClientFlags(app, &f->curve);
  app.add_option("--interval-ms", f->interval_ms, "refresh period")
      ->check(CLI::Range(int64_t{100}, int64_t{3'600'000}))
      ->capture_default_str();
  app.add_option("--timeout-ms", f->timeout_ms,
                 "how long one refresh waits for the brokers' answers")
      ->check(CLI::Range(int64_t{100}, int64_t{600'000}))
      ->capture_default_str();
  app.add_flag("--once", f->once,
               "print one screen (two samples --interval-ms apart) and exit; "
               "1 when no broker answered");
  app.add_flag("--json", f->json,
               "print the snapshots as JSON, one per line (with --once: one)");
  app.add_option("--log-level", f->log_level,
                 "log to stderr at this level (off: the screen is the output)")
      ->capture_default_str();
}

// The collector; with --discover, rebuilt when brokers join or leave.
struct Collector {
  admin::OverviewOptions options;
  cli::BrokerSource source;
  std::unique_ptr<admin::Overview> overview;

  // One snapshot. With --discover, first follows the registry: a new broker
  // set starts a new collector (its rates start over).
  Json Sample() {
    if (source.discovery) {
      std::vector<std::string> now = source.discovery->endpoints();
      if (!now.empty() && now != options.brokers) {
        admin::OverviewOptions o = options;
        o.brokers = now;
        auto created = admin::Overview::Create(o);
        if (created.ok()) {
          options = std::move(o);
          overview = std::move(created).value();
        }
      }
    }
    return overview->Snapshot();
  }
};

// Checks the flags and creates the collector: 0, or an exit code (a
// one-line error already printed).
int MakeCollector(const std::string& name, const TopFlags& f, Collector* c) {
  if (f.connect.empty() && f.discover.empty() && f.redis.empty()) {
    return cli::UsageError(name, "give --connect, --discover or --redis");
  }
  if (!f.connect.empty() || !f.discover.empty()) {
    if (int rc = cli::ResolveBrokerSource(name, f.connect, f.discover, f.auth,
                                          Discovery::Side::kFrontend, f.queue,
                                          f.timeout_ms, &c->source)) {
      return rc;
    }
  }
  if (int rc = cli::ResolveCurveClient(name, f.curve, c->source,
                                       &c->options.curve)) {
    return rc;
  }
  if (!f.redis.empty()) {
    Result<std::string> url = cli::ResolveRedisUrl(f.redis, f.auth);
    if (!url.ok()) return cli::UsageError(name, url.status().message());
    c->options.redis_url = *url;
  }
  c->options.brokers = c->source.endpoints;
  c->options.queue = f.queue;
  c->options.timeout_ms = f.timeout_ms;
  auto created = admin::Overview::Create(c->options);
  if (!created.ok()) {
    return created.status().code() == StatusCode::kInvalidArgument
               ? cli::UsageError(name, created.status().message())
               : cli::RuntimeError(name, created.status());
  }
  c->overview = std::move(created).value();
  if (c->source.discovery) {
    c->source.discovery->Start([](const std::vector<std::string>&) {});
  }
  return 0;
}

// Sleeps until `deadline_ms` (MonoMillis) in short steps; false when a
// stop signal or `quit` came first.
bool PauseUntil(int64_t deadline_ms, const std::atomic<bool>& quit) {
  while (MonoMillis() < deadline_ms) {
    if (StopRequested() || quit.load()) return false;
    const int64_t step = std::min<int64_t>(50, deadline_ms - MonoMillis());
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::max<int64_t>(step, 0)));
  }
  return !StopRequested() && !quit.load();
}

int BrokersUp(const Json& snapshot) {
  int up = 0;
  if (snapshot.contains("brokers") && snapshot["brokers"].is_array()) {
    for (const Json& b : snapshot["brokers"]) {
      up += b.contains("up") && b["up"] == true ? 1 : 0;
    }
  }
  return up;
}

// --once: two samples, the second printed.
int RunOnce(const std::string& name, const TopFlags& f, Collector* c) {
  const std::atomic<bool> quit{false};
  c->Sample();
  if (!PauseUntil(MonoMillis() + f.interval_ms, quit)) return 130;
  const Json snapshot = c->Sample();
  if (f.json) {
    std::cout << cli::DumpJson(snapshot) << std::endl;
  } else {
    // On a terminal, cut to its width; into a file or pipe, nothing cut.
    admin::ScreenSize size = TerminalSize();
    if (size.width == 0) size.width = 4096;
    size.height = std::numeric_limits<size_t>::max();
    for (const std::string& line :
         admin::RenderTop(snapshot, size, f.interval_ms)) {
      std::cout << line << "\n";
    }
    std::cout.flush();
  }
  if (BrokersUp(snapshot) == 0) {
    std::cerr << name << ": error: " << admin::NoBrokerMessage(snapshot)
              << "\n";
    return 1;
  }
  return 0;
}

// --json without --once: a snapshot a line, from the second sample on.
int RunStream(const TopFlags& f, Collector* c) {
  const std::atomic<bool> quit{false};
  int64_t next = MonoMillis();
  c->Sample();
  while (PauseUntil(next += f.interval_ms, quit)) {
    std::cout << cli::DumpJson(c->Sample()) << std::endl;
  }
  return 0;
}

// The live view: a thread samples every interval while this one draws the
// latest snapshot and waits for `q`, a resize or a signal.
int RunLive(const TopFlags& f, Collector* c) {
  std::mutex mu;
  std::optional<Json> latest;  // guarded by mu
  uint64_t generation = 0;     // guarded by mu
  std::atomic<bool> quit{false};
  std::thread sampler([&] {
    int64_t next = MonoMillis();
    do {
      Json snapshot = c->Sample();
      std::lock_guard<std::mutex> lock(mu);
      latest = std::move(snapshot);
      ++generation;
    } while (PauseUntil(next += f.interval_ms, quit));
  });
  {
    FullScreen screen;
    uint64_t drawn = 0;
    bool redraw = true;
    while (!StopRequested()) {
      std::optional<Json> snapshot;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (generation != drawn) {
          drawn = generation;
          snapshot = latest;
          redraw = true;
        }
      }
      if (redraw) {
        admin::ScreenSize size = TerminalSize();
        if (size.width == 0) size = {80, 24};
        if (!snapshot) {
          std::lock_guard<std::mutex> lock(mu);
          snapshot = latest;
        }
        screen.Draw(snapshot ? admin::RenderTop(*snapshot, size, f.interval_ms)
                             : std::vector<std::string>{admin::FitToWidth(
                                   "yard top  waiting for the brokers' "
                                   "answers  (q quits)",
                                   size.width)});
        redraw = false;
      }
      char key = 0;
      const FullScreen::Event event = screen.WaitKey(100, &key);
      if (event == FullScreen::Event::kKey && (key == 'q' || key == 'Q')) {
        break;
      }
      redraw = event == FullScreen::Event::kResize;
    }
  }  // the terminal is restored here, before waiting for the sampler
  quit = true;
  sampler.join();
  return 0;
}

}  // namespace

int RunTop(int argc, char** argv) {
  CLI::App app{
      "A live view of brokers, workers, queues, rates and latency (q quits)."};
  TopFlags f;
  AddTopFlags(app, &f);
  int code = 0;
  if (!cli::Parse(app, argc, argv, &code)) return code;
  const std::string name = app.get_name();
  if (!f.once && !f.json && !FullScreen::Available()) {
    return cli::UsageError(name,
                           "stdout is not a terminal: use --once or --json");
  }
  InitLogging("top", f.log_level);
  InstallStopHandlers();
  Collector c;
  if (int rc = MakeCollector(name, f, &c)) return rc;
  if (f.once) return RunOnce(name, f, &c);
  if (f.json) return RunStream(f, &c);
  return RunLive(f, &c);
}

}  // namespace yard
