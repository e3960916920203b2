#include "hrm/util/strings.h"

#include <cmath>

#include <algorithm>
#include <cctype>
#include <climits>

#include "hrm/util/error.h"

namespace hrm {

std::optional<int64_t> exact_int64(double d) {
  // 2^63 is exact as a double; every double below it converts.
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != std::trunc(d)) return std::nullopt;
  return static_cast<int64_t>(d);
}

Assignment split_assignment(const std::string& text, const std::string& source) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw Error(source + ": expected key=value, got '" + text + "'");
  return Assignment{text.substr(0, eq), text.substr(eq + 1)};
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(start, end - start);
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size())
      throw Error(what + ": expected integers separated by commas, got '" + text + "'");
    out.push_back(v);
    start = end + 1;
  }
  return out;
}

std::string closest_match(const std::string& name, const std::vector<std::string>& candidates) {
  auto lower = [](std::string s) {
    for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  };
  // A candidate the name abbreviates wins ("hid" -> "hidden_size"); otherwise the smallest edit distance.
  std::string best;
  for (const auto& c : candidates)
    if (!name.empty() && lower(c).rfind(lower(name), 0) == 0 && (best.empty() || c.size() < best.size())) best = c;
  if (!best.empty()) return best;
  // Edit distance minus the shared prefix: a misspelt long key beats an unrelated short one.
  long best_d = LONG_MAX;
  const std::string n = lower(name);
  for (const auto& cand : candidates) {
    const std::string c = lower(cand);
    std::vector<size_t> prev(c.size() + 1), cur(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= n.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= c.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (n[i - 1] != c[j - 1])});
      std::swap(prev, cur);
    }
    size_t prefix = 0;
    while (prefix < n.size() && prefix < c.size() && n[prefix] == c[prefix]) ++prefix;
    const long d = static_cast<long>(prev[c.size()]) - static_cast<long>(prefix);
    if (d < best_d) {
      best_d = d;
      best = cand;
    }
  }
  return best;
}

}  // namespace hrm
