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

  virtual ~QueueEvents() = default;

  // False while the store is unreachable (submits get Unavailable).
  virtual bool available() const = 0;
  virtual void SetResultSink(ResultSink sink) = 0;
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
