// A real in-process Broker (memory mode) fed fuzzed frames on both of its
// ROUTER sockets. One broker lives for the whole fuzz process, so state
// builds up across inputs: registered workers, queued, delayed and
// in-flight jobs, outboxes.
//
// Input (fuzz/fuzz_input.h): messages whose selector picks the socket (bit
// 0: frontend or backend), the DEALER peer (bits 1-2, four per side) and
// the framing (bits 4-6, FramingOf). Peers on the backend play workers:
// they answer every Dispatch they get with Results (Ok, or Failed for odd
// ids, so retries run too).
//
// After each input every peer that sent something waits for the broker to
// have read it (a Heartbeat round trip on the frontend, a StatsRequest on
// the backend, which the broker refuses with Error{Unexpected}): a crash is
// then blamed on the input that caused it, and a broker that does not
// answer within kWaitMs is reported (abort). Every kWatchdogEvery inputs,
// and at exit, a separate producer checks the broker still answers. At
// exit the broker is stopped and its thread joined, so LeakSanitizer sees
// only real leaks.
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "broker/broker.h"
#include "fuzz/fuzz_input.h"
#include "fuzz/peer_util.h"

namespace yard::fuzz {
namespace {

constexpr int kPeers = 4;
constexpr int64_t kWaitMs = 5000;
constexpr uint64_t kWatchdogEvery = 256;
constexpr size_t kMaxMessages = 32;

class Harness {
 public:
  Harness();
  ~Harness();
  void RunInput(const uint8_t* data, size_t size);

 private:
  struct Peer {
    zmq::socket_t socket;
    int expected = 0;  // probe answers still to come
  };
  Peer MakePeer(const std::string& endpoint, const std::string& name);
  void Send(Peer& peer, uint8_t selector, std::string_view body);
  void Probe(Peer& peer, bool frontend, int extra);
  void AwaitProbes(const char* what);
  void Drain(Peer& peer, bool frontend);
  void AnswerDispatch(Peer& peer, const wire::Dispatch& dispatch);
  int Matching(std::string_view body, uint8_t selector, wire::Body kind) const;

  const Limits limits_ = FuzzLimits();
  zmq::context_t context_;
  std::unique_ptr<Broker> broker_;
  std::thread thread_;
  std::vector<Peer> front_, back_;
  std::vector<Peer> watchdog_;  // one producer that only sends heartbeats
  Writer writer_;
  BlobBatch results_;
  uint64_t inputs_ = 0;
};

Harness::Harness() {
  QuietLogging();
  BrokerOptions o;
  o.frontend = "inproc://fuzz-front";
  o.backend = "inproc://fuzz-back";
  o.context = &context_;
  // Workers that stay silent for a few inputs expire (3 intervals), so the
  // release and redispatch paths run as well.
  o.heartbeat_ms = 200;
  o.drain_timeout_ms = 100;
  o.max_queue = 2000;
  o.max_queue_bytes = 64 << 20;
  o.max_workers = 3;  // one backend peer too many: Busy
  o.retry.max_worker_deaths = 2;
  o.limits = limits_;
  auto b = Broker::Create(o);
  if (!b.ok()) Hung(b.status().ToString().c_str());
  broker_ = std::move(b).value();
  thread_ = std::thread([this] { (void)broker_->Run(); });
  for (int i = 0; i < kPeers; ++i) {
    front_.push_back(MakePeer(o.frontend, "f" + std::to_string(i)));
    back_.push_back(MakePeer(o.backend, "b" + std::to_string(i)));
  }
  watchdog_.push_back(MakePeer(o.frontend, "watchdog"));
}

Harness::~Harness() {
  Probe(watchdog_[0], /*frontend=*/true, 0);
  AwaitProbes("the broker stopped answering heartbeats (at exit)");
  broker_->Stop();
  thread_.join();
}

Harness::Peer Harness::MakePeer(const std::string& endpoint,
                                const std::string& name) {
  Peer p{zmq::socket_t(context_, zmq::socket_type::dealer)};
  ConfigureSocket(p.socket, limits_, 0);
  p.socket.set(zmq::sockopt::routing_id, name);
  if (!Connect(p.socket, endpoint).ok()) Hung("cannot connect a peer");
  return p;
}

void Harness::Send(Peer& peer, uint8_t selector, std::string_view body) {
  switch (FramingOf(selector)) {
    case Framing::kProper:
      (void)SendDealer(peer.socket, AsBytes(body));
      return;
    case Framing::kNoDelimiter:
      SendFrames(peer.socket, {body});
      return;
    case Framing::kExtraFrame:
      SendFrames(peer.socket, {"", body, "extra"});
      return;
  }
}

// How many replies of the probe's kind `body` itself will cause: a fuzzed
// Heartbeat (frontend) or StatsRequest (backend) looks like a probe.
int Harness::Matching(std::string_view body, uint8_t selector,
                      wire::Body kind) const {
  if (FramingOf(selector) != Framing::kProper) return 0;
  // Decode needs the 8-aligned start the broker's receive gives it.
  const std::string frame(body);
  Decoded d = Decode(AsBytes(frame), limits_);
  return d.ok() && d.kind() == kind ? 1 : 0;
}

void Harness::Probe(Peer& peer, bool frontend, int extra) {
  peer.expected += 1 + extra;
  if (frontend) {
    (void)SendDealer(peer.socket, writer_.EncodeHeartbeat());
  } else {
    (void)SendDealer(peer.socket, writer_.EncodeStatsRequest());
  }
}

void Harness::AnswerDispatch(Peer& peer, const wire::Dispatch& dispatch) {
  results_.Clear();
  for (const auto* blob : *dispatch.jobs()) {
    const JobId id = FromWire(blob->data_nested_root()->id());
    const auto status =
        id.lo % 2 ? wire::ResultStatus::Failed : wire::ResultStatus::Ok;
    results_.AddResult(writer_.EncodeResult(id, status, AsBytes("out"), "",
                                            blob->attempt(), 1));
  }
  (void)SendDealer(peer.socket, results_.FinishResults());
}

// Reads what the broker sent `peer`, counting probe answers.
void Harness::Drain(Peer& peer, bool frontend) {
  DealerMessage m;
  while (RecvDealer(peer.socket, &m)) {
    if (m.framing_error) Hung("the broker sent a badly framed message");
    Decoded d = Decode(m.bytes(), limits_);
    if (!d.ok()) Hung("the broker sent a message that does not decode");
    if (frontend && d.kind() == wire::Body::Heartbeat) {
      --peer.expected;
    } else if (!frontend && d.kind() == wire::Body::Error &&
               d.envelope->body_as_Error()->code() ==
                   wire::ErrorCode::Unexpected &&
               AsString(d.envelope->body_as_Error()->message())
                       .find("StatsRequest") != std::string_view::npos) {
      --peer.expected;
    } else if (!frontend && d.kind() == wire::Body::Dispatch) {
      AnswerDispatch(peer, *d.envelope->body_as_Dispatch());
    }
  }
}

void Harness::AwaitProbes(const char* what) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  for (;;) {
    bool waiting = false;
    for (auto* side : {&front_, &back_, &watchdog_}) {
      for (Peer& p : *side) {
        Drain(p, side != &back_);
        waiting |= p.expected > 0;
      }
    }
    if (!waiting) return;
    if (std::chrono::steady_clock::now() > deadline) Hung(what);
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void Harness::RunInput(const uint8_t* data, size_t size) {
  std::array<int, kPeers> front_extra{}, back_extra{};
  std::array<bool, kPeers> front_used{}, back_used{};
  for (const FuzzMessage& m : SplitMessages(data, size, kMaxMessages)) {
    const bool frontend = (m.selector & 1) == 0;
    const int i = (m.selector >> 1) % kPeers;
    Send((frontend ? front_ : back_)[i], m.selector, m.body);
    if (frontend) {
      front_used[i] = true;
      front_extra[i] += Matching(m.body, m.selector, wire::Body::Heartbeat);
    } else {
      back_used[i] = true;
      back_extra[i] += Matching(m.body, m.selector, wire::Body::StatsRequest);
    }
  }
  for (int i = 0; i < kPeers; ++i) {
    if (front_used[i]) Probe(front_[i], true, front_extra[i]);
    if (back_used[i]) Probe(back_[i], false, back_extra[i]);
  }
  if (++inputs_ % kWatchdogEvery == 0) Probe(watchdog_[0], true, 0);
  AwaitProbes("the broker did not answer within 5 s");
}

}  // namespace
}  // namespace yard::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  yard::fuzz::TheHarness<yard::fuzz::Harness>()->RunInput(data, size);
  return 0;
}
