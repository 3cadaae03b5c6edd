#include "security/gatekeeper.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "security/curve_keys.h"

namespace yard {
namespace {

struct Keys {
  CurveKeyPair broker, producer, worker, admin, stranger;
};

Keys MakeKeys() {
  return {GenerateKeyPair().value(), GenerateKeyPair().value(),
          GenerateKeyPair().value(), GenerateKeyPair().value(),
          GenerateKeyPair().value()};
}

RoleKeys RolesOf(const Keys& k) {
  RoleKeys r;
  r.producers = KeySet::Of({k.producer.public_key});
  r.workers = KeySet::Of({k.worker.public_key});
  r.admins = KeySet::Of({k.admin.public_key});
  return r;
}

TEST(RolesTest, UserIdRoundTrip) {
  const std::string user = MakeUserId(Role::kWorker, "KEY");
  Peer p = ParseUserId(user);  // views into `user`
  EXPECT_EQ(p.role, Role::kWorker);
  EXPECT_EQ(p.key, "KEY");
  EXPECT_EQ(ParseUserId("").role, Role::kNone);
  EXPECT_EQ(ParseUserId("root:KEY").role, Role::kNone);
}

TEST(RolesTest, AccessByDomainAndRole) {
  const Keys k = MakeKeys();
  const RoleKeys r = RolesOf(k);
  auto d = DecideAccess(r, kFrontendDomain, "CURVE", k.producer.public_key);
  EXPECT_TRUE(d.ok);
  EXPECT_EQ(d.role, Role::kProducer);
  d = DecideAccess(r, kFrontendDomain, "CURVE", k.admin.public_key);
  EXPECT_TRUE(d.ok);
  EXPECT_EQ(d.role, Role::kAdmin);
  d = DecideAccess(r, kBackendDomain, "CURVE", k.worker.public_key);
  EXPECT_TRUE(d.ok);
  EXPECT_EQ(d.role, Role::kWorker);
  // A producer key as a worker, a worker key as a producer: wrong role.
  d = DecideAccess(r, kBackendDomain, "CURVE", k.producer.public_key);
  EXPECT_FALSE(d.ok);
  EXPECT_EQ(d.why, Refusal::kWrongRole);
  d = DecideAccess(r, kFrontendDomain, "CURVE", k.worker.public_key);
  EXPECT_EQ(d.why, Refusal::kWrongRole);
  d = DecideAccess(r, kBackendDomain, "CURVE", k.admin.public_key);
  EXPECT_EQ(d.why, Refusal::kWrongRole);
  d = DecideAccess(r, kFrontendDomain, "CURVE", k.stranger.public_key);
  EXPECT_EQ(d.why, Refusal::kUnknownKey);
  d = DecideAccess(r, kFrontendDomain, "NULL", "");
  EXPECT_EQ(d.why, Refusal::kPlaintext);
}

// A real CURVE ROUTER guarded by a Gatekeeper, and clients with each key.
class GatekeeperSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "yard_gate_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(WriteKeyPair(dir_ + "/broker", k_.broker, false).ok());
    std::ofstream(dir_ + "/producers") << k_.producer.public_key << "\n";
    std::ofstream(dir_ + "/workers") << k_.worker.public_key << "\n";
    std::ofstream(dir_ + "/admins") << k_.admin.public_key << "\n";
    GatekeeperOptions o;
    o.secret_key_file = dir_ + "/broker.secret";
    o.keys = {dir_ + "/producers", dir_ + "/workers", dir_ + "/admins"};
    auto gate = Gatekeeper::Create(context_, o);
    ASSERT_TRUE(gate.ok()) << gate.status().ToString();
    gate_ = std::move(gate).value();
    server_.set(zmq::sockopt::linger, 0);
    ASSERT_TRUE(gate_->SecureServer(server_, kBackendDomain).ok());
    server_.bind("tcp://127.0.0.1:*");
    endpoint_ = server_.get(zmq::sockopt::last_endpoint);
    ASSERT_TRUE(gate_->Watch(server_, kBackendDomain).ok());
  }

  // A client socket that sends "hi" with `keys` (plaintext when null).
  std::unique_ptr<zmq::socket_t> Client(const CurveKeyPair* keys) {
    auto s =
        std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
    s->set(zmq::sockopt::linger, 0);
    if (keys) {
      CurveClientOptions c{keys->public_key, keys->secret_key,
                           k_.broker.public_key, nullptr};
      EXPECT_TRUE(ApplyCurveClient(*s, c, endpoint_).ok());
    }
    s->connect(endpoint_);
    (void)s->send(zmq::str_buffer("hi"), zmq::send_flags::dontwait);
    return s;
  }

  // Runs the server side for `ms`; returns the User-Ids of what arrived.
  std::vector<std::string> Pump(int ms) {
    std::vector<std::string> users;
    const auto end =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      zmq_pollitem_t items[1 + Gatekeeper::kMaxPollItems];
      items[0] = {server_.handle(), 0, ZMQ_POLLIN, 0};
      int n = gate_->PollItems(items + 1);
      zmq::poll(items, static_cast<size_t>(1 + n),
                std::chrono::milliseconds(20));
      gate_->OnPollEvents(items + 1, n, 0);
      zmq::message_t id, body;
      while (server_.recv(id, zmq::recv_flags::dontwait)) {
        (void)server_.recv(body);
        // The ROUTER makes the identity frame; the peer's frames carry
        // the connection's metadata.
        const char* user = zmq_msg_gets(body.handle(), "User-Id");
        users.push_back(user ? user : "");
      }
    }
    return users;
  }

  Keys k_ = MakeKeys();
  std::string dir_;
  zmq::context_t context_;
  std::unique_ptr<Gatekeeper> gate_;
  zmq::socket_t server_{context_, zmq::socket_type::router};
  std::string endpoint_;
};

TEST_F(GatekeeperSocketTest, AdmitsTheRoleOfTheDomainOnly) {
  auto worker = Client(&k_.worker);
  auto producer = Client(&k_.producer);
  auto stranger = Client(&k_.stranger);
  auto plain = Client(nullptr);
  std::vector<std::string> users = Pump(500);
  ASSERT_EQ(users.size(), 1u);
  EXPECT_EQ(users[0], "worker:" + k_.worker.public_key);
  EXPECT_GE(gate_->refused(Refusal::kWrongRole), 1u);
  EXPECT_GE(gate_->refused(Refusal::kUnknownKey), 1u);
  EXPECT_GE(
      gate_->refused(Refusal::kPlaintext) + gate_->refused(Refusal::kHungUp),
      1u);
  nlohmann::json j;
  gate_->DescribeStats(&j);
  EXPECT_GE(j["auth_refused"]["plaintext"].get<int>() +
                j["auth_refused"]["hung_up"].get<int>(),
            1)
      << j.dump();
  EXPECT_EQ(j["auth"]["accepted"], 1) << j.dump();
}

TEST_F(GatekeeperSocketTest, ReloadRefusesRemovedKeysOnTheirNextMessage) {
  auto worker = Client(&k_.worker);
  ASSERT_EQ(Pump(300).size(), 1u);
  const std::string user = "worker:" + k_.worker.public_key;
  std::string why;
  EXPECT_TRUE(
      gate_->Admit(kBackendDomain, user, {Role::kWorker}, "Ready", 0, &why));
  EXPECT_FALSE(
      gate_->Admit(kBackendDomain, user, {Role::kAdmin}, "Stats", 0, &why));
  EXPECT_EQ(gate_->role_violations(), 1u);
  std::ofstream(dir_ + "/workers") << "# nobody\n";
  ASSERT_TRUE(gate_->Reload().ok());
  EXPECT_FALSE(
      gate_->Admit(kBackendDomain, user, {Role::kWorker}, "Ready", 0, &why));
  EXPECT_EQ(gate_->refused(Refusal::kRemovedKey), 1u);
  auto again = Client(&k_.worker);  // a new handshake with the removed key
  EXPECT_TRUE(Pump(300).empty());
  // A reload that fails keeps the sets it had.
  std::ofstream(dir_ + "/workers") << "garbage\n";
  EXPECT_FALSE(gate_->Reload().ok());
}

TEST_F(GatekeeperSocketTest, OneZapHandlerPerContext) {
  GatekeeperOptions o;
  o.secret_key_file = dir_ + "/broker.secret";
  o.keys = {dir_ + "/producers", dir_ + "/workers", ""};
  EXPECT_FALSE(Gatekeeper::Create(context_, o).ok());
}

}  // namespace
}  // namespace yard
