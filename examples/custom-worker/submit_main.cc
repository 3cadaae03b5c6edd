// wordcount-submit --connect tcp://HOST:PORT TEXT...
//
// Sends one "wordcount" job per TEXT through a Switchyard producer and
// prints one line per job, in argument order: the handler's answer, or
// "error: ..." for a job that failed. Exits 1 when any job failed.
#include <future>
#include <iostream>
#include <string>
#include <vector>

#include "client/producer.h"

int main(int argc, char** argv) {
  if (argc < 4 || std::string(argv[1]) != "--connect") {
    std::cerr << "usage: wordcount-submit --connect EP TEXT...\n";
    return 2;
  }
  yard::ProducerOptions options;
  options.brokers = {argv[2]};
  options.default_timeout_ms = 20000;
  auto producer = yard::Producer::Create(options);
  if (!producer.ok()) {
    std::cerr << "wordcount-submit: " << producer.status().ToString() << "\n";
    return 1;
  }
  std::vector<std::future<yard::JobOutcome>> outcomes;
  for (int i = 3; i < argc; ++i) {
    yard::JobSpec job;
    job.id = yard::JobId::Random();
    job.task = "wordcount";
    job.payload = yard::AsBytes(argv[i]);
    outcomes.push_back((*producer)->Submit(job));
  }
  int rc = 0;
  for (auto& f : outcomes) {
    yard::JobOutcome o = f.get();
    if (o.kind == yard::JobOutcome::Kind::kCompleted) {
      std::cout << o.output << "\n";
    } else {
      std::cout << "error: " << (o.error.empty() ? "no result" : o.error)
                << "\n";
      rc = 1;
    }
  }
  (*producer)->Close();
  return rc;
}
