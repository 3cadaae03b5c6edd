// MergeBrokerSet: applies a new broker set (discovery, registry/registry.h) to
// a Producer's or Worker's list of per-broker entries (BrokerLinks), which
// are kept, never erased (jobs refer to them by index). Entries whose
// endpoint left the set are marked retired; retired entries whose endpoint
// is back are marked live again; endpoints not in the list are handed to
// the owner to append (after a validity check; an invalid one is logged and
// skipped). Each change is reported through a callback so the owner can log
// it and open sockets.
//
// Thread-safety: none; the owner's I/O thread calls it.
#ifndef YARD_LINK_BROKER_SET_H_
#define YARD_LINK_BROKER_SET_H_

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace yard {

// The newest broker set, handed from any thread (SetBrokers) to the owner's
// I/O thread, which takes it once. mu_ guards fresh_ and set_.
class BrokerSetMailbox {
 public:
  void Put(std::vector<std::string> set) {
    std::lock_guard<std::mutex> lock(mu_);
    set_ = std::move(set);
    fresh_ = true;
  }
  // True, with the set, when one came since the last Take.
  bool Take(std::vector<std::string>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!fresh_) return false;
    fresh_ = false;
    out->swap(set_);
    return true;
  }

 private:
  std::mutex mu_;
  bool fresh_ = false;
  std::vector<std::string> set_;
};

// B has `endpoint()` and `bool retired` (a BrokerLink). `check(endpoint)`
// gives a Status: endpoints it refuses are skipped with a warning that
// starts with `who`; `retire(b)` and `back(b)` run after each change, and
// `add(endpoint)` appends a new entry.
template <typename B, typename Check, typename Retire, typename Back,
          typename Add>
void MergeBrokerSet(std::vector<B>& brokers, std::vector<std::string> set,
                    std::string_view who, Check check, Retire retire, Back back,
                    Add add) {
  std::sort(set.begin(), set.end());
  for (B& b : brokers) {
    const bool keep = std::binary_search(set.begin(), set.end(), b.endpoint());
    if (keep && b.retired) {
      b.retired = false;
      back(b);
    } else if (!keep && !b.retired) {
      b.retired = true;
      retire(b);
    }
  }
  for (const std::string& ep : set) {
    if (std::any_of(brokers.begin(), brokers.end(),
                    [&](const B& b) { return b.endpoint() == ep; })) {
      continue;
    }
    if (Status st = check(ep); !st.ok()) {
      spdlog::warn("{}ignoring broker {}: {}", who, ep, st.ToString());
      continue;
    }
    add(ep);
  }
}

}  // namespace yard

#endif  // YARD_LINK_BROKER_SET_H_
