// The worker's I/O thread, brokers: sockets, Ready and other sends, reading
// and handling what brokers send (Dispatch hands jobs to the runners), the
// broker set, heartbeats and reconnects.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "worker/worker_impl.h"

namespace yard {
namespace {

// Messages read from one socket per loop turn (fairness between brokers).
constexpr size_t kMaxReadsPerTurn = 256;

std::string Suppressed(uint64_t n) {
  return n ? " (" + std::to_string(n) + " similar lines suppressed)" : "";
}

}  // namespace

Status Worker::Impl::OpenSocket(Broker& b) {
  poll_items_dirty_ = true;
  return b.Open(*context_, options_.limits, now_us(), options_.curve);
}

void Worker::Impl::SendReady(Broker& b) {
  // A new registration: the broker forgets whatever credit it had from us.
  ++b.generation;
  b.credit = 0;
  ReadyInfo info;
  info.credit =
      draining_ ? 0
                : static_cast<uint32_t>(std::max<int64_t>(0, b.share - b.held));
  info.capacity = static_cast<uint32_t>(concurrency_);
  info.tasks = task_names_;
  info.tags = options_.tags;
  info.taints = options_.taints;
  info.name = options_.name;
  if (Send(b, writer_.EncodeReady(info), "Ready")) {
    b.credit = info.credit;
    b.last_ready_ms = now_ms_;
  }
}

bool Worker::Impl::Send(Broker& b, Bytes message, const char* what) {
  return Sent(b, b.Send(message), what);
}

bool Worker::Impl::Sent(Broker& b, const Status& st, const char* what) {
  if (st.ok()) return true;
  uint64_t suppressed = 0;
  if (send_log_.Allow(now_ms_, &suppressed)) {
    spdlog::warn("cannot send {} to broker {}: {}{}", what, b.endpoint(),
                 st.ToString(), Suppressed(suppressed));
  }
  return false;
}

void Worker::Impl::RebuildPollItems() {
  poll_items_.clear();
  poll_items_.push_back(zmq_pollitem_t{nullptr, wake_fd_, ZMQ_POLLIN, 0});
  for (auto& b : brokers_) {
    // A broker without a socket (it could not be reopened) gets an inert item.
    poll_items_.push_back(
        b.socket() ? zmq_pollitem_t{b.socket()->handle(), 0, ZMQ_POLLIN, 0}
                   : zmq_pollitem_t{nullptr, -1, 0, 0});
  }
  poll_items_dirty_ = false;
}

void Worker::Impl::ReadBroker(Broker& b) {
  for (size_t i = 0; i < kMaxReadsPerTurn; ++i) {
    DealerMessage msg;
    try {
      if (!RecvDealer(*b.socket(), &msg)) return;
    } catch (const zmq::error_t& e) {
      spdlog::warn("receive from broker {} failed: {}", b.endpoint(), e.what());
      return;
    }
    // Any message, even a malformed one, shows the broker is alive.
    b.Heard(now_us());
    if (msg.framing_error != nullptr) {
      bad_frames_.fetch_add(1, std::memory_order_relaxed);
      uint64_t suppressed = 0;
      if (frame_log_.Allow(now_ms_, &suppressed)) {
        spdlog::warn("bad frame from broker {}: {}{}", b.endpoint(),
                     msg.framing_error, Suppressed(suppressed));
      }
      continue;
    }
    HandleFrame(b, std::move(msg.body));
  }
}

void Worker::Impl::HandleFrame(Broker& b, zmq::message_t frame) {
  Decoded d =
      Decode(Bytes(frame.data<uint8_t>(), frame.size()), options_.limits);
  uint64_t suppressed = 0;
  if (!d.ok()) {
    bad_frames_.fetch_add(1, std::memory_order_relaxed);
    if (frame_log_.Allow(now_ms_, &suppressed)) {
      spdlog::warn("bad frame from broker {}: {} ({}){}", b.endpoint(),
                   wire::EnumNameErrorCode(d.error), d.message,
                   Suppressed(suppressed));
    }
    return;
  }
  switch (d.kind()) {
    case wire::Body::Dispatch:
      OnDispatch(b, std::move(frame));
      return;
    case wire::Body::Heartbeat:
      return;
    case wire::Body::Cancel:
      OnCancel(b, d.envelope->body_as_Cancel());
      return;
    case wire::Body::Disconnect: {
      const auto* disconnect = d.envelope->body_as_Disconnect();
      if (draining_) return;
      // A broker that lost us answers every message we sent with a
      // Disconnect; register once per heartbeat interval, not once per
      // answer. If it still does not know us, the answer to our next message
      // after the interval brings us back here.
      if (b.last_ready_ms != 0 &&
          now_ms_ - b.last_ready_ms < options_.heartbeat_ms) {
        spdlog::debug("broker {}: Disconnect right after Ready; ignored",
                      b.endpoint());
        return;
      }
      spdlog::info(
          "broker {} does not know this worker ({}); registering again",
          b.endpoint(), AsString(disconnect->reason()));
      SendReady(b);
      return;
    }
    case wire::Body::Error: {
      const auto* error = d.envelope->body_as_Error();
      if (protocol_log_.Allow(now_ms_, &suppressed)) {
        spdlog::warn("broker {} reports an error: {} {}{}", b.endpoint(),
                     wire::EnumNameErrorCode(error->code()),
                     AsString(error->message()), Suppressed(suppressed));
      }
      return;
    }
    default:
      unexpected_.fetch_add(1, std::memory_order_relaxed);
      if (protocol_log_.Allow(now_ms_, &suppressed)) {
        spdlog::warn("unexpected {} message from broker {}; ignored{}",
                     wire::EnumNameBody(d.kind()), b.endpoint(),
                     Suppressed(suppressed));
      }
      return;
  }
}

void Worker::Impl::OnDispatch(Broker& b, zmq::message_t frame) {
  auto batch = std::make_unique<Batch>();
  batch->frame = std::move(frame);
  // Decode verified these bytes; re-derive the root after the move (a very
  // small message's bytes live inside the message_t itself).
  const auto* env = flatbuffers::GetRoot<wire::Envelope>(batch->frame.data());
  const auto* blobs = env->body_as_Dispatch()->jobs();
  const size_t n = blobs->size();
  jobs_received_.fetch_add(n, std::memory_order_relaxed);
  ++dispatch_messages_;
  if (draining_) {
    // Not started: the broker puts them back in its queue when it gets our
    // Disconnect at the end of the drain.
    spdlog::debug("draining: not starting {} jobs from broker {}", n,
                  b.endpoint());
    return;
  }
  const auto count = static_cast<int64_t>(n);
  if (count > b.credit && count - b.credit <= b.withdraw_grace) {
    // It used credit we withdrew before the withdraw reached it.
    b.withdraw_grace -= count - b.credit;
    b.credit = 0;
  } else if (count > b.credit) {
    credit_violations_.fetch_add(static_cast<uint64_t>(count - b.credit),
                                 std::memory_order_relaxed);
    uint64_t suppressed = 0;
    if (protocol_log_.Allow(now_ms_, &suppressed)) {
      spdlog::warn(
          "broker {} dispatched {} jobs with only {} credit; running them "
          "anyway{}",
          b.endpoint(), count, b.credit, Suppressed(suppressed));
    }
    b.credit = 0;
  } else {
    b.credit -= count;
  }
  if (b.credit == 0) b.last_starved_ms = now_ms_;
  b.held += count;
  outstanding_ += count;

  batch->jobs = std::vector<Job>(n);  // Job holds an atomic: not movable
  batch->unanswered = n;
  for (size_t i = 0; i < n; ++i) {
    Job& job = batch->jobs[i];
    job.batch = batch.get();
    job.blob = blobs->Get(static_cast<flatbuffers::uoffset_t>(i));
    job.broker = b.index;
    job.generation = b.generation;
  }
  Batch* raw = batch.release();
  live_batches_.insert(raw);
  for (auto& job : raw->jobs) run_queue_.push(&job);
  WakeRunners(n);
}

void Worker::Impl::OnCancel(Broker& b, const wire::Cancel* cancel) {
  // Rare (a job past its run timeout): a scan of the jobs in hand costs
  // nothing on the dispatch path, unlike an index by id would.
  std::unordered_set<JobId, JobIdHash> ids;
  for (const auto* id : *cancel->ids()) ids.insert(FromWire(*id));
  size_t found = 0;
  for (Batch* batch : live_batches_) {
    for (Job& job : batch->jobs) {
      if (job.broker != b.index) continue;
      if (ids.count(FromWire(job.blob->data_nested_root()->id()))) {
        job.cancel.store(true, std::memory_order_relaxed);
        ++found;
      }
    }
  }
  spdlog::info("broker {} cancelled {} jobs ({} in hand)", b.endpoint(),
               ids.size(), found);
}

void Worker::Impl::ApplyBrokerSet() {
  std::vector<std::string> set;
  if (!new_set_.Take(&set)) return;
  MergeBrokerSet(
      brokers_, std::move(set), "", ValidateEndpoint,
      [](Broker& b) {
        spdlog::info("broker {} left the set ({} of its jobs in hand)",
                     b.endpoint(), b.held);
      },
      [](Broker&) {},  // registered below
      [this](const std::string& endpoint) {
        brokers_.emplace_back(endpoint, options_.heartbeat_ms * 1000,
                              static_cast<uint32_t>(brokers_.size()));
      });
  Rebalance();
  for (Broker& b : brokers_) {
    if (b.retired || b.socket()) continue;
    spdlog::info("broker {} joined: {} slots", b.endpoint(), b.share);
    if (Status st = OpenSocket(b); !st.ok()) {
      spdlog::warn("broker {}: {}", b.endpoint(), st.ToString());
      continue;
    }
    SendReady(b);
  }
  poll_items_dirty_ = true;
}

void Worker::Impl::Drop(Broker& b) {
  spdlog::info("broker {} dropped ({} results undeliverable)", b.endpoint(),
               b.held);
  if (b.socket()) {
    Send(b, writer_.EncodeDisconnect("left the set"), "Disconnect");
    b.Close(kCloseLingerMs);
  }
  // Its credit is gone with it (a rejoin registers afresh, and Ready bumps
  // the generation, so its old jobs' results return no credit).
  b.credit = 0;
  b.withdraw_grace = 0;
  poll_items_dirty_ = true;
}

void Worker::Impl::PublishLinks() {
  const int64_t now = now_us();
  int active = 0, connected = 0;
  for (auto& b : brokers_) {
    if (!b.retired) {
      ++active;
      connected += b.alive() && !b.Expired(now) ? 1 : 0;
    }
  }
  brokers_active_.store(active, std::memory_order_relaxed);
  brokers_connected_.store(connected, std::memory_order_relaxed);
  in_flight_.store(outstanding_, std::memory_order_relaxed);
  draining_seen_.store(draining_, std::memory_order_relaxed);
}

void Worker::Impl::Housekeeping() {
  const int64_t now = now_us();
  PublishLinks();
  for (auto& b : brokers_) {
    if (b.retired) {
      if (!b.socket()) continue;
      if (b.held == 0 || b.Expired(now)) {
        Drop(b);
      } else if (b.HeartbeatDue(now)) {
        // It still holds our jobs (a draining broker waits for them): keep
        // it from taking us for dead.
        Beat(b);
      }
      continue;
    }
    if (!draining_ && b.Expired(now)) {
      Reconnect(b);
    } else if (b.HeartbeatDue(now)) {
      Beat(b);
    }
    // A withdraw the broker has long since seen excuses nothing any more.
    if (now_ms_ - b.last_withdraw_ms > options_.heartbeat_ms) {
      b.withdraw_grace = 0;
    }
  }
}

void Worker::Impl::Beat(Broker& b) {
  Sent(b, b.Beat(writer_.EncodeHeartbeat(), now_us()), "Heartbeat");
}

void Worker::Impl::Reconnect(Broker& b) {
  spdlog::warn("broker {} silent for {} ms; reconnecting", b.endpoint(),
               (now_us() - b.last_heard_us()) / 1000);
  reconnects_.fetch_add(1, std::memory_order_relaxed);
  // A fresh socket (the old one closes with linger 0: the broker is
  // presumed gone).
  if (Status st = OpenSocket(b); !st.ok()) {
    // Keep the (unconnected) socket if there is one; retried after expiry.
    spdlog::error("reconnect to {} failed: {}", b.endpoint(), st.ToString());
    if (!b.socket() && st.code() != StatusCode::kNotFound) {
      // Could not even create a socket (context terminated?): stop serving.
      // (NotFound: no CURVE key known for this broker yet; retried.)
      stop_.store(true);
      return;
    }
  }
  SendReady(b);
}

}  // namespace yard
