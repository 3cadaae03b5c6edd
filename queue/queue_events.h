// QueueEvents: the side of a queue that lives outside the process -- what a
// broker's event loop polls and ticks, the results the queue hands back,
// and the broker's registry record it keeps -- beside JobQueue's verbs.
//
// The durable queue on Redis is both (DurableQueue): its Redis connections
// are polled by the broker's one zmq_poll (PollItems, OnPollEvents), its
// batched writes and timers run once per loop turn (Tick), it claims ahead
// of the dispatcher (Want), and results of jobs this broker accepted that
// finished at another broker come back through it (SetResultSink). A memory
// queue has none of this: a broker without QueueEvents is in memory mode.
//
// Thread-safety: none; the broker's loop thread owns the queue.
#ifndef YARD_QUEUE_QUEUE_EVENTS_H_
#define YARD_QUEUE_QUEUE_EVENTS_H_

#include <zmq.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "queue/job_queue.h"

namespace yard {

// The most poll items a queue asks for (a sharded Redis queue: four
// connections per shard, up to 256 shards).
inline constexpr int kMaxQueuePollItems = 1024;

class QueueEvents {
 public:
  // Results that reach this broker through the queue (a job it accepted
  // finished at another broker, or an idempotent duplicate's answer): the
  // producer's route and a verified JobResult blob.
  using ResultSink = std::function<void(std::string_view route, Bytes result)>;

  // A cancel recorded in the store (RequestCancel, or yard cancel --redis)
  // for a job this broker has dispatched, its owner checked: the broker
  // cancels it where it is (a worker runs it, or it is held for one) and
  // finishes it in the queue with a Cancelled result (Complete). False when
  // the broker does not have it. The queue finishes jobs it still buffers
  // itself.
  using CancelSink = std::function<bool(const JobId& id)>;
  // Who asks for a cancel: an admin may cancel any job; others only jobs
  // submitted with their CURVE key, or without CURVE by this connection
  // (route) at this broker.
  struct Canceller {
    bool admin = false;
    std::string key;    // CURVE key; "" without CURVE
    std::string route;  // the connection, at this broker
  };
  enum class CancelAnswer : uint8_t {
    kRequested,    // recorded: the broker that holds or claims it finishes it
    kForbidden,    // a delayed job of someone else
    kFull,         // too many cancels recorded (kMaxCancels)
    kUnavailable,  // the store is down
  };
  using CancelCallback = std::function<void(std::span<const CancelAnswer>)>;

  virtual ~QueueEvents() = default;

  // False while the store is unreachable (submits get Unavailable).
  virtual bool available() const = 0;
  virtual void SetResultSink(ResultSink sink) = 0;
  virtual void SetCancelSink(CancelSink sink) = 0;
  // Records a cancel of jobs this broker does not hold, for whichever broker
  // holds or claims them (at claim and at lease renewal, only while any is
  // recorded: no cost otherwise); a Cancelled result goes to the owner and
  // a copy to the canceller. `done` gets one answer per id, in order.
  virtual void RequestCancel(std::span<const JobId> ids, const Canceller& who,
                             CancelCallback done) = 0;
  // The last progress report of a job dispatched here (worker/worker.h
  // JobContext::Progress), kept in the store for `yard result` as long as
  // results are: at most one write per job per second, in the turn's write
  // batch; a report held back by that is written when the job finishes.
  virtual void StoreProgress(const JobId& id, float fraction,
                             std::string_view message) = 0;
  // The CURVE key that submitted a job this broker holds (claimed here),
  // "" when unknown or submitted without CURVE.
  virtual std::string_view OwnerKey(const JobId& id) const = 0;
  // How many jobs the dispatcher could hand out now (free worker credit),
  // so the queue can claim ahead.
  virtual void Want(size_t jobs) = 0;
  // Poll integration: fills up to `max` items (raw fds) to add to the
  // owner's zmq_poll, then gets them back with revents. At most
  // kMaxQueuePollItems.
  virtual int PollItems(zmq_pollitem_t* items, int max) = 0;
  virtual void OnPollEvents(const zmq_pollitem_t* items, int n) = 0;
  // Once per loop turn: timers, batched writes.
  virtual void Tick(int64_t now_mono_ms) = 0;
  // Stop taking new work; give back what was claimed but not dispatched.
  virtual void BeginDrain() = 0;
  // Nothing this broker must still wait for before it exits.
  virtual bool Drained() const = 0;
  // Adds queue-specific fields to the broker's stats.
  virtual void DescribeStats(nlohmann::json* j) const = 0;
  // Cluster membership (registry/registry.h): the broker's registry record,
  // refreshed every heartbeat. The queue adds its id and queue name and
  // keeps it in Redis with a TTL, so a dead broker drops out and the
  // queue's leader requeues what it held at once.
  virtual void Advertise(const nlohmann::json& record) = 0;
};

// A queue with both sides: the Redis queue and a sharded set of them.
class DurableQueue : public JobQueue, public QueueEvents {};

// Connects (blocking, bounded by connect_timeout_ms) and sets the queue up.
// Unavailable when Redis cannot be reached; InvalidArgument for a bad URL,
// queue name or option, or a Redis without appendfsync always when
// require_fsync is set.
Result<std::unique_ptr<DurableQueue>> NewRedisQueue(
    const RedisQueueOptions& options);

}  // namespace yard

#endif  // YARD_QUEUE_QUEUE_EVENTS_H_
