#include "hrm/util/zip.h"

#include <zlib.h>

#include <cstdint>
#include <cstring>

#include "hrm/util/error.h"

namespace hrm {
namespace {

struct Reader {
  const std::string& bytes;
  const std::string& source;
  uint64_t u(uint64_t at, int n, const char* what) const {
    if (at > bytes.size() || static_cast<uint64_t>(n) > bytes.size() - at)  // no wrap-around for huge offsets
      throw Error(source + ": damaged zip archive (" + what + " lies past the end of the file)");
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes[at + static_cast<uint64_t>(i)]);
    return v;
  }
};

constexpr uint32_t kEnd = 0x06054b50, kEnd64 = 0x06064b50, kLocator64 = 0x07064b50, kCentral = 0x02014b50,
                   kLocal = 0x04034b50;

}  // namespace

std::vector<ZipEntry> check_zip_archive(const std::string& bytes, const std::string& source) {
  const Reader r{bytes, source};
  std::vector<ZipEntry> out;
  // The end record: the last signature within the final 22 + 65535 bytes.
  if (bytes.size() < 22)
    throw Error(source + ": not a zip archive (torch.save writes one): " + std::to_string(bytes.size()) + " bytes");
  int64_t end = -1;
  const int64_t lowest = std::max<int64_t>(0, static_cast<int64_t>(bytes.size()) - 22 - 65535);
  for (int64_t at = static_cast<int64_t>(bytes.size()) - 22; at >= lowest; --at)
    if (r.u(static_cast<uint64_t>(at), 4, "the end record") == kEnd) {
      end = at;
      break;
    }
  if (end < 0)
    throw Error(source +
                ": not a zip archive, or a truncated one (no end-of-directory record; torch.save writes a "
                "zip)");
  const uint64_t e = static_cast<uint64_t>(end);
  uint64_t entries = r.u(e + 10, 2, "the end record"), dir_size = r.u(e + 12, 4, "the end record"),
           dir_offset = r.u(e + 16, 4, "the end record");
  if (entries == 0xFFFF || dir_size == 0xFFFFFFFF || dir_offset == 0xFFFFFFFF) {
    if (e < 20 || r.u(e - 20, 4, "the zip64 locator") != kLocator64)
      throw Error(source + ": damaged zip archive (zip64 sizes without a zip64 locator)");
    const uint64_t z = r.u(e - 20 + 8, 8, "the zip64 locator");
    if (r.u(z, 4, "the zip64 end record") != kEnd64) throw Error(source + ": damaged zip archive (zip64 end record)");
    entries = r.u(z + 32, 8, "the zip64 end record");
    dir_size = r.u(z + 40, 8, "the zip64 end record");
    dir_offset = r.u(z + 48, 8, "the zip64 end record");
  }
  if (dir_offset > bytes.size() || dir_size > bytes.size() - dir_offset)
    throw Error(source + ": damaged zip archive (its directory lies past the end of the file)");
  uint64_t at = dir_offset;
  for (uint64_t i = 0; i < entries; ++i) {
    if (r.u(at, 4, "a directory entry") != kCentral)
      throw Error(source + ": damaged zip archive (directory entry " + std::to_string(i) + " of " +
                  std::to_string(entries) + " is not where the directory says)");
    const uint64_t method = r.u(at + 10, 2, "a directory entry"), crc = r.u(at + 16, 4, "a directory entry");
    uint64_t packed = r.u(at + 20, 4, "a directory entry"), size = r.u(at + 24, 4, "a directory entry");
    const uint64_t name_len = r.u(at + 28, 2, "a directory entry"), extra_len = r.u(at + 30, 2, "a directory entry"),
                   comment_len = r.u(at + 32, 2, "a directory entry");
    uint64_t local = r.u(at + 42, 4, "a directory entry");
    if (at + 46 + name_len > bytes.size()) throw Error(source + ": damaged zip archive (an entry's name)");
    const std::string name = bytes.substr(at + 46, name_len);
    // Zip64 sizes and offset, in the order of the fields that overflowed.
    for (uint64_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = r.u(x, 2, "an extra field"), len = r.u(x + 2, 2, "an extra field");
      if (id == 1) {
        uint64_t y = x + 4;
        if (size == 0xFFFFFFFF) size = r.u(y, 8, "a zip64 field"), y += 8;
        if (packed == 0xFFFFFFFF) packed = r.u(y, 8, "a zip64 field"), y += 8;
        if (local == 0xFFFFFFFF) local = r.u(y, 8, "a zip64 field");
      }
      x += 4 + len;
    }
    const std::string where = source + ": entry '" + name + "'";
    if (r.u(local, 4, "a local header") != kLocal)
      throw Error(where + ": damaged zip archive (no local header where the directory says)");
    const uint64_t data = local + 30 + r.u(local + 26, 2, "a local header") + r.u(local + 28, 2, "a local header");
    if (data > bytes.size() || packed > bytes.size() - data)
      throw Error(where + ": truncated (" + std::to_string(packed) + " bytes at offset " + std::to_string(data) +
                  " in a file of " + std::to_string(bytes.size()) + ")");
    if (method != 0)
      throw Error(where + ": compressed (method " + std::to_string(method) +
                  "); torch.save stores entries uncompressed and LibTorch reads no other kind");
    {
      if (packed != size) throw Error(where + ": damaged zip archive (stored sizes disagree)");
      uLong c = crc32(0L, Z_NULL, 0);
      for (uint64_t done = 0; done < size;) {  // zlib takes 32-bit lengths
        const uint64_t n = std::min<uint64_t>(size - done, 1u << 30);
        c = crc32(c, reinterpret_cast<const Bytef*>(bytes.data() + data + done), static_cast<uInt>(n));
        done += n;
      }
      if (c != crc)
        throw Error(where + ": corrupt (CRC-32 " + std::to_string(c) + " where the archive says " +
                    std::to_string(crc) + ")");
    }
    out.push_back({name, data, size});
    at += 46 + name_len + extra_len + comment_len;
  }
  return out;
}

}  // namespace hrm
