// wordcount-worker --connect tcp://HOST:PORT[,...] [--concurrency N]
//
// A Switchyard worker with a handler of its own: "wordcount" (wordcount.h).
// It serves every broker given until SIGTERM or SIGINT, then drains (running
// jobs finish, their results are sent) and exits 0.
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/signals.h"
#include "wordcount.h"
#include "worker/worker.h"

namespace {

int Usage() {
  std::cerr << "usage: wordcount-worker --connect EP[,EP...] "
               "[--concurrency N]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  yard::WorkerOptions options;
  options.concurrency = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--connect") == 0) {
      std::stringstream list(argv[i + 1]);
      for (std::string ep; std::getline(list, ep, ',');) {
        if (!ep.empty()) options.brokers.push_back(ep);
      }
    } else if (std::strcmp(argv[i], "--concurrency") == 0) {
      options.concurrency = std::atoi(argv[i + 1]);
    } else {
      return Usage();
    }
  }
  if (options.brokers.empty() || argc % 2 == 0) return Usage();

  yard::InstallStopHandlers();
  yard::Worker worker(options);
  worker.Register("wordcount", [](const yard::JobContext& ctx) {
    return wordcount::Count(yard::AsString(ctx.payload));
  });
  std::cout << "wordcount-worker ready" << std::endl;
  yard::Status status = worker.Run();
  if (!status.ok()) {
    std::cerr << "wordcount-worker: " << status.ToString() << "\n";
    return 1;
  }
  return 0;
}
