#include "loadtest/report.h"

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <thread>
#include <utility>

#include "redis/redis_client.h"

namespace yard {
namespace {

using nlohmann::json;

std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), fmt, v);
  return buf;
}

std::string Escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string ShapeLine(const LoadtestReport& r) {
  const LoadtestOptions& o = r.options;
  std::ostringstream s;
  if (r.mode != "external") s << r.mode << " mode, ";
  if (o.redis_cluster > 0) {
    s << "Redis Cluster of " << o.redis_cluster << " primaries";
    if (r.redis_shards > 0) s << " (queue in " << r.redis_shards << " shards)";
    s << ", ";
  }
  if (o.connect.empty()) {
    s << o.brokers << " broker(s), " << o.workers << " worker(s) x "
      << o.concurrency;
  } else {
    s << "connected to " << o.connect.size() << " broker(s)";
  }
  s << ", " << o.producers << " producer(s), task " << o.task << ", "
    << (o.payload_given ? o.payload.size() : static_cast<size_t>(o.size))
    << " B payload, ";
  if (o.rate > 0) {
    s << "open loop at " << Fmt("%.0f", o.rate) << " jobs/s";
  } else {
    s << "closed loop, window " << o.window << " per producer";
  }
  s << ", batch " << o.batch;
  return s.str();
}

json ConfigJson(const LoadtestReport& r) {
  const LoadtestOptions& o = r.options;
  json chaos = json::object();
  if (o.kill_worker_every_s > 0)
    chaos["kill_worker_every_s"] = o.kill_worker_every_s;
  if (o.kill_broker_at_s >= 0) {
    chaos["kill_broker_at_s"] = o.kill_broker_at_s;
    chaos["broker_down_s"] = o.broker_down_s;
  }
  if (o.restart_redis_at_s >= 0)
    chaos["restart_redis_at_s"] = o.restart_redis_at_s;
  if (o.migrate_slot_at_s >= 0)
    chaos["migrate_slot_at_s"] = o.migrate_slot_at_s;
  char host[256] = {};
  (void)::gethostname(host, sizeof(host) - 1);
  return {
      {"mode", r.mode},
      {"cluster", o.connect.empty() ? "local" : "connect"},
      {"endpoints", r.endpoints},
      {"brokers",
       o.connect.empty() ? o.brokers : static_cast<int>(o.connect.size())},
      {"workers", o.connect.empty() ? json(o.workers) : json(nullptr)},
      {"concurrency", o.connect.empty() ? json(o.concurrency) : json(nullptr)},
      {"redis", RedactRedisUrl(o.redis)},
      {"redis_fsync", o.redis == "local"
                          ? (o.redis_fsync_always ? "always" : "everysec")
                          : ""},
      // Durable mode on a Redis Cluster the load tester started: its
      // primaries (0: none), and the queue's shard count (0: not known).
      {"redis_cluster", o.redis_cluster},
      {"redis_shards", r.redis_shards},
      {"redis_url", r.redis_url},
      {"producers", o.producers},
      {"jobs", o.jobs},
      {"duration_s", o.duration_s},
      {"size",
       o.payload_given ? static_cast<int64_t>(o.payload.size()) : o.size},
      {"task", o.task},
      {"queue", o.queue},
      {"window", o.window},
      {"rate", o.rate},
      {"loop", o.rate > 0 ? "open" : "closed"},
      {"batch", o.batch},
      {"job_timeout_s", o.job_timeout_s},
      {"timeout_s", EffectiveTimeoutS(o)},
      {"heartbeat_ms", o.heartbeat_ms},
      {"chaos", chaos},
      {"host",
       {{"name", host}, {"cores", std::thread::hardware_concurrency()}}},
  };
}

}  // namespace

std::string Verdict(const LoadtestReport& r) {
  if (r.interrupted) return "interrupted";
  if (r.lost > 0) return "lost";
  if (!r.problems.empty()) return "failed";
  return "ok";
}

json LatencyJson(const Histogram& h) {
  return {{"p50", h.Percentile(0.50)},
          {"p90", h.Percentile(0.90)},
          {"p99", h.Percentile(0.99)},
          {"p999", h.Percentile(0.999)},
          {"max", h.max()},
          {"mean", h.mean()},
          {"count", h.count()}};
}

json ReportJson(const LoadtestReport& r) {
  const Ledger::Totals& t = r.totals;
  json series = json::array();
  for (const SeriesPoint& p : r.series) {
    series.push_back({
        {"t", p.t},
        {"span_s", p.span_s},
        {"submitted", p.submitted},
        {"completed", p.completed},
        {"failed", p.failed},
        {"lost", p.lost},
        {"in_flight", p.in_flight},
        {"jobs_per_s", p.jobs_per_s},
        {"latency_us",
         {{"p50", p.p50_us}, {"p99", p.p99_us}, {"max", p.max_us}}},
    });
  }
  json events = json::array();
  for (const LoadEvent& e : r.events) {
    json event = {
        {"t", e.t}, {"event", e.what}, {"detail", e.detail}, {"ok", e.ok}};
    for (const auto& [key, value] : e.numbers) event[key] = value;
    events.push_back(std::move(event));
  }
  return {
      {"config", ConfigJson(r)},
      {"totals",
       {{"submitted", t.submitted},
        {"completed", t.completed},
        {"failed", t.failed + t.rejected},
        {"duplicated", r.duplicated},
        {"lost", r.lost},
        {"rejected", t.rejected},
        {"timed_out", t.timed_out},
        {"unanswered", t.unanswered},
        {"corrupt", t.corrupt},
        {"resent", r.resent},
        {"busy", r.busy}}},
      {"jobs_per_s", r.jobs_per_s},
      {"latency_us", LatencyJson(r.latency)},
      {"series", series},
      {"events", events},
      {"elapsed_s", r.elapsed_s},
      {"wall_s", r.wall_s},
      {"interrupted", r.interrupted},
      {"problems", r.problems},
      {"verdict", Verdict(r)},
      {"exit_code", r.ExitCode()},
      {"logs_dir", r.logs_dir},
      {"brokers", r.brokers},
  };
}

std::string ReportTable(const LoadtestReport& r) {
  const Ledger::Totals& t = r.totals;
  const Histogram& h = r.latency;
  std::ostringstream s;
  char line[256];
  s << "yard loadtest: " << ShapeLine(r) << "\n";
  auto row = [&](const char* k, uint64_t v, const std::string& note) {
    std::snprintf(line, sizeof(line), "%-12s %12" PRIu64 "%s\n", k, v,
                  note.empty() ? "" : ("  " + note).c_str());
    s << line;
  };
  row("submitted", t.submitted, "");
  row("completed", t.completed, "");
  row("failed", t.failed + t.rejected,
      t.rejected ? std::to_string(t.rejected) + " refused" : "");
  row("duplicated", r.duplicated,
      r.resent ? std::to_string(r.resent) + " resends" : "");
  row("lost", r.lost,
      r.lost ? std::to_string(t.timed_out) + " timed out, " +
                   std::to_string(t.unanswered) + " unanswered"
             : "");
  if (t.corrupt) row("corrupt", t.corrupt, "echo output != payload");
  std::snprintf(line, sizeof(line), "%-12s %12.0f jobs/s over %.3f s\n",
                "throughput", r.jobs_per_s, r.elapsed_s);
  s << line;
  std::snprintf(line, sizeof(line), "%-12s %9s %9s %9s %9s %9s\n", "latency_us",
                "p50", "p90", "p99", "p99.9", "max");
  s << line;
  std::snprintf(line, sizeof(line),
                "%-12s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64
                " %9" PRIu64 "\n",
                "", h.Percentile(0.5), h.Percentile(0.9), h.Percentile(0.99),
                h.Percentile(0.999), h.max());
  s << line;
  for (const LoadEvent& e : r.events) {
    std::snprintf(line, sizeof(line), "event %7.2fs %s%s: ", e.t,
                  e.what.c_str(), e.ok ? "" : " FAILED");
    s << line << e.detail << "\n";
  }
  for (const std::string& p : r.problems) s << "problem: " << p << "\n";
  const std::string v = Verdict(r);
  if (v == "ok") {
    s << "verdict: ok - every submitted job is accounted for, none lost\n";
  } else if (v == "lost") {
    s << "verdict: LOST - " << r.lost << " job(s) without a result\n";
  } else if (v == "interrupted") {
    s << "verdict: interrupted - jobs without a result by then count as lost\n";
  } else {
    s << "verdict: FAILED - see the problems above\n";
  }
  if (!r.logs_dir.empty()) s << "logs: " << r.logs_dir << "\n";
  return s.str();
}

namespace {

struct Line {
  std::string name;
  std::string color;
  std::vector<double> y;  // < 0: no value (a gap in the line)
};

// Axis labels: 40k, 1.5M; or, for microseconds, 250us, 12ms, 3s.
std::string Short(double v, bool micros) {
  if (micros) {
    if (v >= 1e6) return Fmt("%gs", v / 1e6);
    if (v >= 1e3) return Fmt("%gms", v / 1e3);
    return Fmt("%gus", v);
  }
  if (v >= 1e6) return Fmt("%gM", v / 1e6);
  if (v >= 1e3) return Fmt("%gk", v / 1e3);
  return Fmt("%g", v);
}

// A step of 1, 2 or 5 times a power of ten giving about `n` ticks to `max`.
double NiceStep(double max, int n) {
  const double raw = max / n;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (raw <= m * mag) return m * mag;
  }
  return 10 * mag;
}

// The plot area of a chart and its scales: data to SVG coordinates.
struct Plot {
  double w = 900, h = 300, left = 70, right = 20, top = 40, bottom = 40;
  double pw = w - left - right, ph = h - top - bottom;
  double xmax = 1, ymin = 1e300, ymax = 0;
  bool log_y = false;
  std::vector<double> ticks;  // y-axis grid values

  double X(double v) const { return left + pw * v / xmax; }
  double Y(double v) const {
    double f = log_y ? (std::log10(std::max(v, ymin)) - std::log10(ymin)) /
                           (std::log10(ymax) - std::log10(ymin))
                     : v / ymax;
    return top + ph * (1 - std::clamp(f, 0.0, 1.0));
  }
};

// The scales that fit `x`, the events and every line's (non-negative, or
// for a log axis positive) values, with round y ticks.
Plot Scale(const std::vector<double>& x, const std::vector<Line>& lines,
           const std::vector<LoadEvent>& events, bool log_y) {
  Plot p;
  p.log_y = log_y;
  for (double v : x) p.xmax = std::max(p.xmax, v);
  for (const LoadEvent& e : events) p.xmax = std::max(p.xmax, e.t);
  for (const Line& l : lines) {
    for (double v : l.y) {
      if (v < 0 || (log_y && v <= 0)) continue;
      p.ymax = std::max(p.ymax, v);
      p.ymin = std::min(p.ymin, v);
    }
  }
  if (log_y) {
    if (p.ymax <= 0) p.ymin = 1, p.ymax = 10;
    p.ymin = std::pow(10, std::floor(std::log10(std::max(p.ymin, 1.0))));
    p.ymax = std::pow(10, std::ceil(std::log10(std::max(p.ymax, p.ymin * 10))));
    for (double v = p.ymin; v <= p.ymax * 1.0001; v *= 10) p.ticks.push_back(v);
  } else {
    const double step = NiceStep(p.ymax > 0 ? p.ymax : 1, 4);
    p.ymax = step * std::ceil((p.ymax > 0 ? p.ymax : 1) / step);
    for (double v = 0; v <= p.ymax * 1.0001; v += step) p.ticks.push_back(v);
  }
  return p;
}

// The frame: title, legend, box, y grid and labels, x labels.
void DrawFrame(std::ostringstream& s, const Plot& p, const std::string& title,
               const std::string& unit, const std::vector<Line>& lines) {
  s << "<text x='" << p.left << "' y='16' font-weight='bold'>" << Escape(title)
    << "</text>\n";
  // The legend, right-aligned on the title row.
  double legend_x = p.left + p.pw;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    legend_x -= 24 + 7 * static_cast<double>(it->name.size());
    s << "<rect x='" << legend_x << "' y='7' width='10' height='10' fill='"
      << it->color << "'/><text x='" << legend_x + 14
      << "' y='16' font-size='12'>" << Escape(it->name) << "</text>\n";
  }
  s << "<rect x='" << p.left << "' y='" << p.top << "' width='" << p.pw
    << "' height='" << p.ph << "' fill='none' stroke='#999'/>\n";
  for (double v : p.ticks) {
    s << "<line x1='" << p.left << "' x2='" << p.left + p.pw << "' y1='"
      << p.Y(v) << "' y2='" << p.Y(v) << "' stroke='#eee'/>";
    s << "<text x='" << p.left - 6 << "' y='" << p.Y(v) + 4
      << "' font-size='11' text-anchor='end'>" << Short(v, p.log_y)
      << "</text>\n";
  }
  s << "<text x='12' y='" << p.top + p.ph / 2
    << "' font-size='11' transform='rotate(-90 12 " << p.top + p.ph / 2
    << ")' text-anchor='middle'>" << Escape(unit) << "</text>\n";
  const double xstep = NiceStep(p.xmax, 10);
  for (double v = 0; v <= p.xmax + 1e-9; v += xstep) {
    s << "<text x='" << p.X(v) << "' y='" << p.top + p.ph + 16
      << "' font-size='11' text-anchor='middle'>" << Fmt("%g", v) << "</text>";
  }
  s << "<text x='" << p.left + p.pw / 2 << "' y='" << p.h - 6
    << "' font-size='11' text-anchor='middle'>seconds since the load "
       "started</text>\n";
}

// Event markers; labels on three staggered rows so that close ones stay
// readable (the full text is in each marker's tooltip).
void DrawEvents(std::ostringstream& s, const Plot& p,
                const std::vector<LoadEvent>& events) {
  for (size_t i = 0; i < events.size(); ++i) {
    const LoadEvent& e = events[i];
    const double ex = p.X(e.t);
    s << "<line x1='" << ex << "' x2='" << ex << "' y1='" << p.top << "' y2='"
      << p.top + p.ph << "' stroke='" << (e.ok ? "#c00" : "#f0f")
      << "' stroke-dasharray='4 3'><title>"
      << Escape(Fmt("%.2fs ", e.t) + e.what + ": " + e.detail)
      << "</title></line>";
    s << "<text x='" << ex + 3 << "' y='" << p.top + 12 + 12 * (i % 3)
      << "' font-size='10' fill='#c00'>" << Escape(e.what) << "</text>\n";
  }
}

// One path per line; a gap where a value is missing (negative).
void DrawLines(std::ostringstream& s, const Plot& p,
               const std::vector<double>& x, const std::vector<Line>& lines) {
  for (const Line& l : lines) {
    s << "<path fill='none' stroke='" << l.color << "' stroke-width='1.5' d='";
    bool pen_down = false;
    for (size_t i = 0; i < x.size() && i < l.y.size(); ++i) {
      if (l.y[i] < 0 || (p.log_y && l.y[i] <= 0)) {
        pen_down = false;
        continue;
      }
      s << (pen_down ? "L" : "M") << Fmt("%.1f", p.X(x[i])) << ","
        << Fmt("%.1f", p.Y(l.y[i])) << " ";
      pen_down = true;
    }
    s << "'/>\n";
  }
}

// An SVG line chart of `lines` over x = series times, with the events as
// dashed vertical markers. log_y: a log10 axis of microseconds (latency).
std::string Chart(const std::string& title, const std::string& unit,
                  const std::vector<double>& x, const std::vector<Line>& lines,
                  const std::vector<LoadEvent>& events, bool log_y) {
  const Plot p = Scale(x, lines, events, log_y);
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << p.w << "' height='"
    << p.h << "' viewBox='0 0 " << p.w << " " << p.h
    << "' font-family='sans-serif'>\n";
  DrawFrame(s, p, title, unit, lines);
  DrawEvents(s, p, events);
  DrawLines(s, p, x, lines);
  s << "</svg>\n";
  return s.str();
}

}  // namespace

std::string ReportHtml(const LoadtestReport& r) {
  std::vector<double> x, rate, p50, p99, pmax, inflight;
  for (const SeriesPoint& p : r.series) {
    x.push_back(p.t);
    rate.push_back(p.jobs_per_s);
    const bool any = p.completed + p.failed > 0;
    p50.push_back(any ? static_cast<double>(p.p50_us) : -1);
    p99.push_back(any ? static_cast<double>(p.p99_us) : -1);
    pmax.push_back(any ? static_cast<double>(p.max_us) : -1);
    inflight.push_back(static_cast<double>(p.in_flight));
  }
  char when[64];
  std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z",
                std::localtime(&now));
  const std::string verdict = Verdict(r);
  std::ostringstream s;
  s << "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
       "<title>yard loadtest report</title>\n<style>"
       "body{font-family:sans-serif;margin:24px;max-width:960px}"
       // The summary wraps its long lines (a path, a problem) rather than
       // run past the page; the charts shrink to it.
       "pre{background:#f6f6f6;padding:12px;white-space:pre-wrap;"
       "overflow-wrap:anywhere;box-sizing:border-box;max-width:100%}"
       "svg{max-width:100%;height:auto}"
       ".ok{color:#070}.bad{color:#c00}</style></head><body>\n";
  s << "<h1>yard loadtest</h1>\n<p>" << Escape(ShapeLine(r)) << "<br>" << when
    << "</p>\n";
  s << "<h2 class='" << (verdict == "ok" ? "ok" : "bad")
    << "'>verdict: " << verdict << "</h2>\n";
  s << "<pre>" << Escape(ReportTable(r)) << "</pre>\n";
  s << Chart("Throughput (results per second)", "jobs/s", x,
             {{"completed + failed", "#1f77b4", rate}}, r.events, false);
  s << Chart("Latency of the results of each point (log scale)", "latency", x,
             {{"p50", "#2ca02c", p50},
              {"p99", "#ff7f0e", p99},
              {"max", "#d62728", pmax}},
             r.events, true);
  s << Chart("Jobs in flight", "jobs", x, {{"in flight", "#9467bd", inflight}},
             r.events, false);
  s << "<h2>Configuration</h2>\n<pre>" << Escape(ConfigJson(r).dump(2))
    << "</pre>\n</body></html>\n";
  return s.str();
}

}  // namespace yard
