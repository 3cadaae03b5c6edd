// yard dashboard (--redis URL [--queue Q] | --connect EP,...) --listen
// HOST:PORT [--admin-token-file FILE]: the web dashboard
// (dashboard/dashboard_server.h, docs/adr/0021). Prints
// "yard dashboard listening=HOST:PORT url=http://HOST:PORT/" once serving;
// runs until SIGTERM or Ctrl-C.
#include <chrono>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admin/overview.h"
#include "common/logging.h"
#include "common/signals.h"
#include "dashboard/dashboard_server.h"
#include "tools/cli.h"

namespace yard {
namespace {

// The flags of `yard dashboard`.
struct DashboardFlags {
  std::string redis_url;
  cli::RedisAuthFlags auth;
  std::string queue = "default";
  std::string connect;
  cli::CurveFlags curve;
  std::string listen;
  std::string token_file;
  std::vector<std::string> allowed_hosts;
  std::string log_level = "info";
};

void AddFlags(CLI::App& app, DashboardFlags* f) {
  CLI::Option* redis = app.add_option(
      "--redis", f->redis_url,
      "the durable queue's Redis (its stats, dead letters, jobs and "
      "actions; its registry names the brokers when --connect is not given)");
  cli::AddRedisAuthFlags(app, &f->auth, redis);
  app.add_option("--queue", f->queue, "queue name")->capture_default_str();
  app.add_option("--connect", f->connect,
                 "broker frontends to ask for their stats, comma-separated "
                 "(memory mode, or brokers the registry does not list)");
  cli::AddCurveClientFlags(app, &f->curve);
  app.add_option("--listen", f->listen,
                 "serve the page and its JSON API on HOST:PORT (PORT 0: any "
                 "free port)")
      ->required();
  app.add_option("--admin-token-file", f->token_file,
                 "allow the actions (requeue, purge, pause, resume, cancel) to "
                 "requests bearing this file's content (trimmed) as their "
                 "token; without it the dashboard is read-only");
  app.add_option("--allowed-host", f->allowed_hosts,
                 "a DNS name the page is reached by (repeatable); IP "
                 "addresses and localhost always work, other names are "
                 "refused (403) against DNS rebinding")
      ->check([](const std::string& name) {
        Status s = CheckAllowedHost(name);
        return s.ok() ? std::string() : s.message();
      });
  app.add_option("--log-level", f->log_level)->capture_default_str();
}

}  // namespace

int RunDashboard(int argc, char** argv) {
  CLI::App app{"Serve a live web dashboard of the queue, brokers and workers."};
  DashboardFlags f;
  AddFlags(app, &f);
  int code = 0;
  if (!cli::Parse(app, argc, argv, &code)) return code;
  const std::string name = app.get_name();
  InitLogging("dashboard", f.log_level);
  if (f.redis_url.empty() && f.connect.empty()) {
    return cli::UsageError(name, "give --redis or --connect");
  }
  DashboardOptions options;
  options.listen = f.listen;
  options.queue = f.queue;
  options.allowed_hosts = f.allowed_hosts;
  if (!f.token_file.empty()) {
    Result<std::string> token = ReadAdminToken(f.token_file);
    if (!token.ok()) {
      return cli::UsageError(name,
                             "--admin-token-file: " + token.status().message());
    }
    options.admin_token = *token;
  }
  admin::OverviewOptions overview;
  overview.queue = f.queue;
  if (!f.redis_url.empty()) {
    Result<std::string> url = cli::ResolveRedisUrl(f.redis_url, f.auth);
    if (!url.ok()) return cli::UsageError(name, url.status().message());
    options.redis_url = overview.redis_url = *url;
  }
  cli::BrokerSource source;
  if (!f.connect.empty()) {
    if (int rc = cli::ResolveBrokerSource(name, f.connect, "", f.auth,
                                          Discovery::Side::kFrontend, f.queue,
                                          0, &source)) {
      return rc;
    }
    overview.brokers = source.endpoints;
  }
  if (int rc =
          cli::ResolveCurveClient(name, f.curve, source, &overview.curve)) {
    return rc;
  }
  auto created = admin::Overview::Create(std::move(overview));
  if (!created.ok()) return cli::UsageError(name, created.status().message());
  // Shared, since a std::function must be copyable; only the poller calls it.
  std::shared_ptr<admin::Overview> collector = std::move(created).value();
  options.snapshot = [collector] { return collector->Snapshot(); };
  InstallStopHandlers();
  auto server = DashboardServer::Start(std::move(options));
  if (!server.ok()) {
    return cli::UsageError(name, "--listen: " + server.status().message());
  }
  const std::string address = (*server)->address();
  std::cout << "yard dashboard listening=" << address << " url=http://"
            << address << "/" << std::endl;
  while (!StopRequested()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return 0;
}

}  // namespace yard
