#include "security/curve_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace yard {
namespace {

Status Errno(const std::string& what, const std::string& path) {
  return Status::IoError(what + " " + path + ": " + std::strerror(errno));
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Creates `path` with `mode` (O_EXCL: a new inode, so the mode holds from
// the first byte) and writes `text`.
Status CreateFileWith(const std::string& path, const std::string& text,
                      mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return Errno("cannot create", path);
  // The umask may have taken bits away, never added any; set exactly `mode`.
  (void)::fchmod(fd, mode);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Errno("cannot write", path);
      ::close(fd);
      return s;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) return Errno("cannot write", path);
  return Status::OK();
}

}  // namespace

bool CurveAvailable() { return zmq_has("curve") == 1; }

bool IsZ85Key(std::string_view text) {
  if (text.size() != kZ85KeyChars) return false;
  char buf[kZ85KeyChars + 1];
  std::memcpy(buf, text.data(), kZ85KeyChars);
  buf[kZ85KeyChars] = '\0';
  uint8_t bytes[32];
  return zmq_z85_decode(bytes, buf) != nullptr;
}

Result<CurveKeyPair> GenerateKeyPair() {
  char pub[kZ85KeyChars + 1], sec[kZ85KeyChars + 1];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Status::Unavailable(
        std::string("cannot generate a CURVE key pair: ") +
        zmq_strerror(zmq_errno()));
  }
  CurveKeyPair keys{pub, sec};
  std::memset(sec, 0, sizeof(sec));
  return keys;
}

Result<std::string> PublicKeyOf(std::string_view secret_z85) {
  if (!IsZ85Key(secret_z85)) {
    return Status::InvalidArgument("not a Z85 CURVE key (40 characters)");
  }
  std::string secret(secret_z85);
  char pub[kZ85KeyChars + 1];
  if (zmq_curve_public(pub, secret.c_str()) != 0) {
    return Status::InvalidArgument(
        std::string("cannot derive the public key: ") +
        zmq_strerror(zmq_errno()));
  }
  return std::string(pub);
}

Status WriteKeyPair(const std::string& path, const CurveKeyPair& keys,
                    bool force) {
  const std::string pub = path + ".public", sec = path + ".secret";
  for (const std::string* p : {&pub, &sec}) {
    if (!Exists(*p)) continue;
    if (!force) {
      return Status::InvalidArgument(*p + " exists (--force replaces it)");
    }
    if (::unlink(p->c_str()) != 0) return Errno("cannot replace", *p);
  }
  if (Status s = CreateFileWith(sec, keys.secret_key + "\n", 0600); !s.ok()) {
    return s;
  }
  return CreateFileWith(pub, keys.public_key + "\n", 0644);
}

Result<std::string> ReadKeyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Errno("cannot read", path);
  std::string line, key;
  while (std::getline(in, line)) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    std::string text = line.substr(first, last - first + 1);
    if (!key.empty()) {
      return Status::InvalidArgument(path + ": more than one key");
    }
    if (!IsZ85Key(text)) {
      return Status::InvalidArgument(path +
                                     ": not a Z85 CURVE key (40 characters)");
    }
    key = std::move(text);
  }
  if (key.empty()) return Status::InvalidArgument(path + ": no key in it");
  return key;
}

Result<CurveKeyPair> LoadSecretKeyFile(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Errno("cannot read", path);
  if (st.st_mode & 077) {
    return Status::InvalidArgument(
        path + ": a secret key others may read (chmod 600 it)");
  }
  Result<std::string> secret = ReadKeyFile(path);
  if (!secret.ok()) return secret.status();
  Result<std::string> pub = PublicKeyOf(*secret);
  if (!pub.ok())
    return Status::InvalidArgument(path + ": " + pub.status().message());
  return CurveKeyPair{*pub, *secret};
}

Result<std::string> ResolveKeyArgument(const std::string& file_or_z85) {
  if (IsZ85Key(file_or_z85) && !Exists(file_or_z85)) return file_or_z85;
  return ReadKeyFile(file_or_z85);
}

Result<std::string> CurveClientOptions::ServerKeyFor(
    const std::string& endpoint) const {
  if (server_key_for) {
    std::string key = server_key_for(endpoint);
    if (!key.empty()) return key;
  }
  if (!server_key.empty()) return server_key;
  return Status::NotFound("no CURVE public key known for broker " + endpoint);
}

Status ApplyCurveClient(zmq::socket_t& socket, const CurveClientOptions& curve,
                        const std::string& endpoint) {
  if (!curve.enabled()) return Status::OK();
  Result<std::string> server = curve.ServerKeyFor(endpoint);
  if (!server.ok()) return server.status();
  try {
    socket.set(zmq::sockopt::curve_serverkey, *server);
    socket.set(zmq::sockopt::curve_publickey, curve.public_key);
    socket.set(zmq::sockopt::curve_secretkey, curve.secret_key);
    return Status::OK();
  } catch (const zmq::error_t& e) {
    return Status::IoError(std::string("CURVE socket options: ") + e.what());
  }
}

Status ApplyCurveServer(zmq::socket_t& socket, const std::string& secret_z85,
                        const std::string& zap_domain) {
  try {
    socket.set(zmq::sockopt::curve_server, true);
    socket.set(zmq::sockopt::curve_secretkey, secret_z85);
    socket.set(zmq::sockopt::zap_domain, zap_domain);
    return Status::OK();
  } catch (const zmq::error_t& e) {
    return Status::IoError(std::string("CURVE socket options: ") + e.what());
  }
}

}  // namespace yard
