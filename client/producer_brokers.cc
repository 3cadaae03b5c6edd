// The producer's I/O thread, brokers: applying a new broker set, liveness
// (a silent broker's jobs go elsewhere and its socket is replaced), and
// opening sockets.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "client/producer_impl.h"

namespace yard {

void Producer::Impl::ApplyBrokerSet(int64_t now) {
  std::vector<std::string> set;
  if (!new_set_.Take(&set)) return;
  MergeBrokerSet(
      brokers_, std::move(set), "producer: ", ValidateEndpoint,
      [](Broker& b) {
        spdlog::info("producer: broker {} left the set ({} jobs with it)",
                     b.endpoint(), b.outstanding);
      },
      [&](Broker& b) {
        spdlog::info("producer: broker {} is back in the set", b.endpoint());
        if (!b.socket()) (void)OpenSocket(b, now);
      },
      [&](const std::string& endpoint) {
        spdlog::info("producer: broker {} joined", endpoint);
        Broker& b = brokers_.emplace_back(endpoint, heartbeat_us_);
        if (Status st = OpenSocket(b, now); !st.ok()) {
          spdlog::warn("producer: {}", st.ToString());
        }
      });
}

void Producer::Impl::CloseRetired(Broker& b) {
  CountDown(b);
  b.Close();
}

void Producer::Impl::CheckBrokers(int64_t now) {
  for (size_t i = 0; i < brokers_.size(); ++i) {
    Broker& b = brokers_[i];
    if (b.retired) {
      if (!b.socket()) continue;
      // Gone for good once it is silent (its jobs go elsewhere) or has
      // nothing of ours left.
      if (b.Expired(now)) {
        ResendHeld(i);
        CloseRetired(b);
        continue;
      }
      if (b.outstanding == 0) {
        CloseRetired(b);
        continue;
      }
    }
    if (b.alive() && b.Expired(now)) {
      BrokerDied(i, now);
    } else if (!b.alive() && b.Expired(now)) {
      // Still silent: probe again on a fresh socket.
      if (Status st = OpenSocket(b, now);
          !st.ok() && LogAllowed(&b.last_log_us, now)) {
        spdlog::warn("producer: {}", st.ToString());
      }
    }
    if (b.HeartbeatDue(now)) (void)b.Beat(writer_.EncodeHeartbeat(), now);
  }
}

void Producer::Impl::BrokerDied(size_t bi, int64_t now) {
  Broker& b = brokers_[bi];
  spdlog::warn("producer: broker {} silent for {} ms; resending its {} jobs",
               b.endpoint(), (now - b.last_heard_us()) / 1000, b.outstanding);
  ResendHeld(bi);
  if (Status st = OpenSocket(b, now); !st.ok()) {  // no longer alive
    spdlog::warn("producer: {}", st.ToString());
  }
}

void Producer::Impl::ResendHeld(size_t bi) {
  Broker& b = brokers_[bi];
  std::vector<PendingJob*> held;
  held.reserve(b.outstanding);
  jobs_.ForEach([&](PendingJob* job) {
    if (job->broker == static_cast<int>(bi)) held.push_back(job);
  });
  // Oldest first, so that they keep their place.
  std::sort(held.begin(), held.end(),
            [](const PendingJob* x, const PendingJob* y) {
              return x->submit_us < y->submit_us;
            });
  for (PendingJob* job : held) {
    Detach(job);
    Requeue(job);
  }
}

void Producer::Impl::CountDown(Broker& b) {
  if (b.alive()) live_brokers_.fetch_sub(1, std::memory_order_relaxed);
}

Status Producer::Impl::OpenSocket(Broker& b, int64_t now) {
  CountDown(b);
  b.blocked = false;
  return b.Open(*context_, options_.limits, now, options_.curve);
}

}  // namespace yard
