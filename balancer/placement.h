// Placement: which workers may take a job, from labels on both sides.
//
// Workers advertise tags and taints (wire::Ready); jobs carry required tags
// and tolerations (wire::Job). Every entry is `key` or `key=value`:
//   key    1-63 chars of [A-Za-z0-9._/-], starting with a letter or digit
//   value  0-63 chars of [A-Za-z0-9._-]
// and each list has at most 16 entries. A worker's bare `key` is the same as
// `key=` (the key with an empty value).
//
// A worker admits a job when both hold:
//   - every job tag is met by a worker tag: tag `key=value` needs exactly
//     that worker tag; tag `key` needs some worker tag with that key (any
//     value, or none);
//   - every worker taint is tolerated by a job toleration: toleration `key`
//     tolerates any taint with that key (`key` or `key=anything`);
//     toleration `key=value` tolerates exactly taint `key=value`.
// So an empty selector goes to any untainted worker, and a tainted worker
// only takes jobs that tolerate all its taints. There are no wildcards or
// negations; duplicates are harmless.
//
// Validate* run at submit (and at a worker's Ready) and name the bad entry;
// the hot path uses the compiled forms: Labels once per worker, Selector
// once per distinct selector (SelectorKey), then Admits per pair, which
// compares 64-bit hashes (confirming a hit on the strings) with no
// allocation.
//
// Thread-safety: pure functions and plain values.
#ifndef YARD_BALANCER_PLACEMENT_H_
#define YARD_BALANCER_PLACEMENT_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace yard {

inline constexpr size_t kMaxPlacementEntries = 16;  // per list
inline constexpr size_t kMaxLabelKeyChars = 63;
inline constexpr size_t kMaxLabelValueChars = 63;

// OK, or InvalidArgument naming the entry and the rule it breaks, e.g.
// "tag 'gpu!': key may only contain letters, digits and . _ / -".
Status ValidateSelector(std::span<const std::string_view> tags,
                        std::span<const std::string_view> tolerations);
Status ValidateLabels(std::span<const std::string_view> tags,
                      std::span<const std::string_view> taints);

// One entry, parsed.
struct LabelEntry {
  std::string key;
  std::string value;
  bool has_value = false;  // `key=value` (or `key=`) rather than `key`
  uint64_t key_hash = 0;   // StableHash(key)
  uint64_t hash = 0;       // StableHash("key=value"); set when has_value
};

// A worker's labels, compiled. Bare keys are stored as `key=`.
struct Labels {
  std::vector<LabelEntry> tags;
  std::vector<LabelEntry> taints;
};

// A job's selector, compiled (sorted, without duplicates).
struct Selector {
  std::vector<LabelEntry> tags;
  std::vector<LabelEntry> tolerations;
  std::string key;  // SelectorKey of the same lists
};

// Validate, then compile.
Result<Labels> MakeLabels(std::span<const std::string_view> tags,
                          std::span<const std::string_view> taints);
Result<Selector> MakeSelector(std::span<const std::string_view> tags,
                              std::span<const std::string_view> tolerations);

// Whether a worker with these labels may take a job with this selector.
bool Admits(const Labels& worker, const Selector& job);

// A canonical string for a selector: tags and tolerations each sorted and
// without duplicates, joined by ',' and separated by ';' ("gpu,zone=eu;spot",
// ";spot", "gpu;"); "" for the empty selector. Equal for selectors that
// differ only in order or duplicates: a cache key for the broker's candidate
// list per selector.
// REQUIRES: ValidateSelector(tags, tolerations).ok() (entries hold no ','
// or ';').
std::string SelectorKey(std::span<const std::string_view> tags,
                        std::span<const std::string_view> tolerations);

}  // namespace yard

#endif  // YARD_BALANCER_PLACEMENT_H_
