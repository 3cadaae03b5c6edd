// The "wordcount" task: counts the words of a text. A word is a run of ASCII
// letters and digits, compared without case. The answer is one line:
//   words=N distinct=D top=WORD:COUNT
// where WORD is the most frequent word (the alphabetically first among
// equals); "top=" is empty for a text without words.
#ifndef CUSTOM_WORKER_WORDCOUNT_H_
#define CUSTOM_WORKER_WORDCOUNT_H_

#include <string>
#include <string_view>

namespace wordcount {

std::string Count(std::string_view text);

}  // namespace wordcount

#endif  // CUSTOM_WORKER_WORDCOUNT_H_
