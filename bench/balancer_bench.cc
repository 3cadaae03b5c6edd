// Micro-benchmarks of Balancer::Pick (balancer/balancer.h): what the broker
// pays to choose a worker for each dispatch, per strategy and fleet size.
//
//   BM_BalancerPick/<strategy>/workers:N
//     N candidate WorkerSlots (N = 10, 100, 1000) with capacities 1 to 16,
//     outstanding jobs 0 to twice the capacity and credit = the rest of a
//     prefetch window of twice the capacity. Each iteration is one Pick,
//     then the picked slot gets one more outstanding job and the oldest job
//     in flight finishes (its slot gets one fewer), so the fleet keeps a
//     constant number of jobs in flight that finish in dispatch order and
//     the state moves as in a busy broker. Every slot stays a candidate
//     (neither strategy reads credit; the broker rebuilds the candidate
//     list, which is not measured here).
//
// Time per iteration is ns per pick, including that bookkeeping (a few
// array updates). items/s is picks per second. Counter load_spread: at the
// end, the most minus the least loaded slot's outstanding / capacity (how
// evenly the strategy spread the work).
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
  for (auto _ : state) {
    const size_t i = b.Pick(f.slots);
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
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
