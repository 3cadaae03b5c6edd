// Redis URLs: redis://[user[:password]@]host:port[/db], their
// percent-coded credentials, and redaction for logs (redis_client.h).
#include <cctype>
#include <charconv>
#include <climits>

#include "redis/redis_client.h"

namespace yard {
namespace {

bool ValidHostName(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (char ch : h) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' &&
        ch != '-' && ch != '_') {
      return false;
    }
  }
  return true;
}

bool ValidIpv6(std::string_view h) {
  if (h.size() < 2 || h.size() > 45) return false;
  for (char ch : h) {
    if (!std::isxdigit(static_cast<unsigned char>(ch)) && ch != ':' &&
        ch != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

bool ParseDecimal(std::string_view s, int64_t max, int64_t* out) {
  if (s.empty() || s.size() > 10) return false;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
  }
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v > max) return false;
  *out = v;
  return true;
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "%XX" escapes decoded; false for a '%' without two hex digits.
bool PercentDecode(std::string_view s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out->push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return false;
    const int hi = HexValue(s[i + 1]);
    const int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

}  // namespace

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

Result<RedisCredentials> SplitRedisUserInfo(std::string_view* rest) {
  RedisCredentials auth;
  const size_t at = rest->rfind('@');
  if (at == std::string_view::npos) return auth;
  std::string_view info = rest->substr(0, at);
  rest->remove_prefix(at + 1);
  const size_t colon = info.find(':');
  if (!PercentDecode(info.substr(0, colon), &auth.user) ||
      (colon != std::string_view::npos &&
       !PercentDecode(info.substr(colon + 1), &auth.password))) {
    return Status::InvalidArgument(
        "bad percent escape in the user or password (write '%' as %25)");
  }
  return auth;
}

std::string RedactRedisUrl(std::string_view url) {
  const size_t scheme = url.find("://");
  const size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  const size_t at = url.rfind('@');
  if (at == std::string_view::npos || at < start) return std::string(url);
  const size_t colon = url.find(':', start);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  std::string out(url.substr(0, colon));
  out.append(":***");
  out.append(url.substr(at));
  return out;
}

Result<RedisAddress> ParseRedisUrl(std::string_view url) {
  auto bad = [url](std::string_view why) {
    return Status::InvalidArgument(
        "redis url '" + RedactRedisUrl(url) + "': " + std::string(why) +
        " (want redis://[USER[:PASSWORD]@]HOST:PORT[/DB])");
  };
  constexpr std::string_view kScheme = "redis://";
  if (!url.starts_with(kScheme)) return bad("not redis://");
  std::string_view rest = url.substr(kScheme.size());
  RedisAddress address;
  auto auth = SplitRedisUserInfo(&rest);
  if (!auth.ok()) return bad(auth.status().message());
  address.auth = std::move(auth).value();
  if (rest.starts_with('[')) {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '['");
    std::string_view host = rest.substr(1, close - 1);
    if (!ValidIpv6(host)) return bad("bad IPv6 address");
    address.host = std::string(host);
    rest.remove_prefix(close + 1);
  } else {
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) return bad("no port");
    std::string_view host = rest.substr(0, colon);
    if (!ValidHostName(host)) return bad("bad host");
    address.host = std::string(host);
    rest.remove_prefix(colon);
  }
  if (!rest.starts_with(':')) return bad("no port");
  rest.remove_prefix(1);
  size_t slash = rest.find('/');
  int64_t port = 0;
  if (!ParseDecimal(rest.substr(0, slash), 65535, &port) || port == 0) {
    return bad("bad port");
  }
  address.port = static_cast<uint16_t>(port);
  if (slash != std::string_view::npos) {
    int64_t db = 0;
    if (!ParseDecimal(rest.substr(slash + 1), INT_MAX, &db)) {
      return bad("bad db");
    }
    address.db = static_cast<int>(db);
  }
  return address;
}

}  // namespace yard
