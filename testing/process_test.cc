// The process helper itself, on /bin/sh.
#include "testing/process.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>

namespace yard {
namespace {

using Millis = std::chrono::milliseconds;

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "yard_process_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::unique_ptr<Process> Sh(const std::string& script) {
    auto p = Process::Spawn({"/bin/sh", "-c", script}, dir_ + "/sh.stderr");
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? std::move(p).value() : nullptr;
  }
  std::string dir_;
};

TEST_F(ProcessTest, ReadsLinesAndExitCodeAndStderr) {
  auto p = Sh("echo one; printf 'two\\nthree'; echo oops >&2; exit 3");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ReadLine(Millis(5000)), "one");
  EXPECT_EQ(p->ReadLine(Millis(5000)), "two");
  EXPECT_EQ(p->ReadLine(Millis(5000)), "three");  // partial last line at EOF
  EXPECT_EQ(p->ReadLine(Millis(5000)), std::nullopt);
  auto exit = p->Wait(Millis(5000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->ExitedWith(3)) << exit->ToString();
  EXPECT_FALSE(p->Running());
  EXPECT_EQ(p->Stderr(), "oops\n");
}

TEST_F(ProcessTest, ReadAllUntilExit) {
  auto p = Sh("echo a; echo b");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ReadAll(Millis(5000)), "a\nb\n");
  auto exit = p->Wait(Millis(5000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->ExitedWith(0));
}

TEST_F(ProcessTest, TimeoutsThenSignals) {
  auto p = Sh("echo started; exec sleep 30");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ReadLine(Millis(5000)), "started");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(p->ReadLine(Millis(100)), std::nullopt);
  EXPECT_FALSE(p->Wait(Millis(100)).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - t0, Millis(190));
  EXPECT_TRUE(p->Running());
  ASSERT_TRUE(p->Signal(SIGTERM));
  auto exit = p->Wait(Millis(5000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->KilledBy(SIGTERM)) << exit->ToString();
  EXPECT_FALSE(p->Signal(SIGTERM));  // already reaped
}

TEST_F(ProcessTest, DestructorKillsTheChild) {
  pid_t pid;
  {
    auto p = Sh("exec sleep 30");
    ASSERT_TRUE(p);
    pid = p->pid();
    EXPECT_EQ(::kill(pid, 0), 0);
  }
  // Reaped: the pid no longer names our child.
  EXPECT_NE(::kill(pid, 0), 0);
}

// A forked body: its stdout is the pipe, its return value the exit code;
// Kill ends it where it is.
TEST_F(ProcessTest, ForkRunsTheBodyAndIsKilledForReal) {
  auto done = Process::Fork("exits", [] {
    std::printf("from the child\n");
    return 7;
  });
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ((*done)->ReadLine(Millis(5000)), "from the child");
  auto exit = (*done)->Wait(Millis(5000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->ExitedWith(7)) << exit->ToString();

  auto held = Process::Fork(
      "holds",
      [] {
        std::printf("holding\n");
        std::fflush(stdout);
        for (;;) ::pause();  // until killed
        return 0;
      },
      dir_ + "/held.stderr");
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ((*held)->ReadLine(Millis(5000)), "holding");
  EXPECT_TRUE((*held)->Running());
  EXPECT_TRUE((*held)->Kill().KilledBy(SIGKILL));
}

TEST_F(ProcessTest, MissingProgramIsAnError) {
  auto p = Process::Spawn({dir_ + "/no-such-program"}, "");
  EXPECT_FALSE(p.ok());
}

}  // namespace
}  // namespace yard
