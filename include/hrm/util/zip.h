#pragma once
// Validation of the zip archives torch.save writes (checkpoints), before LibTorch's reader sees them: LibTorch does
// not check the stored CRC-32s, so a flipped byte in a tensor would load as a silently wrong weight, and its reader
// trusts the directory's offsets.
#include <cstdint>
#include <string>
#include <vector>

namespace hrm {

struct ZipEntry {
  std::string name;
  uint64_t offset = 0;  // of the entry's bytes in the archive
  uint64_t size = 0;
};

// Checks the end-of-directory record (zip64 included), that every entry's header, name and data lie inside the
// file, that every entry is stored (torch.save never compresses) and its CRC-32. Returns the entries, in directory
// order. Throws hrm::Error naming `source`, the entry and the problem.
std::vector<ZipEntry> check_zip_archive(const std::string& bytes, const std::string& source);

}  // namespace hrm
