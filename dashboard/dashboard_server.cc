#include "dashboard/dashboard_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "admin/queue_admin.h"
#include "common/audit.h"
#include "common/clock.h"
#include "common/job_id.h"
#include "dashboard/assets.h"
#include "dashboard/job_lookup.h"
#include "metrics/metrics_server.h"

namespace yard {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kIoTimeoutSec = 2;
constexpr size_t kServerThreads = 4;
constexpr size_t kMaxQueuedConnections = 16;
constexpr size_t kDefaultDeadLimit = 50;
constexpr size_t kMaxDeadLimit = 1000;
constexpr char kBadJobId[] = "a job id is 32 hex digits";
constexpr char kJobPrefix[] = "/api/job/";
constexpr char kCancelSuffix[] = "/cancel";

// A few threads and a bounded queue of accepted connections. When the queue
// is full the listener serves the connection itself, so it stops accepting
// and the rest wait in the kernel's backlog: threads and memory stay
// bounded (httplib's own ThreadPool queues without bound).
class BoundedPool : public httplib::TaskQueue {
 public:
  BoundedPool() {
    for (size_t i = 0; i < kServerThreads; ++i) {
      threads_.emplace_back([this] { Work(); });
    }
  }
  void enqueue(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (jobs_.size() < kMaxQueuedConnections) {
        jobs_.push_back(std::move(fn));
        cv_.notify_one();
        return;
      }
    }
    fn();
  }
  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// The paths there are, and the one method each takes (HEAD goes with GET).
// A prefix route takes any path that starts with `path` (and ends with
// `suffix`); the first match wins.
struct Route {
  const char* path;
  const char* method;
  bool prefix = false;
  const char* suffix = "";
};
constexpr Route kRoutes[] = {
    {"/", "GET"},
    {"/app.js", "GET"},
    {"/style.css", "GET"},
    {"/api/overview", "GET"},
    {"/api/dead", "GET"},
    {kJobPrefix, "POST", true, kCancelSuffix},
    {kJobPrefix, "GET", true},
    {"/api/dead/requeue", "POST"},
    {"/api/dead/purge", "POST"},
    {"/api/queue/pause", "POST"},
    {"/api/queue/resume", "POST"},
};

const Route* FindRoute(const std::string& path) {
  for (const Route& r : kRoutes) {
    if (r.prefix ? path.starts_with(r.path) && path.ends_with(r.suffix)
                 : path == r.path) {
      return &r;
    }
  }
  return nullptr;
}

// The job id in /api/job/ID`suffix`, or nothing when it is not 32 hex
// digits.
std::optional<JobId> JobIdIn(const std::string& path, std::string_view suffix) {
  const size_t at = sizeof(kJobPrefix) - 1;
  if (path.size() < at + suffix.size()) return std::nullopt;
  return JobId::Parse(
      std::string_view(path).substr(at, path.size() - at - suffix.size()));
}

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void SendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(Dump(body), "application/json");
}

void SendError(httplib::Response& res, int status, const std::string& why) {
  SendJson(res, status, Json{{"error", why}});
}

// SHA-256 of the token, so that the comparison takes the same time
// whatever the lengths.
std::string Digest(const std::string& text) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

// "Bearer TOKEN" -> TOKEN; anything else -> empty.
std::string BearerToken(const httplib::Request& req) {
  const std::string auth = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  return auth.starts_with(kBearer) ? auth.substr(kBearer.size()) : "";
}

std::string_view Trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

bool HostAllowed(std::string_view host,
                 const std::vector<std::string>& allowed) {
  if (host.empty()) return true;  // HTTP/1.0: no browser sends that
  auto lower = [](std::string_view text) {
    std::string out(text);
    for (char& c : out) c = static_cast<char>(std::tolower(c));
    return out;
  };
  if (host.front() == '[') {  // [IPv6]:PORT
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    const std::string literal(host.substr(1, close - 1));
    in6_addr a6{};
    return inet_pton(AF_INET6, literal.c_str(), &a6) == 1;
  }
  std::string name = lower(host.substr(0, host.find(':')));
  if (name.ends_with('.')) name.pop_back();  // "localhost." is localhost
  in_addr a4{};
  if (inet_pton(AF_INET, name.c_str(), &a4) == 1) return true;
  if (name == "localhost") return true;
  for (const std::string& a : allowed) {
    if (lower(a) == name) return true;
  }
  return false;
}

Status CheckAllowedHost(std::string_view name) {
  const bool ok = !name.empty() && name.size() <= 253 &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) ||
                           c == '-' || c == '.';
                  });
  if (ok) return Status::OK();
  return Status::InvalidArgument(
      "allowed host '" + std::string(name.substr(0, 64)) +
      "': give a DNS name only (letters, digits, '-', '.'), without a scheme "
      "or a port");
}

Result<std::string> ReadAdminToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  std::string token(Trim(text.str()));
  if (token.size() < DashboardServer::kMinTokenBytes) {
    return Status::InvalidArgument(
        path + ": the token must have at least " +
        std::to_string(DashboardServer::kMinTokenBytes) + " characters");
  }
  return token;
}

class DashboardServer::Impl {
 public:
  explicit Impl(DashboardOptions o)
      : options_(std::move(o)),
        token_digest_(
            options_.admin_token.empty() ? "" : Digest(options_.admin_token)) {
    server_.new_task_queue = [] { return new BoundedPool; };
    server_.set_keep_alive_max_count(1);
    server_.set_read_timeout(kIoTimeoutSec, 0);
    server_.set_write_timeout(kIoTimeoutSec, 0);
    server_.set_payload_max_length(0);
    server_.set_default_headers({
        {"X-Content-Type-Options", "nosniff"},
        {"X-Frame-Options", "DENY"},
        {"Referrer-Policy", "no-referrer"},
        {"Content-Security-Policy",
         "default-src 'none'; script-src 'self'; style-src 'self'; "
         "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
         "form-action 'none'; frame-ancestors 'none'"},
    });
    server_.set_pre_routing_handler([this](const httplib::Request& req,
                                           httplib::Response& res) {
      if (!HostAllowed(req.get_header_value("Host"), options_.allowed_hosts)) {
        SendError(res, 403,
                  "this Host name is not served (a guard against DNS "
                  "rebinding): give yard dashboard --allowed-host NAME "
                  "for each name it is reached by");
        return httplib::Server::HandlerResponse::Handled;
      }
      const Route* route = FindRoute(req.path);
      if (route == nullptr) {
        SendError(res, 404, "no such path");
        return httplib::Server::HandlerResponse::Handled;
      }
      const bool get = std::string_view(route->method) == "GET";
      if (req.method != route->method && !(get && req.method == "HEAD")) {
        res.set_header("Allow", get ? "GET, HEAD" : "POST");
        SendError(res, 405, std::string("use ") + route->method);
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    AddPage();
    AddReads();
    AddActions();
  }

  ~Impl() {
    server_.stop();
    if (serve_thread_.joinable()) serve_thread_.join();
    {
      std::lock_guard<std::mutex> lock(snapshot_mu_);
      stop_ = true;
    }
    snapshot_cv_.notify_all();
    if (poll_thread_.joinable()) poll_thread_.join();
  }

  // Starts polling and serving; the bound port, or -1.
  int Serve(const std::string& host, int port) {
    const int bound = ServeInBackground(server_, host, port, &serve_thread_);
    if (bound > 0) poll_thread_ = std::thread([this] { Poll(); });
    return bound;
  }

  std::string address;

 private:
  void AddPage() {
    auto asset = [this](const char* path, const char* body, const char* type) {
      server_.Get(
          path, [body, type](const httplib::Request&, httplib::Response& res) {
            res.set_content(body, type);
          });
    };
    asset("/", dashboard_assets::kIndexHtml, "text/html; charset=utf-8");
    asset("/app.js", dashboard_assets::kAppJs,
          "text/javascript; charset=utf-8");
    asset("/style.css", dashboard_assets::kStyleCss, "text/css; charset=utf-8");
  }

  void AddReads() {
    server_.Get("/api/overview",
                [this](const httplib::Request&, httplib::Response& res) {
                  SendJson(res, 200, Overview());
                });
    server_.Get("/api/dead", [this](const httplib::Request& req,
                                    httplib::Response& res) {
      size_t limit = kDefaultDeadLimit;
      if (req.has_param("limit")) {
        const std::string text = req.get_param_value("limit");
        auto [end, ec] =
            std::from_chars(text.data(), text.data() + text.size(), limit);
        if (ec != std::errc() || end != text.data() + text.size() ||
            limit < 1 || limit > kMaxDeadLimit) {
          return SendError(
              res, 400,
              "limit: a number from 1 to " + std::to_string(kMaxDeadLimit));
        }
      }
      WithQueue(res, [limit](const admin::QueueConnection& q) {
        return admin::ListDead(q, limit);
      });
    });
    server_.Get(std::string(kJobPrefix) + ".*",
                [this](const httplib::Request& req, httplib::Response& res) {
                  const std::optional<JobId> id = JobIdIn(req.path, "");
                  if (!id) return SendError(res, 400, kBadJobId);
                  WithQueue(res, [&id](const admin::QueueConnection& q) {
                    return LookupJob(q, *id);
                  });
                });
  }

  // The admin actions: the token first, then the parameters, then the
  // queue, then an audit line.
  void AddActions() {
    auto action = [this](const char* path, const char* event, Action act) {
      server_.Post(path, [this, event, act](const httplib::Request& req,
                                            httplib::Response& res) {
        if (Refused(req, res)) return;
        Perform(req, res, event, act);
      });
    };
    server_.Post(std::string(kJobPrefix) + ".*" + kCancelSuffix,
                 [this](const httplib::Request& req, httplib::Response& res) {
                   if (Refused(req, res)) return;
                   const std::optional<JobId> id =
                       JobIdIn(req.path, kCancelSuffix);
                   if (!id) return SendError(res, 400, kBadJobId);
                   Perform(req, res, "admin_cancel",
                           [&id](const admin::QueueConnection& q) {
                             return CancelJob(q, *id);
                           });
                 });
    action("/api/dead/requeue", "admin_requeue",
           [](const admin::QueueConnection& q) {
             return admin::RequeueDead(q, 0);
           });
    action("/api/dead/purge", "admin_purge",
           [](const admin::QueueConnection& q) { return admin::PurgeDead(q); });
    action("/api/queue/pause", "admin_pause",
           [](const admin::QueueConnection& q) {
             return admin::PauseQueue(q, true);
           });
    action("/api/queue/resume", "admin_resume",
           [](const admin::QueueConnection& q) {
             return admin::PauseQueue(q, false);
           });
  }

  using Action = std::function<Result<Json>(const admin::QueueConnection&)>;

  // Without the admin token: answers 403 (and an audit line, at most one a
  // second per address) and returns true.
  bool Refused(const httplib::Request& req, httplib::Response& res) {
    if (Authorized(req)) return false;
    Audit("dashboard_refused", req.remote_addr,
          {{"path", req.path}, {"why", Refusal()}}, 1000);
    SendError(res, 403, Refusal());
    return true;
  }

  // Does an admin's action and writes its audit line (event, the client's
  // address, via dashboard, its outcome) when it is done.
  void Perform(const httplib::Request& req, httplib::Response& res,
               const char* event, const Action& act) {
    WithQueue(res, [&](const admin::QueueConnection& q) {
      Result<Json> done = act(q);
      if (done.ok()) {
        Audit(event, req.remote_addr,
              {{"via", "dashboard"}, {"outcome", *done}}, 0);
      }
      return done;
    });
  }

  bool Authorized(const httplib::Request& req) const {
    if (token_digest_.empty()) return false;
    const std::string given = Digest(BearerToken(req));
    return CRYPTO_memcmp(given.data(), token_digest_.data(), given.size()) == 0;
  }

  std::string Refusal() const {
    return token_digest_.empty()
               ? "read-only dashboard (started without --admin-token-file)"
               : "admin token missing or wrong";
  }

  // Runs `call` on the shared queue connection (one request at a time),
  // connecting first if need be; answers its JSON or the error.
  void WithQueue(httplib::Response& res, const Action& call) {
    if (options_.redis_url.empty()) {
      return SendError(res, 404, "memory mode: no durable queue (--redis)");
    }
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (!queue_) {
      Result<admin::QueueConnection> q =
          admin::ConnectQueue(options_.redis_url, options_.queue);
      if (!q.ok()) return SendError(res, 503, q.status().message());
      queue_ = std::move(q).value();
    }
    Result<Json> out = call(*queue_);
    if (out.ok()) return SendJson(res, 200, *out);
    const StatusCode code = out.status().code();
    if (code == StatusCode::kUnavailable) queue_.reset();  // reconnect next
    SendError(res, code == StatusCode::kUnavailable ? 503 : 500,
              out.status().message());
  }

  void Audit(const char* event, const std::string& who, nlohmann::json fields,
             int64_t interval_ms) {
    std::lock_guard<std::mutex> lock(audit_mu_);
    AuditLog& log = interval_ms == 0 ? actions_audit_ : refusals_audit_;
    log.Write(event, who, std::move(fields), MonoMillis());
  }

  // The poller: one snapshot per poll_ms, whatever the number of browsers.
  void Poll() {
    std::unique_lock<std::mutex> lock(snapshot_mu_);
    while (!stop_) {
      lock.unlock();
      Json fresh = options_.snapshot();
      lock.lock();
      snapshot_ = std::move(fresh);
      snapshot_mono_ms_ = MonoMillis();
      snapshot_cv_.wait_for(lock, std::chrono::milliseconds(options_.poll_ms),
                            [this] { return stop_; });
    }
  }

  Json Overview() {
    Json out;
    int64_t taken_ms = 0;
    {
      std::lock_guard<std::mutex> lock(snapshot_mu_);
      out = snapshot_.is_null() ? Json::object() : snapshot_;
      taken_ms = snapshot_mono_ms_;
    }
    out["dashboard"] = {
        {"admin", !token_digest_.empty()},
        {"durable", !options_.redis_url.empty()},
        {"queue", options_.queue},
        {"poll_ms", options_.poll_ms},
        {"age_ms", taken_ms == 0 ? Json() : Json(MonoMillis() - taken_ms)},
    };
    return out;
  }

  const DashboardOptions options_;
  const std::string token_digest_;  // empty: read-only
  httplib::Server server_;
  std::thread serve_thread_;

  std::mutex snapshot_mu_;
  std::condition_variable snapshot_cv_;
  Json snapshot_;  // guarded by snapshot_mu_
  int64_t snapshot_mono_ms_ = 0;
  bool stop_ = false;
  std::thread poll_thread_;

  std::mutex queue_mu_;
  std::optional<admin::QueueConnection> queue_;  // guarded by queue_mu_

  std::mutex audit_mu_;
  AuditLog actions_audit_{0};      // every action; guarded by audit_mu_
  AuditLog refusals_audit_{1000};  // rate-limited; guarded by audit_mu_
};

Result<std::unique_ptr<DashboardServer>> DashboardServer::Start(
    DashboardOptions options) {
  std::string host;
  int port = 0;
  if (Status s = ParseHostPort(options.listen, &host, &port); !s.ok()) {
    return s;
  }
  if (!options.admin_token.empty() &&
      options.admin_token.size() < kMinTokenBytes) {
    return Status::InvalidArgument("admin token too short");
  }
  for (const std::string& name : options.allowed_hosts) {
    if (Status s = CheckAllowedHost(name); !s.ok()) return s;
  }
  // hiredis writes with write(2): a server that hangs up must not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>(std::move(options));
  const int bound = impl->Serve(host, port);
  if (bound <= 0) {
    return Status::IoError("cannot listen on " + JoinHostPort(host, port));
  }
  impl->address = JoinHostPort(host, bound);
  return std::unique_ptr<DashboardServer>(new DashboardServer(std::move(impl)));
}

DashboardServer::DashboardServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
DashboardServer::~DashboardServer() = default;
const std::string& DashboardServer::address() const { return impl_->address; }

}  // namespace yard
