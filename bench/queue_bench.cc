// Micro-benchmarks of the in-memory queue (queue/memory_queue.cc): the
// per-job cost of the cycle every job takes through an embedded broker's
// queue, driven the way the broker's loop drives it.
//
//   BM_MemoryQueueCycle       Push a batch of B jobs in one call, Claim(B),
//                             then Complete each claimed job: the queue ends
//                             each iteration empty. Every job priority 1
//                             (the default).
//   BM_MemoryQueueCycleMixed  The same with priorities 0, 1 and 2 in turn,
//                             so Claim walks all three levels (and the
//                             anti-starvation rule, queue/priority_levels.h).
//
// Arg: batch size B (1, 16, 256). items/s is jobs per second; time per
// iteration / B is the cost per job. The jobs are real Job flatbuffers
// (64-byte payload, encoded once before timing); the queue holds views of
// them (a Blob with no owner), as it holds views of inbound messages. Each
// iteration reuses the same B ids: the queue forgets a job on Complete, so
// every Push inserts afresh.
//
//   queue_bench
//   queue_bench --benchmark_filter=Mixed --benchmark_min_time=1
#include <benchmark/benchmark.h>

#include <cstdint>
#include <span>
#include <vector>

#include "bench/bench_util.h"
#include "common/job_id.h"
#include "queue/job_queue.h"
#include "schemas/codec.h"

namespace yard {
namespace {

constexpr size_t kPayloadBytes = 64;

// What a callback hands back; one pointer, so that std::function keeps the
// lambdas inline (no allocation per call).
struct Sink {
  size_t accepted = 0;
  std::vector<JobId> claimed;  // ids only: the views expire with the call
};

// B jobs with priority `priority(i)`; `blobs` owns the bytes.
template <typename PriorityFn>
std::vector<NewJob> MakeJobs(const std::vector<std::vector<uint8_t>>& blobs,
                             PriorityFn priority) {
  std::vector<NewJob> jobs;
  jobs.reserve(blobs.size());
  for (size_t i = 0; i < blobs.size(); ++i) {
    const auto* job = flatbuffers::GetRoot<wire::Job>(blobs[i].data());
    NewJob j;
    j.id = FromWire(job->id());
    j.blob = Blob{nullptr, Bytes(blobs[i].data(), blobs[i].size())};
    j.priority = priority(i);
    j.route = "producer-1";
    jobs.push_back(j);
  }
  return jobs;
}

template <typename PriorityFn>
void Cycle(benchmark::State& state, PriorityFn priority) {
  const auto batch = static_cast<size_t>(state.range(0));
  const auto blobs = MakeJobBlobs(batch, kPayloadBytes);
  const std::vector<NewJob> jobs = MakeJobs(blobs, priority);
  auto queue = NewMemoryQueue(MemoryQueueOptions());
  Sink sink;
  sink.claimed.reserve(batch);
  Sink* s = &sink;
  for (auto _ : state) {
    sink.accepted = 0;
    sink.claimed.clear();
    queue->Push(jobs, [s](Status st, std::span<const PushOutcome> out) {
      if (!st.ok()) return;
      for (PushOutcome o : out) s->accepted += o == PushOutcome::kAccepted;
    });
    queue->Claim(batch, [s](std::span<const ClaimedJob> claimed) {
      for (const ClaimedJob& j : claimed) s->claimed.push_back(j.id);
    });
    if (sink.accepted != batch || sink.claimed.size() != batch) {
      state.SkipWithError("the queue did not accept and hand back the batch");
      break;
    }
    for (const JobId& id : sink.claimed) queue->Complete(id, {});
  }
  const QueueStats left = queue->Stats();
  if (left.ready + left.delayed + left.leased != 0) {
    state.SkipWithError("jobs left in the queue after a cycle");
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch));
}

void BM_MemoryQueueCycle(benchmark::State& state) {
  Cycle(state, [](size_t) -> uint8_t { return 1; });
}

void BM_MemoryQueueCycleMixed(benchmark::State& state) {
  Cycle(state, [](size_t i) { return static_cast<uint8_t>(i % 3); });
}

void BatchArgs(benchmark::internal::Benchmark* b) {
  b->ArgName("batch");
  for (int64_t batch : kBenchBatchSizes) b->Arg(batch);
}

BENCHMARK(BM_MemoryQueueCycle)->Apply(BatchArgs);
BENCHMARK(BM_MemoryQueueCycleMixed)->Apply(BatchArgs);

}  // namespace
}  // namespace yard

BENCHMARK_MAIN();
