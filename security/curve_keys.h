// CURVE keys: generating them, their files, and putting them on sockets.
//
// A key is 32 bytes, written as 40 characters of Z85 (ZeroMQ's text
// encoding). `yard keygen --out PATH` writes two files:
//
//   PATH.public   the public key, one line: 40 Z85 characters + "\n"
//                 (give it to brokers' --producer-keys/--worker-keys/
//                 --admin-keys, or to clients' --broker-key)
//   PATH.secret   the secret key alone, same format, mode 0600 from its
//                 creation (open(O_CREAT|O_EXCL, 0600): never readable by
//                 others, not even for a moment); the public key is derived
//                 from it (zmq_curve_public) when it is loaded
//
// Key files may hold '#' comment lines and blank lines around the key.
// Loading a secret file that others may read (mode & 077) is refused, as ssh
// refuses such a private key.
//
// All cryptography is libzmq's (zmq_curve_keypair, zmq_curve_public,
// zmq_z85_encode/decode); nothing here is hand-written crypto.
//
// Thread-safety: free functions, no shared state.
#ifndef YARD_SECURITY_CURVE_KEYS_H_
#define YARD_SECURITY_CURVE_KEYS_H_

#include <functional>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/status.h"

namespace yard {

inline constexpr size_t kZ85KeyChars = 40;

struct CurveKeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// Whether libzmq was built with CURVE (zmq_has("curve")).
bool CurveAvailable();
// 40 Z85 characters that decode to 32 bytes.
bool IsZ85Key(std::string_view text);

Result<CurveKeyPair> GenerateKeyPair();
// The public key of a Z85 secret key.
Result<std::string> PublicKeyOf(std::string_view secret_z85);

// Writes PATH.public and PATH.secret (see above). Without `force`, refuses
// (InvalidArgument) when either exists; with it, replaces them (the secret
// file is unlinked and created anew, so it never keeps an old mode).
Status WriteKeyPair(const std::string& path, const CurveKeyPair& keys,
                    bool force);

// The one key in a key file (comments and blank lines skipped).
Result<std::string> ReadKeyFile(const std::string& path);
// A secret key file (mode checked) and the public key derived from it.
Result<CurveKeyPair> LoadSecretKeyFile(const std::string& path);
// A broker's public key given on a command line: the key itself (40 Z85
// characters) or a file holding it.
Result<std::string> ResolveKeyArgument(const std::string& file_or_z85);

// A client's (producer's or worker's) CURVE settings. Off when secret_key is
// empty. The broker's key: server_key_for(endpoint) when set and not empty
// (discovery: each broker's registry record), else server_key.
struct CurveClientOptions {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
  std::string server_key;  // Z85
  std::function<std::string(const std::string& endpoint)> server_key_for;

  bool enabled() const { return !secret_key.empty(); }
  // NotFound when no key is known for `endpoint`.
  Result<std::string> ServerKeyFor(const std::string& endpoint) const;
};

// The socket options, in one place. A client socket gets the broker's key
// and its own pair; a server socket gets CURVE_SERVER, its secret key and
// the ZAP domain that tells the ZAP handler which side is asking. Both must
// run before connect/bind. IoError from libzmq (e.g. no CURVE support).
Status ApplyCurveClient(zmq::socket_t& socket, const CurveClientOptions& curve,
                        const std::string& endpoint);
Status ApplyCurveServer(zmq::socket_t& socket, const std::string& secret_z85,
                        const std::string& zap_domain);

}  // namespace yard

#endif  // YARD_SECURITY_CURVE_KEYS_H_
