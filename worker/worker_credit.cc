// The worker's I/O thread, credit: how the slots are split among the
// brokers (Rebalance), granting free slots (Regrant) and taking back unused
// credit (Withdraw).
#include <algorithm>

#include "worker/worker_impl.h"

namespace yard {

// Credit split among brokers: every broker in the set keeps one
// slot, so none starves; the other slots go, in equal parts, to the brokers
// with work: those holding jobs of ours or that used up their credit within
// the last kHungryWindowMs. With none busy, all slots are split equally, so
// a burst can start anywhere at once. A broker above its share gives slots
// back: credit it has not used is withdrawn (Credit.withdraw, at most once
// per window), and results of its jobs return less credit (Results.
// withheld). Regrant grants only slots that are free, so the worker holds
// at most its slots (or one per broker, when it has fewer slots than
// brokers) once the give-backs arrive.
void Worker::Impl::Rebalance() {
  int64_t n = 0, busy = 0;
  for (const Broker& b : brokers_) {
    if (b.retired) continue;
    ++n;
    if (b.held > 0 || Hungry(b)) ++busy;
  }
  if (n == 0) return;
  const int64_t total = std::max(slots_, n);
  const int64_t floating = total - n;
  const int64_t takers = busy > 0 ? busy : n;
  int64_t i = 0;
  for (Broker& b : brokers_) {
    if (b.retired) {
      b.share = 0;
      continue;
    }
    const bool taker = busy == 0 || b.held > 0 || Hungry(b);
    b.share = 1;
    if (taker) {
      b.share += floating / takers + (i++ < floating % takers ? 1 : 0);
    }
  }
}

void Worker::Impl::Regrant() {
  Rebalance();
  int64_t used = 0;
  for (auto& b : brokers_) {
    // Left the set: it gets no new jobs; take back all it has not used.
    if (b.retired && b.socket() && b.credit > 0) Withdraw(b, b.credit);
    used += b.held + b.credit;
  }
  int64_t total = 0;
  for (const auto& b : brokers_) total += b.share;
  for (auto& b : brokers_) {
    if (b.retired || !b.socket()) continue;
    const int64_t excess = b.credit + b.held - b.share;
    if (excess > 0 && b.credit > 0 && !Hungry(b) &&
        now_ms_ - b.last_withdraw_ms >= kHungryWindowMs) {
      // Idle above its share: take back what it has not used.
      used -= Withdraw(b, std::min(excess, b.credit));
      continue;
    }
    // Grant only free slots (the floor of one per broker always).
    int64_t deficit = b.share - b.held - b.credit;
    if (b.held + b.credit > 0) {
      deficit = std::min(deficit, total - used);
    }
    if (deficit <= 0) continue;
    if (Send(b, writer_.EncodeCredit(static_cast<uint32_t>(deficit)),
             "Credit")) {
      b.credit += deficit;
      used += deficit;
    }
  }
}

int64_t Worker::Impl::Withdraw(Broker& b, int64_t n) {
  if (!Send(b, writer_.EncodeCredit(0, static_cast<uint32_t>(n)), "Credit")) {
    return 0;
  }
  b.credit -= n;
  b.withdraw_grace += n;
  b.last_withdraw_ms = now_ms_;
  return n;
}

}  // namespace yard
