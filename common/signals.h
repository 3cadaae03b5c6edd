// Stop signals: SIGTERM and SIGINT set a process-wide flag that event loops
// poll (their poll timeouts are short), so every process drains gracefully.
#ifndef YARD_COMMON_SIGNALS_H_
#define YARD_COMMON_SIGNALS_H_

namespace yard {

// Installs handlers for SIGTERM and SIGINT (and ignores SIGPIPE).
void InstallStopHandlers();
// True once a stop signal arrived (or RequestStop was called).
bool StopRequested();
void RequestStop();

}  // namespace yard

#endif  // YARD_COMMON_SIGNALS_H_
