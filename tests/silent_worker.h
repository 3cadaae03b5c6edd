// SilentWorker: a worker that is alive but never answers, played by a raw
// ZeroMQ DEALER on its own thread. It registers (Ready with a large credit),
// heartbeats every 300 ms and reads whatever the broker sends (so its jobs
// pile up), but never sends a Result. It counts the jobs dispatched to it
// and the job ids the broker cancels.
//
// Thread-safety: the counters may be read from any thread; the destructor
// stops and joins the thread (bounded: it polls every 50 ms).
#ifndef YARD_TESTS_SILENT_WORKER_H_
#define YARD_TESTS_SILENT_WORKER_H_

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <zmq.hpp>

#include "schemas/codec.h"
#include "schemas/frames.h"
#include "tests/cluster.h"

namespace yard {

class SilentWorker {
 public:
  SilentWorker(const std::string& backend, const std::string& name,
               uint32_t credit = 1000)
      : socket_(context_, zmq::socket_type::dealer) {
    ConfigureSocket(socket_, Limits{}, 0);
    connected_ = Connect(socket_, backend).ok();
    ReadyInfo info;
    info.credit = credit;
    info.capacity = credit;
    info.name = name;
    if (connected_)
      connected_ = SendDealer(socket_, writer_.EncodeReady(info)).ok();
    thread_ = std::thread([this] { Loop(); });
  }
  ~SilentWorker() {
    stop_.store(true);
    thread_.join();
  }
  SilentWorker(const SilentWorker&) = delete;
  SilentWorker& operator=(const SilentWorker&) = delete;

  bool connected() const { return connected_; }
  // Whether the broker at `frontend` lists a worker named `name` within
  // `bound` (its stats).
  static bool Registered(const std::string& frontend, const std::string& name,
                         Millis bound = Millis(10000)) {
    return PollUntil(
        [&] {
          return !WorkerNamed(BrokerStats(frontend)["workers"], name).is_null();
        },
        bound);
  }
  uint64_t dispatched() const { return dispatched_.load(); }
  uint64_t cancelled() const { return cancelled_.load(); }

 private:
  void Loop() {
    using namespace std::chrono;
    auto next_beat = steady_clock::now();
    while (!stop_.load()) {
      if (steady_clock::now() >= next_beat) {
        (void)SendDealer(socket_, writer_.EncodeHeartbeat());
        next_beat = steady_clock::now() + milliseconds(300);
      }
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, milliseconds(50));
      DealerMessage m;
      for (int i = 0; i < 1000 && RecvDealer(socket_, &m); ++i) {
        Decoded d = Decode(m.bytes(), Limits{});
        if (!d.ok()) continue;
        if (d.kind() == wire::Body::Dispatch) {
          dispatched_ += d.envelope->body_as_Dispatch()->jobs()->size();
        } else if (d.kind() == wire::Body::Cancel) {
          cancelled_ += d.envelope->body_as_Cancel()->ids()->size();
        }
      }
    }
  }

  zmq::context_t context_{1};
  zmq::socket_t socket_;
  Writer writer_;
  bool connected_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> dispatched_{0}, cancelled_{0};
  std::thread thread_;
};

}  // namespace yard

#endif  // YARD_TESTS_SILENT_WORKER_H_
