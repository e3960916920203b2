#pragma once
// The published puzzle CSV layout shared by the Sudoku and Maze readers.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hrm::data {

// Reads the published puzzle CSV layout (header `source,question,answer,rating`): calls `row` with the four fields
// and "file:line" for each non-empty line. An hrm::Error from `row` (or a wrong field count) is rethrown, or with
// skip_invalid counted in *skipped.
void read_puzzle_csv(const std::string& path, bool skip_invalid, int64_t* skipped,
                     const std::function<void(const std::vector<std::string>& fields, const std::string& where)>& row);
// Parses the rating field; errors name `where`.
int64_t parse_rating(const std::string& text, const std::string& where);

}  // namespace hrm::data
