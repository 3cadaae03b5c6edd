// The anti-starvation rule both queues use to pick a priority level.
//
// Levels are served strictly by priority (the highest index first), except
// that after `starvation_limit` consecutive picks from higher levels while a
// lower level waits, one pick goes to the lowest waiting level. A flood of
// high-priority jobs therefore slows low-priority ones by that factor but
// never stops them.
#ifndef YARD_QUEUE_PRIORITY_LEVELS_H_
#define YARD_QUEUE_PRIORITY_LEVELS_H_

namespace yard {

// `ready[l]` is level l's FIFO (anything with empty()); `streak` is the
// caller's count of consecutive picks that passed over a waiting lower
// level. Returns the level to pop, or -1 when all are empty.
template <typename Levels>
int PickLevel(const Levels& ready, int starvation_limit, int* streak) {
  int highest = -1, lowest = -1;
  for (int l = static_cast<int>(ready.size()) - 1; l >= 0; --l) {
    if (ready[l].empty()) continue;
    if (highest < 0) highest = l;
    lowest = l;
  }
  if (highest < 0) return -1;
  if (lowest != highest && ++*streak > starvation_limit) {
    *streak = 0;
    return lowest;
  }
  if (lowest == highest) *streak = 0;
  return highest;
}

}  // namespace yard

#endif  // YARD_QUEUE_PRIORITY_LEVELS_H_
