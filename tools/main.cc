// yard: the one Switchyard binary. Each subcommand lives in its own file and
// is a thin layer of flag parsing over a library.
#include <cstring>
#include <iostream>
#include <string_view>
#include <vector>

#include "common/version.h"
#include "tools/cli.h"

namespace {

int RunVersion(int /*argc*/, char** /*argv*/) {
  std::cout << yard::VersionLine() << "\n";
  return 0;
}

int RunCompletion(int argc, char** argv);

const std::vector<yard::cli::Command>& Commands() {
  static const std::vector<yard::cli::Command> commands = {
      {"broker", "route jobs from producers to workers", yard::RunBroker},
      {"worker", "run job handlers (echo, sleep, sha256, fail)",
       yard::RunWorker},
      {"worker-child", nullptr, yard::RunWorkerChild},
      {"push", "submit jobs and report throughput and latency", yard::RunPush},
      {"loadtest", "load (and chaos) through a cluster; audit every job",
       yard::RunLoadtest},
      {"queue", "inspect and administer a durable (Redis) queue",
       yard::RunQueue},
      {"cancel", "cancel jobs wherever they are (waiting or running)",
       yard::RunCancel},
      {"dashboard", "serve a live web dashboard (queue, brokers, workers)",
       yard::RunDashboard},
      {"top", "a live view of brokers, workers, queues, rates and latency",
       yard::RunTop},
      {"result", "print the stored result of a job (durable queue)",
       yard::RunResult},
      {"keygen", "generate a CURVE key pair (PATH.public, PATH.secret)",
       yard::RunKeygen},
      {"completion", "print a shell completion script (bash or zsh)",
       RunCompletion},
      {"version", "print the version and the git commit (also --version)",
       RunVersion},
  };
  return commands;
}

int RunCompletion(int argc, char** argv) {
  return yard::cli::RunCompletion(argc, argv, Commands());
}

void Usage(std::ostream& out) {
  out << "usage: yard <command> [flags]   (yard <command> --help)\n\n"
         "commands:\n";
  for (const yard::cli::Command& c : Commands()) {
    if (c.summary == nullptr) continue;
    out << "  " << c.name << std::string(12 - std::strlen(c.name), ' ')
        << c.summary << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    Usage(std::cerr);
    return yard::cli::kExitUsage;
  }
  std::string_view cmd = argv[1];
  // Subcommands see argv[0] = "yard <cmd>".
  std::string name = "yard " + std::string(cmd);
  argv[1] = name.data();
  for (const yard::cli::Command& c : Commands()) {
    if (cmd == c.name) return c.run(argc - 1, argv + 1);
  }
  if (cmd == "--version") return RunVersion(argc - 1, argv + 1);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    Usage(std::cout);
    return 0;
  }
  std::cerr << "yard: error: unknown command '" << cmd
            << "' (see yard --help)\n";
  return yard::cli::kExitUsage;
}
