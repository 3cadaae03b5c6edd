// Redis authentication end to end: the real `yard` binary (a durable broker,
// a worker and a producer that find it with --discover, `yard queue stats`,
// `yard result`) against a real redis-server that wants a password
// (requirepass) or an ACL user with a narrow set of commands and keys. The
// password reaches each process a different way: in the URL, through
// --redis-password-file, through $YARD_REDIS_PASSWORD. A wrong password is
// one clear line on stderr and exit 2, and that line never holds the
// password.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "redis/redis_call.h"
#include "redis/redis_cluster.h"
#include "redis/redis_target.h"
#include "testing/process.h"
#include "testing/redis_cluster.h"
#include "testing/redis_sentinel.h"
#include "testing/redis_server.h"
#include "tests/cluster.h"

namespace yard {
namespace {

using Json = nlohmann::json;

constexpr char kPassword[] = "s3cret pass@word";  // a space and an '@'
constexpr char kAclUser[] = "yard";
constexpr char kAclPassword[] = "acl-pw";
constexpr int64_t kJobs = 300;
constexpr Millis kPushBound{30000};

// The narrow ACL of the README: the registry's and the queues' keys only,
// every command but the dangerous ones, plus CONFIG GET (--require-fsync)
// and ROLE (Sentinel's primary check).
const std::vector<std::string> kAclRules = {
    "resetkeys", "~{yard}*",    "~{jq:*",      "resetchannels",
    "+@all",     "-@dangerous", "+config|get", "+role"};

// One finished `yard ...` run.
struct YardRun {
  std::optional<ExitInfo> exit;
  std::string out;
  std::string err;

  bool ExitedWith(int code) const { return exit && exit->ExitedWith(code); }
  std::string Describe() const {
    return (exit ? exit->ToString() : std::string("still running")) +
           "; stdout: '" + out + "'; stderr: '" + err + "'";
  }
};

// Sets an environment variable for the children spawned while it lives.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

class RedisAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("YARD_REDIS_PASSWORD");
    RedisServer::Options o;
    o.password = kPassword;
    auto server = RedisServer::Create(o);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    redis_ = std::move(server).value();
    Status s = redis_->AddAclUser(kAclUser, kAclPassword, kAclRules);
    ASSERT_TRUE(s.ok()) << s.ToString();
    password_file_ = cluster_.dir() + "/redis-password";
    FILE* f = std::fopen(password_file_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f, "%s\n", kPassword);
    std::fclose(f);
  }

  void TearDown() override {
    if (HasFailure()) std::cerr << cluster_.Describe() << "\n";
  }

  // "redis://127.0.0.1:PORT" with `userinfo` ("user:pw@", ":pw@") after the
  // scheme.
  std::string Url(const std::string& userinfo = "") const {
    return "redis://" + userinfo +
           "127.0.0.1:" + std::to_string(redis_->port());
  }
  static std::string Encoded(const std::string& s) { return PercentEncode(s); }

  YardRun Yard(std::vector<std::string> args) {
    args.insert(args.begin(), YardBinary());
    YardRun run;
    auto p = Process::Spawn(
        std::move(args),
        cluster_.dir() + "/yard-" + std::to_string(++runs_) + ".stderr");
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return run;
    auto out = (*p)->ReadAll(Millis(15000));
    run.exit = (*p)->Wait(out ? Millis(5000) : Millis(100));
    if (!run.exit) (*p)->Kill();
    run.out = out.value_or("");
    run.err = (*p)->Stderr();
    return run;
  }

  // A worker that finds the broker through the registry.
  void StartDiscoveringWorker(std::vector<std::string> redis_args) {
    std::vector<std::string> args = {
        "worker", "--concurrency",      "2",   "--heartbeat-ms",
        "200",    "--discover-wait-ms", "5000"};
    args.insert(args.end(), redis_args.begin(), redis_args.end());
    ASSERT_TRUE(cluster_.Start("worker", std::move(args)));
  }

  // kJobs echo jobs through the broker; all must complete.
  void PushJobs(std::vector<std::string> source) {
    std::vector<std::string> args = {
        "--task", "echo",           "--count", std::to_string(kJobs), "--size",
        "64",     "--heartbeat-ms", "200",     "--timeout",           "30"};
    args.insert(args.end(), source.begin(), source.end());
    PushRun run = cluster_.RunPush(args, kPushBound);
    ExpectPushSucceeded(run, kJobs);
  }

  // `yard queue stats` counts the jobs completed, and `yard result` finds
  // one of them, both with the credentials in `redis_args`.
  void ExpectAdminWorks(const std::vector<std::string>& redis_args) {
    std::vector<std::string> stats = {"queue", "stats", "--json"};
    stats.insert(stats.end(), redis_args.begin(), redis_args.end());
    YardRun s = Yard(stats);
    ASSERT_TRUE(s.ExitedWith(0)) << s.Describe();
    Json j = Json::parse(s.out, nullptr, false);
    ASSERT_TRUE(j.is_object()) << s.Describe();
    EXPECT_GE(j["counters"]["completed"].get<int64_t>(), kJobs) << s.out;

    const std::string id = SomeResultId();
    ASSERT_FALSE(id.empty());
    std::vector<std::string> result = {"result", id, "--json"};
    result.insert(result.end(), redis_args.begin(), redis_args.end());
    YardRun r = Yard(result);
    ASSERT_TRUE(r.ExitedWith(0)) << r.Describe();
    EXPECT_NE(r.out.find(id), std::string::npos) << r.out;
  }

  // The id of a stored result (a field of a result hash).
  std::string SomeResultId() {
    auto keys = redis_->Call({"KEYS", "{jq:default}:res:*"});
    if (!keys.ok() || keys->elements.empty()) return "";
    for (const RedisReply& key : keys->elements) {
      if (key.str.find(":res:") == std::string::npos) continue;
      auto ids = redis_->Call({"HKEYS", key.str});
      if (ids.ok() && !ids->elements.empty()) return ids->elements[0].str;
    }
    return "";
  }

  // Exit 2 and one line on stderr that says authentication failed and does
  // not hold `secret`.
  static void ExpectAuthFailure(const YardRun& run, const std::string& secret) {
    EXPECT_TRUE(run.ExitedWith(2)) << run.Describe();
    std::string err = run.err;
    ASSERT_FALSE(err.empty()) << run.Describe();
    if (err.back() == '\n') err.pop_back();
    EXPECT_EQ(err.find('\n'), std::string::npos) << "one line: " << run.err;
    EXPECT_NE(err.find("authentication failed"), std::string::npos) << err;
    EXPECT_NE(err.find("127.0.0.1:"), std::string::npos) << err;
    EXPECT_EQ(err.find(secret), std::string::npos) << err;
  }

  Cluster cluster_;
  std::unique_ptr<RedisServer> redis_;
  std::string password_file_;
  int runs_ = 0;
};

// requirepass: the broker reads the password from a file, the worker and
// the producer from the environment, the admin commands from the URL.
TEST_F(RedisAuthTest, RequirepassFromFileEnvAndUrl) {
  auto broker = cluster_.StartBroker({"--redis", Url(), "--redis-password-file",
                                      password_file_, "--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  {
    ScopedEnv env("YARD_REDIS_PASSWORD", kPassword);
    StartDiscoveringWorker({"--discover", Url()});
    PushJobs({"--discover", Url()});
  }
  ExpectAdminWorks({"--redis", Url(":" + Encoded(kPassword) + "@")});
  ExpectAdminWorks({"--redis", Url(), "--redis-password-file", password_file_});
}

// An ACL user with the README's narrow rules: the user in the URL, its
// password in the URL, the environment or a file.
TEST_F(RedisAuthTest, AclUser) {
  const std::string user_url = Url(std::string(kAclUser) + "@");
  const std::string full_url =
      Url(std::string(kAclUser) + ":" + kAclPassword + "@");
  auto broker =
      cluster_.StartBroker({"--redis", full_url, "--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  {
    ScopedEnv env("YARD_REDIS_PASSWORD", kAclPassword);
    StartDiscoveringWorker({"--discover", user_url});
  }
  PushJobs({"--connect", broker->frontend});
  // The URL's password wins over the environment's.
  ScopedEnv wrong("YARD_REDIS_PASSWORD", "not-it");
  ExpectAdminWorks({"--redis", full_url});
}

TEST_F(RedisAuthTest, WrongPasswordIsOneLineAndExit2) {
  const std::string bad = "wrong-Pa55";
  const std::string bad_url = Url(":" + bad + "@");
  ExpectAuthFailure(
      Yard({"broker", "--frontend", "tcp://127.0.0.1:*", "--backend",
            "tcp://127.0.0.1:*", "--redis", bad_url}),
      bad);
  ExpectAuthFailure(Yard({"worker", "--discover", bad_url}), bad);
  ExpectAuthFailure(Yard({"queue", "stats", "--redis", bad_url}), bad);
  ExpectAuthFailure(
      Yard({"result", "0123456789abcdef0123456789abcdef", "--redis", bad_url}),
      bad);
  // A wrong ACL password from the environment, and none at all.
  {
    ScopedEnv env("YARD_REDIS_PASSWORD", bad);
    ExpectAuthFailure(
        Yard({"push", "--discover", Url(std::string(kAclUser) + "@"), "--task",
              "echo", "--count", "1"}),
        bad);
  }
  ExpectAuthFailure(Yard({"queue", "stats", "--redis", Url()}), kPassword);
}

// One SET and GET through ConnectRedisTarget(url) for `key`.
void ExpectSetGet(const std::string& url, const std::string& key) {
  auto target = ParseRedisTarget(url);
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  target->key = key;
  auto client = ConnectRedisTarget(*target, 3000);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto set = RedisCall(**client, {"SET", key, "v"});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto get = RedisCall(**client, {"GET", key});
  ASSERT_TRUE(get.ok()) << get.status().ToString();
  EXPECT_EQ(get->str, "v");
}

void ExpectRefused(const std::string& url, const std::string& secret) {
  auto target = ParseRedisTarget(url);
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  auto client = ConnectRedisTarget(*target, 3000);
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(IsRedisAuthFailure(client.status()))
      << client.status().ToString();
  EXPECT_EQ(client.status().message().find(secret), std::string::npos);
}

// Sentinel: the primary wants a password (and Sentinel knows it through
// auth-pass); the Sentinel itself is asked without. The primary Sentinel
// names gets the URL's credentials, for its ROLE check and the connection.
TEST(RedisAuthSentinelTest, PrimaryFoundThroughSentinelAuthenticates) {
  RedisServer::Options o;
  o.password = kPassword;
  auto primary = RedisServer::Create(o);
  ASSERT_TRUE(primary.ok()) << primary.status().ToString();
  auto sentinel =
      RedisSentinel::Create("mymaster", (*primary)->port(), kPassword);
  ASSERT_TRUE(sentinel.ok()) << sentinel.status().ToString();
  const std::string hosts = (*sentinel)->address() + "/mymaster";
  ExpectSetGet("sentinel://:" + PercentEncode(kPassword) + "@" + hosts, "k");
  ExpectRefused("sentinel://:wrong@" + hosts, "wrong");
  ExpectRefused("sentinel://" + hosts, kPassword);

  // A durable broker on it, the password from a file.
  Cluster cluster;
  const std::string file = cluster.dir() + "/pw";
  FILE* f = std::fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fprintf(f, "%s\n", kPassword);
  std::fclose(f);
  auto broker = cluster.StartBroker({"--redis", "sentinel://" + hosts,
                                     "--redis-password-file", file,
                                     "--heartbeat-ms", "200"});
  ASSERT_TRUE(broker);
  ASSERT_TRUE(
      cluster.StartWorker(broker->backend, 2, {"--heartbeat-ms", "200"}));
  PushRun run = cluster.RunPush(
      {"--connect", broker->frontend, "--task", "echo", "--count", "200",
       "--size", "64", "--heartbeat-ms", "200", "--timeout", "30"},
      kPushBound);
  ExpectPushSucceeded(run, 200);
}

// Cluster: requirepass and masterauth on every node. The seeds, every
// primary of the slot map and a MOVED redirect's target all take the
// URL's credentials.
TEST(RedisAuthClusterTest, EveryNodeConnectionAuthenticates) {
  auto c = RedisCluster::Create(3, 0, kPassword);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  RedisCluster& cluster = **c;
  const std::string seeds =
      cluster.url().substr(std::string("cluster://").size());
  const std::string url =
      "cluster://:" + PercentEncode(kPassword) + "@" + seeds;
  auto target = ParseRedisTarget(url);
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  auto map = FetchSlotMap(target->addresses, 3000);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  ASSERT_EQ(map->Primaries().size(), 3u);
  for (const RedisAddress& primary : map->Primaries()) {
    EXPECT_EQ(primary.auth.password, kPassword);
    auto pong = RedisCallOnce(primary, {"PING"}, 2000);
    EXPECT_TRUE(pong.ok()) << pong.status().ToString();
  }
  // Keys in three different slots, each on the primary that serves it.
  for (const char* key : {"a", "b", "{jq:default}:x"}) ExpectSetGet(url, key);

  // A node that does not serve the key's slot answers MOVED; the node it
  // names takes the same credentials.
  const uint16_t slot = KeySlot("a");
  auto owner = cluster.Owner(slot);
  ASSERT_TRUE(owner.ok()) << owner.status().ToString();
  RedisAddress other = cluster.node((*owner + 1) % 3).address();
  auto moved = RedisCallOnce(other, {"GET", "a"}, 2000);
  ASSERT_FALSE(moved.ok());
  auto redirect = ParseRedisRedirect(moved.status().message());
  ASSERT_TRUE(redirect.has_value()) << moved.status().ToString();
  RedisAddress to = other;
  if (!redirect->host.empty()) to.host = redirect->host;
  to.port = redirect->port;
  auto got = RedisCallOnce(to, {"GET", "a"}, 2000);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->str, "v");

  ExpectRefused("cluster://:wrong@" + seeds, "wrong");
  ExpectRefused(cluster.url(), kPassword);
}

}  // namespace
}  // namespace yard
