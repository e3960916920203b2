#pragma once
// Validation of the pickle program inside a torch.save archive (its data.pkl) before LibTorch's unpickler runs it.
// That unpickler trusts its input: it indexes its stack without bounds checks, grows its memo to any index a file
// names, and gives a storage the size the file claims rather than the size of the bytes behind it. The check runs
// the program symbolically over the opcodes torch.save and LibTorch's pickler emit, so that only well-formed state
// dicts reach LibTorch.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace hrm {

// The size in bytes of the archive record holding the storage `key` (torch.save's data/<key>), or nullopt when the
// archive has none.
using StorageRecordSize = std::function<std::optional<uint64_t>(const std::string& key)>;

// Throws hrm::Error naming `source`, the byte offset and the problem unless `pickle` is a program that: uses only
// the opcodes of protocols 2-4 that state dicts need; never pops past its stack or a mark; reads memo slots it has
// written; calls only tensor rebuilders, OrderedDict and LibTorch's type tags; refers to storages that exist and
// hold the elements it claims; builds tensors whose sizes, strides and offset stay inside their storage; nests
// containers at most 64 deep; and ends with STOP leaving one value.
void check_torch_pickle(const std::string& pickle, const std::string& source, const StorageRecordSize& record_size);

}  // namespace hrm
