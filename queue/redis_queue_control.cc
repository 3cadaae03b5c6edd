// The operator's controls of a queue (yard queue pause|resume|limit), read
// from P ctl every kControlEveryMs: a paused queue claims no more records
// and hands no buffered job to workers; a rate-limited one hands out only
// jobs it holds tokens for, taken from one bucket in Redis that every
// broker of the queue shares (yard_take_tokens). And the leader's cap on
// the dead-letter stream (RedisQueueOptions::max_dead).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "queue/redis_queue_impl.h"

namespace yard::redis_queue_internal {

// Of `max` jobs a worker could take now, how many the controls allow.
size_t RedisQueue::Dispatchable(size_t max) const {
  if (!control_known_ || control_.paused) return 0;
  if (control_.rate > 0) {
    return std::min(max, static_cast<size_t>(std::max<int64_t>(0, tokens_)));
  }
  return max;
}

void RedisQueue::PollControl(int64_t now) {
  next_control_ms_ = now + kControlEveryMs;
  if (control_pending_) return;
  control_pending_ = true;
  Send({"HGETALL", keys_.control}, [this](Result<RedisReply> r) {
    control_pending_ = false;
    if (r.ok()) ApplyControl(ParseQueueControl(*r));
  });
  // Pipelined with the controls: whether claims and lease renewals must
  // look for recorded cancels (redis_queue_cancel.cc).
  Send({"HLEN", keys_.cancels}, [this](Result<RedisReply> r) {
    if (r.ok()) cancels_recorded_ = r->integer > 0;
  });
}

void RedisQueue::ApplyControl(const QueueControl& c) {
  control_known_ = true;
  if (c == control_) return;
  if (c.paused != control_.paused) {
    spdlog::warn("queue '{}' {}", keys_.tag,
                 c.paused ? "paused: no more jobs are claimed" : "resumed");
  }
  if (c.rate != control_.rate || c.burst != control_.burst) {
    if (c.rate > 0) {
      spdlog::info("queue '{}' rate limit: {} jobs/s (burst {})", keys_.tag,
                   c.rate, c.burst > 0 ? c.burst : DefaultBurst(c.rate));
    } else {
      spdlog::info("queue '{}' rate limit: none", keys_.tag);
    }
    tokens_ = 0;  // tokens of the old rate are not this one's
    next_tokens_ms_ = 0;
  }
  control_ = c;
}

// Tokens for the jobs buffered here beyond those already held, at most a
// bucket's worth per request; when the bucket is empty, asked again when
// Redis says the next token is due.
void RedisQueue::TakeTokens(int64_t now) {
  if (control_.rate <= 0 || control_.paused || tokens_pending_ ||
      now < next_tokens_ms_) {
    return;
  }
  const auto held = static_cast<size_t>(std::max<int64_t>(0, tokens_));
  if (buffered_ <= held) return;
  const int64_t burst =
      control_.burst > 0 ? control_.burst : DefaultBurst(control_.rate);
  const auto want =
      std::min<int64_t>(static_cast<int64_t>(buffered_ - held), burst);
  tokens_pending_ = true;
  std::vector<std::string> args = keys_.Fcall("yard_take_tokens");
  args.push_back(std::to_string(want));
  args.push_back(std::to_string(control_.rate));
  args.push_back(std::to_string(burst));
  Send(std::move(args), [this](Result<RedisReply> r) {
    tokens_pending_ = false;
    if (!r.ok() || r->elements.size() != 2) {
      if (!r.ok()) spdlog::error("redis: rate limit: {}", r.status().message());
      next_tokens_ms_ = MonoMillis() + kControlEveryMs;
      return;
    }
    const int64_t granted = r->elements[0].integer;
    tokens_ += granted;
    c_.tokens_taken += static_cast<uint64_t>(granted);
    if (granted == 0) {
      ++c_.tokens_refused;
      next_tokens_ms_ =
          MonoMillis() + std::clamp<int64_t>(r->elements[1].integer, 1, 100);
    }
  });
  ++c_.round_trips;
}

void RedisQueue::TrimDead(int64_t now) {
  next_trim_ms_ = now + kTrimDeadEveryMs;
  std::vector<std::string> args = keys_.Fcall("yard_trim_dead");
  args.push_back(std::to_string(o_.max_dead));
  args.push_back(std::to_string(kMaintenanceBatch));
  Send(std::move(args), [this](Result<RedisReply> r) {
    if (!r.ok()) {
      spdlog::error("redis: trimming dead letters: {}", r.status().message());
    } else if (r->integer > 0) {
      c_.dead_trimmed += static_cast<uint64_t>(r->integer);
      spdlog::warn(
          "queue '{}': {} oldest dead-letter records trimmed (max_dead {})",
          keys_.tag, r->integer, o_.max_dead);
      next_trim_ms_ = 0;  // more may be over: the next turn
    }
  });
  ++c_.round_trips;
}

}  // namespace yard::redis_queue_internal
