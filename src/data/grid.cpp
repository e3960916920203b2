#include "hrm/data/grid.h"

#include <cstdint>

#include "hrm/util/error.h"

namespace hrm::data {

int dihedral_inverse(int tid) {
  static const int inv[8] = {0, 3, 2, 1, 4, 5, 6, 7};
  check(tid >= 0 && tid < 8, "dihedral transform id must be in 0..7");
  return inv[tid];
}

template <typename T>
std::vector<T> dihedral_transform(const std::vector<T>& g, int rows, int cols, int tid, int* out_rows, int* out_cols) {
  check(tid >= 0 && tid < 8, "dihedral transform id must be in 0..7");
  check(static_cast<int>(g.size()) == rows * cols, "dihedral transform: grid size mismatch");
  const bool swap = tid == 1 || tid == 3 || tid == 6 || tid == 7;
  const int R = swap ? cols : rows, C = swap ? rows : cols;
  std::vector<T> out(g.size());
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < C; ++j) {
      int r = 0, c = 0;  // source cell of output (i, j), as numpy's rot90 / flips / transpose define them
      switch (tid) {
        case 0:
          r = i;
          c = j;
          break;
        case 1:
          r = j;
          c = cols - 1 - i;
          break;  // rot90 k=1 (counter-clockwise)
        case 2:
          r = rows - 1 - i;
          c = cols - 1 - j;
          break;  // rot180
        case 3:
          r = rows - 1 - j;
          c = i;
          break;  // rot270
        case 4:
          r = i;
          c = cols - 1 - j;
          break;  // fliplr
        case 5:
          r = rows - 1 - i;
          c = j;
          break;  // flipud
        case 6:
          r = j;
          c = i;
          break;  // transpose
        case 7:
          r = rows - 1 - j;
          c = cols - 1 - i;
          break;  // fliplr(rot90)
      }
      out[i * C + j] = g[r * cols + c];
    }
  if (out_rows) *out_rows = R;
  if (out_cols) *out_cols = C;
  return out;
}
template std::vector<uint8_t> dihedral_transform(const std::vector<uint8_t>&, int, int, int, int*, int*);
template std::vector<char> dihedral_transform(const std::vector<char>&, int, int, int, int*, int*);

std::string dihedral_transform_string(const std::string& grid, int size, int tid) {
  const std::vector<char> v(grid.begin(), grid.end());
  const auto t = dihedral_transform(v, size, size, tid);
  return std::string(t.begin(), t.end());
}

}  // namespace hrm::data
