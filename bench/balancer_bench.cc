// Micro-benchmarks of Balancer::Pick (balancer/balancer.h) and of placement
// (balancer/placement.h): what the broker pays to choose a worker for each
// dispatch, per strategy and fleet size.
//
//   BM_BalancerPick/<strategy>/workers:N
//     N candidate WorkerSlots (N = 10, 100, 1000) with capacities 1 to 16,
//     outstanding jobs 0 to twice the capacity and credit = the rest of a
//     prefetch window of twice the capacity (so some slots have none and the
//     strategies must skip them). Each iteration is one Pick with a random
//     nonzero affinity key (only "affinity" reads it), then the picked slot
//     gets one more outstanding job and the oldest job in flight finishes
//     (its slot gets one fewer), so the fleet keeps a constant number of
//     jobs in flight that finish in dispatch order and the state moves as in
//     a busy broker. A kWait (affinity: the key's worker has no credit)
//     changes nothing. Every slot stays a candidate; the broker's candidate
//     list (placement, liveness) is not measured here.
//
//   BM_PlacementAdmits/workers:N
//     Admits(worker, selector) over N compiled worker Labels (zones, some
//     GPUs, some tainted "spot") for one selector (tag zone=eu-1 and gpu,
//     toleration spot): the cost of building one selector's candidate list.
//
// BM_BalancerPick: time per iteration is ns per pick, including that
// bookkeeping (a few array updates); items/s is picks per second. Counters:
// load_spread, at the end the most minus the least loaded slot's
// outstanding / capacity (how evenly the strategy spread the work); waits,
// the fraction of picks that returned kWait.
// BM_PlacementAdmits: time per iteration is one pass over N workers; items/s
// is Admits calls per second; counter admitted: how many of N passed.
//
// Strategies: every name BalancerNames() lists.
//
//   balancer_bench
//   balancer_bench --benchmark_filter=round-robin
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "balancer/balancer.h"
#include "balancer/placement.h"

namespace yard {
namespace {

constexpr int64_t kFleetSizes[] = {10, 100, 1000};
constexpr uint32_t kCapacities[] = {1, 2, 4, 8, 16};

// Credit as a worker with a prefetch window of twice its capacity has it.
void SetCredit(WorkerSlot& s) {
  const uint32_t window = 2 * s.capacity;
  s.credit = s.outstanding < window ? window - s.outstanding : 0;
}

struct Fleet {
  std::vector<WorkerSlot> slots;
  // The slot of each job in flight, oldest at `next`; a ring.
  std::vector<uint32_t> inflight;
  size_t next = 0;
};

Fleet MakeFleet(size_t n) {
  std::mt19937 rng(42);
  Fleet f;
  f.slots.resize(n);
  for (size_t i = 0; i < n; ++i) {
    WorkerSlot& s = f.slots[i];
    s.id = WorkerKey("worker-" + std::to_string(i));
    s.capacity = kCapacities[rng() % std::size(kCapacities)];
    s.outstanding = static_cast<uint32_t>(rng() % (2 * s.capacity + 1));
    SetCredit(s);
    f.inflight.insert(f.inflight.end(), s.outstanding,
                      static_cast<uint32_t>(i));
  }
  if (f.inflight.empty()) {  // the ring needs one job
    ++f.slots[0].outstanding;
    SetCredit(f.slots[0]);
    f.inflight.push_back(0);
  }
  std::shuffle(f.inflight.begin(), f.inflight.end(), rng);
  return f;
}

double LoadSpread(const std::vector<WorkerSlot>& slots) {
  double lo = 1e300, hi = 0;
  for (const WorkerSlot& s : slots) {
    const double load = static_cast<double>(s.outstanding) / s.capacity;
    lo = std::min(lo, load);
    hi = std::max(hi, load);
  }
  return hi - lo;
}

void BM_BalancerPick(benchmark::State& state, const std::string& strategy) {
  auto balancer = NewBalancer(strategy, 42);
  if (!balancer.ok()) {
    state.SkipWithError(balancer.status().ToString().c_str());
    return;
  }
  Balancer& b = **balancer;
  Fleet f = MakeFleet(static_cast<size_t>(state.range(0)));
  // Affinity keys, random and nonzero, cycled.
  std::vector<uint64_t> keys(4096);
  std::mt19937_64 rng(7);
  for (uint64_t& k : keys) k = rng() | 1;
  size_t next_key = 0;
  int64_t waits = 0;
  for (auto _ : state) {
    const size_t i = b.Pick(f.slots, keys[next_key++ & (keys.size() - 1)]);
    if (i == Balancer::kWait) {
      ++waits;
      continue;
    }
    WorkerSlot& picked = f.slots[i];
    ++picked.outstanding;
    SetCredit(picked);
    uint32_t& oldest = f.inflight[f.next];
    WorkerSlot& done = f.slots[oldest];
    --done.outstanding;
    SetCredit(done);
    oldest = static_cast<uint32_t>(i);
    if (++f.next == f.inflight.size()) f.next = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["load_spread"] = LoadSpread(f.slots);
  state.counters["waits"] =
      static_cast<double>(waits) /
      static_cast<double>(std::max<int64_t>(1, state.iterations()));
}

void BM_PlacementAdmits(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::mt19937 rng(42);
  const std::string zones[] = {"zone=eu-1", "zone=eu-2", "zone=us-1",
                               "zone=ap-1"};
  std::vector<Labels> workers;
  for (size_t i = 0; i < n; ++i) {
    std::vector<std::string_view> tags = {zones[rng() % 4], "ssd"};
    if (rng() % 2 == 0) tags.push_back("gpu=a100");
    std::vector<std::string_view> taints;
    if (rng() % 5 == 0) taints.push_back("spot");
    auto l = MakeLabels(tags, taints);
    if (!l.ok()) {
      state.SkipWithError(l.status().ToString().c_str());
      return;
    }
    workers.push_back(std::move(l).value());
  }
  const std::vector<std::string_view> tags = {"zone=eu-1", "gpu"};
  const std::vector<std::string_view> tolerations = {"spot"};
  auto selector = MakeSelector(tags, tolerations);
  if (!selector.ok()) {
    state.SkipWithError(selector.status().ToString().c_str());
    return;
  }
  size_t admitted = 0;
  for (auto _ : state) {
    admitted = 0;
    for (const Labels& w : workers) admitted += Admits(w, *selector);
    benchmark::DoNotOptimize(admitted);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
  state.counters["admitted"] = static_cast<double>(admitted);
}

}  // namespace
}  // namespace yard

int main(int argc, char** argv) {
  for (const std::string& strategy : yard::BalancerNames()) {
    auto* b =
        benchmark::RegisterBenchmark(("BM_BalancerPick/" + strategy).c_str(),
                                     yard::BM_BalancerPick, strategy);
    b->ArgName("workers");
    for (int64_t n : yard::kFleetSizes) b->Arg(n);
  }
  auto* placement = benchmark::RegisterBenchmark("BM_PlacementAdmits",
                                                 yard::BM_PlacementAdmits);
  placement->ArgName("workers");
  for (int64_t n : yard::kFleetSizes) placement->Arg(n);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
