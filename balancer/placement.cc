// Placement: validation, compiled labels and selectors, and Admits.
#include "balancer/placement.h"

#include <algorithm>
#include <tuple>

#include "balancer/balancer.h"

namespace yard {
namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9');
}
bool IsKeyChar(char c) {
  return IsAlnum(c) || c == '.' || c == '_' || c == '/' || c == '-';
}
bool IsValueChar(char c) {
  return IsAlnum(c) || c == '.' || c == '_' || c == '-';
}

// The entry as an error message quotes it: printable ASCII, at most 80.
std::string Quote(std::string_view e) {
  constexpr size_t kMax = 80;
  std::string q = "'";
  for (char c : e.substr(0, kMax)) {
    q += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (e.size() > kMax) q += "...";
  return q + "'";
}

// kind: "tag", "taint" or "toleration".
Status CheckEntry(std::string_view kind, std::string_view e) {
  const size_t eq = e.find('=');
  const std::string_view key = e.substr(0, eq);
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(std::string(kind) + " " + Quote(e) + ": " +
                                   why);
  };
  if (key.empty()) return bad("key is empty");
  if (key.size() > kMaxLabelKeyChars) {
    return bad("key is " + std::to_string(key.size()) +
               " characters (at most " + std::to_string(kMaxLabelKeyChars) +
               ")");
  }
  if (!IsAlnum(key[0])) return bad("key must start with a letter or digit");
  if (!std::all_of(key.begin(), key.end(), IsKeyChar)) {
    return bad("key may only contain letters, digits and . _ / -");
  }
  if (eq == std::string_view::npos) return Status::OK();
  const std::string_view value = e.substr(eq + 1);
  if (value.size() > kMaxLabelValueChars) {
    return bad("value is " + std::to_string(value.size()) +
               " characters (at most " + std::to_string(kMaxLabelValueChars) +
               ")");
  }
  if (!std::all_of(value.begin(), value.end(), IsValueChar)) {
    std::string why = "value may only contain letters, digits and . _ -";
    if (kind == "toleration" && value == "*") {
      why += " (to tolerate any value, give the key alone: '" +
             std::string(key) + "')";
    }
    return bad(why);
  }
  return Status::OK();
}

// plural: "tags", "taints" or "tolerations".
Status CheckList(std::string_view kind, std::string_view plural,
                 std::span<const std::string_view> list) {
  if (list.size() > kMaxPlacementEntries) {
    return Status::InvalidArgument(std::to_string(list.size()) + " " +
                                   std::string(plural) + " (at most " +
                                   std::to_string(kMaxPlacementEntries) + ")");
  }
  for (std::string_view e : list) {
    Status s = CheckEntry(kind, e);
    if (!s.ok()) return s;
  }
  return Status::OK();
}

// worker: a bare key becomes `key=` (a worker label always has a value).
LabelEntry Parse(std::string_view e, bool worker) {
  LabelEntry l;
  const size_t eq = e.find('=');
  l.key.assign(e.substr(0, eq));
  l.has_value = worker || eq != std::string_view::npos;
  if (eq != std::string_view::npos) l.value.assign(e.substr(eq + 1));
  l.key_hash = StableHash(l.key);
  if (l.has_value) l.hash = StableHash(l.key + "=" + l.value);
  return l;
}

std::vector<LabelEntry> Compile(std::span<const std::string_view> list,
                                bool worker) {
  std::vector<LabelEntry> out;
  out.reserve(list.size());
  for (std::string_view e : list) out.push_back(Parse(e, worker));
  auto order = [](const LabelEntry& a, const LabelEntry& b) {
    return std::tie(a.key, a.has_value, a.value) <
           std::tie(b.key, b.has_value, b.value);
  };
  auto same = [](const LabelEntry& a, const LabelEntry& b) {
    return a.key == b.key && a.has_value == b.has_value && a.value == b.value;
  };
  std::sort(out.begin(), out.end(), order);
  out.erase(std::unique(out.begin(), out.end(), same), out.end());
  return out;
}

// want (a job tag or toleration) is met by have (a worker tag or taint).
bool Meets(const LabelEntry& want, const LabelEntry& have) {
  if (want.has_value) {
    return want.hash == have.hash && want.key == have.key &&
           want.value == have.value;
  }
  return want.key_hash == have.key_hash && want.key == have.key;
}

std::string Join(std::span<const std::string_view> list) {
  std::vector<std::string_view> sorted(list.begin(), list.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::string out;
  for (std::string_view e : sorted) {
    if (!out.empty()) out += ',';
    out += e;
  }
  return out;
}

}  // namespace

Status ValidateSelector(std::span<const std::string_view> tags,
                        std::span<const std::string_view> tolerations) {
  Status s = CheckList("tag", "tags", tags);
  if (!s.ok()) return s;
  return CheckList("toleration", "tolerations", tolerations);
}

Status ValidateLabels(std::span<const std::string_view> tags,
                      std::span<const std::string_view> taints) {
  Status s = CheckList("tag", "tags", tags);
  if (!s.ok()) return s;
  return CheckList("taint", "taints", taints);
}

Result<Labels> MakeLabels(std::span<const std::string_view> tags,
                          std::span<const std::string_view> taints) {
  Status s = ValidateLabels(tags, taints);
  if (!s.ok()) return s;
  return Labels{Compile(tags, true), Compile(taints, true)};
}

Result<Selector> MakeSelector(std::span<const std::string_view> tags,
                              std::span<const std::string_view> tolerations) {
  Status s = ValidateSelector(tags, tolerations);
  if (!s.ok()) return s;
  return Selector{Compile(tags, false), Compile(tolerations, false),
                  SelectorKey(tags, tolerations)};
}

bool Admits(const Labels& worker, const Selector& job) {
  for (const LabelEntry& tag : job.tags) {
    if (!std::any_of(
            worker.tags.begin(), worker.tags.end(),
            [&](const LabelEntry& have) { return Meets(tag, have); })) {
      return false;
    }
  }
  for (const LabelEntry& taint : worker.taints) {
    if (!std::any_of(
            job.tolerations.begin(), job.tolerations.end(),
            [&](const LabelEntry& tol) { return Meets(tol, taint); })) {
      return false;
    }
  }
  return true;
}

std::string SelectorKey(std::span<const std::string_view> tags,
                        std::span<const std::string_view> tolerations) {
  if (tags.empty() && tolerations.empty()) return "";
  return Join(tags) + ";" + Join(tolerations);
}

}  // namespace yard
