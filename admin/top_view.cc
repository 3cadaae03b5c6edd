#include "admin/top_view.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <limits>

namespace yard::admin {
namespace {

using Json = nlohmann::ordered_json;

// What a broker answers when the key is not an admin's (client/producer.h).
constexpr std::string_view kForbidden = "Forbidden";
constexpr char kAdminHint[] =
    "stats need an admin key: --curve-secret with a key in the brokers' "
    "admin set";

const Json& Field(const Json& j, const char* key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string Text(const Json& v) {
  return v.is_string() ? v.get<std::string>() : std::string();
}

std::string Printf(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, value);
  return buf;
}

// An integer count; "-" when missing or null.
std::string Count(const Json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return Printf("%.0f", v.get<double>());
  return "-";
}

// Jobs per second: one decimal, "k" past ten thousand.
std::string Rate(const Json& v) {
  if (!v.is_number()) return "-";
  const double r = v.get<double>();
  return r >= 10000 ? Printf("%.1fk", r / 1000) : Printf("%.1f", r);
}

// Milliseconds, three significant digits or so.
std::string Ms(const Json& v) {
  if (!v.is_number()) return "-";
  const double ms = v.get<double>();
  if (ms < 10) return Printf("%.2f", ms);
  if (ms < 1000) return Printf("%.1f", ms);
  return Printf("%.0f", ms);
}

// Columns of text already passed through FitToWidth: its characters.
size_t Columns(std::string_view text) {
  return static_cast<size_t>(std::count_if(
      text.begin(), text.end(),
      [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

struct Column {
  const char* title;
  size_t width;
  bool left = false;  // numbers are right-aligned
};

// One table row: each cell cut and padded to its column, one space apart;
// cells past the columns are left out.
std::string Row(const std::vector<Column>& columns,
                const std::vector<std::string>& cells) {
  std::string line;
  for (size_t i = 0; i < columns.size() && i < cells.size(); ++i) {
    if (i > 0) line += ' ';
    const std::string cell = FitToWidth(cells[i], columns[i].width);
    const std::string pad(columns[i].width - Columns(cell), ' ');
    line += columns[i].left ? cell + pad : pad + cell;
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

std::string Header(const std::vector<Column>& columns) {
  std::vector<std::string> titles;
  for (const Column& c : columns) titles.emplace_back(c.title);
  return Row(columns, titles);
}

// The widest of `texts` (at least `title`'s width), at most `cap`.
size_t FitColumn(const std::vector<std::string>& texts, const char* title,
                 size_t cap) {
  size_t width = std::string_view(title).size();
  for (const std::string& t : texts) {
    width = std::max(width, Columns(FitToWidth(t, cap)));
  }
  return width;
}

std::vector<std::string> Strings(const Json& list, const char* key) {
  std::vector<std::string> out;
  if (!list.is_array()) return out;
  for (const Json& item : list) out.push_back(Text(Field(item, key)));
  return out;
}

// "p50 1.20 ms  p99 3.40 ms", or "" without latencies.
std::string Latency(const Json& latency) {
  if (!latency.is_object()) return "";
  return "  p50 " + Ms(Field(latency, "p50")) + " ms  p99 " +
         Ms(Field(latency, "p99")) + " ms";
}

std::string Clock(const Json& time_ms) {
  if (!time_ms.is_number_integer()) return "--:--:--";
  const std::time_t t = static_cast<std::time_t>(time_ms.get<int64_t>() / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  return buf;
}

bool Refused(const Json& broker) {
  return Text(Field(broker, "error")).starts_with(kForbidden);
}

// The lines above the tables: title, totals, jobs, the durable queue, and
// what to do about a refusal.
std::vector<std::string> Summary(const Json& s, int64_t interval_ms) {
  const Json& totals = Field(s, "totals");
  const Json& rates = Field(totals, "rates");
  std::vector<std::string> lines;
  lines.push_back("yard top  " + Clock(Field(s, "time_ms")) + "  every " +
                  Printf("%.1f", static_cast<double>(interval_ms) / 1000) +
                  " s  (q quits)");
  lines.push_back("brokers " + Count(Field(totals, "brokers_up")) + "/" +
                  Count(Field(totals, "brokers")) + " up  workers " +
                  Count(Field(totals, "workers")) + "  capacity " +
                  Count(Field(totals, "capacity")) + "  in " +
                  Rate(Field(rates, "submitted")) + "/s  done " +
                  Rate(Field(rates, "completed")) + "/s  failed " +
                  Rate(Field(rates, "failed")) + "/s" +
                  Latency(Field(totals, "latency_ms")));
  std::string jobs = "jobs  ready " + Count(Field(totals, "ready")) +
                     "  delayed " + Count(Field(totals, "delayed")) +
                     "  running " + Count(Field(totals, "running")) +
                     "  in flight " + Count(Field(totals, "in_flight"));
  if (!Field(totals, "dead").is_null()) {
    jobs += "  dead " + Count(Field(totals, "dead"));
  }
  lines.push_back(jobs);
  const Json& queue = Field(s, "queue");
  if (queue.is_object()) {
    const Json& counters = Field(queue, "counters");
    std::string line = "queue " + Text(Field(queue, "queue"));
    if (Field(queue, "paused").is_boolean() &&
        Field(queue, "paused").get<bool>()) {
      line += " (paused)";
    }
    for (const char* key : {"ready", "delayed", "running", "dead"}) {
      line += std::string("  ") + key + " " + Count(Field(queue, key));
    }
    line += "  |";
    for (const char* key : {"submitted", "completed", "retried", "dead"}) {
      line += std::string("  ") + key + " " + Count(Field(counters, key));
    }
    lines.push_back(line);
  }
  for (const Json& b : Field(s, "brokers")) {
    if (Refused(b)) {
      lines.push_back(std::string("! ") + kAdminHint);
      break;
    }
  }
  return lines;
}

std::vector<std::string> BrokerRows(const Json& brokers,
                                    std::vector<Column>* columns) {
  *columns = {
      {"BROKER", FitColumn(Strings(brokers, "endpoint"), "BROKER", 40), true},
      {"STATE", 5, true},
      {"READY", 6},
      {"DELAYED", 7},
      {"RUNNING", 7},
      {"IN FLIGHT", 9},
      {"WORKERS", 7},
      {"IN/S", 7},
      {"DONE/S", 7},
      {"COMPLETED", 9},
      {"FAILED", 6},
      {"P50 MS", 6},
      {"P99 MS", 6}};
  std::vector<std::string> rows;
  for (const Json& b : brokers) {
    const std::string endpoint = Text(Field(b, "endpoint"));
    const Json& up = Field(b, "up");
    const std::string error = Text(Field(b, "error"));
    if (!(up.is_boolean() && up.get<bool>())) {
      // The error, if any, in place of the numbers.
      const std::string state = error.empty() ? "down" : "error";
      rows.push_back(Row(*columns, {endpoint, state}) + "  " +
                     (error.empty() ? "no answer" : error));
      continue;
    }
    const Json& counters = Field(b, "counters");
    const Json& rates = Field(b, "rates");
    const Json& latency = Field(b, "latency_ms");
    const bool draining =
        Field(b, "draining").is_boolean() && Field(b, "draining").get<bool>();
    rows.push_back(Row(
        *columns,
        {endpoint, draining ? "drain" : "up", Count(Field(b, "ready")),
         Count(Field(b, "delayed")), Count(Field(b, "running")),
         Count(Field(b, "in_flight")), Count(Field(b, "workers")),
         Rate(Field(rates, "submitted")), Rate(Field(rates, "completed")),
         Count(Field(counters, "completed")), Count(Field(counters, "failed")),
         Ms(Field(latency, "p50")), Ms(Field(latency, "p99"))}));
  }
  if (rows.empty()) rows.push_back("(no brokers)");
  return rows;
}

std::vector<std::string> WorkerRows(const Json& workers,
                                    std::vector<Column>* columns) {
  *columns = {
      {"WORKER", FitColumn(Strings(workers, "name"), "WORKER", 32), true},
      {"BROKER", FitColumn(Strings(workers, "broker"), "BROKER", 40), true},
      {"CAPACITY", 8},
      {"CREDIT", 6},
      {"IN FLIGHT", 9},
      {"QUARANTINED", 11, true}};
  std::vector<std::string> rows;
  for (const Json& w : workers) {
    const Json& q = Field(w, "quarantined");
    rows.push_back(
        Row(*columns, {Text(Field(w, "name")), Text(Field(w, "broker")),
                       Count(Field(w, "capacity")), Count(Field(w, "credit")),
                       Count(Field(w, "outstanding")),
                       q.is_boolean() ? (q.get<bool>() ? "yes" : "no") : "-"}));
  }
  if (rows.empty()) rows.push_back("(no workers)");
  return rows;
}

// A table's header and up to `max_rows` rows; when some do not fit, the
// last shown row says how many are left out.
void AppendTable(const std::string& header,
                 const std::vector<std::string>& rows, size_t max_rows,
                 const char* noun, std::vector<std::string>* lines) {
  lines->push_back(header);
  if (rows.size() <= max_rows) {
    lines->insert(lines->end(), rows.begin(), rows.end());
    return;
  }
  if (max_rows == 0) return;
  lines->insert(lines->end(), rows.begin(),
                rows.begin() + static_cast<std::ptrdiff_t>(max_rows - 1));
  lines->push_back("... " + std::to_string(rows.size() - max_rows + 1) +
                   " more " + noun);
}

}  // namespace

std::string FitToWidth(std::string_view text, size_t width) {
  std::string out;
  size_t columns = 0;
  for (size_t i = 0; i < text.size() && columns < width; ++columns) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xE  ? 3
                 : (c >> 3) == 0x1E ? 4
                                    : 0;
    bool valid = len > 0 && i + len <= text.size();
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    }
    // C0 controls and DEL; C1 controls (U+0080..U+009F: 0xC2 0x80..0x9F),
    // which some terminals take as escape sequences too.
    const bool control = c < 0x20 || c == 0x7F ||
                         (valid && len == 2 && c == 0xC2 &&
                          static_cast<unsigned char>(text[i + 1]) < 0xA0);
    if (!valid || control) {
      out += '?';
      i += valid ? len : 1;
      continue;
    }
    out.append(text.substr(i, len));
    i += len;
  }
  return out;
}

std::vector<std::string> RenderTop(const Json& snapshot, ScreenSize size,
                                   int64_t interval_ms) {
  std::vector<std::string> lines = Summary(snapshot, interval_ms);
  std::vector<Column> broker_columns, worker_columns;
  const std::vector<std::string> brokers =
      BrokerRows(Field(snapshot, "brokers"), &broker_columns);
  const std::vector<std::string> workers =
      WorkerRows(Field(snapshot, "workers"), &worker_columns);
  // Below the summary: a blank line, the brokers' header and rows, a blank
  // line, the workers' header and rows. When they do not all fit, each
  // table gets half of the rows left, and what one does not need the other.
  // (A height past any screen, e.g. SIZE_MAX for "all of it", must not
  // turn negative.)
  const auto height = static_cast<std::ptrdiff_t>(
      std::min<size_t>(size.height, std::numeric_limits<int32_t>::max()));
  const auto avail = height - static_cast<std::ptrdiff_t>(lines.size()) - 4;
  auto broker_rows = static_cast<std::ptrdiff_t>(brokers.size());
  auto worker_rows = static_cast<std::ptrdiff_t>(workers.size());
  if (broker_rows + worker_rows > avail) {
    const std::ptrdiff_t half = std::max<std::ptrdiff_t>(avail / 2, 0);
    if (broker_rows <= half) {
      worker_rows = avail - broker_rows;
    } else if (worker_rows <= avail - half) {
      broker_rows = avail - worker_rows;
    } else {
      broker_rows = half;
      worker_rows = avail - half;
    }
  }
  lines.emplace_back();
  AppendTable(Header(broker_columns), brokers,
              static_cast<size_t>(std::max<std::ptrdiff_t>(broker_rows, 0)),
              "brokers", &lines);
  lines.emplace_back();
  AppendTable(Header(worker_columns), workers,
              static_cast<size_t>(std::max<std::ptrdiff_t>(worker_rows, 0)),
              "workers", &lines);
  if (lines.size() > size.height) lines.resize(size.height);
  for (std::string& line : lines) line = FitToWidth(line, size.width);
  return lines;
}

std::string NoBrokerMessage(const Json& snapshot) {
  std::string message = "no broker answered";
  bool refused = false;
  const Json& brokers = Field(snapshot, "brokers");
  for (const Json& b : brokers) {
    const std::string error = Text(Field(b, "error"));
    message += (&b == &brokers.front() ? ": " : "; ") +
               Text(Field(b, "endpoint")) + " " +
               (error.empty() ? "did not answer" : error);
    refused = refused || Refused(b);
  }
  if (refused) message += std::string(" (") + kAdminHint + ")";
  return FitToWidth(message, 4096);
}

}  // namespace yard::admin
