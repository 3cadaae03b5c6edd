// Micro-benchmarks of the wire codec: the per-job cost of each step a job
// takes through Switchyard, and of the latency histogram every component
// records into.
//
//   producer: EncodeJob -> BlobBatch::AddJob x batch -> FinishSubmit
//   broker:   Decode(Submit) (Verifier incl. nested Jobs), read headers
//             (VerifySubmit: the Verifier alone);
//             BlobBatch::AddJob(attempt) x batch -> FinishDispatch
//   worker:   Decode(Dispatch); EncodeResult -> AddResult x batch ->
//             FinishResults
//   broker/producer: Decode(Results)
//
// Batch sizes 1, 16, 256; payload sizes 64 B and 4 KiB. items/s is per job
// (or per result), bytes/s is encoded bytes (the blob for EncodeJob and
// EncodeResult, the whole envelope frame otherwise).
//
//   codec_bench --benchmark_filter=Decode
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/histogram.h"
#include "common/job_id.h"
#include "schemas/codec.h"

namespace yard {
namespace {

constexpr int64_t kPayloadSizes[] = {64, 4096};

std::vector<std::vector<uint8_t>> MakeResultBlobs(size_t batch, size_t output) {
  auto bytes = MakePayload(output);
  Writer w;
  std::vector<std::vector<uint8_t>> blobs;
  for (size_t i = 0; i < batch; ++i) {
    Bytes b = w.EncodeResult(JobId::Random(), wire::ResultStatus::Ok,
                             Bytes(bytes.data(), bytes.size()), {}, 1, 42);
    blobs.emplace_back(b.begin(), b.end());
  }
  return blobs;
}

std::vector<uint8_t> Copy(Bytes b) { return {b.begin(), b.end()}; }

// A Submit (attempt 0) or Dispatch (attempt 1) frame of `batch` jobs.
std::vector<uint8_t> JobBatchFrame(bool dispatch, size_t batch,
                                   size_t payload) {
  auto blobs = MakeJobBlobs(batch, payload);
  BlobBatch bb;
  for (const auto& b : blobs)
    bb.AddJob(Bytes(b.data(), b.size()), dispatch ? 1 : 0);
  return Copy(dispatch ? bb.FinishDispatch() : bb.FinishSubmit());
}

void BatchArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"batch", "payload"});
  for (int64_t batch : kBenchBatchSizes) {
    for (int64_t payload : kPayloadSizes) b->Args({batch, payload});
  }
}

void PayloadArgs(benchmark::internal::Benchmark* b) {
  b->ArgName("payload");
  for (int64_t payload : kPayloadSizes) b->Arg(payload);
}

void SetCounters(benchmark::State& state, int64_t items, int64_t bytes) {
  state.SetItemsProcessed(state.iterations() * items);
  state.SetBytesProcessed(state.iterations() * bytes);
}

// ---- Blobs ----

void BM_EncodeJob(benchmark::State& state) {
  auto payload = MakePayload(static_cast<size_t>(state.range(0)));
  JobSpec spec = MakeSpec(payload);
  Writer w;
  size_t size = 0;
  for (auto _ : state) {
    Bytes blob = w.EncodeJob(spec);
    benchmark::DoNotOptimize(blob.data());
    size = blob.size();
  }
  SetCounters(state, 1, static_cast<int64_t>(size));
}
BENCHMARK(BM_EncodeJob)->Apply(PayloadArgs);

void BM_EncodeResult(benchmark::State& state) {
  auto output = MakePayload(static_cast<size_t>(state.range(0)));
  JobId id = JobId::Random();
  Writer w;
  size_t size = 0;
  for (auto _ : state) {
    Bytes blob = w.EncodeResult(id, wire::ResultStatus::Ok,
                                Bytes(output.data(), output.size()), {}, 1, 42);
    benchmark::DoNotOptimize(blob.data());
    size = blob.size();
  }
  SetCounters(state, 1, static_cast<int64_t>(size));
}
BENCHMARK(BM_EncodeResult)->Apply(PayloadArgs);

// ---- Building batches from blobs ----

// Submit (attempt 0) or Dispatch (attempt 1) from already-encoded blobs:
// what a broker pays to forward jobs.
template <bool kDispatch>
void BM_BuildJobBatch(benchmark::State& state) {
  auto batch = static_cast<size_t>(state.range(0));
  auto blobs = MakeJobBlobs(batch, static_cast<size_t>(state.range(1)));
  BlobBatch bb;
  size_t size = 0;
  for (auto _ : state) {
    for (const auto& b : blobs) {
      bb.AddJob(Bytes(b.data(), b.size()), kDispatch ? 1 : 0);
    }
    Bytes frame = kDispatch ? bb.FinishDispatch() : bb.FinishSubmit();
    benchmark::DoNotOptimize(frame.data());
    size = frame.size();
    bb.Clear();
  }
  SetCounters(state, static_cast<int64_t>(batch), static_cast<int64_t>(size));
}
BENCHMARK(BM_BuildJobBatch<false>)->Name("BM_BuildSubmit")->Apply(BatchArgs);
BENCHMARK(BM_BuildJobBatch<true>)->Name("BM_BuildDispatch")->Apply(BatchArgs);

// The producer's whole encode path: EncodeJob for each job, then the batch.
void BM_EncodeJobsAndSubmit(benchmark::State& state) {
  auto batch = static_cast<size_t>(state.range(0));
  auto payload = MakePayload(static_cast<size_t>(state.range(1)));
  JobSpec spec = MakeSpec(payload);
  Writer w;
  BlobBatch bb;
  size_t size = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      spec.id.lo = i;
      bb.AddJob(w.EncodeJob(spec));
    }
    Bytes frame = bb.FinishSubmit();
    benchmark::DoNotOptimize(frame.data());
    size = frame.size();
    bb.Clear();
  }
  SetCounters(state, static_cast<int64_t>(batch), static_cast<int64_t>(size));
}
BENCHMARK(BM_EncodeJobsAndSubmit)->Apply(BatchArgs);

void BM_BuildResults(benchmark::State& state) {
  auto batch = static_cast<size_t>(state.range(0));
  auto blobs = MakeResultBlobs(batch, static_cast<size_t>(state.range(1)));
  BlobBatch bb;
  size_t size = 0;
  for (auto _ : state) {
    for (const auto& b : blobs) bb.AddResult(Bytes(b.data(), b.size()));
    Bytes frame = bb.FinishResults();
    benchmark::DoNotOptimize(frame.data());
    size = frame.size();
    bb.Clear();
  }
  SetCounters(state, static_cast<int64_t>(batch), static_cast<int64_t>(size));
}
BENCHMARK(BM_BuildResults)->Apply(BatchArgs);

// ---- Decode ----

// Decode (size limit, Verifier including every nested Job, version, kind,
// batch and payload limits) plus reading each job's header the way a broker
// does (id, priority, queue, task); payloads are not touched.
template <bool kDispatch>
void BM_DecodeJobBatch(benchmark::State& state) {
  auto batch = static_cast<size_t>(state.range(0));
  auto frame =
      JobBatchFrame(kDispatch, batch, static_cast<size_t>(state.range(1)));
  Limits limits;
  for (auto _ : state) {
    Decoded d = Decode(Bytes(frame.data(), frame.size()), limits);
    if (!d.ok()) {
      state.SkipWithError(d.message.c_str());
      break;
    }
    const auto* jobs = kDispatch ? d.envelope->body_as_Dispatch()->jobs()
                                 : d.envelope->body_as_Submit()->jobs();
    uint64_t sum = 0;
    for (const auto* blob : *jobs) {
      const auto* job = blob->data_nested_root();
      sum += job->id()->lo() + job->priority() + job->task()->size() +
             (job->queue() ? job->queue()->size() : 0);
    }
    benchmark::DoNotOptimize(sum);
  }
  SetCounters(state, static_cast<int64_t>(batch),
              static_cast<int64_t>(frame.size()));
}
BENCHMARK(BM_DecodeJobBatch<false>)->Name("BM_DecodeSubmit")->Apply(BatchArgs);
BENCHMARK(BM_DecodeJobBatch<true>)->Name("BM_DecodeDispatch")->Apply(BatchArgs);

// The FlatBuffers Verifier alone on a Submit frame (what Decode runs first,
// including every nested Job), without Decode's other checks or reading any
// field: the cost of trusting a frame.
void BM_VerifySubmit(benchmark::State& state) {
  auto batch = static_cast<size_t>(state.range(0));
  auto frame = JobBatchFrame(false, batch, static_cast<size_t>(state.range(1)));
  for (auto _ : state) {
    flatbuffers::Verifier verifier(frame.data(), frame.size());
    if (!verifier.VerifyBuffer<wire::Envelope>(nullptr)) {
      state.SkipWithError("the Submit frame does not verify");
      break;
    }
  }
  SetCounters(state, static_cast<int64_t>(batch),
              static_cast<int64_t>(frame.size()));
}
BENCHMARK(BM_VerifySubmit)->Apply(BatchArgs);

// Decode (Verifier including every nested JobResult) plus reading each
// result's id and status, as a broker routing results does.
void BM_DecodeResults(benchmark::State& state) {
  auto batch = static_cast<size_t>(state.range(0));
  auto blobs = MakeResultBlobs(batch, static_cast<size_t>(state.range(1)));
  BlobBatch bb;
  for (const auto& b : blobs) bb.AddResult(Bytes(b.data(), b.size()));
  auto frame = Copy(bb.FinishResults());
  Limits limits;
  for (auto _ : state) {
    Decoded d = Decode(Bytes(frame.data(), frame.size()), limits);
    if (!d.ok()) {
      state.SkipWithError(d.message.c_str());
      break;
    }
    uint64_t sum = 0;
    for (const auto* blob : *d.envelope->body_as_Results()->results()) {
      const auto* r = blob->data_nested_root();
      sum += r->id()->lo() + static_cast<uint64_t>(r->status());
    }
    benchmark::DoNotOptimize(sum);
  }
  SetCounters(state, static_cast<int64_t>(batch),
              static_cast<int64_t>(frame.size()));
}
BENCHMARK(BM_DecodeResults)->Apply(BatchArgs);

// ---- Histogram ----

// Record of latency-like values (mostly tens to hundreds of microseconds,
// a tail into tens of milliseconds), cycling through a precomputed table so
// that the random generator is not what is measured.
void BM_HistogramRecord(benchmark::State& state) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(5.0, 1.0);
  std::vector<uint64_t> values(4096);
  for (auto& v : values) v = static_cast<uint64_t>(dist(rng));
  Histogram h;
  size_t i = 0;
  for (auto _ : state) {
    h.Record(values[i]);
    i = (i + 1) & (values.size() - 1);
  }
  benchmark::DoNotOptimize(h.count());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramRecord);

void BM_HistogramPercentiles(benchmark::State& state) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(5.0, 1.0);
  Histogram h;
  for (int i = 0; i < 1000000; ++i) h.Record(static_cast<uint64_t>(dist(rng)));
  for (auto _ : state) {
    uint64_t sum = h.Percentile(0.5) + h.Percentile(0.99) + h.Percentile(0.999);
    benchmark::DoNotOptimize(sum);
  }
}
BENCHMARK(BM_HistogramPercentiles);

void BM_HistogramMerge(benchmark::State& state) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(5.0, 1.0);
  Histogram a;
  Histogram b;
  for (int i = 0; i < 100000; ++i) b.Record(static_cast<uint64_t>(dist(rng)));
  for (auto _ : state) {
    a.Merge(b);
    benchmark::DoNotOptimize(a.count());
  }
}
BENCHMARK(BM_HistogramMerge);

}  // namespace
}  // namespace yard

BENCHMARK_MAIN();
