// The parsers of bytes read back from Redis, which are only as trustworthy
// as whoever could write to Redis (docs: DESIGN.md, Trust model). The first
// input byte picks the parser, the rest is its input:
//
//   0  DecodeRecord(n, p): a job stream record (queue/redis_layout.h); the
//      second byte is the length of field n, the rest is field p; every
//      decoded job is walked
//   1  a stored JobResult blob (VerifiedRoot, as FindResult's readers do)
//   2  ParseBrokerRecord: a broker's registry record (JSON)
//   3  JobId::Parse: a job id as hex text (record field j, result keys)
//   4  ParseRedisRedirect: a MOVED/ASK error text from a Cluster node
//   5  RedisSlotMap::Parse: a CLUSTER SLOTS reply (a reply tree built from
//      the bytes: MakeReply)
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/walk.h"
#include "queue/redis_layout.h"
#include "redis/redis_cluster.h"
#include "registry/registry.h"

namespace {

using yard::fuzz::Sink;

void FuzzRecord(std::string_view in) {
  if (in.empty()) return;
  const size_t n_size =
      std::min<size_t>(static_cast<uint8_t>(in[0]), in.size() - 1);
  // Both fields arrive as std::string (RedisReply::str): heap or inline
  // storage, 8-aligned either way, as the record layout requires.
  const std::string n(in.substr(1, n_size));
  const std::string p(in.substr(1 + n_size));
  std::vector<yard::RecordJob> jobs;
  const std::string why = yard::DecodeRecord(n, p, &jobs);
  uint64_t sum = why.size() + static_cast<uint64_t>(yard::RecordJobCount(n));
  for (const yard::RecordJob& j : jobs) {
    sum += j.blob.size() + yard::fuzz::WalkJob(*j.job);
  }
  std::vector<std::string_view> blobs;
  sum += yard::UnpackJobs(p, &blobs) ? blobs.size() : 0;
  Sink(sum);
}

void FuzzStoredResult(std::string_view in) {
  const std::string stored(in);
  const auto* r = yard::VerifiedRoot<yard::wire::JobResult>(stored);
  if (r) Sink(yard::fuzz::WalkResult(*r));
}

void FuzzBrokerRecord(std::string_view in) {
  auto record = yard::ParseBrokerRecord("fuzz", in);
  if (!record.ok()) {
    Sink(record.status().message().size());
    return;
  }
  uint64_t sum = record->queue.size() + record->frontend.size() +
                 record->backend.size() + record->held.size() +
                 record->counters.size();
  for (const yard::RegisteredWorker& w : record->workers) {
    sum += w.name.size() + static_cast<uint64_t>(w.capacity) + w.tags.size() +
           w.taints.size();
  }
  Sink(sum);
}

void FuzzRedirect(std::string_view in) {
  auto r = yard::ParseRedisRedirect(in);
  if (r) Sink(r->slot + r->port + r->host.size());
}

// A reply tree from bytes: a type byte (low two bits: nil, string,
// integer, array; the top bit negates an integer), then for a string a
// length byte and the bytes, for an integer two bytes little-endian, for an
// array a count byte and the elements. Depth and size are bounded by the
// input.
yard::RedisReply MakeReply(std::string_view* in, int depth) {
  yard::RedisReply r;
  if (in->empty() || depth > 8) return r;
  const uint8_t type = static_cast<uint8_t>((*in)[0]);
  in->remove_prefix(1);
  auto next = [in]() -> size_t {
    if (in->empty()) return 0;
    const size_t b = static_cast<uint8_t>((*in)[0]);
    in->remove_prefix(1);
    return b;
  };
  switch (type % 4) {
    case 0:
      return r;  // nil
    case 1: {
      r.type = yard::RedisReply::Type::kString;
      const size_t n = std::min(next(), in->size());
      r.str = std::string(in->substr(0, n));
      in->remove_prefix(n);
      return r;
    }
    case 2: {
      r.type = yard::RedisReply::Type::kInteger;
      const size_t lo = next();
      r.integer = static_cast<int64_t>(lo | (next() << 8));
      if (type & 0x80) r.integer = -r.integer;
      return r;
    }
    default: {
      r.type = yard::RedisReply::Type::kArray;
      const size_t n = next();
      for (size_t i = 0; i < n && !in->empty(); ++i) {
        r.elements.push_back(MakeReply(in, depth + 1));
      }
      return r;
    }
  }
}

void FuzzSlotMap(std::string_view in) {
  const yard::RedisReply reply = MakeReply(&in, 0);
  yard::RedisAddress asked;
  asked.host = "127.0.0.1";
  asked.port = 7000;
  auto map = yard::RedisSlotMap::Parse(reply, asked);
  if (!map.ok()) return;
  uint64_t sum = static_cast<uint64_t>(map->covered());
  for (uint16_t slot = 0; slot < 16384; slot += 97) {
    if (const auto* a = map->Lookup(slot)) sum += a->port + a->host.size();
  }
  sum += map->Primaries().size();
  Sink(sum);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      FuzzRecord(in);
      break;
    case 1:
      FuzzStoredResult(in);
      break;
    case 2:
      FuzzBrokerRecord(in);
      break;
    case 3:
      if (auto id = yard::JobId::Parse(in)) Sink(id->hi ^ id->lo);
      break;
    case 4:
      FuzzRedirect(in);
      break;
    default:
      FuzzSlotMap(in);
      break;
  }
  return 0;
}
