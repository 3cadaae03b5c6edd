// RedisClient: a small asynchronous Redis client over hiredis 0.14's
// redisAsyncContext, driven by the caller's poll loop (the broker's
// zmq_poll), so a Redis-backed JobQueue can answer from the broker's event
// loop without threads.
//
//   auto c = RedisClient::Connect(*ParseRedisUrl("redis://127.0.0.1:6379/0"),
//                                 /*timeout_ms=*/2000);
//   (*c)->Command({"SET", key, value}, [](Result<RedisReply> r) { ... });
//   for (;;) {  // the owner's loop
//     zmq_pollitem_t item{nullptr, (*c)->fd(), (*c)->events(), 0};
//     zmq_poll(&item, 1, timeout_ms);
//     (*c)->HandleEvents(item.revents);  // or OnReadable() / OnWritable()
//   }
//
// Contract:
// - Command() queues a command (binary-safe argv) and returns; nothing is
//   sent until the loop reports the fd writable (events() then includes
//   ZMQ_POLLOUT). Several Command() calls before the loop turns go out in
//   one write (pipelining); replies come back in command order.
// - Every `done` is called exactly once, from OnReadable()/OnWritable()/
//   HandleEvents(), from the destructor, or, when the client is not
//   connected (or args is empty), before Command() returns.
// - Results: a reply, including nil and arrays whose elements are errors
//   (e.g. EXEC), is ok() and copied into a RedisReply the callback owns. A
//   top-level error reply is a non-OK Status whose message is the server's
//   error ("WRONGTYPE ..."): kUnavailable for LOADING, BUSY, MASTERDOWN,
//   READONLY, TRYAGAIN, CLUSTERDOWN and NOREPLICAS, kResourceExhausted for
//   OOM, kInternal otherwise. Redis Cluster's transient errors are
//   kUnavailable too, the server's text kept ("redis: MOVED 3999
//   127.0.0.1:6381", parsed by ParseRedisRedirect in redis_cluster.h):
//   MOVED and ASK (the key's slot has moved / is being migrated: resolve
//   the owner again and resend), UNBLOCKED (a blocked XREAD's stream was
//   migrated away or deleted), and a script's "Script attempted to access
//   a non local key in a cluster node" (an undeclared key of a migrating
//   slot) or "... while the cluster is down". A script so stopped is not
//   rolled back: its writes before that call stay. The client never
//   follows a redirect itself (no ASKING).
// - Disconnection (the server closes, a read or write fails): every pending
//   `done` gets kUnavailable once, connected() is false by the time the
//   first of them runs, fd() becomes -1 and events() 0. The client does not
//   reconnect: the owner destroys it and calls Connect() again (with
//   backoff), from its loop rather than from inside a callback.
// - Destruction: pending `done`s get kUnavailable ("client destroyed")
//   during the destructor; none is called after it returns. Destroying the
//   client from inside one of its callbacks is allowed.
// - Deadlines: every command must be answered within command_timeout_ms()
//   (plus, for a command that blocks on the server, the time it may block)
//   of being queued. hiredis 0.14 has no async timeouts, so the client only
//   records them: Overdue() says when the oldest unanswered command is past
//   its deadline (replies come in order, so a later one cannot have come
//   back first), and the owner then destroys the client, as it would after
//   a disconnection. hiredis writes with write(2): the process must ignore
//   SIGPIPE (common/signals does).
// - Every connection has TCP keepalive on (hiredis's redisEnableKeepAlive:
//   probes after 15 s idle), so a peer that vanished without a FIN or RST
//   is noticed even on a connection with no command pending.
//
// Thread-safety: none. One thread (the owner's event loop) makes every call
// and receives every callback.
#ifndef YARD_REDIS_REDIS_CLIENT_H_
#define YARD_REDIS_REDIS_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/latency_histogram.h"
#include "common/status.h"

struct redisAsyncContext;
struct redisReply;

namespace yard {

// Who a connection authenticates as. Connect sends `AUTH password` (the
// "default" user: requirepass) when only the password is set, `AUTH user
// password` (an ACL user) when the user is, and nothing when both are
// empty. Never logged: RedactRedisUrl and RedisTarget::ToString print
// "***" in its place.
struct RedisCredentials {
  std::string user;
  std::string password;

  bool empty() const { return user.empty() && password.empty(); }
};

struct RedisAddress {
  std::string host;  // a name or an IP address (IPv6 without brackets)
  uint16_t port = 6379;
  int db = 0;             // SELECTed on connect when not 0
  RedisCredentials auth;  // sent (AUTH) first on every connection
};

// "redis://[USER[:PASSWORD]@]HOST:PORT[/DB]"; IPv6 hosts in brackets
// ("redis://[::1]:6379"). USER and PASSWORD are percent-decoded ("%40" is
// '@'); "redis://:PASSWORD@HOST:PORT" is the default user (requirepass).
// Everything up to the last '@' is the user part, so a password may hold
// '@' or '/' as they are, but a '%' must be written "%25" and a ':' in the
// user "%3A". Anything else (no port, TLS "rediss://", a query) is
// InvalidArgument; its message never holds the password.
Result<RedisAddress> ParseRedisUrl(std::string_view url);

// Splits "[USER[:PASSWORD]@]REST" into the decoded credentials and REST
// (what follows the last '@'). InvalidArgument for a bad percent escape.
Result<RedisCredentials> SplitRedisUserInfo(std::string_view* rest);

// `url` with its password replaced by "***" (any scheme:
// "redis://yard:***@h:6379/1", "sentinel://:***@h:26379/m"), for logs,
// error messages, stats and records. A URL without a password is returned
// as it is.
std::string RedactRedisUrl(std::string_view url);

// Percent-encodes what a URL's user part cannot hold as it is (all but
// A-Z a-z 0-9 - . _ ~), so that ParseRedisUrl gives `s` back.
std::string PercentEncode(std::string_view s);

// An owned copy of a hiredis (RESP2) reply.
struct RedisReply {
  enum class Type : uint8_t {
    kNil,
    kString,   // bulk string: `str` holds the bytes (binary-safe)
    kStatus,   // "+OK": `str` is "OK"
    kError,    // only inside arrays (a top-level error is a Status)
    kInteger,  // `integer`
    kArray,    // `elements`
  };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;
  std::vector<RedisReply> elements;

  bool is_nil() const { return type == Type::kNil; }
};

// True for Connect's "authentication failed" (a wrong password or user, or
// none given to a server that wants one): a setting to fix, not an outage
// to wait out.
bool IsRedisAuthFailure(const Status& status);

// The command deadline new clients get (RedisClient::command_timeout_ms),
// for the whole process: `--redis-timeout-ms` sets it once at startup.
inline constexpr int64_t kDefaultRedisTimeoutMs = 2000;
void SetRedisTimeoutMs(int64_t timeout_ms);  // REQUIRES: timeout_ms > 0
int64_t RedisTimeoutMs();

// Every RedisClient command's round trip in this process, from queued to
// answered (time behind earlier commands of the pipeline included);
// commands that block by design (blocks_ms) are left out.
LatencyHistogram& RedisRoundTrips();

// A decimal number of at most 10 digits (no sign), at most `max`.
bool ParseDecimal(std::string_view s, int64_t max, int64_t* out);

class RedisClient {
 public:
  using Callback = std::function<void(Result<RedisReply>)>;

  // Connects to `address` (a non-blocking connect waited on with poll(2)),
  // authenticates (AUTH) when address.auth is set, SELECTs its db, and
  // checks that the server answers PING, all within `timeout_ms`. Any
  // failure, including the timeout, is kUnavailable; a refused AUTH, or a
  // server that wants one and got none, says "authentication failed"
  // (IsRedisAuthFailure) and names the host, never the password.
  // Blocks the caller: for startup and for reconnects that can afford it.
  static Result<std::unique_ptr<RedisClient>> Connect(
      const RedisAddress& address, int64_t timeout_ms);

  // Starts connecting to `address` and returns at once: the TCP connect
  // completes, and commands queued meanwhile go out, as the owner's loop
  // turns (fd(), events(), HandleEvents as usual). No AUTH, no SELECT: for
  // probing whether a server answers at all without blocking the loop.
  // kUnavailable only when the socket cannot even be made.
  static Result<std::unique_ptr<RedisClient>> Begin(
      const RedisAddress& address);

  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  bool connected() const { return state_ == State::kConnected; }
  // Why the connection was lost (empty while connected).
  const std::string& error() const { return error_; }

  // Poll integration, for a zmq_pollitem_t{nullptr, fd(), events(), 0}:
  // the socket (-1 when disconnected: leave it out of the poll) and the
  // ZMQ_POLL* flags to wait for: ZMQ_POLLIN, plus ZMQ_POLLOUT while hiredis
  // has output to send (0 when disconnected). These are zmq_poll's flags,
  // not poll(2)'s.
  int fd() const;
  short events() const;
  // Call when the fd is readable (or in error) / writable. No-ops when
  // disconnected. A callback may have destroyed the client when they
  // return: do not touch it then.
  void OnReadable();
  void OnWritable();
  // For zmq_poll's revents: OnReadable() on ZMQ_POLLIN or ZMQ_POLLERR, then
  // OnWritable() on ZMQ_POLLOUT unless a callback destroyed the client or
  // the connection was lost. The same caveat applies when it returns.
  void HandleEvents(short revents);

  // Queues `args` (args[0] is the command) and calls `done` with its reply.
  // `blocks_ms`: how long the server may hold the command by design (the
  // BLOCK of XREAD, the timeout of WAIT), added to its deadline.
  void Command(std::vector<std::string> args, Callback done,
               int64_t blocks_ms = 0);

  // How long a command may go unanswered (RedisTimeoutMs() when the client
  // was made) and whether the oldest pending one is past its deadline at
  // `now_ms` (MonoMillis).
  int64_t command_timeout_ms() const { return command_timeout_ms_; }
  void set_command_timeout_ms(int64_t ms) { command_timeout_ms_ = ms; }
  bool Overdue(int64_t now_ms) const;

  // Commands sent or queued whose reply has not come back.
  size_t pending() const { return pending_count_; }

 private:
  struct Pending;
  friend struct RedisClientHooks;

  explicit RedisClient(redisAsyncContext* ac);

  // Runs hiredis's read or write handler, surviving a callback that
  // destroys the client.
  void Handle(void (*handle)(redisAsyncContext*));
  void Link(Pending* p);
  void Unlink(Pending* p);
  // The connection is gone (or going): no more commands are accepted.
  void MarkLost(std::string_view why);

  enum class State : uint8_t { kConnecting, kConnected, kLost, kDestroying };

  redisAsyncContext* ac_;  // null once hiredis freed it
  State state_ = State::kConnecting;
  bool want_write_ = false;  // hiredis asked for writability (addWrite)
  std::string error_;
  // Pending commands in order (intrusive list; hiredis owns the nodes'
  // lifetime through privdata, see redis_client.cc).
  Pending* head_ = nullptr;
  Pending* tail_ = nullptr;
  size_t pending_count_ = 0;
  int64_t command_timeout_ms_;
  // Set to true by the destructor while OnReadable/OnWritable are inside
  // hiredis, so they return without touching `this`.
  bool* destroyed_flag_ = nullptr;
};

}  // namespace yard

#endif  // YARD_REDIS_REDIS_CLIENT_H_
