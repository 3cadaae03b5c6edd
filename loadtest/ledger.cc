#include "loadtest/ledger.h"

#include <cstring>
#include <utility>

namespace yard {
namespace {
constexpr size_t kSeqBytes = sizeof(uint64_t);
}  // namespace

Ledger::Ledger(uint64_t tag, std::string payload, bool stamp, bool check_echo)
    : tag_(tag),
      payload_(std::move(payload)),
      stamp_(stamp),
      check_echo_(check_echo) {}

Bytes Ledger::Payload(uint64_t seq, std::string* buf) const {
  if (buf->size() != payload_.size()) *buf = payload_;
  if (stamp_ && buf->size() >= kSeqBytes) {
    std::memcpy(buf->data(), &seq, kSeqBytes);
  }
  return AsBytes(*buf);
}

void Ledger::Reserve(uint64_t seq) {
  const size_t c = static_cast<size_t>(seq >> kChunkBits);
  if (owned_[c]) return;
  owned_[c] = std::make_unique<std::atomic<uint8_t>[]>(kChunk);
  for (uint64_t i = 0; i < kChunk; ++i) {
    owned_[c][i].store(kPending, std::memory_order_relaxed);
  }
  chunks_[c].store(owned_[c].get(), std::memory_order_release);
}

std::atomic<uint8_t>* Ledger::Slot(uint64_t seq) const {
  if (seq >= kMaxJobs) return nullptr;
  std::atomic<uint8_t>* chunk =
      chunks_[static_cast<size_t>(seq >> kChunkBits)].load(
          std::memory_order_acquire);
  return chunk ? &chunk[seq & (kChunk - 1)] : nullptr;
}

bool Ledger::EchoMatches(const JobOutcome& o) const {
  if (o.output.size() != payload_.size()) return false;
  if (!stamp_ || payload_.size() < kSeqBytes) return o.output == payload_;
  return std::memcmp(o.output.data(), &o.id.lo, kSeqBytes) == 0 &&
         std::memcmp(o.output.data() + kSeqBytes, payload_.data() + kSeqBytes,
                     payload_.size() - kSeqBytes) == 0;
}

void Ledger::Record(const JobOutcome& o, int64_t latency_us) {
  std::atomic<uint8_t>* slot = o.id.hi == tag_ ? Slot(o.id.lo) : nullptr;
  if (slot == nullptr) {
    foreign_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  State state = kTimedOut;
  switch (o.kind) {
    case JobOutcome::Kind::kCompleted:
      state = !check_echo_ || EchoMatches(o) ? kCompleted : kCorrupt;
      break;
    case JobOutcome::Kind::kFailed:
      state = kFailed;
      break;
    case JobOutcome::Kind::kRejected:
      state = kRejected;
      break;
    case JobOutcome::Kind::kTimedOut:
      state = kTimedOut;
      break;
  }
  uint8_t expected = kPending;
  if (!slot->compare_exchange_strong(expected, state,
                                     std::memory_order_relaxed)) {
    repeated_.fetch_add(1, std::memory_order_relaxed);
    return;  // the first outcome stands; not counted in the second either
  }
  if (state == kFailed && o.status == wire::ResultStatus::UnknownTask) {
    unknown_task_.fetch_add(1, std::memory_order_relaxed);
  }
  const auto latency = static_cast<uint64_t>(latency_us > 0 ? latency_us : 0);
  std::lock_guard<std::mutex> lock(mu_);
  switch (state) {
    case kCompleted:
    case kCorrupt:
      ++second_.completed;
      second_.latency.Record(latency);
      break;
    case kFailed:
      ++second_.failed;
      second_.latency.Record(latency);
      break;
    case kRejected:
      ++second_.failed;
      break;
    case kTimedOut:
    case kPending:
      ++second_.lost;
      break;
  }
}

void Ledger::TakeSecond(Second* out) {
  out->completed = out->failed = out->lost = 0;
  out->latency.Reset();
  std::lock_guard<std::mutex> lock(mu_);
  std::swap(*out, second_);
}

Ledger::Totals Ledger::Audit(uint64_t submitted) const {
  Totals t;
  t.submitted = submitted;
  for (uint64_t seq = 0; seq < submitted; ++seq) {
    const std::atomic<uint8_t>* slot = Slot(seq);
    switch (slot ? slot->load(std::memory_order_relaxed)
                 : static_cast<uint8_t>(kPending)) {
      case kPending:
        ++t.unanswered;
        break;
      case kCompleted:
        ++t.completed;
        break;
      case kFailed:
        ++t.failed;
        break;
      case kRejected:
        ++t.rejected;
        break;
      case kTimedOut:
        ++t.timed_out;
        break;
      case kCorrupt:
        ++t.corrupt;
        break;
    }
  }
  t.foreign = foreign_.load(std::memory_order_relaxed);
  t.unknown_task = unknown_task_.load(std::memory_order_relaxed);
  t.repeated = repeated_.load(std::memory_order_relaxed);
  return t;
}

}  // namespace yard
