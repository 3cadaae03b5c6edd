#include "broker/broker.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <memory_resource>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <unordered_map>
#include <vector>

#include "balancer/balancer.h"
#include "balancer/placement.h"
#include "broker/worker_table.h"
#include "common/clock.h"
#include "common/heartbeat.h"
#include "common/signals.h"
#include "queue/job_queue.h"
#include "queue/registry.h"

namespace yard {
namespace {

// A job's required tags and tolerations as views; false when it has none.
bool SelectorOf(const wire::Job& job, std::vector<std::string_view>* tags,
                std::vector<std::string_view>* tolerations) {
  auto add = [](const auto* from, std::vector<std::string_view>* to) {
    if (from) {
      for (const auto* s : *from) to->push_back(s->string_view());
    }
  };
  add(job.tags(), tags);
  add(job.tolerations(), tolerations);
  return !tags->empty() || !tolerations->empty();
}

// Messages read from one socket per loop turn before the other gets a turn.
constexpr int kReadBudget = 256;
// Logs about bad input are capped per second so a flood cannot fill disks.
constexpr int kBadInputLogsPerSecond = 20;

// What the broker remembers about a dispatched job.
struct InFlight {
  uint64_t worker = 0;  // WorkerInfo::serial
  std::string route;    // producer identity; empty: another broker's
  uint16_t attempt = 1;
  uint16_t max_attempts = 1;
};

// Replies waiting for one producer until the end of the loop turn.
struct Outbox {
  std::vector<JobId> accepted;
  std::vector<JobId> busy;
  std::vector<JobId> unavailable;
  BlobBatch results;
  bool dirty = false;
};

}  // namespace

class Broker::Impl {
 public:
  explicit Impl(BrokerOptions o)
      : options_(std::move(o)),
        own_context_(options_.context ? nullptr : new zmq::context_t(1)),
        context_(options_.context ? options_.context : own_context_.get()),
        frontend_(*context_, zmq::socket_type::router),
        backend_(*context_, zmq::socket_type::router),
        workers_(ExpiryMs(options_.heartbeat_ms)),
        rng_(std::random_device{}()) {}

  Status Init() {
    if (options_.heartbeat_ms <= 0) {
      return Status::InvalidArgument("heartbeat interval must be positive");
    }
    if (options_.max_queue == 0 || options_.max_dispatch_batch == 0) {
      return Status::InvalidArgument("queue and batch bounds must be positive");
    }
    if (auto s = options_.retry.Validate(); !s.ok()) return s;
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
      queue_ = std::move(q).value();
      queue_->SetResultSink([this](std::string_view route, Bytes result) {
        RouteResult(std::string(route), result);
      });
    }
    ConfigureSocket(frontend_, options_.limits, 1000);
    ConfigureSocket(backend_, options_.limits, 1000);
    if (auto s = Bind(frontend_, options_.frontend); !s.ok()) return s;
    if (auto s = Bind(backend_, options_.backend); !s.ok()) return s;
    frontend_ep_ = LastEndpoint(frontend_);
    backend_ep_ = LastEndpoint(backend_);
    advertised_frontend_ = AdvertisedEndpoint(frontend_ep_, options_.advertise);
    advertised_backend_ = AdvertisedEndpoint(backend_ep_, options_.advertise);
    for (const std::string* ep :
         {&advertised_frontend_, &advertised_backend_}) {
      if (Status st = ValidateEndpoint(*ep); !st.ok()) {
        return Status::InvalidArgument("--advertise: " + st.message());
      }
    }
    started_ms_ = UnixMillis();
    queue_->Advertise(RegistryRecord());  // discoverable at once
    inflight_.reserve(4096);
    return Status::OK();
  }

  // The queue first: destroying a Redis queue answers its pending
  // commands, and those callbacks use the broker's other members.
  ~Impl() { queue_.reset(); }

  Status Run();
  void Stop() { stop_.store(true); }
  BrokerCounters counters() const {
    std::lock_guard<std::mutex> lock(snapshot_mu_);
    return snapshot_;
  }
  std::string StatsJson() const;

  const std::string& frontend_ep() const { return frontend_ep_; }
  const std::string& backend_ep() const { return backend_ep_; }

 private:
  // Frontend.
  void ReadFrontend();
  void OnSubmit(const std::string& route, std::shared_ptr<zmq::message_t> frame,
                const wire::Submit* submit);
  void OnCancel(const std::string& route, const wire::Cancel* cancel);
  // Backend.
  void ReadBackend();
  void OnReady(std::string_view identity, const wire::Ready* ready);
  void OnResults(WorkerInfo* sender, const wire::Results* results);
  void RouteResult(const std::string& route, Bytes result);
  // `died`: the worker expired (not a graceful Disconnect); its jobs count
  // a death each, and a job at retry.max_worker_deaths fails instead of running
  // again (a poison job that crashes every worker it meets).
  void ReleaseWorkerJobs(uint64_t serial, bool died);
  // Outbound.
  // A claimed job the broker holds because it must wait for a worker.
  struct Held {
    JobId id;
    std::string blob;  // the Job flatbuffer
    uint16_t attempt = 1;
    std::string route;  // empty: another broker's producer
  };
  // The live workers one selector admits, and their slots as of a turn.
  struct Candidates {
    Selector selector;
    uint64_t roster = 0;
    uint64_t turn = 0;
    std::vector<WorkerInfo*> workers;
    std::vector<WorkerSlot> slots;
  };
  struct Outgoing {
    WorkerInfo* worker = nullptr;
    std::unique_ptr<BlobBatch> batch;
  };
  static constexpr size_t kMaxHeld = 10000;  // then claiming stops
  static constexpr size_t kMaxSelectors = 1024;
  void Dispatch();
  // What became of a job Place routed: sent to a worker; to wait for
  // credit (waiting_) or for a worker its selector admits (unplaceable_);
  // or failed (a selector no worker can ever match: a job queued by an
  // older broker that did not check it).
  enum class Placed : uint8_t { kSent, kWait, kNoWorker, kFailed };
  Placed Place(const JobId& id, Bytes blob, uint16_t attempt,
               std::string_view route);
  // Keeps a job that must wait (kWait, kNoWorker) in waiting_ or
  // unplaceable_.
  void Hold(Placed placed, Held h);
  Candidates* CandidatesFor(const wire::Job& job);
  void RefreshSlots(Candidates* c);
  BlobBatch& OutgoingFor(WorkerInfo* w);
  void SendOutgoing();
  void RetryWaiting(size_t* free_credit);
  void FlushOutboxes();
  Outbox& OutboxFor(const std::string& route);
  void SendTo(zmq::socket_t& socket, std::string_view identity, Bytes body);
  void RefuseFrame(zmq::socket_t& socket, std::string_view identity,
                   wire::ErrorCode code, const std::string& why,
                   const char* side);
  void Timers(int64_t now);
  // This broker's record for the registry (queue/registry.h).
  nlohmann::json RegistryRecord() const;
  void HandBackEverything();
  void Snapshot();

  BrokerOptions options_;
  std::unique_ptr<zmq::context_t> own_context_;
  zmq::context_t* context_;
  zmq::socket_t frontend_;
  zmq::socket_t backend_;
  std::string frontend_ep_, backend_ep_;

  std::unique_ptr<JobQueue> queue_;
  std::unique_ptr<Balancer> balancer_;
  WorkerTable workers_;
  // Nodes from a recycling pool: no malloc per dispatched job.
  std::pmr::unsynchronized_pool_resource inflight_pool_;
  std::pmr::unordered_map<JobId, InFlight, JobIdHash> inflight_{
      &inflight_pool_};
  std::unordered_map<std::string, Outbox> outboxes_;
  // Worker deaths per job while it ran (ReleaseWorkerJobs).
  std::unordered_map<JobId, uint32_t, JobIdHash> deaths_;
  std::vector<std::string> dirty_;

  Writer writer_;
  std::vector<NewJob> new_jobs_;
  // Dispatch state (see Dispatch).
  uint64_t roster_ = 1;  // bumped when a worker joins, leaves or re-registers
  uint64_t tried_ = 0;   // roster_ when unplaceable_ was last looked at
  uint64_t turn_ = 0;    // Dispatch calls (slot snapshots are per turn)
  std::map<std::string, Candidates, std::less<>> candidates_;  // by selector
  Candidates unlabeled_;          // jobs with no tags or tolerations
  std::deque<Held> waiting_;      // a worker may take them; none can now
  std::deque<Held> unplaceable_;  // no live worker may take them
  std::vector<Outgoing> outgoing_;
  size_t outgoing_used_ = 0;
  uint64_t out_epoch_ = 1;  // bumped by SendOutgoing
  // Bumped whenever a worker's credit grows; jobs waiting for a busy worker
  // are tried again only then (RetryWaiting).
  uint64_t credit_epoch_ = 0, waiting_tried_ = 0;
  std::vector<JobId> ids_;
  std::mt19937_64 rng_;

  BrokerCounters c_;
  mutable std::mutex snapshot_mu_;
  BrokerCounters snapshot_;

  const JobId instance_ = JobId::Random();  // this process's incarnation
  std::atomic<bool> stop_{false};
  bool draining_ = false;
  int64_t drain_deadline_ms_ = 0;
  int64_t next_heartbeat_ms_ = 0;
  std::string advertised_frontend_, advertised_backend_;
  int64_t started_ms_ = 0;
  int64_t log_window_ms_ = 0;
  int logs_in_window_ = 0;
};

// ---------------------------------------------------------------- frontend

void Broker::Impl::ReadFrontend() {
  RouterMessage msg;
  for (int i = 0; i < kReadBudget && RecvRouter(frontend_, &msg); ++i) {
    ++c_.frontend_in;
    std::string route(msg.identity_view());
    if (msg.framing_error) {
      RefuseFrame(frontend_, route, wire::ErrorCode::BadFrame,
                  msg.framing_error, "frontend");
      continue;
    }
    // The frame moves into a shared owner first: queued jobs point into it,
    // and a moved zmq message may change its data pointer.
    auto frame = std::make_shared<zmq::message_t>(std::move(msg.body));
    Decoded d =
        Decode({frame->data<uint8_t>(), frame->size()}, options_.limits);
    if (!d.ok()) {
      RefuseFrame(frontend_, route, d.error, d.message, "frontend");
      continue;
    }
    switch (d.kind()) {
      case wire::Body::Submit:
        OnSubmit(route, frame, d.envelope->body_as_Submit());
        break;
      case wire::Body::Heartbeat:
        SendTo(frontend_, route, writer_.EncodeHeartbeat(instance_));
        break;
      case wire::Body::Cancel:
        OnCancel(route, d.envelope->body_as_Cancel());
        break;
      case wire::Body::StatsRequest:
        SendTo(frontend_, route, writer_.EncodeStats(StatsJson()));
        break;
      default:
        ++c_.unexpected;
        RefuseFrame(frontend_, route, wire::ErrorCode::Unexpected,
                    std::string("message kind ") +
                        wire::EnumNameBody(d.kind()) +
                        " is not accepted on the frontend",
                    "frontend");
    }
  }
}

void Broker::Impl::OnSubmit(const std::string& route,
                            std::shared_ptr<zmq::message_t> frame,
                            const wire::Submit* submit) {
  const auto* jobs = submit->jobs();
  c_.submitted += jobs->size();
  if (draining_ || !queue_->available()) {
    Outbox& out = OutboxFor(route);
    for (const auto* blob : *jobs) {
      out.unavailable.push_back(FromWire(blob->data_nested_root()->id()));
    }
    (draining_ ? c_.refused : c_.unavailable) += jobs->size();
    return;
  }
  new_jobs_.clear();
  for (const auto* blob : *jobs) {
    const wire::Job* job = blob->data_nested_root();
    std::string why;
    auto code = CheckJob(*job, options_.limits, &why);
    std::vector<std::string_view> tags, tolerations;
    if (code == wire::ErrorCode::None &&
        SelectorOf(*job, &tags, &tolerations)) {
      if (Status st = ValidateSelector(tags, tolerations); !st.ok()) {
        code = wire::ErrorCode::BadBatch;
        why = "invalid selector: " + st.message();
      }
    }
    if (code == wire::ErrorCode::None && queue_->durable() && job->queue() &&
        job->queue()->size() &&
        job->queue()->string_view() != options_.redis.queue) {
      code = wire::ErrorCode::NotFound;
      why = "this broker serves queue '" + options_.redis.queue + "', not '" +
            job->queue()->str() + "'";
    }
    if (code != wire::ErrorCode::None) {
      // One bad job is refused alone, by id, so the sender can give up on it.
      JobId bad = FromWire(job->id());
      ++c_.invalid;
      SendTo(frontend_, route, writer_.EncodeError(code, why, {&bad, 1}));
      continue;
    }
    NewJob j;
    j.id = FromWire(job->id());
    j.blob.owner = frame;
    j.blob.bytes = {blob->data()->data(), blob->data()->size()};
    j.priority = job->priority();
    j.not_before_ms = job->not_before_ms();
    j.route = route;
    j.resend = SendsOf(*blob) > 1;
    new_jobs_.push_back(std::move(j));
  }
  if (new_jobs_.empty()) return;
  // The queue may answer later (Redis): the callback owns what it reads.
  std::vector<JobId> ids;
  ids.reserve(new_jobs_.size());
  for (const NewJob& j : new_jobs_) ids.push_back(j.id);
  queue_->Push(new_jobs_, [this, route, ids = std::move(ids)](
                              Status s, std::span<const PushOutcome> outcomes) {
    Outbox& out = OutboxFor(route);
    for (size_t i = 0; i < ids.size(); ++i) {
      const JobId& id = ids[i];
      if (!s.ok()) {
        ++c_.unavailable;
        out.unavailable.push_back(id);
        continue;
      }
      switch (outcomes[i]) {
        case PushOutcome::kAccepted:
          ++c_.accepted;
          out.accepted.push_back(id);
          break;
        case PushOutcome::kDuplicate:
          ++c_.duplicates;
          out.accepted.push_back(id);
          break;
        case PushOutcome::kBusy:
          ++c_.busy;
          out.busy.push_back(id);
          break;
      }
    }
  });
}

void Broker::Impl::OnCancel(const std::string& route,
                            const wire::Cancel* cancel) {
  ids_.clear();
  for (const auto* id : *cancel->ids()) ids_.push_back(FromWire(*id));
  std::vector<JobId> removed;
  queue_->Cancel(ids_, &removed);
  Outbox& out = OutboxFor(route);
  for (const JobId& id : removed) {
    out.results.AddResult(
        writer_.EncodeResult(id, wire::ResultStatus::Cancelled, {},
                             "cancelled before it started", 0, 0));
  }
}

// ----------------------------------------------------------------- backend

void Broker::Impl::ReadBackend() {
  RouterMessage msg;
  int64_t now = MonoMillis();
  for (int i = 0; i < kReadBudget && RecvRouter(backend_, &msg); ++i) {
    ++c_.backend_in;
    std::string_view identity = msg.identity_view();
    WorkerInfo* w = workers_.Find(identity);
    if (w) workers_.Touch(w, now);  // any message counts as a heartbeat
    if (msg.framing_error) {
      RefuseFrame(backend_, identity, wire::ErrorCode::BadFrame,
                  msg.framing_error, "backend");
      continue;
    }
    Decoded d = Decode(msg.bytes(), options_.limits);
    if (!d.ok()) {
      RefuseFrame(backend_, identity, d.error, d.message, "backend");
      continue;
    }
    switch (d.kind()) {
      case wire::Body::Ready:
        OnReady(identity, d.envelope->body_as_Ready());
        break;
      case wire::Body::Results:
        // Results are routed even from a worker we do not know (it may have
        // outlived its registration); a result is never dropped for
        // bookkeeping reasons.
        OnResults(w, d.envelope->body_as_Results());
        if (!w)
          SendTo(backend_, identity,
                 writer_.EncodeDisconnect("unknown worker"));
        break;
      case wire::Body::Credit:
        if (w) {
          const auto* credit = d.envelope->body_as_Credit();
          w->credit += credit->credit();
          if (credit->credit()) ++credit_epoch_;
          w->credit -= std::min(w->credit, credit->withdraw());
        } else {
          SendTo(backend_, identity,
                 writer_.EncodeDisconnect("unknown worker"));
        }
        break;
      case wire::Body::Heartbeat:
        if (!w)
          SendTo(backend_, identity,
                 writer_.EncodeDisconnect("unknown worker"));
        break;
      case wire::Body::Disconnect:
        if (w) {
          spdlog::info("worker {} left: {}", w->name,
                       AsString(d.envelope->body_as_Disconnect()->reason()));
          uint64_t serial = w->serial;
          workers_.Remove(identity);
          ++roster_;
          ReleaseWorkerJobs(serial, /*died=*/false);
        }
        break;
      default:
        ++c_.unexpected;
        RefuseFrame(backend_, identity, wire::ErrorCode::Unexpected,
                    std::string("message kind ") +
                        wire::EnumNameBody(d.kind()) +
                        " is not accepted on the backend",
                    "backend");
    }
  }
}

void Broker::Impl::OnReady(std::string_view identity,
                           const wire::Ready* ready) {
  WorkerInfo* w = workers_.Upsert(identity, MonoMillis());
  bool fresh = w->name.empty();
  w->credit = ready->credit();
  ++credit_epoch_;
  w->capacity = std::max<uint32_t>(1, ready->capacity());
  // The name goes into stats and the registry record: bounded.
  w->name = ready->name() && ready->name()->size()
                ? ready->name()->str().substr(0, kMaxKeyBytes)
                : std::string("worker");
  // At most `limit` + 1 entries: one too many is enough for MakeLabels to
  // refuse the list.
  auto copy = [](const auto* from, std::vector<std::string>* to, size_t limit) {
    to->clear();
    if (!from) return;
    for (const auto* t : *from) {
      if (to->size() > limit) break;
      to->push_back(t->str());
    }
  };
  copy(ready->tasks(), &w->tasks, SIZE_MAX);
  copy(ready->tags(), &w->tags, kMaxPlacementEntries);
  copy(ready->taints(), &w->taints, kMaxPlacementEntries);
  w->key = WorkerKey(w->name);
  ++roster_;
  std::vector<std::string_view> tags(w->tags.begin(), w->tags.end()),
      taints(w->taints.begin(), w->taints.end());
  auto labels = MakeLabels(tags, taints);
  w->labels_ok = labels.ok();
  if (labels.ok()) {
    w->labels = std::move(labels).value();
  } else {
    // Taints it cannot state must not be ignored: give it nothing (and
    // claim nothing for its credit: Dispatch).
    spdlog::warn("worker {}: {}; it gets no jobs", w->name,
                 labels.status().message());
    w->tags.clear();
    w->taints.clear();
  }
  if (fresh) {
    spdlog::info("worker {} ready: capacity {}, credit {}", w->name,
                 w->capacity, w->credit);
  }
}

void Broker::Impl::OnResults(WorkerInfo* sender, const wire::Results* results) {
  int64_t now_unix = 0;
  for (const auto* blob : *results->results()) {
    const wire::JobResult* r = blob->data_nested_root();
    JobId id = FromWire(r->id());
    auto it = inflight_.find(id);
    if (it == inflight_.end()) {
      // Finished already (a redelivered job's second result) or unknown.
      ++c_.results_unroutable;
      continue;
    }
    InFlight& f = it->second;
    if (!deaths_.empty()) deaths_.erase(id);
    WorkerInfo* holder = (sender && sender->serial == f.worker)
                             ? sender
                             : workers_.FindSerial(f.worker);
    if (holder) {
      ++holder->credit;
      ++credit_epoch_;
      if (holder->outstanding) --holder->outstanding;
    }
    Bytes result{blob->data()->data(), blob->data()->size()};
    std::optional<int64_t> retry_at;
    if (r->status() == wire::ResultStatus::Failed) {
      if (!now_unix) now_unix = UnixMillis();
      retry_at =
          options_.retry.RetryAt(f.attempt, f.max_attempts, now_unix, rng_());
    }
    if (retry_at) {
      queue_->Fail(id, *retry_at, result);
      ++c_.retried;
      inflight_.erase(it);
      continue;
    }
    // The producer hears the result now; a job accepted by another broker
    // has an empty route here and the queue forwards its result there.
    if (!f.route.empty()) RouteResult(f.route, result);
    if (r->status() == wire::ResultStatus::Ok) {
      ++c_.completed;
      queue_->Complete(id, result);
    } else {
      ++c_.failed;
      // Out of attempts (or not runnable): a durable queue keeps it as a
      // dead letter; an expired or cancelled job simply ends.
      const bool dead = r->status() == wire::ResultStatus::Failed ||
                        r->status() == wire::ResultStatus::UnknownTask;
      if (dead) {
        queue_->Fail(id, 0, result);
      } else {
        queue_->Complete(id, result);
      }
    }
    inflight_.erase(it);
  }
  // Slots the worker moves to another broker: not credit here any more.
  if (sender && results->withheld()) {
    sender->credit -= std::min(sender->credit, results->withheld());
  }
}

void Broker::Impl::RouteResult(const std::string& route, Bytes result) {
  Outbox& out = OutboxFor(route);
  if (out.results.size() >= options_.limits.max_batch ||
      out.results.bytes() + result.size() >
          options_.limits.max_frame_bytes / 2) {
    SendTo(frontend_, route, out.results.FinishResults());
    out.results.Clear();
  }
  out.results.AddResult(result);
}

void Broker::Impl::ReleaseWorkerJobs(uint64_t serial, bool died) {
  ids_.clear();
  std::vector<std::pair<JobId, InFlight>> poisoned;
  for (auto it = inflight_.begin(); it != inflight_.end();) {
    if (it->second.worker != serial) {
      ++it;
      continue;
    }
    if (died && options_.retry.max_worker_deaths > 0 &&
        options_.retry.OutOfWorkerDeaths(++deaths_[it->first])) {
      poisoned.emplace_back(it->first, std::move(it->second));
    } else {
      ids_.push_back(it->first);
    }
    it = inflight_.erase(it);
  }
  if (!ids_.empty()) {
    queue_->Release(ids_);
    c_.redispatched += ids_.size();
    spdlog::warn("{} in-flight jobs of a departed worker go back to the queue",
                 ids_.size());
  }
  for (auto& [id, f] : poisoned) {
    const std::string why = options_.retry.WorkerDeathsReason();
    spdlog::warn("job {}: {}", id.ToString(), why);
    Bytes result = writer_.EncodeResult(id, wire::ResultStatus::Failed, {}, why,
                                        f.attempt, 0);
    if (!f.route.empty()) RouteResult(f.route, result);
    queue_->Fail(id, 0, result);  // durable: a dead letter with the reason
    deaths_.erase(id);
    ++c_.failed;
    ++c_.poisoned;
  }
  // Bounded: entries of jobs finished at another broker are never erased.
  if (deaths_.size() > 100000) deaths_.clear();
}

// ---------------------------------------------------------------- outbound

// Dispatch: claims up to the free credit, then routes each job on its own.
// The candidates for a job are the live workers its selector admits
// (placement; cached per distinct selector and rebuilt when the roster
// changes); the balancer picks among them, or says the job must wait (no
// candidate has credit, or its affinity key's worker has none). Jobs go out
// in one Dispatch message per worker per claim. Jobs that must wait are held
// here (still leased in the queue) and tried again: those no live worker
// may take when the roster changes, the others whenever credit comes back.
void Broker::Impl::Dispatch() {
  int64_t now_unix = UnixMillis();
  size_t free_credit = 0;
  for (const WorkerInfo& w : workers_.workers()) {
    if (w.labels_ok) free_credit += w.credit;  // others get nothing
  }
  queue_->Want(draining_ && queue_->durable() ? 0 : free_credit);
  if (free_credit == 0) return;
  ++turn_;
  if ((!waiting_.empty() && credit_epoch_ != waiting_tried_) ||
      (!unplaceable_.empty() && roster_ != tried_)) {
    waiting_tried_ = credit_epoch_;
    RetryWaiting(&free_credit);
  }
  while (free_credit > 0 && waiting_.size() + unplaceable_.size() < kMaxHeld &&
         queue_->HasReady(now_unix)) {
    const size_t n = std::min(free_credit, options_.max_dispatch_batch);
    size_t got = 0, sent = 0;
    queue_->Claim(n, [&](std::span<const ClaimedJob> jobs) {
      got = jobs.size();
      for (const ClaimedJob& j : jobs) {
        const std::string_view route = j.local ? j.route : "";
        const Placed placed = Place(j.id, j.blob, j.attempt, route);
        if (placed == Placed::kSent) {
          ++sent;
        } else if (placed != Placed::kFailed) {
          Hold(placed,
               Held{j.id,
                    std::string(reinterpret_cast<const char*>(j.blob.data()),
                                j.blob.size()),
                    j.attempt, std::string(route)});
        }
      }
    });
    SendOutgoing();
    free_credit -= std::min(free_credit, sent);
    if (got == 0 || sent == 0) break;
  }
}

void Broker::Impl::Hold(Placed placed, Held h) {
  (placed == Placed::kNoWorker ? unplaceable_ : waiting_)
      .push_back(std::move(h));
}

Broker::Impl::Placed Broker::Impl::Place(const JobId& id, Bytes blob,
                                         uint16_t attempt,
                                         std::string_view route) {
  const auto* job = flatbuffers::GetRoot<wire::Job>(blob.data());
  Candidates* c = CandidatesFor(*job);
  if (c == nullptr) {
    // Submits are checked (OnSubmit); this job was queued by a broker that
    // did not check selectors. No worker can ever take it: fail it.
    const std::string why = "invalid placement selector (tags/tolerations)";
    spdlog::warn("job {}: {}; failed", id.ToString(), why);
    Bytes result = writer_.EncodeResult(id, wire::ResultStatus::Failed, {}, why,
                                        attempt, 0);
    if (!route.empty()) RouteResult(std::string(route), result);
    queue_->Fail(id, 0, result);
    ++c_.failed;
    return Placed::kFailed;
  }
  const uint64_t affinity =
      job->affinity_key() ? AffinityHash(job->affinity_key()->string_view())
                          : 0;
  if (c->workers.empty()) return Placed::kNoWorker;
  size_t pick = Balancer::kWait;
  {
    for (int attempt_pick = 0; attempt_pick < 2; ++attempt_pick) {
      pick = balancer_->Pick(c->slots, affinity);
      if (pick == Balancer::kWait || c->workers[pick]->credit > 0) break;
      // Another selector's dispatch used this worker's credit this turn.
      RefreshSlots(c);
      pick = Balancer::kWait;
    }
  }
  if (pick == Balancer::kWait) return Placed::kWait;
  WorkerInfo* w = c->workers[pick];
  WorkerSlot& slot = c->slots[pick];
  --slot.credit;
  ++slot.outstanding;
  --w->credit;
  ++w->outstanding;
  BlobBatch& batch = OutgoingFor(w);
  batch.AddJob(blob, attempt);
  InFlight& f = inflight_[id];
  f.worker = w->serial;
  f.route.assign(route);
  f.attempt = attempt;
  f.max_attempts = std::max<uint16_t>(1, job->max_attempts());
  ++c_.dispatched;
  if (batch.size() >= options_.max_dispatch_batch) SendOutgoing();
  return Placed::kSent;
}

Broker::Impl::Candidates* Broker::Impl::CandidatesFor(const wire::Job& job) {
  std::vector<std::string_view> tags, tolerations;
  Candidates* found = &unlabeled_;  // the common case: no lookup
  if (SelectorOf(job, &tags, &tolerations)) {
    const std::string key = SelectorKey(tags, tolerations);
    auto it = candidates_.find(key);
    if (it == candidates_.end()) {
      auto selector = MakeSelector(tags, tolerations);
      if (!selector.ok()) return nullptr;  // see Place
      if (candidates_.size() >= kMaxSelectors) candidates_.clear();
      it = candidates_.emplace(key, Candidates()).first;
      it->second.selector = std::move(selector).value();
    }
    found = &it->second;
  }
  Candidates& c = *found;
  if (c.roster != roster_) {
    c.roster = roster_;
    c.workers.clear();
    for (WorkerInfo& w : workers_.workers()) {
      if (w.labels_ok && Admits(w.labels, c.selector)) {
        c.workers.push_back(&w);
      }
    }
    c.turn = 0;
  }
  if (c.turn != turn_) RefreshSlots(&c);
  return &c;
}

void Broker::Impl::RefreshSlots(Candidates* c) {
  c->turn = turn_;
  c->slots.resize(c->workers.size());
  for (size_t i = 0; i < c->workers.size(); ++i) {
    const WorkerInfo& w = *c->workers[i];
    c->slots[i] = WorkerSlot{w.credit, w.outstanding, w.capacity, w.key};
  }
}

BlobBatch& Broker::Impl::OutgoingFor(WorkerInfo* w) {
  if (w->out_epoch == out_epoch_) return *outgoing_[w->out_index].batch;
  if (outgoing_used_ == outgoing_.size()) {
    outgoing_.push_back({nullptr, std::make_unique<BlobBatch>()});
  }
  w->out_epoch = out_epoch_;
  w->out_index = outgoing_used_;
  Outgoing& o = outgoing_[outgoing_used_++];
  o.worker = w;
  o.batch->Clear();
  return *o.batch;
}

void Broker::Impl::SendOutgoing() {
  for (size_t i = 0; i < outgoing_used_; ++i) {
    Outgoing& o = outgoing_[i];
    if (o.batch->empty()) continue;
    ++c_.dispatch_out;
    // A failed send means the worker is gone; expiry releases its jobs.
    SendTo(backend_, o.worker->identity, o.batch->FinishDispatch());
    o.batch->Clear();
  }
  outgoing_used_ = 0;
  ++out_epoch_;
}

void Broker::Impl::RetryWaiting(size_t* free_credit) {
  // Each held job is placed again and lands where it now belongs.
  auto retry = [&](std::deque<Held>& held) {
    for (size_t n = held.size(); n > 0 && *free_credit > 0; --n) {
      Held h = std::move(held.front());
      held.pop_front();
      const Placed placed = Place(h.id, AsBytes(h.blob), h.attempt, h.route);
      if (placed == Placed::kSent) {
        --*free_credit;
      } else if (placed != Placed::kFailed) {
        Hold(placed, std::move(h));
      }
    }
  };
  if (roster_ != tried_) {
    tried_ = roster_;
    retry(unplaceable_);  // some may have a worker now
  }
  retry(waiting_);
  SendOutgoing();
}

Outbox& Broker::Impl::OutboxFor(const std::string& route) {
  Outbox& out = outboxes_[route];
  if (!out.dirty) {
    out.dirty = true;
    dirty_.push_back(route);
  }
  return out;
}

void Broker::Impl::FlushOutboxes() {
  for (const std::string& route : dirty_) {
    Outbox& out = outboxes_[route];
    out.dirty = false;
    auto send_ids = [&](std::vector<JobId>& ids, auto encode) {
      for (size_t i = 0; i < ids.size(); i += options_.limits.max_batch) {
        size_t n = std::min(options_.limits.max_batch, ids.size() - i);
        SendTo(frontend_, route,
               encode(std::span<const JobId>(ids.data() + i, n)));
      }
      ids.clear();
    };
    if (!out.results.empty() && !out.accepted.empty() &&
        out.accepted.size() <= options_.limits.max_batch) {
      // Acks ride with the results: one message instead of two.
      SendTo(frontend_, route, out.results.FinishResults(out.accepted));
      out.results.Clear();
      out.accepted.clear();
    }
    send_ids(out.accepted, [&](std::span<const JobId> s) {
      return writer_.EncodeAccepted(s);
    });
    send_ids(out.busy, [&](std::span<const JobId> s) {
      return writer_.EncodeError(wire::ErrorCode::Busy,
                                 "queue is full; retry later", s,
                                 options_.busy_retry_after_ms);
    });
    send_ids(out.unavailable, [&](std::span<const JobId> s) {
      return writer_.EncodeError(
          wire::ErrorCode::Unavailable,
          "broker is draining or its durable store is unavailable; resubmit", s,
          0);
    });
    if (!out.results.empty()) {
      SendTo(frontend_, route, out.results.FinishResults());
      out.results.Clear();
    }
  }
  dirty_.clear();
  if (outboxes_.size() > 1024) outboxes_.clear();  // forget idle producers
}

void Broker::Impl::SendTo(zmq::socket_t& socket, std::string_view identity,
                          Bytes body) {
  if (&socket == &frontend_) ++c_.frontend_out;
  Status s = SendRouter(socket, identity, body);
  if (!s.ok()) {
    ++c_.sends_failed;
    spdlog::debug("send failed: {}", s.ToString());
  }
}

void Broker::Impl::RefuseFrame(zmq::socket_t& socket, std::string_view identity,
                               wire::ErrorCode code, const std::string& why,
                               const char* side) {
  ++c_.bad_frames;
  int64_t now = MonoMillis();
  if (now - log_window_ms_ >= 1000) {
    log_window_ms_ = now;
    logs_in_window_ = 0;
  }
  if (++logs_in_window_ <= kBadInputLogsPerSecond) {
    spdlog::warn("refused a message on the {}: {} ({})", side, why,
                 wire::EnumNameErrorCode(code));
  }
  SendTo(socket, identity, writer_.EncodeError(code, why));
}

// ------------------------------------------------------------------ timers

void Broker::Impl::Timers(int64_t now) {
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
  if (queue_->durable()) queue_->Advertise(RegistryRecord());
}

nlohmann::json Broker::Impl::RegistryRecord() const {
  nlohmann::json ws = nlohmann::json::array();
  for (const WorkerInfo& w : workers_.workers()) {
    ws.push_back({{"name", w.name},
                  {"capacity", w.capacity},
                  {"credit", w.credit},
                  {"outstanding", w.outstanding},
                  {"tags", w.tags},
                  {"taints", w.taints}});
  }
  auto st = queue_->Stats();
  return {{"frontend", advertised_frontend_},
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

void Broker::Impl::Snapshot() {
  std::lock_guard<std::mutex> lock(snapshot_mu_);
  snapshot_ = c_;
}

Status Broker::Impl::Run() {
  // Two sockets, then the queue's connections (Redis fds) if it has any.
  std::vector<zmq::pollitem_t> items(2 + kMaxQueuePollItems);
  items[0] = {backend_.handle(), 0, ZMQ_POLLIN, 0};
  items[1] = {frontend_.handle(), 0, ZMQ_POLLIN, 0};
  next_heartbeat_ms_ = MonoMillis() + options_.heartbeat_ms;
  spdlog::info("broker serving: frontend {} backend {}", frontend_ep_,
               backend_ep_);
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
      queue_->BeginDrain();
      queue_->Advertise(RegistryRecord());  // producers and workers move on
    }
    if (draining_) {
      if (queue_->Drained() && inflight_.empty()) break;
      if (now >= drain_deadline_ms_) {
        HandBackEverything();
        break;
      }
    }
    int64_t timeout = std::clamp<int64_t>(next_heartbeat_ms_ - now, 0, 100);
    const int queue_items =
        queue_->PollItems(items.data() + 2, kMaxQueuePollItems);
    try {
      zmq::poll(items.data(), static_cast<size_t>(2 + queue_items),
                std::chrono::milliseconds(timeout));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) return Status::IoError(e.what());
      for (auto& item : items) item.revents = 0;
    }
    if (items[0].revents & ZMQ_POLLIN) ReadBackend();
    if (items[1].revents & ZMQ_POLLIN) ReadFrontend();
    queue_->OnPollEvents(items.data() + 2, queue_items);
    Dispatch();
    queue_->Tick(MonoMillis());
    FlushOutboxes();
    Timers(MonoMillis());
    Snapshot();
  }
  Snapshot();
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
  for (const WorkerInfo& w : workers_.workers()) {
    ws.push_back({{"name", w.name},
                  {"credit", w.credit},
                  {"outstanding", w.outstanding},
                  {"capacity", w.capacity}});
  }
  j["workers"] = ws;
  j["counters"] = {{"submitted", c_.submitted},
                   {"accepted", c_.accepted},
                   {"duplicates", c_.duplicates},
                   {"busy", c_.busy},
                   {"refused", c_.refused},
                   {"invalid", c_.invalid},
                   {"dispatched", c_.dispatched},
                   {"completed", c_.completed},
                   {"failed", c_.failed},
                   {"retried", c_.retried},
                   {"redispatched", c_.redispatched},
                   {"results_unroutable", c_.results_unroutable},
                   {"sends_failed", c_.sends_failed},
                   {"bad_frames", c_.bad_frames},
                   {"unexpected", c_.unexpected},
                   {"workers_expired", c_.workers_expired},
                   {"unavailable", c_.unavailable},
                   {"poisoned", c_.poisoned}};
  j["messages"] = {{"frontend_in", c_.frontend_in},
                   {"backend_in", c_.backend_in},
                   {"dispatch_out", c_.dispatch_out},
                   {"frontend_out", c_.frontend_out}};
  j["waiting"] = {{"no_worker", unplaceable_.size()},
                  {"worker_busy", waiting_.size()}};
  j["draining"] = draining_;
  queue_->DescribeStats(&j);
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

}  // namespace yard
