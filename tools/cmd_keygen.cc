// yard keygen --out PATH [--force]: a new CURVE key pair in PATH.public and
// PATH.secret (security/curve_keys.h: Z85, one key per file; the secret file
// is created with mode 0600). Prints the public key.
//
// Exit codes: 0 written, 1 could not write, 2 a bad flag or a file exists
// (without --force).
#include <iostream>

#include "security/curve_keys.h"
#include "tools/cli.h"

namespace yard {

int RunKeygen(int argc, char** argv) {
  CLI::App app{"Generate a CURVE key pair: PATH.public and PATH.secret.",
               argv[0]};
  std::string out;
  bool force = false;
  app.add_option("--out", out,
                 "path prefix: writes PATH.public and PATH.secret (0600)")
      ->required();
  app.add_flag("--force", force, "replace existing files");
  cli::LogFlags log{.level = "warn"};
  cli::AddLogFormatFlag(app, &log.format);
  int code = 0;
  if (!cli::Parse(app, argc, argv, &code)) return code;
  cli::StartLogging("keygen", log);
  if (!CurveAvailable()) {
    return cli::RuntimeError(argv[0],
                             Status::Unavailable("this libzmq has no CURVE"));
  }
  Result<CurveKeyPair> keys = GenerateKeyPair();
  if (!keys.ok()) return cli::RuntimeError(argv[0], keys.status());
  Status s = WriteKeyPair(out, *keys, force);
  if (s.code() == StatusCode::kInvalidArgument) {
    return cli::UsageError(argv[0], s.message());
  }
  if (!s.ok()) return cli::RuntimeError(argv[0], s);
  std::cout << keys->public_key << "\n";
  return 0;
}

}  // namespace yard
