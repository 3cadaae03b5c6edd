// Shared plumbing for the `yard` subcommands: CLI11 parsing with the exit
// contract (help: 0; any bad flag or value: one line on stderr, exit 2).
#ifndef YARD_TOOLS_CLI_H_
#define YARD_TOOLS_CLI_H_

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace yard::cli {

inline constexpr int kExitUsage = 2;

// Parses; on --help prints help and returns 0 through *exit_code; on an
// error prints "yard <cmd>: error: ..." and sets *exit_code = 2. Returns
// true when the command should run.
bool Parse(CLI::App& app, int argc, char** argv, int* exit_code);

// A one-line usage error (exit code 2).
int UsageError(const std::string& command, const std::string& message);

// "a,b,c" -> {"a","b","c"}; empty items dropped.
std::vector<std::string> SplitList(const std::string& s);

}  // namespace yard::cli

namespace yard {
int RunBroker(int argc, char** argv);
int RunWorker(int argc, char** argv);
int RunPush(int argc, char** argv);
}  // namespace yard

#endif  // YARD_TOOLS_CLI_H_
