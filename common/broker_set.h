// MergeBrokerSet: applies a new broker set (discovery, queue/registry.h) to
// a Producer's or Worker's list of per-broker entries, which are kept, never
// erased (jobs refer to them by index). Entries whose endpoint left the set
// are marked retired; retired entries whose endpoint is back are marked
// live again; endpoints not in the list are appended (after a validity
// check). Each change is reported through a callback so the owner can log
// it and open sockets.
//
// Thread-safety: none; the owner's I/O thread calls it.
#ifndef YARD_COMMON_BROKER_SET_H_
#define YARD_COMMON_BROKER_SET_H_

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

namespace yard {

// The newest broker set, handed from any thread (SetBrokers) to the owner's
// I/O thread, which takes it once.
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

// B has `std::string endpoint` and `bool retired`. `valid(endpoint)` returns
// false (and says why) for endpoints to skip; `retire(b)`, `back(b)` and
// `added(b)` run after each change.
template <typename B, typename Valid, typename Retire, typename Back,
          typename Added>
void MergeBrokerSet(std::vector<B>& brokers, std::vector<std::string> set,
                    Valid valid, Retire retire, Back back, Added added) {
  std::sort(set.begin(), set.end());
  for (B& b : brokers) {
    const bool keep = std::binary_search(set.begin(), set.end(), b.endpoint);
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
                    [&](const B& b) { return b.endpoint == ep; }) ||
        !valid(ep)) {
      continue;
    }
    B& b = brokers.emplace_back();
    b.endpoint = ep;
    added(b);
  }
}

}  // namespace yard

#endif  // YARD_COMMON_BROKER_SET_H_
