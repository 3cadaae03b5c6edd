// The screen of `yard top` (admin/top_view.h) from snapshots written out
// by hand in the collector's shape (admin/overview.h).
#include "admin/top_view.h"

#include <gtest/gtest.h>

#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace yard::admin {
namespace {

using Json = nlohmann::ordered_json;

Json Broker(const std::string& endpoint) {
  Json b = Json::parse(R"({
    "endpoint": "", "up": true, "error": null, "queue": "default",
    "draining": false, "ready": 3, "delayed": 1, "running": 8,
    "in_flight": 11, "workers": 2,
    "counters": {"submitted": 2000, "accepted": 2000, "completed": 1987,
                 "failed": 2},
    "rates": {"submitted": 120.0, "completed": 118.5, "failed": 0.0},
    "latency_ms": {"p50": 1.234, "p90": 2.5, "p99": 31.5}})");
  b["endpoint"] = endpoint;
  return b;
}

Json Worker(const std::string& name, const std::string& broker) {
  return {{"name", name}, {"broker", broker}, {"capacity", 4},
          {"credit", 1},  {"outstanding", 3}, {"quarantined", false}};
}

Json Snapshot() {
  Json s = Json::parse(R"({
    "time_ms": 1700000000000, "interval_s": 1.0, "brokers": [], "workers": [],
    "queue": null,
    "totals": {"brokers_up": 1, "brokers": 1, "workers": 2, "capacity": 8,
               "ready": 3, "delayed": 1, "running": 8, "in_flight": 11,
               "dead": null,
               "rates": {"submitted": 120.0, "completed": 118.5,
                         "failed": 0.0},
               "latency_ms": {"p50": 1.234, "p90": 2.5, "p99": 31.5}}})");
  s["brokers"].push_back(Broker("tcp://127.0.0.1:5555"));
  s["workers"].push_back(Worker("host:4242", "tcp://127.0.0.1:5555"));
  s["workers"].push_back(Worker("host:4243", "tcp://127.0.0.1:5555"));
  return s;
}

std::string Joined(const std::vector<std::string>& lines) {
  std::string all;
  for (const std::string& l : lines) all += l + "\n";
  return all;
}

// The words of `line`.
std::vector<std::string> Tokens(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

// Where `text` ends in `line`; npos when it is not there.
size_t EndOf(const std::string& line, const std::string& text) {
  const size_t at = line.find(text);
  return at == std::string::npos ? at : at + text.size();
}

// The line that contains `text`; "" when none does.
std::string LineWith(const std::vector<std::string>& lines,
                     const std::string& text) {
  for (const std::string& l : lines) {
    if (l.find(text) != std::string::npos) return l;
  }
  return "";
}

TEST(TopViewTest, ShowsBrokersWorkersAndTotals) {
  const std::vector<std::string> lines = RenderTop(Snapshot(), {120, 30}, 1000);
  const std::string all = Joined(lines);
  EXPECT_NE(LineWith(lines, "brokers 1/1 up  workers 2  capacity 8"), "")
      << all;
  EXPECT_NE(LineWith(lines, "in 120.0/s  done 118.5/s"), "") << all;
  EXPECT_NE(LineWith(lines, "p50 1.23 ms  p99 31.5 ms"), "") << all;
  EXPECT_NE(LineWith(lines, "in flight 11"), "") << all;
  EXPECT_EQ(LineWith(lines, "dead"), "") << all;  // memory mode
  EXPECT_EQ(LineWith(lines, "queue "), "") << all;
  const std::vector<std::string> header = Tokens(LineWith(lines, "BROKER"));
  EXPECT_EQ(header, (std::vector<std::string>{
                        "BROKER", "STATE", "READY", "DELAYED", "RUNNING", "IN",
                        "FLIGHT", "WORKERS", "IN/S", "DONE/S", "COMPLETED",
                        "FAILED", "P50", "MS", "P99", "MS"}));
  const std::string broker = LineWith(lines, "tcp://127.0.0.1:5555 up");
  EXPECT_EQ(Tokens(broker),
            (std::vector<std::string>{"tcp://127.0.0.1:5555", "up", "3", "1",
                                      "8", "11", "2", "120.0", "118.5", "1987",
                                      "2", "1.23", "31.5"}))
      << all;
  // Numbers end where their titles end.
  EXPECT_EQ(EndOf(LineWith(lines, "BROKER"), "COMPLETED"),
            EndOf(broker, "1987"))
      << all;
  EXPECT_EQ(EndOf(LineWith(lines, "BROKER"), "P99 MS"), broker.size()) << all;
  EXPECT_EQ(Tokens(LineWith(lines, "host:4243")),
            (std::vector<std::string>{"host:4243", "tcp://127.0.0.1:5555", "4",
                                      "1", "3", "no"}))
      << all;
}

TEST(TopViewTest, ShowsTheDurableQueue) {
  Json s = Snapshot();
  s["totals"]["dead"] = 7;
  s["queue"] = {
      {"queue", "mail"},
      {"ready", 5},
      {"running", 2},
      {"delayed", 4},
      {"dead", 7},
      {"paused", true},
      {"counters",
       {{"submitted", 100}, {"completed", 80}, {"retried", 3}, {"dead", 7}}}};
  const std::vector<std::string> lines = RenderTop(s, {200, 30}, 500);
  EXPECT_NE(LineWith(lines, "every 0.5 s"), "") << Joined(lines);
  EXPECT_NE(LineWith(lines, "in flight 11  dead 7"), "") << Joined(lines);
  EXPECT_NE(LineWith(lines,
                     "queue mail (paused)  ready 5  delayed 4  running "
                     "2  dead 7  |  submitted 100  completed 80  "
                     "retried 3  dead 7"),
            "")
      << Joined(lines);
}

TEST(TopViewTest, CutsLinesAtTheWidth) {
  Json s = Snapshot();
  s["workers"][0]["name"] = std::string(100, 'w');
  for (size_t width : {20, 47, 80, 119}) {
    for (const std::string& line : RenderTop(s, {width, 30}, 1000)) {
      EXPECT_LE(line.size(), width) << line;
    }
  }
  // A long name is cut in its column; the row keeps its other cells.
  EXPECT_NE(
      LineWith(RenderTop(s, {200, 30}, 1000), std::string(32, 'w') + " tcp://"),
      "");
}

TEST(TopViewTest, CountsTheRowsThatDoNotFit) {
  Json s = Snapshot();
  s["workers"] = Json::array();
  for (int i = 0; i < 50; ++i) {
    s["workers"].push_back(
        Worker("w" + std::to_string(i), "tcp://127.0.0.1:5555"));
  }
  const std::vector<std::string> lines = RenderTop(s, {120, 20}, 1000);
  ASSERT_EQ(lines.size(), 20u) << Joined(lines);
  // 20 lines: 3 summary, blank, header, 1 broker, blank, header, 12 worker
  // rows of which the last counts the 39 left out.
  EXPECT_EQ(lines.back(), "... 39 more workers") << Joined(lines);
  EXPECT_EQ(lines[lines.size() - 2].rfind("w10 ", 0), 0u) << Joined(lines);
  EXPECT_NE(LineWith(lines, "tcp://127.0.0.1:5555 up"), "") << Joined(lines);
  // Both tables overflowing share the rows.
  for (int i = 0; i < 30; ++i) {
    s["brokers"].push_back(Broker("tcp://127.0.0.1:" + std::to_string(i)));
  }
  const std::vector<std::string> both = RenderTop(s, {120, 20}, 1000);
  ASSERT_EQ(both.size(), 20u) << Joined(both);
  EXPECT_NE(LineWith(both, "... 26 more brokers"), "") << Joined(both);
  EXPECT_EQ(both.back(), "... 44 more workers") << Joined(both);
}

TEST(TopViewTest, AHeightOfAllOfItShowsEveryRow) {
  Json s = Snapshot();
  for (int i = 0; i < 50; ++i) {
    s["workers"].push_back(
        Worker("w" + std::to_string(i), "tcp://127.0.0.1:5555"));
  }
  const std::vector<std::string> lines =
      RenderTop(s, {120, std::numeric_limits<size_t>::max()}, 1000);
  EXPECT_NE(LineWith(lines, "tcp://127.0.0.1:5555 up"), "") << Joined(lines);
  EXPECT_NE(LineWith(lines, "w49 "), "") << Joined(lines);
  EXPECT_EQ(LineWith(lines, "more"), "") << Joined(lines);
}

TEST(TopViewTest, ShowsDownBrokersAndWhatToDoAboutARefusal) {
  Json s = Snapshot();
  s["brokers"][0]["up"] = false;
  s["brokers"].push_back(Broker("tcp://127.0.0.1:6666"));
  s["brokers"][1]["up"] = false;
  s["brokers"][1]["error"] = "Forbidden: StatsRequest needs the admin role";
  const std::vector<std::string> lines = RenderTop(s, {160, 30}, 1000);
  EXPECT_NE(LineWith(lines, "tcp://127.0.0.1:5555 down  no answer"), "")
      << Joined(lines);
  EXPECT_NE(LineWith(lines,
                     "tcp://127.0.0.1:6666 error  Forbidden: "
                     "StatsRequest needs the admin role"),
            "")
      << Joined(lines);
  EXPECT_NE(LineWith(lines, "! stats need an admin key"), "") << Joined(lines);
  const std::string message = NoBrokerMessage(s);
  EXPECT_EQ(message.find("no broker answered: tcp://127.0.0.1:5555 did not "
                         "answer; tcp://127.0.0.1:6666 Forbidden"),
            0u)
      << message;
  EXPECT_NE(message.find("admin key"), std::string::npos) << message;
  // Without a refusal there is no advice about keys.
  s["brokers"].erase(1);
  EXPECT_EQ(LineWith(RenderTop(s, {160, 30}, 1000), "admin"), "");
  EXPECT_EQ(NoBrokerMessage(s).find("admin"), std::string::npos);
}

TEST(TopViewTest, EscapeSequencesFromTheNetworkNeverReachTheTerminal) {
  Json s = Snapshot();
  s["workers"][0]["name"] = "evil\x1b]0;owned\x07\x1b[2J";
  s["brokers"][0]["up"] = false;
  s["brokers"][0]["error"] =
      "bad\r\nline\xc2\x9b"
      "2J";
  for (const std::string& line : RenderTop(s, {200, 30}, 1000)) {
    for (char c : line) {
      EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20) << line;
    }
    EXPECT_EQ(line.find("\xc2\x9b"), std::string::npos) << line;
  }
  EXPECT_NE(LineWith(RenderTop(s, {200, 30}, 1000), "evil?]0;owned??[2J"), "");
}

TEST(TopViewTest, FitToWidthCountsCharactersNotBytes) {
  EXPECT_EQ(FitToWidth("h\xc3\xa9llo", 2), "h\xc3\xa9");
  EXPECT_EQ(FitToWidth("\xe2\x82\xac\xe2\x82\xac", 1), "\xe2\x82\xac");
  EXPECT_EQ(FitToWidth("ab\xff"
                       "cd",
                       10),
            "ab?cd");                               // not UTF-8
  EXPECT_EQ(FitToWidth("ab\xe2\x82", 10), "ab??");  // cut short
  EXPECT_EQ(FitToWidth("abc", 0), "");
}

TEST(TopViewTest, MissingNumbersShowAsDashes) {
  Json s = {{"brokers", {{{"endpoint", "tcp://127.0.0.1:1"}, {"up", true}}}}};
  const std::vector<std::string> lines = RenderTop(s, {120, 30}, 1000);
  EXPECT_NE(LineWith(lines, "brokers -/- up  workers -"), "") << Joined(lines);
  const std::vector<std::string> row =
      Tokens(LineWith(lines, "tcp://127.0.0.1:1 up"));
  ASSERT_EQ(row.size(), 13u) << Joined(lines);
  for (size_t i = 2; i < row.size(); ++i) EXPECT_EQ(row[i], "-") << i;
  EXPECT_NE(LineWith(lines, "(no workers)"), "") << Joined(lines);
  EXPECT_NE(LineWith(RenderTop(Json(), {120, 30}, 1000), "(no brokers)"), "");
}

}  // namespace
}  // namespace yard::admin
