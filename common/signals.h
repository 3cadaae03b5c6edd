// Stop signals: SIGTERM and SIGINT set a process-wide flag that event loops
// poll (their poll timeouts are short), so every process drains gracefully.
// SIGHUP (once InstallReloadHandler ran) bumps a reload generation that a
// loop compares with the last one it acted on (the broker re-reads its key
// sets).
#ifndef YARD_COMMON_SIGNALS_H_
#define YARD_COMMON_SIGNALS_H_

#include <cstdint>

namespace yard {

// Installs handlers for SIGTERM and SIGINT (and ignores SIGPIPE).
void InstallStopHandlers();
// True once a stop signal arrived (or RequestStop was called).
bool StopRequested();
void RequestStop();

// Installs the SIGHUP handler.
void InstallReloadHandler();
// Bumped by every SIGHUP (or RequestReload); starts at 0.
uint64_t ReloadGeneration();
void RequestReload();

}  // namespace yard

#endif  // YARD_COMMON_SIGNALS_H_
