#include "broker/broker_impl.h"

namespace yard {

Status Broker::Impl::Init() {
  if (options_.heartbeat_ms <= 0) {
    return Status::InvalidArgument("heartbeat interval must be positive");
  }
  if (options_.max_queue == 0 || options_.max_dispatch_batch == 0 ||
      options_.max_workers == 0) {
    return Status::InvalidArgument(
        "queue, batch and worker bounds must be positive");
  }
  if (options_.max_queue_bytes < options_.limits.max_frame_bytes) {
    return Status::InvalidArgument(
        "max queue bytes must be at least the frame limit (" +
        std::to_string(options_.limits.max_frame_bytes) + ")");
  }
  if (options_.run_timeout_ms < 0) {
    return Status::InvalidArgument("run timeout must be >= 0");
  }
  if (auto s = options_.retry.Validate(); !s.ok()) return s;
  if (auto s = options_.quotas.Validate(); !s.ok()) return s;
  auto balancer = NewBalancer(options_.balancer, rng_());
  if (!balancer.ok()) return balancer.status();
  balancer_ = std::move(balancer).value();
  if (options_.redis.url.empty()) {
    MemoryQueueOptions qo;
    qo.capacity = options_.max_queue;
    queue_ = NewMemoryQueue(qo);
  } else {
    // A broker silent for as long as a worker may be before it counts as
    // dead drops out of the registry.
    options_.redis.registry_ttl_ms = ExpiryMs(options_.heartbeat_ms);
    options_.redis.max_expiries = options_.retry.max_expiries;
    auto q = NewRedisQueue(options_.redis);
    if (!q.ok()) return q.status();
    events_ = q->get();
    queue_ = std::move(q).value();
    events_->SetResultSink([this](std::string_view route, Bytes result) {
      RouteResult(std::string(route), result);
    });
    events_->SetCancelSink(
        [this](const JobId& id) { return CancelRecorded(id); });
  }
  ConfigureSocket(frontend_, options_.limits, 1000);
  ConfigureSocket(backend_, options_.limits, 1000);
  if (auto s = InitCurve(); !s.ok()) return s;
  if (auto s = Bind(frontend_, options_.frontend); !s.ok()) return s;
  if (auto s = Bind(backend_, options_.backend); !s.ok()) return s;
  frontend_ep_ = LastEndpoint(frontend_);
  backend_ep_ = LastEndpoint(backend_);
  advertised_frontend_ = AdvertisedEndpoint(frontend_ep_, options_.advertise);
  advertised_backend_ = AdvertisedEndpoint(backend_ep_, options_.advertise);
  for (const std::string* ep : {&advertised_frontend_, &advertised_backend_}) {
    if (Status st = ValidateEndpoint(*ep); !st.ok()) {
      return Status::InvalidArgument("--advertise: " + st.message());
    }
  }
  started_ms_ = UnixMillis();
  if (events_) events_->Advertise(RegistryRecord());  // discoverable at once
  inflight_.reserve(4096);
  return Status::OK();
}

void Broker::Impl::Timers(int64_t now) {
  if (now >= next_unroutable_ms_) {
    next_unroutable_ms_ = now + kUnroutableCheckMs;
    FailUnroutable(now);
  }
  if (now < next_heartbeat_ms_) return;
  next_heartbeat_ms_ = now + options_.heartbeat_ms;
  std::vector<uint64_t> dead;
  workers_.Expire(now, [&](const WorkerInfo& w) {
    spdlog::warn("worker {} is silent for {} ms: presumed dead", w.name,
                 ExpiryMs(options_.heartbeat_ms));
    dead.push_back(w.serial);
  });
  c_.workers_expired += dead.size();
  if (!dead.empty()) ++roster_;
  for (uint64_t serial : dead) ReleaseWorkerJobs(serial, /*died=*/true);
  Bytes hb = writer_.EncodeHeartbeat();
  for (const WorkerInfo& w : workers_.workers()) {
    (void)SendRouter(backend_, w.identity, hb);
  }
  if (events_) events_->Advertise(RegistryRecord());
  PublishStats();
}

nlohmann::json Broker::Impl::RegistryRecord() const {
  nlohmann::json ws = nlohmann::json::array();
  for (const WorkerInfo& w : workers_.workers()) {
    ws.push_back({{"name", w.name},
                  {"capacity", w.capacity},
                  {"credit", w.credit},
                  {"outstanding", w.outstanding},
                  {"quarantined", w.quarantined},
                  {"tags", w.tags},
                  {"taints", w.taints}});
  }
  auto st = queue_->Stats();
  return {{"frontend", advertised_frontend_},
          {"curve_public_key", gate_ ? gate_->public_key() : ""},
          {"backend", advertised_backend_},
          {"draining", draining_},
          {"started_ms", started_ms_},
          {"heartbeat_ms", options_.heartbeat_ms},
          {"pid", static_cast<int64_t>(getpid())},
          {"balancer", options_.balancer},
          {"workers", std::move(ws)},
          {"held",
           {{"ready", st.ready},
            {"running", inflight_.size()},
            {"waiting_no_worker", unplaceable_.size()},
            {"waiting_worker_busy", waiting_.size()}}},
          {"counters",
           {{"accepted", c_.accepted},
            {"dispatched", c_.dispatched},
            {"completed", c_.completed},
            {"failed", c_.failed}}}};
}

void Broker::Impl::HandBackEverything() {
  size_t n = 0;
  queue_->DrainWaiting([&](const ClaimedJob& j) {
    OutboxFor(std::string(j.route)).unavailable.push_back(j.id);
    ++n;
  });
  for (const auto& [id, f] : inflight_) {
    OutboxFor(f.route).unavailable.push_back(id);
    ++n;
  }
  for (const std::deque<Held>* held : {&waiting_, &unplaceable_}) {
    for (const Held& h : *held) {
      if (h.route.empty()) continue;  // another broker's: its lease expires
      OutboxFor(h.route).unavailable.push_back(h.id);
      ++n;
    }
  }
  if (n)
    spdlog::warn("drain time is up: {} jobs handed back to their producers", n);
  FlushOutboxes();
}

bool Broker::Impl::QueueDrained() const {
  if (events_) return events_->Drained();
  const QueueStats s = queue_->Stats();
  return s.ready + s.delayed + s.leased == 0;
}

void Broker::Impl::Snapshot() {
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    snapshot_ = c_;
  }
  if (stats_wanted_.load(std::memory_order_relaxed)) PublishStats();
}

void Broker::Impl::PublishStats() {
  std::string stats = StatsJson();
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    published_stats_ = std::move(stats);
    ++published_generation_;
    published_ms_ = MonoMillis();
    stats_wanted_.store(false, std::memory_order_relaxed);
  }
  published_cv_.notify_all();
}

void Broker::Impl::SetServing(bool serving) {
  {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    serving_.store(serving);
  }
  published_cv_.notify_all();
}

BrokerObservation Broker::Impl::Observe(int64_t wait_ms) const {
  std::unique_lock<std::mutex> lock(snapshot_mu_);
  if (serving_.load()) {
    const uint64_t generation = published_generation_;
    stats_wanted_.store(true, std::memory_order_relaxed);
    published_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] {
      return published_generation_ != generation || !serving_.load();
    });
  }
  BrokerObservation o;
  o.counters = snapshot_;
  o.stats_json = published_stats_;
  o.serving = serving_.load();
  o.age_ms = published_stats_.empty() ? 0 : MonoMillis() - published_ms_;
  return o;
}

Status Broker::Impl::Run() {
  // Two sockets, the Gatekeeper's (CURVE: ZAP, handshake monitors), then
  // the queue's connections (Redis fds) if it has any.
  std::vector<zmq::pollitem_t> items(2 + Gatekeeper::kMaxPollItems +
                                     kMaxQueuePollItems);
  items[0] = {backend_.handle(), 0, ZMQ_POLLIN, 0};
  items[1] = {frontend_.handle(), 0, ZMQ_POLLIN, 0};
  const int gate_items = gate_ ? gate_->PollItems(items.data() + 2) : 0;
  zmq::pollitem_t* queue_at = items.data() + 2 + gate_items;
  next_heartbeat_ms_ = MonoMillis() + options_.heartbeat_ms;
  spdlog::info("broker serving: frontend {} backend {}", frontend_ep_,
               backend_ep_);
  PublishStats();
  SetServing(true);
  for (;;) {
    int64_t now = MonoMillis();
    if (!draining_ && (stop_.load() || StopRequested())) {
      draining_ = true;
      drain_deadline_ms_ = now + options_.drain_timeout_ms;
      auto st = queue_->Stats();
      spdlog::info("draining: {} queued, {} running", st.ready + st.delayed,
                   inflight_.size());
      // Jobs held here for a worker go back to the queue first, so a
      // durable queue can give their records to other brokers.
      ids_.clear();
      for (std::deque<Held>* held : {&waiting_, &unplaceable_}) {
        for (const Held& h : *held) ids_.push_back(h.id);
        held->clear();
      }
      if (!ids_.empty()) queue_->Release(ids_);
      ids_.clear();
      if (events_) {
        events_->BeginDrain();
        events_->Advertise(RegistryRecord());  // producers and workers move on
      }
    }
    if (draining_) {
      if (QueueDrained() && inflight_.empty()) break;
      if (now >= drain_deadline_ms_) {
        HandBackEverything();
        break;
      }
    }
    int64_t timeout = std::clamp<int64_t>(next_heartbeat_ms_ - now, 0, 100);
    const int queue_items =
        events_ ? events_->PollItems(queue_at, kMaxQueuePollItems) : 0;
    try {
      zmq::poll(items.data(), static_cast<size_t>(2 + gate_items + queue_items),
                std::chrono::milliseconds(timeout));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) {
        SetServing(false);
        return Status::IoError(e.what());
      }
      for (auto& item : items) item.revents = 0;
    }
    if (gate_) {
      gate_->OnPollEvents(items.data() + 2, gate_items, MonoMillis());
      ReloadKeysIfAsked();
    }
    if (items[0].revents & ZMQ_POLLIN) ReadBackend();
    if (items[1].revents & ZMQ_POLLIN) ReadFrontend();
    if (events_) events_->OnPollEvents(queue_at, queue_items);
    RunTimeouts(MonoMillis());
    Dispatch();
    if (events_) events_->Tick(MonoMillis());
    FlushOutboxes();
    Timers(MonoMillis());
    Snapshot();
  }
  Snapshot();
  PublishStats();
  SetServing(false);
  spdlog::info("broker stopped: {}", StatsJson());
  return Status::OK();
}

std::string Broker::Impl::StatsJson() const {
  nlohmann::json j;
  auto st = queue_->Stats();
  j["queue"] = {{"ready", st.ready},
                {"delayed", st.delayed},
                {"running", st.leased},
                {"capacity", st.capacity}};
  nlohmann::json ws = nlohmann::json::array();
  size_t quarantined = 0;
  for (const WorkerInfo& w : workers_.workers()) {
    ws.push_back({{"name", w.name},
                  {"credit", w.credit},
                  {"outstanding", w.outstanding},
                  {"capacity", w.capacity},
                  {"quarantined", w.quarantined},
                  {"timed_out_unanswered", w.taken_back}});
    quarantined += w.quarantined ? 1 : 0;
  }
  j["workers"] = ws;
  j["workers_quarantined"] = quarantined;
  j["counters"] = {{"submitted", c_.submitted},
                   {"accepted", c_.accepted},
                   {"duplicates", c_.duplicates},
                   {"busy", c_.busy},
                   {"busy_bytes", c_.busy_bytes},
                   {"busy_quota", c_.busy_quota},
                   {"refused", c_.refused},
                   {"invalid", c_.invalid},
                   {"dispatched", c_.dispatched},
                   {"completed", c_.completed},
                   {"failed", c_.failed},
                   {"cancelled", c_.cancelled},
                   {"expired", c_.expired},
                   {"retried", c_.retried},
                   {"redispatched", c_.redispatched},
                   {"results_unroutable", c_.results_unroutable},
                   {"results_foreign", c_.results_foreign},
                   {"failed_no_worker", c_.failed_no_worker},
                   {"cancels_refused", c_.cancels_refused},
                   {"cancels_unknown", c_.cancels_unknown},
                   {"cancels_recorded", c_.cancels_recorded},
                   {"progress", c_.progress},
                   {"progress_refused", c_.progress_refused},
                   {"sends_failed", c_.sends_failed},
                   {"bad_frames", c_.bad_frames},
                   {"unexpected", c_.unexpected},
                   {"workers_expired", c_.workers_expired},
                   {"workers_refused", c_.workers_refused},
                   {"unavailable", c_.unavailable},
                   {"poisoned", c_.poisoned},
                   {"timed_out", c_.timed_out},
                   {"results_late", c_.results_late},
                   {"quarantines", c_.quarantines}};
  j["messages"] = {{"frontend_in", c_.frontend_in},
                   {"backend_in", c_.backend_in},
                   {"dispatch_out", c_.dispatch_out},
                   {"frontend_out", c_.frontend_out}};
  j["in_flight"] = inflight_.size();
  j["run_deadlines"] = deadlines_.size();  // heap entries, stale included
  j["waiting"] = {{"no_worker", unplaceable_.size()},
                  {"worker_busy", waiting_.size()}};
  j["memory"] = {{"bytes", memory_bytes_},
                 {"max_bytes", options_.max_queue_bytes}};
  j["draining"] = draining_;
  // Bucket counts (not cumulative; the last is above every bound) so that a
  // monitor can take percentiles over any interval from two readings.
  auto buckets = [](const LatencyHistogram& h) {
    const LatencyHistogram::Snapshot s = h.Read();
    return nlohmann::json(s.buckets);
  };
  j["latency_buckets"] = {{"bounds_us", LatencyHistogram::kBoundsUs},
                          {"queue_wait", buckets(hist_.queue_wait)},
                          {"run_time", buckets(hist_.run_time)},
                          {"end_to_end", buckets(hist_.end_to_end)}};
  if (gate_) gate_->DescribeStats(&j);
  if (events_) events_->DescribeStats(&j);
  // Names and labels come from the network: invalid UTF-8 is replaced,
  // not thrown.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// ------------------------------------------------------------------ facade

Result<std::unique_ptr<Broker>> Broker::Create(BrokerOptions options) {
  try {
    auto impl = std::make_unique<Impl>(std::move(options));
    if (auto s = impl->Init(); !s.ok()) return s;
    return std::unique_ptr<Broker>(new Broker(std::move(impl)));
  } catch (const zmq::error_t& e) {
    return Status::IoError(e.what());
  }
}

Broker::Broker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Broker::~Broker() = default;
const std::string& Broker::frontend_endpoint() const {
  return impl_->frontend_ep();
}
const std::string& Broker::backend_endpoint() const {
  return impl_->backend_ep();
}
Status Broker::Run() { return impl_->Run(); }
void Broker::Stop() { impl_->Stop(); }
BrokerCounters Broker::counters() const { return impl_->counters(); }
std::string Broker::StatsJson() const { return impl_->StatsJson(); }
BrokerObservation Broker::Observe(int64_t wait_ms) const {
  return impl_->Observe(wait_ms);
}
const BrokerHistograms& Broker::histograms() const {
  return impl_->histograms();
}

}  // namespace yard
