#include "broker/worker_table.h"

namespace yard {

WorkerInfo* WorkerTable::Find(std::string_view identity) {
  auto it = by_identity_.find(std::string(identity));
  return it == by_identity_.end() ? nullptr : &*it->second;
}

WorkerInfo* WorkerTable::FindSerial(uint64_t serial) {
  auto it = by_serial_.find(serial);
  return it == by_serial_.end() ? nullptr : &*it->second;
}

WorkerInfo* WorkerTable::Upsert(std::string_view identity, int64_t now_ms) {
  if (WorkerInfo* w = Find(identity)) {
    Touch(w, now_ms);
    return w;
  }
  order_.emplace_back();
  auto it = std::prev(order_.end());
  it->identity.assign(identity);
  it->serial = next_serial_++;
  it->expiry_ms = now_ms + window_ms_;
  by_identity_.emplace(it->identity, it);
  by_serial_.emplace(it->serial, it);
  return &*it;
}

void WorkerTable::Touch(WorkerInfo* w, int64_t now_ms) {
  w->expiry_ms = now_ms + window_ms_;
  auto it = by_serial_.at(w->serial);
  order_.splice(order_.end(), order_, it);  // iterators stay valid
}

void WorkerTable::Expire(int64_t now_ms,
                         const std::function<void(const WorkerInfo&)>& fn) {
  while (!order_.empty() && order_.front().expiry_ms <= now_ms) {
    fn(order_.front());
    by_identity_.erase(order_.front().identity);
    by_serial_.erase(order_.front().serial);
    order_.pop_front();
  }
}

void WorkerTable::Remove(std::string_view identity) {
  auto it = by_identity_.find(std::string(identity));
  if (it == by_identity_.end()) return;
  auto pos = it->second;
  by_serial_.erase(pos->serial);
  by_identity_.erase(it);
  order_.erase(pos);
}

}  // namespace yard
