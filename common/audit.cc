#include "common/audit.h"

#include <spdlog/spdlog.h>

namespace yard {

std::string AuditLog::Format(std::string_view event, std::string_view key,
                             nlohmann::json fields, uint64_t suppressed) {
  nlohmann::ordered_json line;
  line["event"] = event;
  line["key"] = key;
  if (fields.is_object()) {
    for (auto& [name, value] : fields.items()) line[name] = value;
  }
  if (suppressed) line["suppressed"] = suppressed;
  // Fields may come from the network: invalid UTF-8 is replaced, not thrown.
  return kAuditPrefix +
         line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool AuditLog::Write(std::string_view event, std::string_view key,
                     nlohmann::json fields, int64_t now_ms) {
  std::string limit_key(event);
  limit_key.append(1, '\0').append(key);
  uint64_t suppressed = 0;
  if (!limit_.Allow(limit_key, now_ms, &suppressed)) return false;
  spdlog::warn("{}", Format(event, key, std::move(fields), suppressed));
  return true;
}

}  // namespace yard
