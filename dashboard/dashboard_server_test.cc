// The dashboard's HTTP API without a browser: a real DashboardServer on a
// free loopback port over a real redis-server, asked by a plain HTTP client
// the way a hostile peer would.
#include "dashboard/dashboard_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <string>

#include "admin/queue_admin.h"
#include "common/clock.h"
#include "queue/redis_layout.h"
#include "redis/redis_call.h"
#include "schemas/codec.h"
#include "testing/log_capture.h"
#include "testing/queue_driver.h"
#include "testing/redis_fixture.h"

namespace yard {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kToken[] = "0123456789abcdef-the-admin-token";

class DashboardServerTest : public RedisFixture {
 protected:
  void SetUp() override {
    RedisFixture::SetUp();
    if (HasFatalFailure()) return;
    Start(kToken);
  }

  void Start(const std::string& token,
             std::vector<std::string> allowed_hosts = {}) {
    dashboard_.reset();
    DashboardOptions o;
    o.listen = "127.0.0.1:0";
    o.admin_token = token;
    o.allowed_hosts = std::move(allowed_hosts);
    o.redis_url = server_->url();
    o.poll_ms = 60000;  // one snapshot for the whole test
    o.snapshot = [this] {
      ++snapshots_;
      return Json{{"time_ms", 1}, {"queue", nullptr}};
    };
    auto started = DashboardServer::Start(std::move(o));
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    dashboard_ = std::move(started).value();
    const std::string& address = dashboard_->address();
    const size_t colon = address.rfind(':');
    client_ = std::make_unique<httplib::Client>(
        address.substr(0, colon), std::stoi(address.substr(colon + 1)));
    client_->set_read_timeout(10, 0);
  }

  bool Paused() {
    auto q = admin::ConnectQueue(server_->url(), "default");
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    if (!q.ok()) return false;
    auto control = admin::ReadControl(*q);
    EXPECT_TRUE(control.ok()) << control.status().ToString();
    return control.ok() && (*control)["paused"] == true;
  }

  // How many cancels are recorded for the brokers (P cx).
  int64_t RecordedCancels() {
    auto r = RedisCall(*admin_, {"HLEN", QueueKeys("default").cancels});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->integer : -1;
  }

  // The stored result's status of job `id`, or "" when none is stored.
  std::string ResultStatus(const JobId& id) {
    auto q = admin::ConnectQueue(server_->url(), "default");
    if (!q.ok()) return "";
    auto r = admin::StoredResult(*q, id);
    return r.ok() ? (*r)["status"].get<std::string>() : "";
  }

  httplib::Result Post(const std::string& path, const std::string& token) {
    httplib::Headers headers;
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    return client_->Post(path.c_str(), headers, "", "text/plain");
  }

  // An admin's cancel of job `id`: the answer of a 200, else null (and a
  // test failure).
  Json Cancel(const std::string& id) {
    auto res = Post("/api/job/" + id + "/cancel", kToken);
    EXPECT_TRUE(res);
    if (!res) return nullptr;
    EXPECT_EQ(res->status, 200) << res->body;
    return res->status == 200 ? Json::parse(res->body) : Json();
  }

  std::atomic<int> snapshots_{0};
  std::unique_ptr<DashboardServer> dashboard_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(DashboardServerTest, ServesThePageAndTheCachedOverview) {
  auto page = client_->Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("/app.js"), std::string::npos);
  EXPECT_NE(page->get_header_value("Content-Security-Policy")
                .find("script-src 'self'"),
            std::string::npos);
  EXPECT_FALSE(page->has_header("Access-Control-Allow-Origin"));
  for (const char* asset : {"/app.js", "/style.css"}) {
    auto res = client_->Get(asset);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << asset;
  }
  for (int i = 0; i < 20; ++i) {
    auto res = client_->Get("/api/overview");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    const Json j = Json::parse(res->body);
    EXPECT_EQ(j["dashboard"]["admin"], true);
    EXPECT_EQ(j["dashboard"]["durable"], true);
  }
  // Every browser is served the poller's copy.
  EXPECT_LE(snapshots_.load(), 1);
}

TEST_F(DashboardServerTest, RefusesUnknownPathsAndWrongMethods) {
  auto unknown = client_->Get("/etc/passwd");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  // A GET never acts.
  auto get_action = client_->Get("/api/queue/pause");
  ASSERT_TRUE(get_action);
  EXPECT_EQ(get_action->status, 405);
  EXPECT_EQ(get_action->get_header_value("Allow"), "POST");
  EXPECT_FALSE(Paused());
  auto put = client_->Put("/api/overview", "", "text/plain");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 405);
  auto options = client_->Options("/api/dead/requeue");
  ASSERT_TRUE(options);
  EXPECT_EQ(options->status, 405);
  EXPECT_FALSE(options->has_header("Access-Control-Allow-Origin"));
}

TEST_F(DashboardServerTest, ActionsNeedTheToken) {
  LogCapture log;
  for (const std::string token : {"", "wrong-token-wrong-token", "Bearer"}) {
    auto res = Post("/api/queue/pause", token);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 403) << token;
  }
  EXPECT_FALSE(Paused());
  // A token one character short of the real one.
  const std::string almost(kToken, sizeof(kToken) - 2);
  auto short_token = Post("/api/queue/pause", almost);
  ASSERT_TRUE(short_token);
  EXPECT_EQ(short_token->status, 403);
  EXPECT_FALSE(Paused());
  EXPECT_NE(log.Find("\"event\":\"dashboard_refused\""), "");
  EXPECT_EQ(log.Find("admin_pause"), "");

  auto pause = Post("/api/queue/pause", kToken);
  ASSERT_TRUE(pause);
  EXPECT_EQ(pause->status, 200) << pause->body;
  EXPECT_TRUE(Paused());
  // Each action done is an audit line.
  const std::string audit = log.Find("\"event\":\"admin_pause\"");
  EXPECT_NE(audit.find("\"via\":\"dashboard\""), std::string::npos) << audit;
  auto resume = Post("/api/queue/resume", kToken);
  ASSERT_TRUE(resume);
  EXPECT_EQ(resume->status, 200) << resume->body;
  EXPECT_FALSE(Paused());
  auto requeue = Post("/api/dead/requeue", kToken);
  ASSERT_TRUE(requeue);
  EXPECT_EQ(requeue->status, 200);
  EXPECT_EQ(Json::parse(requeue->body)["requeued"], 0);
}

// DNS rebinding: a page at a name the attacker points at 127.0.0.1 sends
// that name as Host. Only IP literals, localhost and the allowed names are
// served, for reads and actions alike.
TEST_F(DashboardServerTest, ServesOnlyIpLiteralsLocalhostAndAllowedHosts) {
  auto status = [this](const char* host, const char* path = "/api/overview") {
    auto res = client_->Get(path, {{"Host", host}});
    return res ? res->status : -1;
  };
  EXPECT_EQ(status("attacker.example:8080"), 403);
  EXPECT_EQ(status("attacker.example", "/"), 403);
  EXPECT_EQ(status("dash.internal"), 403);
  auto refused = client_->Get("/api/overview", {{"Host", "attacker.example"}});
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->body.find("--allowed-host"), std::string::npos);
  auto action =
      client_->Post("/api/queue/pause",
                    {{"Host", "attacker.example"},
                     {"Authorization", std::string("Bearer ") + kToken}},
                    "", "text/plain");
  ASSERT_TRUE(action);
  EXPECT_EQ(action->status, 403);
  EXPECT_FALSE(Paused());
  EXPECT_EQ(status("127.0.0.1:8080"), 200);
  EXPECT_EQ(status("localhost"), 200);
  EXPECT_EQ(status("LocalHost.:1"), 200);
  EXPECT_EQ(status("[::1]:8080"), 200);
  EXPECT_EQ(status("[not-an-address]:8080"), 403);
  Start(kToken, {"Dash.Internal"});
  EXPECT_EQ(status("dash.internal:8080"), 200);
  EXPECT_EQ(status("attacker.example"), 403);
  // A name with a port or a scheme would never match: refused at start.
  for (const char* bad : {"dash.internal:8080", "http://dash.internal", ""}) {
    DashboardOptions o;
    o.listen = "127.0.0.1:0";
    o.snapshot = [] { return Json::object(); };
    o.allowed_hosts = {bad};
    auto started = DashboardServer::Start(std::move(o));
    ASSERT_FALSE(started.ok()) << bad;
    EXPECT_EQ(started.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST_F(DashboardServerTest, ReadOnlyRefusesEveryAction) {
  Start("");
  auto res = Post("/api/queue/pause", kToken);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403);
  EXPECT_NE(res->body.find("read-only"), std::string::npos);
  EXPECT_FALSE(Paused());
  auto overview = client_->Get("/api/overview");
  ASSERT_TRUE(overview);
  EXPECT_EQ(Json::parse(overview->body)["dashboard"]["admin"], false);
}

TEST_F(DashboardServerTest, RefusesBodiesAndBadParameters) {
  httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kToken}};
  auto big = client_->Post("/api/queue/pause", auth,
                           std::string(64 * 1024, 'x'), "text/plain");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_FALSE(Paused());
  for (const char* path :
       {"/api/job/zz", "/api/job/0123456789abcdef0123456789abcdef0",
        "/api/job/../../etc/passwd", "/api/dead?limit=0",
        "/api/dead?limit=1001", "/api/dead?limit=ten"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 400) << path << " " << res->body;
  }
  auto unknown = client_->Get("/api/job/0123456789abcdef0123456789abcdef");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 200);
  EXPECT_EQ(Json::parse(unknown->body)["state"], "unknown");
  auto dead = client_->Get("/api/dead?limit=5");
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->status, 200);
  EXPECT_EQ(Json::parse(dead->body)["total"], 0);
}

// An admin's cancel of a waiting job is recorded for the brokers; the broker
// that claims the job finds the record and finishes the job Cancelled. A
// second cancel finds it finished and records nothing.
TEST_F(DashboardServerTest, CancelRecordsACancelThatTheBrokerCarriesOut) {
  LogCapture log;
  auto broker = StartTestBroker(server_->url(), "broker-a");
  ASSERT_NE(broker, nullptr);
  const TestJob job;
  PushJobs(*broker, {job});

  const Json answer = Cancel(job.id.ToString());
  EXPECT_EQ(answer["cancel"], "requested") << answer;
  EXPECT_EQ(answer["state"], "ready") << answer;
  EXPECT_EQ(answer["queue"], "default") << answer;
  EXPECT_EQ(RecordedCancels(), 1);
  const std::string audit = log.Find("\"event\":\"admin_cancel\"");
  EXPECT_NE(audit.find("\"via\":\"dashboard\""), std::string::npos) << audit;
  EXPECT_NE(audit.find(job.id.ToString()), std::string::npos) << audit;

  // The job is handed out when claimed: the queue asks the broker to
  // recall it, which (no worker here) finishes it Cancelled at once.
  Writer writer;
  std::string cancelled;
  broker->queue->SetCancelSink([&](const JobId& id) {
    cancelled = AsString(writer.EncodeResult(id, wire::ResultStatus::Cancelled,
                                             {}, "cancelled", 1, 0));
    broker->queue->Complete(id, AsBytes(cancelled));
    return true;
  });
  // Claims look for cancel records once the queue's control read (every
  // 250 ms) has seen that there are some.
  const int64_t noticed_ms = MonoMillis() + 600;
  ASSERT_TRUE(PumpQueue(*broker, [&] { return MonoMillis() >= noticed_ms; }));
  broker->want = 1;
  EXPECT_TRUE(
      PumpQueue(*broker, [&] { return ResultStatus(job.id) == "Cancelled"; }))
      << "status: " << ResultStatus(job.id);
  EXPECT_EQ(RecordedCancels(), 0);  // acted on and removed

  const Json finished = Cancel(job.id.ToString());
  EXPECT_EQ(finished["cancel"], "finished") << finished;
  EXPECT_EQ(finished["status"], "Cancelled") << finished;
  EXPECT_EQ(RecordedCancels(), 0);
}

// A job that reported progress has a stored "Unfinished" status but no
// result: it is looked up where it is (and can be cancelled there).
TEST_F(DashboardServerTest, AJobThatReportedProgressIsLookedUpInTheQueue) {
  auto broker = StartTestBroker(server_->url(), "broker-a");
  ASSERT_NE(broker, nullptr);
  const TestJob job;
  PushJobs(*broker, {job});
  ASSERT_TRUE(
      RedisCall(*admin_, {"HSET", QueueKeys("default").ProgressKey(job.id), "f",
                          "0.5", "m", "half", "t", "1"})
          .ok());
  auto res = client_->Get(("/api/job/" + job.id.ToString()).c_str());
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const Json found = Json::parse(res->body);
  EXPECT_EQ(found["state"], "ready") << found;
  EXPECT_EQ(found["progress"]["message"], "half") << found;
  EXPECT_EQ(Cancel(job.id.ToString())["cancel"], "requested");
}

TEST_F(DashboardServerTest, CancelNeedsTheTokenAndAJobId) {
  const std::string id = "0123456789abcdef0123456789abcdef";
  const std::string path = "/api/job/" + id + "/cancel";
  for (const std::string token : {"", "wrong-token-wrong-token"}) {
    auto res = Post(path, token);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 403) << token;
  }
  for (const char* bad :
       {"/api/job/zz/cancel", "/api/job//cancel",
        "/api/job/0123456789abcdef0123456789abcdef0/cancel",
        "/api/job/0123456789abcdef0123456789abcdef/x/cancel"}) {
    auto res = Post(bad, kToken);
    ASSERT_TRUE(res) << bad;
    EXPECT_EQ(res->status, 400) << bad << " " << res->body;
  }
  // A GET never cancels; a POST does not look a job up.
  auto get = client_->Get(path.c_str());
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405);
  EXPECT_EQ(get->get_header_value("Allow"), "POST");
  auto post_lookup = Post("/api/job/" + id, kToken);
  ASSERT_TRUE(post_lookup);
  EXPECT_EQ(post_lookup->status, 405);
  // A job the queue does not hold: nothing is recorded.
  EXPECT_EQ(Cancel(id)["cancel"], "not found");
  EXPECT_EQ(RecordedCancels(), 0);

  Start("");
  auto read_only = Post(path, kToken);
  ASSERT_TRUE(read_only);
  EXPECT_EQ(read_only->status, 403);
  EXPECT_EQ(RecordedCancels(), 0);
}

TEST(AdminTokenTest, TrimsAndRefusesShortTokens) {
  const std::string path = ::testing::TempDir() + "/dashboard-token";
  std::ofstream(path) << "  " << kToken << "\n\n";
  auto token = ReadAdminToken(path);
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  EXPECT_EQ(*token, kToken);
  std::ofstream(path) << "short\n";
  EXPECT_FALSE(ReadAdminToken(path).ok());
  EXPECT_FALSE(ReadAdminToken(path + ".missing").ok());
}

}  // namespace
}  // namespace yard
