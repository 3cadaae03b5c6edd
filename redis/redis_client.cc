#include "redis/redis_client.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstring>
#include <utility>

#include "common/clock.h"

namespace yard {

// One queued command. hiredis holds it as privdata and calls OnReply exactly
// once for it (with a reply, or with NULL when the context is torn down), and
// OnReply deletes it. `owner` is null once the client is destroyed; `done`
// is empty once the destructor has answered it itself.
struct RedisClient::Pending {
  Pending* prev = nullptr;
  Pending* next = nullptr;
  RedisClient* owner = nullptr;
  int64_t deadline_ms = 0;  // MonoMillis by which a reply is due
  int64_t sent_us = 0;      // MonoMicros when queued; 0: a blocking command
  Callback done;
};

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<int64_t> redis_timeout_ms{kDefaultRedisTimeoutMs};

RedisReply CopyReply(const redisReply& r);

bool HasPrefix(std::string_view s, std::string_view word) {
  return s.starts_with(word) &&
         (s.size() == word.size() || s[word.size()] == ' ');
}

Status ErrorReplyStatus(std::string_view error) {
  std::string message = "redis: " + std::string(error);
  for (std::string_view transient :
       {"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN",
        "NOREPLICAS",
        // Redis Cluster: the key's slot has moved or is moving.
        "MOVED", "ASK",
        // A blocked XREAD(GROUP) whose stream went away (MIGRATE moves
        // it to another node, or it was deleted).
        "UNBLOCKED",
        // A script or function touched an undeclared key of a slot that
        // is migrating (or the cluster is down). Its writes before that
        // call are NOT undone: only idempotent scripts may be replayed.
        "ERR Script attempted to access a non local key in a cluster node",
        "ERR Script attempted to execute a command while the cluster is "
        "down",
        "ERR Script attempted to execute a write command while the "
        "cluster is down and readonly"}) {
    if (HasPrefix(error, transient)) {
      return Status::Unavailable(std::move(message));
    }
  }
  if (HasPrefix(error, "OOM")) {
    return Status::ResourceExhausted(std::move(message));
  }
  return Status::Internal(std::move(message));
}

Result<RedisReply> ToResult(const redisReply& r) {
  if (r.type == REDIS_REPLY_ERROR) {
    return ErrorReplyStatus(std::string_view(r.str, r.len));
  }
  return CopyReply(r);
}

std::string ContextError(const redisAsyncContext* ac,
                         std::string_view fallback) {
  if (ac != nullptr && ac->err != 0 && ac->errstr != nullptr &&
      ac->errstr[0] != '\0') {
    return ac->errstr;
  }
  return std::string(fallback);
}

// An owned copy of a hiredis reply.
RedisReply CopyReply(const redisReply& r) {
  RedisReply out;
  switch (r.type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      out.type = r.type == REDIS_REPLY_STRING   ? RedisReply::Type::kString
                 : r.type == REDIS_REPLY_STATUS ? RedisReply::Type::kStatus
                                                : RedisReply::Type::kError;
      out.str.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r.elements);
      for (size_t i = 0; i < r.elements; ++i) {
        out.elements.push_back(CopyReply(*r.element[i]));
      }
      break;
    default:  // REDIS_REPLY_NIL
      out.type = RedisReply::Type::kNil;
      break;
  }
  return out;
}

}  // namespace

// The hiredis callbacks (friends of RedisClient). They reach the client
// through ac->data / ev.data, both cleared by the destructor.
struct RedisClientHooks {
  static RedisClient* From(void* data) {
    return static_cast<RedisClient*>(data);
  }
  static void AddRead(void*) {}  // we always poll for input
  static void DelRead(void*) {}
  static void AddWrite(void* data) { From(data)->want_write_ = true; }
  static void DelWrite(void* data) { From(data)->want_write_ = false; }
  // hiredis is freeing the context: pending callbacks have run; next come
  // onDisconnect and the free itself.
  static void Cleanup(void* data) {
    RedisClient* self = From(data);
    self->MarkLost(ContextError(self->ac_, "connection closed"));
    self->ac_ = nullptr;
    self->want_write_ = false;
  }
  static void OnConnect(const redisAsyncContext* ac, int status) {
    RedisClient* self = From(ac->data);
    if (self == nullptr) return;
    if (status == REDIS_OK) {
      if (self->state_ == RedisClient::State::kConnecting) {
        self->state_ = RedisClient::State::kConnected;
      }
    } else {
      self->MarkLost(ContextError(ac, "connect failed"));
    }
  }
  static void OnReply(redisAsyncContext* ac, void* reply, void* privdata) {
    auto* p = static_cast<RedisClient::Pending*>(privdata);
    RedisClient* self = p->owner;
    if (self != nullptr) {
      self->Unlink(p);
      if (reply == nullptr) {
        self->MarkLost(ContextError(ac, "connection closed"));
      }
    }
    if (reply != nullptr && p->sent_us != 0) {
      RedisRoundTrips().Record(static_cast<uint64_t>(
          std::max<int64_t>(0, MonoMicros() - p->sent_us)));
    }
    RedisClient::Callback done = std::move(p->done);
    delete p;
    if (!done) return;  // the destructor answered it
    if (reply == nullptr) {
      done(Status::Unavailable("redis: " +
                               (self != nullptr
                                    ? self->error_
                                    : ContextError(ac, "connection closed"))));
      return;
    }
    done(ToResult(*static_cast<const redisReply*>(reply)));
  }
};

void SetRedisTimeoutMs(int64_t timeout_ms) {
  redis_timeout_ms.store(timeout_ms > 0 ? timeout_ms : kDefaultRedisTimeoutMs);
}

int64_t RedisTimeoutMs() { return redis_timeout_ms.load(); }

LatencyHistogram& RedisRoundTrips() {
  static LatencyHistogram histogram;
  return histogram;
}

RedisClient::RedisClient(redisAsyncContext* ac)
    : ac_(ac), command_timeout_ms_(RedisTimeoutMs()) {
  ac_->data = this;
  // The hooks first: setting the connect callback calls addWrite at once.
  ac_->ev.data = this;
  ac_->ev.addRead = &RedisClientHooks::AddRead;
  ac_->ev.delRead = &RedisClientHooks::DelRead;
  ac_->ev.addWrite = &RedisClientHooks::AddWrite;
  ac_->ev.delWrite = &RedisClientHooks::DelWrite;
  ac_->ev.cleanup = &RedisClientHooks::Cleanup;
  redisAsyncSetConnectCallback(ac_, &RedisClientHooks::OnConnect);
}

RedisClient::~RedisClient() {
  if (destroyed_flag_ != nullptr) *destroyed_flag_ = true;
  state_ = State::kDestroying;
  // Take the callbacks out first: hiredis may run (or, when we are inside
  // one of its callbacks, defer) the pending callbacks with NULL replies,
  // and those must not reach us or the caller's `done` again.
  std::vector<Callback> dones;
  dones.reserve(pending_count_);
  for (Pending* p = head_; p != nullptr; p = p->next) {
    p->owner = nullptr;
    dones.push_back(std::move(p->done));
  }
  head_ = tail_ = nullptr;
  pending_count_ = 0;
  if (ac_ != nullptr) {
    ac_->data = nullptr;
    ac_->ev.data = nullptr;
    ac_->ev.addRead = nullptr;
    ac_->ev.delRead = nullptr;
    ac_->ev.addWrite = nullptr;
    ac_->ev.delWrite = nullptr;
    ac_->ev.cleanup = nullptr;
    ac_->onConnect = nullptr;
    ac_->onDisconnect = nullptr;
    // Frees now, or right after the hiredis callback we are inside returns.
    redisAsyncFree(ac_);
    ac_ = nullptr;
  }
  for (Callback& done : dones) {
    done(Status::Unavailable("redis: client destroyed"));
  }
}

namespace {

// Turns the client's loop (poll(2) on its fd) until *done or the deadline;
// not OK only when poll itself fails.
Status TurnUntil(RedisClient& client, const bool& done,
                 Clock::time_point deadline) {
  while (!done) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - Clock::now())
                    .count();
    if (left <= 0 || client.fd() < 0) break;
    pollfd pfd{client.fd(), 0, 0};
    const short want = client.events();
    if (want & ZMQ_POLLIN) pfd.events |= POLLIN;
    if (want & ZMQ_POLLOUT) pfd.events |= POLLOUT;
    int n = ::poll(&pfd, 1, static_cast<int>(left));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Unavailable(std::string("poll: ") + std::strerror(errno));
    }
    if (n == 0) continue;
    short revents = 0;
    if (pfd.revents & POLLIN) revents |= ZMQ_POLLIN;
    if (pfd.revents & POLLOUT) revents |= ZMQ_POLLOUT;
    if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) revents |= ZMQ_POLLERR;
    client.HandleEvents(revents);
  }
  return Status::OK();
}

constexpr std::string_view kAuthFailed = "authentication failed";

std::vector<std::string> AuthCommand(const RedisCredentials& auth) {
  if (auth.user.empty()) return {"AUTH", auth.password};
  return {"AUTH", auth.user, auth.password};
}

// The one line a refused AUTH (or a server that wants one) becomes. The
// server's words never hold the password.
std::string AuthFailure(const RedisCredentials& auth, const Status& why) {
  std::string who =
      auth.user.empty() ? std::string() : " as user '" + auth.user + "'";
  if (auth.empty()) {
    return std::string(kAuthFailed) +
           ": the server requires a password and none was given (" +
           why.message() + ")";
  }
  return std::string(kAuthFailed) + who + " (" + why.message() + ")";
}

bool IsNoAuth(const Status& s) {
  return s.message().find("NOAUTH") != std::string::npos;
}

}  // namespace

bool IsRedisAuthFailure(const Status& status) {
  return !status.ok() &&
         status.message().find(kAuthFailed) != std::string::npos;
}

Result<std::unique_ptr<RedisClient>> RedisClient::Begin(
    const RedisAddress& address) {
  const std::string where =
      "redis " + address.host + ":" + std::to_string(address.port);
  redisAsyncContext* ac =
      redisAsyncConnect(address.host.c_str(), static_cast<int>(address.port));
  if (ac == nullptr) return Status::Unavailable(where + ": out of memory");
  if (ac->err != 0) {
    Status error = Status::Unavailable(where + ": " + ac->errstr);
    redisAsyncFree(ac);
    return error;
  }
  // A peer that vanished (power loss, a cable, a partition) sends no FIN:
  // keepalive probes find it on an idle connection too.
  if (redisEnableKeepAlive(&ac->c) != REDIS_OK) {
    Status error = Status::Unavailable(where + ": keepalive: " + ac->c.errstr);
    redisAsyncFree(ac);
    return error;
  }
  return std::unique_ptr<RedisClient>(new RedisClient(ac));
}

Result<std::unique_ptr<RedisClient>> RedisClient::Connect(
    const RedisAddress& address, int64_t timeout_ms) {
  const std::string where =
      "redis " + address.host + ":" + std::to_string(address.port);
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  auto begun = Begin(address);
  if (!begun.ok()) return begun.status();
  // Declared before the client: its destructor may call these callbacks.
  // AUTH, SELECT and PING go out in one write; replies come in that order.
  Status auth_status;
  Status select_status;
  Status ping_status;
  bool ping_done = false;
  std::unique_ptr<RedisClient> client = std::move(begun).value();
  if (!address.auth.empty()) {
    client->Command(AuthCommand(address.auth),
                    [&](Result<RedisReply> r) { auth_status = r.status(); });
  }
  if (address.db != 0) {
    client->Command(
        {"SELECT", std::to_string(address.db)},
        [&select_status](Result<RedisReply> r) { select_status = r.status(); });
  }
  client->Command({"PING"}, [&](Result<RedisReply> r) {
    ping_status = r.status();
    ping_done = true;
  });
  if (Status s = TurnUntil(*client, ping_done, deadline); !s.ok()) {
    return Status::Unavailable(where + ": " + s.message());
  }
  if (!ping_done) {
    std::string why =
        client->error_.empty()
            ? "timed out after " + std::to_string(timeout_ms) + " ms"
            : client->error_;
    client.reset();  // answers the queued commands
    return Status::Unavailable(where + ": " + why);
  }
  if (!auth_status.ok()) {
    return Status::Unavailable(where + ": " +
                               AuthFailure(address.auth, auth_status));
  }
  if (!ping_status.ok()) {
    return Status::Unavailable(where + ": " +
                               (IsNoAuth(ping_status)
                                    ? AuthFailure(address.auth, ping_status)
                                    : ping_status.message()));
  }
  if (!select_status.ok()) {
    return Status::Unavailable(where + ": SELECT " +
                               std::to_string(address.db) + ": " +
                               select_status.message());
  }
  if (!client->connected()) {
    return Status::Unavailable(where + ": " + client->error_);
  }
  return client;
}

int RedisClient::fd() const {
  return ac_ != nullptr && state_ != State::kLost ? ac_->c.fd : -1;
}

short RedisClient::events() const {
  if (fd() < 0) return 0;
  return static_cast<short>(ZMQ_POLLIN | (want_write_ ? ZMQ_POLLOUT : 0));
}

void RedisClient::Handle(void (*handle)(redisAsyncContext*)) {
  if (ac_ == nullptr) return;
  // A callback may destroy the client inside hiredis: the destructor sets
  // this flag, and then `this` must not be touched again.
  bool destroyed = false;
  bool* outer = destroyed_flag_;
  destroyed_flag_ = &destroyed;
  handle(ac_);
  if (destroyed) {
    if (outer != nullptr) *outer = true;
    return;
  }
  destroyed_flag_ = outer;
}

void RedisClient::OnReadable() { Handle(redisAsyncHandleRead); }

void RedisClient::OnWritable() { Handle(redisAsyncHandleWrite); }

void RedisClient::HandleEvents(short revents) {
  bool destroyed = false;
  bool* outer = destroyed_flag_;
  destroyed_flag_ = &destroyed;
  if (revents & (ZMQ_POLLIN | ZMQ_POLLERR)) OnReadable();
  if (!destroyed && ac_ != nullptr && (revents & ZMQ_POLLOUT)) OnWritable();
  if (destroyed) {
    if (outer != nullptr) *outer = true;
    return;
  }
  destroyed_flag_ = outer;
}

bool RedisClient::Overdue(int64_t now_ms) const {
  return head_ != nullptr && now_ms >= head_->deadline_ms;
}

void RedisClient::Command(std::vector<std::string> args, Callback done,
                          int64_t blocks_ms) {
  if (args.empty()) {
    done(Status::InvalidArgument("redis: empty command"));
    return;
  }
  if (ac_ == nullptr ||
      (state_ != State::kConnecting && state_ != State::kConnected)) {
    done(Status::Unavailable(
        "redis: not connected" +
        (error_.empty() ? std::string() : " (" + error_ + ")")));
    return;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* p = new Pending;
  p->owner = this;
  const int64_t now_us = MonoMicros();
  p->deadline_ms = now_us / 1000 + command_timeout_ms_ + blocks_ms;
  p->sent_us = blocks_ms == 0 ? now_us : 0;
  // Behind a blocking command, a reply cannot come before that one's.
  if (tail_ != nullptr)
    p->deadline_ms = std::max(p->deadline_ms, tail_->deadline_ms);
  p->done = std::move(done);
  Link(p);
  if (redisAsyncCommandArgv(ac_, &RedisClientHooks::OnReply, p,
                            static_cast<int>(argv.size()), argv.data(),
                            lens.data()) != REDIS_OK) {
    Unlink(p);
    Callback d = std::move(p->done);
    delete p;
    d(Status::Unavailable("redis: command not queued (disconnecting)"));
  }
}

void RedisClient::Link(Pending* p) {
  p->prev = tail_;
  p->next = nullptr;
  if (tail_ != nullptr) {
    tail_->next = p;
  } else {
    head_ = p;
  }
  tail_ = p;
  ++pending_count_;
}

void RedisClient::Unlink(Pending* p) {
  if (p->prev != nullptr) {
    p->prev->next = p->next;
  } else {
    head_ = p->next;
  }
  if (p->next != nullptr) {
    p->next->prev = p->prev;
  } else {
    tail_ = p->prev;
  }
  p->prev = p->next = nullptr;
  --pending_count_;
}

void RedisClient::MarkLost(std::string_view why) {
  if (state_ == State::kConnecting || state_ == State::kConnected) {
    state_ = State::kLost;
    error_ = std::string(why);
  }
}

}  // namespace yard
