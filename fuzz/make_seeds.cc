// Writes the seed corpus of every fuzz target: small valid messages of
// every kind, built with the codec's own Writer and BlobBatch (and the
// legal-but-expensive shapes of testing/hostile_messages.h), so the seeds
// stay valid when the schema grows. scripts/fuzz.sh --seeds runs it into
// fuzz/corpus/; the generated files are committed.
//
//   make_seeds OUT_DIR      writes OUT_DIR/<target>/<name>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "queue/redis_layout.h"
#include "schemas/codec.h"
#include "testing/hostile_messages.h"

namespace yard::fuzz {
namespace {

namespace fs = std::filesystem;
using Seeds = std::vector<std::pair<std::string, std::string>>;

std::string Str(Bytes b) { return std::string(AsString(b)); }

// Selectors of fuzz_input.h for the broker: frontend peer i, backend peer i.
uint8_t Front(int i) { return static_cast<uint8_t>(i << 1); }
uint8_t Back(int i) { return static_cast<uint8_t>((i << 1) | 1); }
constexpr uint8_t kNoDelimiter = 6 << 4, kExtraFrame = 7 << 4;

std::string Job(Writer& w, uint64_t lo, std::string_view task,
                bool every_field = false) {
  JobSpec j;
  j.id = JobId{1, lo};
  j.task = task;
  j.payload = AsBytes("payload");
  if (every_field) {
    j.queue = "default";
    j.priority = 2;
    j.max_attempts = 3;
    j.deadline_ms = int64_t{1} << 50;
    j.not_before_ms = 1;
    j.idempotency_key = "idem";
    j.affinity_key = "aff";
    j.tags = {"gpu", "zone=a"};
    j.tolerations = {"spot"};
    j.trace_id = JobId{9, 9};
    j.created_ms = 123;
    j.lock_key = "lock";
  }
  return Str(w.EncodeJob(j));
}

// The envelopes every side may see, by name.
Seeds Envelopes() {
  Writer w;
  BlobBatch b;
  Seeds s;
  b.AddSubmission(AsBytes(Job(w, 1, "echo")), 1);
  b.AddSubmission(AsBytes(Job(w, 2, "walk", true)), 2);
  s.emplace_back("submit", Str(b.FinishSubmit()));
  b.Clear();
  b.AddJob(AsBytes(Job(w, 3, "echo")), 1);
  b.AddJob(AsBytes(Job(w, 4, "walk", true)), 2);
  b.AddJob(AsBytes(Job(w, 5, "fail")), 1);
  s.emplace_back("dispatch", Str(b.FinishDispatch()));
  b.Clear();
  b.AddResult(w.EncodeResult(JobId{1, 1}, wire::ResultStatus::Ok,
                             AsBytes("out"), "", 1, 10));
  b.AddResult(w.EncodeResult(JobId{1, 2}, wire::ResultStatus::Failed, {},
                             "boom", 2, 20, JobId{1, 1}));
  const JobId ids[] = {JobId{1, 1}, JobId{1, 2}};
  s.emplace_back("results", Str(b.FinishResults(ids, 1)));
  s.emplace_back("accepted", Str(w.EncodeAccepted(ids)));
  s.emplace_back("cancel", Str(w.EncodeCancel(ids)));
  s.emplace_back("error",
                 Str(w.EncodeError(wire::ErrorCode::Busy, "busy", ids, 50)));
  s.emplace_back("error_pending",
                 Str(w.EncodeError(wire::ErrorCode::Pending, "recorded", ids)));
  ReadyInfo r{4, 2, {"echo", "walk"}, {"gpu"}, {"spot"}, "w1"};
  s.emplace_back("ready", Str(w.EncodeReady(r)));
  s.emplace_back("credit", Str(w.EncodeCredit(3, 1)));
  s.emplace_back("heartbeat", Str(w.EncodeHeartbeat(JobId{5, 5})));
  s.emplace_back("heartbeat_plain", Str(w.EncodeHeartbeat()));
  s.emplace_back("disconnect", Str(w.EncodeDisconnect("bye")));
  s.emplace_back("stats_request", Str(w.EncodeStatsRequest()));
  s.emplace_back("stats", Str(w.EncodeStats("{\"queue\":{}}")));
  const ProgressUpdate progress[] = {{ids[0], 1, 0.5f, "half"}};
  s.emplace_back("progress", Str(w.EncodeProgress(progress)));
  s.emplace_back("hostile_shared_names", testing::SharedNamesReady(64, 8, 8));
  s.emplace_back("hostile_shared_blob",
                 testing::SharedBlobSubmit(testing::JobWithSharedTags(40), 8));
  s.emplace_back("hostile_shared_table", testing::SharedTableSubmit(32));
  s.emplace_back("hostile_misaligned", testing::MisalignedBlobSubmit());
  return s;
}

// Sequences that take the broker to deep states: a registered worker,
// queued jobs, jobs in flight on it, their results, cancels, departures.
Seeds BrokerSequences(const Seeds& env) {
  Writer w;
  BlobBatch b;
  auto get = [&](const char* name) {
    for (const auto& [n, body] : env) {
      if (n == name) return body;
    }
    return std::string();
  };
  Seeds s;
  for (const auto& [name, body] : env) {
    std::string front, back;
    AppendMessage(&front, Front(0), body);
    AppendMessage(&back, Back(0), body);
    s.emplace_back("front_" + name, front);
    s.emplace_back("back_" + name, back);
  }
  std::string deep;
  AppendMessage(&deep, Back(1), get("ready"));
  AppendMessage(&deep, Front(1), get("submit"));
  AppendMessage(&deep, Back(1), get("results"));
  AppendMessage(&deep, Back(1), get("credit"));
  AppendMessage(&deep, Front(1), get("cancel"));
  AppendMessage(&deep, Front(2), get("stats_request"));
  AppendMessage(&deep, Back(1), get("disconnect"));
  s.emplace_back("seq_ready_submit_results", deep);
  std::string held;
  ReadyInfo gpu{2, 2, {"walk"}, {"gpu", "zone=a"}, {}, "gpu"};
  AppendMessage(&held, Back(2), Str(w.EncodeReady(gpu)));
  b.AddSubmission(AsBytes(Job(w, 7, "walk", true)), 1);
  AppendMessage(&held, Front(3), Str(b.FinishSubmit()));
  AppendMessage(&held, Back(2), get("heartbeat_plain"));
  s.emplace_back("seq_tagged_worker", held);
  std::string framing;
  AppendMessage(&framing, Front(0) | kNoDelimiter, get("heartbeat_plain"));
  AppendMessage(&framing, Back(0) | kExtraFrame, get("ready"));
  s.emplace_back("seq_framing_errors", framing);
  return s;
}

Seeds WorkerSequences(const Seeds& env) {
  Writer w;
  BlobBatch b;
  Seeds s;
  for (const auto& [name, body] : env) {
    std::string one;
    AppendMessage(&one, 0, body);
    s.emplace_back(name, one);
  }
  JobSpec expired;
  expired.id = JobId{2, 1};
  expired.task = "echo";
  expired.deadline_ms = 1;
  b.AddJob(w.EncodeJob(expired), 1);
  b.AddJob(AsBytes(Job(w, 2, "no-such-task")), 3);
  std::string seq;
  AppendMessage(&seq, 0, Str(b.FinishDispatch()));
  AppendMessage(&seq, 0, Str(w.EncodeDisconnect("unknown worker")));
  AppendMessage(&seq, kNoDelimiter, Str(w.EncodeHeartbeat()));
  AppendMessage(&seq, kExtraFrame, Str(w.EncodeHeartbeat()));
  s.emplace_back("seq_expired_unknown_framing", seq);
  return s;
}

// The reply-tree bytes of redis_record_fuzz's MakeReply.
std::string Int(int v) {
  return std::string{2, static_cast<char>(v & 0xff),
                     static_cast<char>((v >> 8) & 0xff)};
}
std::string Text(std::string_view t) {
  return std::string{1, static_cast<char>(t.size())} + std::string(t);
}
std::string Array(int n) { return std::string{3, static_cast<char>(n)}; }

Seeds RedisRecords() {
  Writer w;
  Seeds s;
  std::string p;
  PackJob(Job(w, 1, "echo"), &p);
  s.emplace_back("record_one", std::string{0, 1} + "1" + p);
  PackJob(Job(w, 2, "walk", true), &p);
  s.emplace_back("record_two", std::string{0, 1} + "2" + p);
  s.emplace_back("stored_result",
                 "\1" + Str(w.EncodeResult(JobId{1, 1}, wire::ResultStatus::Ok,
                                           AsBytes("out"), "", 1, 5)));
  s.emplace_back(
      "broker_record",
      "\2{\"id\":\"b1\",\"queue\":\"q\",\"frontend\":\"tcp://h:1\","
      "\"backend\":\"tcp://h:2\",\"draining\":false,\"workers\":[{\"name\":"
      "\"w\",\"capacity\":2,\"outstanding\":1,\"tags\":[\"gpu\"],\"taints\":"
      "[]}],\"held\":{\"ready\":1},\"counters\":{\"accepted\":3}}");
  s.emplace_back("job_id", "\3" + JobId{0x1234, 0xabcd}.ToString());
  s.emplace_back("redirect_moved", "\4MOVED 3999 127.0.0.1:6381");
  s.emplace_back("redirect_ask", "\4redis: ASK 12 ::1:7002");
  s.emplace_back("slot_map", "\5" + Array(2) + Array(3) + Int(0) + Int(8191) +
                                 Array(3) + Text("10.0.0.1") + Int(7000) +
                                 Text("a") + Array(3) + Int(8192) + Int(16383) +
                                 Array(2) + Text("") + Int(7001));
  return s;
}

void Write(const fs::path& dir, const Seeds& seeds) {
  fs::create_directories(dir);
  for (const auto& [name, bytes] : seeds) {
    std::ofstream(dir / name, std::ios::binary) << bytes;
  }
}

}  // namespace
}  // namespace yard::fuzz

int main(int argc, char** argv) {
  using namespace yard::fuzz;
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds OUT_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  const Seeds env = Envelopes();
  Write(out / "decode_fuzz", env);
  Write(out / "broker_fuzz", BrokerSequences(env));
  Write(out / "worker_fuzz", WorkerSequences(env));
  Write(out / "redis_record_fuzz", RedisRecords());
  return 0;
}
