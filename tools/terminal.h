// The terminal of a full-screen view (`yard top`), with plain ANSI escapes:
// while a FullScreen lives, the terminal shows its alternate screen with the
// cursor hidden and line wrap off, and stdin gives keys one at a time
// without echo. The destructor puts everything back, so a view that returns
// (on `q`, or on SIGINT/SIGTERM through common/signals.h: Ctrl-C still
// raises SIGINT) leaves the terminal as it found it.
//
// Thread-safety: one FullScreen at a time, used from one thread.
#ifndef YARD_TOOLS_TERMINAL_H_
#define YARD_TOOLS_TERMINAL_H_

#include <termios.h>

#include <cstdint>
#include <string>
#include <vector>

#include "admin/top_view.h"

namespace yard {

// The size of the terminal on stdout (TIOCGWINSZ); {0, 0}
// when stdout is not a terminal.
admin::ScreenSize TerminalSize();

class FullScreen {
 public:
  // What WaitKey saw.
  enum class Event { kTimeout, kKey, kResize, kSignal };

  // Whether stdout is a terminal (stdin too, for keys).
  static bool Available();

  FullScreen();  // enters the alternate screen
  ~FullScreen();
  FullScreen(const FullScreen&) = delete;
  FullScreen& operator=(const FullScreen&) = delete;

  // Replaces the screen's contents with `lines` (already cut to the size),
  // in one write.
  void Draw(const std::vector<std::string>& lines);

  // Waits up to timeout_ms for a key (then *key is it), a change of the
  // terminal's size or a signal.
  Event WaitKey(int64_t timeout_ms, char* key);

 private:
  bool keys_ = false;  // stdin is a terminal, in the mode below
  struct termios saved_ {};
};

}  // namespace yard

#endif  // YARD_TOOLS_TERMINAL_H_
