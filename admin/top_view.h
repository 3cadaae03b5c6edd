// The screen of `yard top`: one snapshot of the cluster (the JSON of
// admin::Overview::Snapshot, admin/overview.h) as lines of plain text for a
// terminal of width x height:
//
//   yard top  21:04:05  every 1.0 s  (q quits)
//   brokers 1/1 up  workers 2  capacity 8  in 120.0/s  done 118.0/s  ...
//   jobs  ready 3  delayed 0  running 8  in flight 11
//   queue default  ready 3  delayed 0  running 8  dead 0 | submitted 2000 ...
//
//   BROKER                STATE  READY DELAYED RUNNING IN FLIGHT WORKERS ...
//   tcp://127.0.0.1:5555  up         3       0       8        11       2 ...
//
//   WORKER                BROKER                CAPACITY CREDIT IN FLIGHT ...
//   host:4242             tcp://127.0.0.1:5555         4      0         4 ...
//
// A line is cut at the width, never wrapped; rows past the height are left
// out and counted ("... 3 more workers"). Text from the network (worker
// names, endpoints, errors) has its control characters replaced, so no
// escape sequence reaches the terminal. A missing or null number shows as
// "-", so a snapshot from an older or newer collector still renders.
//
// Thread-safety: pure functions.
#ifndef YARD_ADMIN_TOP_VIEW_H_
#define YARD_ADMIN_TOP_VIEW_H_

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace yard::admin {

struct ScreenSize {
  size_t width = 80;
  size_t height = 24;
};

// The lines of the screen for `snapshot`: at most size.height of them, each
// at most size.width columns, without line ends or escape sequences.
// `interval_ms` is the refresh period, shown in the title line.
std::vector<std::string> RenderTop(const nlohmann::ordered_json& snapshot,
                                   ScreenSize size, int64_t interval_ms);

// `text` cut to at most `width` columns, each UTF-8 character counted as
// one column; control characters (C0, DEL, C1) and bytes that are not UTF-8
// become '?'.
std::string FitToWidth(std::string_view text, size_t width);

// Why the brokers gave no stats, for a one-line error when none is up:
// "no broker answered", or each broker's endpoint and error, with what to do
// when a broker refused the key ("stats need an admin key ...").
std::string NoBrokerMessage(const nlohmann::ordered_json& snapshot);

}  // namespace yard::admin

#endif  // YARD_ADMIN_TOP_VIEW_H_
