#include "wordcount.h"

#include <cctype>
#include <map>

namespace wordcount {

std::string Count(std::string_view text) {
  std::map<std::string, size_t> counts;  // ordered: ties go to the first
  size_t words = 0;
  std::string word;
  auto end_word = [&] {
    if (word.empty()) return;
    ++counts[word];
    ++words;
    word.clear();
  };
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 && u < 0x80) {
      word.push_back(static_cast<char>(std::tolower(u)));
    } else {
      end_word();
    }
  }
  end_word();
  std::string top;
  size_t top_count = 0;
  for (const auto& [w, n] : counts) {
    if (n > top_count) {
      top = w + ":" + std::to_string(n);
      top_count = n;
    }
  }
  return "words=" + std::to_string(words) +
         " distinct=" + std::to_string(counts.size()) + " top=" + top;
}

}  // namespace wordcount
