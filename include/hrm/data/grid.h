#pragma once
// Square and rectangular grid symmetries shared by the Maze and ARC builders (and their inverses, for ARC voting).
#include <string>
#include <vector>

namespace hrm::data {

// The 8 dihedral transforms of a square grid (the published ids: 0 identity, 1-3 rotations by 90/180/270 degrees
// counter-clockwise, 4 left-right flip, 5 up-down flip, 6 transpose, 7 anti-transpose) and their inverses.
template <typename T>
std::vector<T> dihedral_transform(const std::vector<T>& grid, int rows, int cols, int tid, int* out_rows = nullptr,
                                  int* out_cols = nullptr);
int dihedral_inverse(int tid);
std::string dihedral_transform_string(const std::string& grid, int size, int tid);

}  // namespace hrm::data
