#include "tools/terminal.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>

namespace yard {
namespace {

// Alternate screen on, cursor hidden, auto-wrap off; and back.
constexpr char kEnter[] = "\x1b[?1049h\x1b[?25l\x1b[?7l";
constexpr char kLeave[] = "\x1b[?7h\x1b[?25h\x1b[?1049l";

std::atomic<bool> g_resized{false};
extern "C" void OnResize(int) { g_resized.store(true); }

void WriteAll(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n =
        ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the terminal is gone: nothing more to show
    done += static_cast<size_t>(n);
  }
}

}  // namespace

admin::ScreenSize TerminalSize() {
  struct winsize ws {};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0) {
    return {0, 0};
  }
  return {ws.ws_col, ws.ws_row};
}

bool FullScreen::Available() { return ::isatty(STDOUT_FILENO) == 1; }

FullScreen::FullScreen() {
  // No SA_RESTART: a resize interrupts the wait for a key.
  struct sigaction sa {};
  sa.sa_handler = OnResize;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGWINCH, &sa, nullptr);
  if (::isatty(STDIN_FILENO) == 1 && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
    struct termios raw = saved_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);  // ISIG stays
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    keys_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  WriteAll(kEnter);
}

FullScreen::~FullScreen() {
  WriteAll(kLeave);
  if (keys_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  signal(SIGWINCH, SIG_DFL);
}

void FullScreen::Draw(const std::vector<std::string>& lines) {
  // Each row is cleared and written in place (no newlines, so the bottom
  // row never scrolls the screen); then everything below is cleared.
  std::string frame;
  for (size_t i = 0; i < lines.size(); ++i) {
    frame += "\x1b[" + std::to_string(i + 1) + ";1H\x1b[2K" + lines[i];
  }
  frame += "\x1b[" + std::to_string(lines.size() + 1) + ";1H\x1b[J";
  WriteAll(frame);
}

FullScreen::Event FullScreen::WaitKey(int64_t timeout_ms, char* key) {
  if (g_resized.exchange(false)) return Event::kResize;
  struct pollfd pfd {};
  pfd.fd = STDIN_FILENO;
  pfd.events = POLLIN;
  // Without a terminal on stdin there are no keys to wait for.
  const int n = ::poll(&pfd, keys_ ? 1 : 0, static_cast<int>(timeout_ms));
  if (n < 0) {
    return g_resized.exchange(false) ? Event::kResize : Event::kSignal;
  }
  if (n == 0) return Event::kTimeout;
  if (::read(STDIN_FILENO, key, 1) != 1) {
    keys_ = false;  // end of input: keep the view, stop reading
    return Event::kTimeout;
  }
  return Event::kKey;
}

}  // namespace yard
