// DashboardServer: the web dashboard of `yard dashboard` (docs/adr/0021):
// one page compiled into the binary and a JSON API, over cpp-httplib.
//
//   GET  /                      the page (and /app.js, /style.css)
//   GET  /api/overview          the latest snapshot, refreshed every poll_ms
//   GET  /api/dead?limit=N      dead letters (admin::ListDead; N 1..1000)
//   GET  /api/job/ID            one job by id (32 hex digits; job_lookup.h)
//   POST /api/dead/requeue      admin only: every dead letter back to ready
//   POST /api/dead/purge        admin only: delete every dead letter
//   POST /api/queue/pause       admin only: brokers claim no more jobs
//   POST /api/queue/resume      admin only: undo pause
//   POST /api/job/ID/cancel     admin only: cancel one waiting, delayed or
//                               running job (job_lookup.h's CancelJob)
//
// One poller thread calls `snapshot` every poll_ms and keeps the answer;
// every browser is served that copy, so pages cannot multiply the load on
// brokers or Redis. The other reads and the actions share one Redis
// connection, used by one request at a time.
//
// Every request is hostile: known paths only (404), each with its method
// (405, and a GET never changes anything), no request bodies (413),
// parameters validated (400), actions only with `Authorization: Bearer
// TOKEN` matching the admin token in constant time (403, and an audit line
// per refusal, rate-limited; each action done is an audit line too), no
// CORS headers (so another site's page can neither send the token nor read
// an answer), a Host check against DNS rebinding (HostAllowed: 403), a
// Content-Security-Policy that allows only this origin's own
// script and style. Requests are served by a few threads with a bounded
// queue; past it the listener serves the connection itself, so further
// connections wait in the kernel's backlog. One request per connection, 2 s
// to read it and 2 s to write the answer.
//
// Thread-safety: Start/the destructor from one thread; `snapshot` is called
// on the poller thread only.
#ifndef YARD_DASHBOARD_DASHBOARD_SERVER_H_
#define YARD_DASHBOARD_DASHBOARD_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace yard {

struct DashboardOptions {
  std::string listen;  // HOST:PORT (PORT 0: any free port)
  // Empty: read-only (every action answers 403).
  std::string admin_token;
  // The durable queue the dead letters, jobs and actions are about; empty in
  // memory mode (those paths answer 404 with a reason).
  std::string redis_url;
  std::string queue = "default";
  // A picture of the cluster (admin/overview.h's Snapshot shape).
  std::function<nlohmann::ordered_json()> snapshot;
  int64_t poll_ms = 1000;
  // DNS names the page may be reached by, besides IP literals and
  // localhost (HostAllowed).
  std::vector<std::string> allowed_hosts;
};

// Whether a request's Host header may be served. A page of another site
// whose DNS name an attacker points at the dashboard's address (DNS
// rebinding) is same-origin with it and could read every answer; its
// requests carry that name in Host. Served: an IP literal (v4, or v6 in
// brackets), localhost, a name in `allowed` (without case; the port is not
// compared), or no Host at all (not a browser).
bool HostAllowed(std::string_view host,
                 const std::vector<std::string>& allowed);

// InvalidArgument unless `name` can be an allowed host: a DNS name (letters,
// digits, '-' and '.', at most 253 characters), without a scheme or a port,
// which HostAllowed would never match.
Status CheckAllowedHost(std::string_view name);

class DashboardServer {
 public:
  // Binds, takes a first snapshot in the background and starts serving.
  // InvalidArgument for a malformed address or an admin token shorter than
  // kMinTokenBytes; IoError when it cannot bind.
  static Result<std::unique_ptr<DashboardServer>> Start(
      DashboardOptions options);
  ~DashboardServer();  // stops serving and polling, joins the threads
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  const std::string& address() const;  // HOST:PORT as bound

  static constexpr size_t kMinTokenBytes = 16;

  class Impl;

 private:
  explicit DashboardServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The admin token in `path`: the file's content with surrounding white
// space trimmed. InvalidArgument when unreadable, empty or shorter than
// DashboardServer::kMinTokenBytes.
Result<std::string> ReadAdminToken(const std::string& path);

}  // namespace yard

#endif  // YARD_DASHBOARD_DASHBOARD_SERVER_H_
