#include "common/signals.h"

#include <atomic>
#include <csignal>

namespace yard {
namespace {
std::atomic<bool> g_stop{false};
std::atomic<uint64_t> g_reload{0};
extern "C" void OnStopSignal(int) { g_stop.store(true); }
extern "C" void OnReloadSignal(int) { g_reload.fetch_add(1); }
}  // namespace

void InstallStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool StopRequested() { return g_stop.load(std::memory_order_relaxed); }
void RequestStop() { g_stop.store(true); }

void InstallReloadHandler() {
  struct sigaction sa {};
  sa.sa_handler = OnReloadSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGHUP, &sa, nullptr);
}

uint64_t ReloadGeneration() { return g_reload.load(std::memory_order_relaxed); }
void RequestReload() { g_reload.fetch_add(1); }

}  // namespace yard
