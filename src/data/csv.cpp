#include "hrm/data/csv.h"

#include <fstream>

#include "hrm/util/error.h"
#include "hrm/util/file.h"

namespace hrm::data {

void read_puzzle_csv(const std::string& path, bool skip_invalid, int64_t* skipped,
                     const std::function<void(const std::vector<std::string>&, const std::string&)>& row) {
  std::ifstream in(path);
  check(static_cast<bool>(in), "cannot open " + path);
  auto strip = [](std::string& s) {
    while (!s.empty() && (s.back() == '\r' || s.back() == '\n')) s.pop_back();
  };
  std::string line;
  check(static_cast<bool>(std::getline(in, line)), path + ": empty file");
  strip(line);
  check(line == "source,question,answer,rating",
        path + ":1: expected the header 'source,question,answer,rating', got '" + line + "'");
  int64_t line_no = 1, skip = 0;
  while (std::getline(in, line)) {
    ++line_no;
    strip(line);
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    try {
      std::vector<std::string> fields;
      size_t start = 0;
      for (size_t comma; (comma = line.find(',', start)) != std::string::npos; start = comma + 1)
        fields.push_back(line.substr(start, comma - start));
      fields.push_back(line.substr(start));
      check(fields.size() == 4, where + ": expected 4 fields, got " + std::to_string(fields.size()));
      row(fields, where);
    } catch (const Error&) {
      if (!skip_invalid) throw;
      ++skip;
    }
  }
  if (skipped) *skipped = skip;
}

int64_t parse_rating(const std::string& text, const std::string& where) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    // In range before the conversion (converting NaN, inf or 5e26 is undefined behaviour; found by fuzzing).
    if (used == text.size() && v >= -9.0e18 && v <= 9.0e18) return static_cast<int64_t>(v);
  } catch (const std::exception&) {
  }
  throw Error(where + ": rating '" + text + "' is not a number within +-9e18");
}

}  // namespace hrm::data
