#include "tools/cli.h"

#include <iostream>
#include <sstream>

namespace yard::cli {

bool Parse(CLI::App& app, int argc, char** argv, int* exit_code) {
  try {
    app.parse(argc, argv);
    return true;
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    *exit_code = 0;
  } catch (const CLI::CallForAllHelp& e) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    *exit_code = 0;
  } catch (const CLI::ParseError& e) {
    *exit_code = UsageError(app.get_name(), e.what());
  }
  return false;
}

int UsageError(const std::string& command, const std::string& message) {
  std::string one_line = message;
  for (char& c : one_line) {
    if (c == '\n') c = ' ';
  }
  std::cerr << command << ": error: " << one_line << "\n";
  return kExitUsage;
}

std::vector<std::string> SplitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace yard::cli
