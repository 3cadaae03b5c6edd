// A real in-process Worker fed fuzzed frames from a broker: the target owns
// the ROUTER socket the worker connects to (inproc://), learns the worker's
// identity from its Ready, and sends each input's messages to it.
//
// Input (fuzz/fuzz_input.h): messages whose selector picks only the framing
// (bits 4-6, FramingOf). Registered handlers: "echo" (the payload back),
// "fail" (throws) and "walk" (reads every field of its job, fuzz/walk.h),
// so fuzzed Dispatches run.
//
// After each input a probe Dispatch (one echo job with an id of its own)
// must come back as a Result within kWaitMs: the worker read everything
// before it and is alive. A worker that reconnects (a fresh socket, so a
// new identity, after a silence) announces itself with Ready and gets the
// probe again. At exit the worker is stopped (it drains) and its thread
// joined, so LeakSanitizer sees only real leaks.
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "fuzz/fuzz_input.h"
#include "fuzz/peer_util.h"
#include "fuzz/walk.h"
#include "worker/worker.h"

namespace yard::fuzz {
namespace {

constexpr int64_t kWaitMs = 10000;
constexpr size_t kMaxMessages = 16;
constexpr uint64_t kProbeHi = 0x70726f6265;  // "probe"
constexpr char kEndpoint[] = "inproc://fuzz-worker";

class Harness {
 public:
  Harness();
  ~Harness();
  void RunInput(const uint8_t* data, size_t size);

 private:
  void Send(uint8_t selector, std::string_view body);
  void SendProbe();
  // Reads what the worker sent; true once the probe's result is in.
  bool Drain();
  void AwaitProbe(const char* what);

  const Limits limits_ = FuzzLimits();
  zmq::context_t context_;
  zmq::socket_t router_{context_, zmq::socket_type::router};
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
  std::string identity_;  // the worker's current socket
  Writer writer_;
  BlobBatch batch_;
  uint64_t probe_ = 0;
};

Harness::Harness() {
  QuietLogging();
  ConfigureSocket(router_, limits_, 0);
  if (!Bind(router_, kEndpoint).ok()) Hung("cannot bind the broker socket");
  WorkerOptions o;
  o.brokers = {kEndpoint};
  o.concurrency = 1;
  o.prefetch = 8;
  o.heartbeat_ms = 200;
  o.drain_timeout_ms = 200;
  o.name = "fuzz";
  o.limits = limits_;
  o.context = &context_;
  worker_ = std::make_unique<Worker>(o);
  worker_->Register("echo", [](const JobContext& c) {
    return std::string(AsString(c.payload));
  });
  worker_->Register("fail", [](const JobContext&) -> std::string {
    throw std::runtime_error("failed on purpose");
  });
  worker_->Register("walk", [](const JobContext& c) {
    return std::to_string(WalkJob(*c.job) + c.attempt + c.task.size() +
                          c.queue.size());
  });
  thread_ = std::thread([this] { (void)worker_->Run(); });
  SendProbe();  // goes out once the worker's Ready names it
  AwaitProbe("the worker did not register within 10 s");
}

Harness::~Harness() {
  SendProbe();
  AwaitProbe("the worker stopped answering (at exit)");
  worker_->Stop();
  thread_.join();
}

void Harness::Send(uint8_t selector, std::string_view body) {
  switch (FramingOf(selector)) {
    case Framing::kProper:
      (void)SendRouter(router_, identity_, AsBytes(body));
      return;
    case Framing::kNoDelimiter:
      SendFrames(router_, {identity_, body});
      return;
    case Framing::kExtraFrame:
      SendFrames(router_, {identity_, "", body, "extra"});
      return;
  }
}

void Harness::SendProbe() {
  ++probe_;
  if (identity_.empty()) return;  // sent when the Ready comes
  JobSpec spec;
  spec.id = JobId{kProbeHi, probe_};
  spec.task = "echo";
  batch_.Clear();
  batch_.AddJob(writer_.EncodeJob(spec), 1);
  (void)SendRouter(router_, identity_, batch_.FinishDispatch());
}

bool Harness::Drain() {
  bool done = false;
  RouterMessage m;
  while (RecvRouter(router_, &m)) {
    if (m.framing_error) Hung("the worker sent a badly framed message");
    Decoded d = Decode(m.bytes(), limits_);
    if (!d.ok()) Hung("the worker sent a message that does not decode");
    if (d.kind() == wire::Body::Ready &&
        m.identity_view() != std::string_view(identity_)) {
      // A new socket: the probe sent to the old one is lost.
      identity_ = std::string(m.identity_view());
      --probe_;
      SendProbe();
    } else if (d.kind() == wire::Body::Results) {
      for (const auto* blob : *d.envelope->body_as_Results()->results()) {
        const JobId id = FromWire(blob->data_nested_root()->id());
        done |= id == JobId{kProbeHi, probe_};
      }
    }
  }
  return done;
}

void Harness::AwaitProbe(const char* what) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
  while (!Drain()) {
    if (std::chrono::steady_clock::now() > deadline) Hung(what);
    zmq::pollitem_t item{router_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
    } catch (const zmq::error_t& e) {
      // libFuzzer's timer (SIGALRM) interrupts the wait: look again.
      if (e.num() != EINTR) throw;
    }
  }
}

void Harness::RunInput(const uint8_t* data, size_t size) {
  for (const FuzzMessage& m : SplitMessages(data, size, kMaxMessages)) {
    Send(m.selector, m.body);
  }
  SendProbe();
  AwaitProbe("the worker did not answer within 10 s");
}

}  // namespace
}  // namespace yard::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  yard::fuzz::TheHarness<yard::fuzz::Harness>()->RunInput(data, size);
  return 0;
}
