#pragma once
// Validation of the zip archives torch.save writes (checkpoints), before LibTorch's reader sees them: LibTorch does
// not check the stored CRC-32s, so a flipped byte in a tensor would load as a silently wrong weight, and its reader
// trusts the directory's offsets.
#include <string>

namespace hrm {

// Checks the end-of-directory record (zip64 included), that every entry's header, name and data lie inside the
// file, and the CRC-32 of every stored (uncompressed) entry. Throws hrm::Error naming `source`, the entry and the
// problem.
void check_zip_archive(const std::string& bytes, const std::string& source);

}  // namespace hrm
