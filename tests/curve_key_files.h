// CURVE key pairs for multi-process tests: made by the real `yard keygen`
// under <cluster dir>/keys/<name>, with their paths and role key sets
// (directories of public keys) for broker flags.
#ifndef YARD_TESTS_CURVE_KEY_FILES_H_
#define YARD_TESTS_CURVE_KEY_FILES_H_

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "security/curve_keys.h"
#include "tests/cluster.h"

namespace yard {

// Key pairs made by the real `yard keygen`, under dir/keys/<name>.
class Keys {
 public:
  Keys(Cluster& c, const std::vector<std::string>& names)
      : dir_(c.dir() + "/keys") {
    std::filesystem::create_directories(dir_);
    for (const std::string& n : names) Make(c, n);
  }
  void Make(Cluster& c, const std::string& n) {
    Process* p = c.Start("keygen", {"keygen", "--out", Path(n)});
    ASSERT_TRUE(p);
    auto exit = p->Wait(Millis(10000));
    ASSERT_TRUE(exit && exit->ExitedWith(0)) << p->Stderr();
    auto pair = LoadSecretKeyFile(Secret(n));
    ASSERT_TRUE(pair.ok()) << pair.status().ToString();
    pairs_[n] = *pair;
  }
  std::string Path(const std::string& n) const { return dir_ + "/" + n; }
  std::string Public(const std::string& n) const { return Path(n) + ".public"; }
  std::string Secret(const std::string& n) const { return Path(n) + ".secret"; }
  // A client with key `n` talking to the broker with key `broker`.
  CurveClientOptions Client(const std::string& n,
                            const std::string& broker = "broker") const {
    return {pairs_.at(n).public_key, pairs_.at(n).secret_key,
            pairs_.at(broker).public_key, nullptr};
  }
  // A directory holding the public keys of `names` (a role's key set).
  std::string SetOf(const std::string& set,
                    const std::vector<std::string>& names) const {
    const std::string d = dir_ + "/" + set;
    std::filesystem::create_directories(d);
    for (const std::string& n : names) {
      std::filesystem::copy_file(Public(n), d + "/" + n + ".public");
    }
    return d;
  }

 private:
  std::string dir_;
  std::map<std::string, CurveKeyPair> pairs_;
};

}  // namespace yard

#endif  // YARD_TESTS_CURVE_KEY_FILES_H_
