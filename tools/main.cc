// yard: the one Switchyard binary. Each subcommand lives in its own file and
// is a thin layer of flag parsing over a library.
#include <cstring>
#include <iostream>
#include <string_view>

#include "common/version.h"
#include "tools/cli.h"

namespace {

void Usage(std::ostream& out) {
  out << "usage: yard <command> [flags]   (yard <command> --help)\n\n"
         "commands:\n"
         "  broker   route jobs from producers to workers\n"
         "  worker   run job handlers (echo, sleep, sha256, fail)\n"
         "  push     submit jobs and report throughput and latency\n"
         "  loadtest load (and chaos) through a cluster; audit every job\n"
         "  queue    inspect and administer a durable (Redis) queue\n"
         "  cancel   cancel jobs wherever they are (waiting or running)\n"
         "  result   print the stored result of a job (durable queue)\n"
         "  keygen   generate a CURVE key pair (PATH.public, PATH.secret)\n"
         "  version  print the version and the git commit (also --version)\n";
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
  if (cmd == "broker") return yard::RunBroker(argc - 1, argv + 1);
  if (cmd == "worker") return yard::RunWorker(argc - 1, argv + 1);
  if (cmd == "worker-child") return yard::RunWorkerChild(argc - 1, argv + 1);
  if (cmd == "push") return yard::RunPush(argc - 1, argv + 1);
  if (cmd == "loadtest") return yard::RunLoadtest(argc - 1, argv + 1);
  if (cmd == "queue") return yard::RunQueue(argc - 1, argv + 1);
  if (cmd == "cancel") return yard::RunCancel(argc - 1, argv + 1);
  if (cmd == "result") return yard::RunResult(argc - 1, argv + 1);
  if (cmd == "keygen") return yard::RunKeygen(argc - 1, argv + 1);
  if (cmd == "--version" || cmd == "version") {
    std::cout << yard::VersionLine() << "\n";
    return 0;
  }
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    Usage(std::cout);
    return 0;
  }
  std::cerr << "yard: error: unknown command '" << cmd
            << "' (see yard --help)\n";
  return yard::cli::kExitUsage;
}
