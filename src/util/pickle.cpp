#include "hrm/util/pickle.h"

#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "hrm/util/error.h"

namespace hrm {
namespace {

enum class Kind { Mark, None, Bool, Int, Float, Str, Function, StorageType, Tuple, List, Dict, Storage, Tensor };

// A symbolic value: its kind and what the checks need of it.
struct Item {
  Kind kind = Kind::None;
  int64_t number = 0;                        // Int: its value; Storage: its element count
  std::string text;                          // Str (first 256 bytes); Function / StorageType: "module name"
  bool text_whole = true;                    // whether `text` is the whole string
  std::vector<std::shared_ptr<Item>> items;  // Tuple: its elements
  int depth = 0;                             // container nesting
  bool frozen = false;                       // a list or dict that may also be reached another way: no more adds
};
using ItemPtr = std::shared_ptr<Item>;

constexpr int kMaxDepth = 64;

const std::map<std::string, int>& storage_item_sizes() {
  static const std::map<std::string, int> sizes = {
      {"torch FloatStorage", 4}, {"torch DoubleStorage", 8}, {"torch HalfStorage", 2},  {"torch BFloat16Storage", 2},
      {"torch LongStorage", 8},  {"torch IntStorage", 4},    {"torch ShortStorage", 2}, {"torch CharStorage", 1},
      {"torch ByteStorage", 1},  {"torch BoolStorage", 1}};
  return sizes;
}

bool is_function(const std::string& name) {
  static const char* const names[] = {"collections OrderedDict",          "torch._utils _rebuild_tensor_v2",
                                      "torch._utils _rebuild_parameter",  "torch.jit._pickle restore_type_tag",
                                      "torch.jit._pickle build_intlist",  "torch.jit._pickle build_doublelist",
                                      "torch.jit._pickle build_boollist", "torch.jit._pickle build_tensorlist"};
  for (const char* n : names)
    if (name == n) return true;
  return false;
}

class Checker {
 public:
  Checker(const std::string& p, const std::string& source, const StorageRecordSize& record_size)
      : p_(p), source_(source), record_size_(record_size) {}

  void run() {
    while (true) {
      if (pos_ >= p_.size()) fail("the program ends without STOP");
      op_at_ = pos_;
      const unsigned char op = static_cast<unsigned char>(p_[pos_++]);
      switch (op) {
        case 0x80: {  // PROTO
          const uint64_t v = uint(1);
          if (v > 5) fail("pickle protocol " + std::to_string(v) + " (at most 5 exists)");
          break;
        }
        case 0x95: uint(8); break;  // FRAME: a length hint
        case '(': push(Kind::Mark); break;
        case '.': {  // STOP
          if (stack_.size() != 1 || stack_[0]->kind == Kind::Mark)
            fail("STOP leaves " + std::to_string(stack_.size()) + " values where one is expected");
          if (pos_ != p_.size()) fail(std::to_string(p_.size() - pos_) + " bytes after STOP");
          return;
        }
        case 'N': push(Kind::None); break;
        case 0x88:
        case 0x89: push(Kind::Bool, op == 0x88); break;
        case 'J': push(Kind::Int, static_cast<int32_t>(uint(4))); break;
        case 'K': push(Kind::Int, static_cast<int64_t>(uint(1))); break;
        case 'M': push(Kind::Int, static_cast<int64_t>(uint(2))); break;
        case 0x8a: {  // LONG1: little-endian two's complement of n <= 8 bytes
          const uint64_t n = uint(1);
          if (n > 8) fail("an integer of " + std::to_string(n) + " bytes (at most 8 fit)");
          uint64_t v = n ? uint(static_cast<int>(n)) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
          push(Kind::Int, static_cast<int64_t>(v));
          break;
        }
        case 'G': uint(8), push(Kind::Float); break;
        case 'X': string(uint(4)); break;    // BINUNICODE
        case 0x8c: string(uint(1)); break;   // SHORT_BINUNICODE
        case ')': push(Kind::Tuple); break;  // EMPTY_TUPLE
        case 't': tuple(pop_to_mark()); break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          std::vector<ItemPtr> items(op - 0x84);
          for (size_t i = items.size(); i-- > 0;) items[i] = pop();
          tuple(std::move(items));
          break;
        }
        case ']': push(Kind::List); break;
        case '}': push(Kind::Dict); break;
        case 'a': {  // APPEND
          ItemPtr v = pop();
          add_to(Kind::List, *v);
          break;
        }
        case 'e': {  // APPENDS
          for (const ItemPtr& v : pop_to_mark()) add_to(Kind::List, *v);
          break;
        }
        case 's': {  // SETITEM
          ItemPtr v = pop(), k = pop();
          set_item(*k, *v);
          break;
        }
        case 'u': {  // SETITEMS
          const std::vector<ItemPtr> kv = pop_to_mark();
          if (kv.size() % 2) fail("SETITEMS with an odd number of keys and values");
          for (size_t i = 0; i < kv.size(); i += 2) set_item(*kv[i], *kv[i + 1]);
          break;
        }
        case 'q': put(uint(1)); break;
        case 'r': put(uint(4)); break;
        case 0x94: put(memo_.size()); break;  // MEMOIZE
        case 'h': get(uint(1)); break;
        case 'j': get(uint(4)); break;
        case 'c': global(); break;
        case 'R': reduce(); break;
        case 'Q': persistent_storage(); break;
        case 'b': {  // BUILD: an OrderedDict's attributes (state dicts carry _metadata)
          ItemPtr state = pop();
          add_to(Kind::Dict, *state);
          break;
        }
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("opcode ") + hex + " is not one a state dict uses");
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_ + ": unsafe or damaged pickle at byte " + std::to_string(op_at_) + ": " + what);
  }

  uint64_t uint(int n) {
    if (p_.size() - pos_ < static_cast<size_t>(n)) fail("the program ends inside an argument");
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p_[pos_ + static_cast<size_t>(i)]);
    pos_ += static_cast<size_t>(n);
    return v;
  }

  void string(uint64_t n) {
    if (p_.size() - pos_ < n) fail("a string of " + std::to_string(n) + " bytes runs past the end");
    auto it = std::make_shared<Item>();
    it->kind = Kind::Str;
    it->text = p_.substr(pos_, std::min<uint64_t>(n, 256));
    it->text_whole = n <= 256;
    pos_ += n;
    stack_.push_back(std::move(it));
  }

  void push(Kind kind, int64_t number = 0) {
    auto it = std::make_shared<Item>();
    it->kind = kind;
    it->number = number;
    it->depth = (kind == Kind::Tuple || kind == Kind::List || kind == Kind::Dict) ? 1 : 0;
    stack_.push_back(std::move(it));
  }

  ItemPtr pop() {
    if (stack_.empty()) fail("pops an empty stack");
    if (stack_.back()->kind == Kind::Mark) fail("pops past a mark");
    ItemPtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }

  Item& top(const char* what) {
    if (stack_.empty() || stack_.back()->kind == Kind::Mark) fail(std::string(what) + " without a value to act on");
    return *stack_.back();
  }

  std::vector<ItemPtr> pop_to_mark() {
    size_t m = stack_.size();
    while (m > 0 && stack_[m - 1]->kind != Kind::Mark) --m;
    if (m == 0) fail("no mark to pop to");
    std::vector<ItemPtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                               std::make_move_iterator(stack_.end()));
    stack_.resize(m - 1);
    return items;
  }

  void tuple(std::vector<ItemPtr> items) {
    auto t = std::make_shared<Item>();
    t->kind = Kind::Tuple;
    t->depth = 1;
    for (const ItemPtr& v : items) t->depth = std::max(t->depth, v->depth + 1);
    if (t->depth > kMaxDepth) fail("containers nested more than " + std::to_string(kMaxDepth) + " deep");
    t->items = std::move(items);
    stack_.push_back(std::move(t));
  }

  // Adds `v` to the container on top of the stack, which must be of `kind`.
  void add_to(Kind kind, const Item& v) {
    Item& c = top("adding to a container");
    if (c.kind != kind)
      fail(kind == Kind::List ? "APPEND to something not a list" : "SETITEM or BUILD on something not a dict");
    if (c.frozen) fail("adds to a list or dict that a tuple or memo slot also holds");
    c.depth = std::max(c.depth, v.depth + 1);
    if (c.depth > kMaxDepth) fail("containers nested more than " + std::to_string(kMaxDepth) + " deep");
  }

  void set_item(const Item& k, const Item& v) {
    if (k.kind != Kind::Str && k.kind != Kind::Int) fail("a dict key that is neither a string nor an integer");
    add_to(Kind::Dict, v);
  }

  // Memo slots: LibTorch grows a vector to the index a file names, so indices stay below the program's size.
  void put(uint64_t id) {
    top("PUT");
    if (id > p_.size()) fail("memo index " + std::to_string(id) + " beyond any the program could fill");
    memo_[id] = stack_.back();
  }

  // Lists and dicts are never fetched from the memo: each mutable container then has one reference, so none can
  // come to contain itself and the depth bound holds. torch.save memoizes them but never reads them back.
  void get(uint64_t id) {
    auto it = memo_.find(id);
    if (it == memo_.end()) fail("reads memo slot " + std::to_string(id) + ", which was never written");
    if (it->second->kind == Kind::List || it->second->kind == Kind::Dict)
      fail("reads a list or dict back from the memo (a second reference to a mutable container)");
    stack_.push_back(it->second);
  }

  void global() {
    std::string parts[2];
    for (std::string& part : parts) {
      const size_t nl = p_.find('\n', pos_);
      if (nl == std::string::npos || nl - pos_ > 200) fail("GLOBAL without a newline-terminated name");
      part = p_.substr(pos_, nl - pos_);
      pos_ = nl + 1;
    }
    const std::string name = parts[0] + " " + parts[1];
    auto it = std::make_shared<Item>();
    it->text = name;
    if (storage_item_sizes().count(name))
      it->kind = Kind::StorageType;
    else if (is_function(name))
      it->kind = Kind::Function;
    else
      fail("refers to '" + parts[0] + "." + parts[1] + "', which no state dict needs");
    stack_.push_back(std::move(it));
  }

  void reduce() {
    ItemPtr args = pop(), fn = pop();
    if (fn->kind != Kind::Function) fail("REDUCE calls something that is not an allowed function");
    if (args->kind != Kind::Tuple) fail("REDUCE with arguments that are not a tuple");
    const std::vector<ItemPtr>& a = args->items;
    const std::string& f = fn->text;
    auto result = std::make_shared<Item>();
    auto arity = [&](size_t lo, size_t hi) {
      if (a.size() < lo || a.size() > hi) fail(f + " with " + std::to_string(a.size()) + " arguments");
    };
    if (f == "collections OrderedDict") {
      arity(0, 0);
      result->kind = Kind::Dict;
      result->depth = 1;
    } else if (f == "torch._utils _rebuild_tensor_v2") {
      arity(6, 7);
      check_tensor(a);
      result->kind = Kind::Tensor;
    } else if (f == "torch._utils _rebuild_parameter") {
      arity(3, 3);
      if (a[0]->kind != Kind::Tensor) fail("_rebuild_parameter of something not a tensor");
      result->kind = Kind::Tensor;
    } else if (f == "torch.jit._pickle restore_type_tag") {
      arity(2, 2);
      if (a[1]->kind != Kind::Str) fail("restore_type_tag without a type string");
      result = frozen_copy(*a[0]);
    } else {  // build_*list: a list becomes a typed list
      arity(1, 1);
      if (a[0]->kind != Kind::List) fail(f + " of something not a list");
      result = frozen_copy(*a[0]);
    }
    stack_.push_back(std::move(result));
  }

  // A container taken out of a tuple (which the memo may hold too) must not grow: it could come to contain itself.
  static ItemPtr frozen_copy(const Item& v) {
    auto c = std::make_shared<Item>(v);
    c->frozen = true;
    return c;
  }

  // ('storage', storage type, key, location, element count): the record must hold that many elements.
  void persistent_storage() {
    ItemPtr id = pop();
    const std::vector<ItemPtr>& a = id->items;
    if (id->kind != Kind::Tuple || a.size() != 5 || a[0]->kind != Kind::Str || a[0]->text != "storage" ||
        a[1]->kind != Kind::StorageType || a[2]->kind != Kind::Str || !a[2]->text_whole || a[3]->kind != Kind::Str ||
        a[4]->kind != Kind::Int)
      fail("a persistent id that is not ('storage', type, key, location, count)");
    const std::string& key = a[2]->text;
    const int64_t count = a[4]->number;
    const uint64_t item_size = static_cast<uint64_t>(storage_item_sizes().at(a[1]->text));
    const std::optional<uint64_t> bytes = record_size_(key);
    if (!bytes) fail("storage '" + key + "' has no record in the archive");
    if (count < 0 || static_cast<uint64_t>(count) > *bytes / item_size)
      fail("storage '" + key + "' claims " + std::to_string(count) + " elements of " + std::to_string(item_size) +
           " bytes; its record holds " + std::to_string(*bytes) + " bytes");
    auto s = std::make_shared<Item>();
    s->kind = Kind::Storage;
    s->number = count;
    stack_.push_back(std::move(s));
  }

  // _rebuild_tensor_v2(storage, offset, sizes, strides, requires_grad, hooks[, metadata]): LibTorch sets the view
  // without checking it against the storage.
  void check_tensor(const std::vector<ItemPtr>& a) {
    if (a[0]->kind != Kind::Storage) fail("a tensor rebuilt from something not a storage");
    if (a[1]->kind != Kind::Int || a[1]->number < 0) fail("a tensor with an offset that is not an integer >= 0");
    auto ints = [&](const Item& t, const char* what) {
      if (t.kind != Kind::Tuple) fail(std::string("a tensor whose ") + what + " are not a tuple");
      std::vector<int64_t> v;
      for (const ItemPtr& x : t.items) {
        if (x->kind != Kind::Int || x->number < 0)
          fail(std::string("a tensor whose ") + what + " are not integers >= 0");
        v.push_back(x->number);
      }
      return v;
    };
    const std::vector<int64_t> sizes = ints(*a[2], "sizes"), strides = ints(*a[3], "strides");
    if (sizes.size() != strides.size())
      fail("a tensor with " + std::to_string(sizes.size()) + " sizes and " + std::to_string(strides.size()) +
           " strides");
    if (a[4]->kind != Kind::Bool) fail("a tensor whose requires_grad is not a bool");
    for (int64_t s : sizes)
      if (s == 0) return;  // empty: reads nothing
    // The last element's index, in 128 bits so that no product or sum wraps.
    __int128 last = a[1]->number;
    for (size_t i = 0; i < sizes.size(); ++i) last += static_cast<__int128>(sizes[i] - 1) * strides[i];
    if (last >= a[0]->number)
      fail("a tensor view reaches element " +
           std::to_string(static_cast<long long>(std::min<__int128>(last, std::numeric_limits<long long>::max()))) +
           " of a storage of " + std::to_string(a[0]->number));
  }

  const std::string& p_;
  const std::string& source_;
  const StorageRecordSize& record_size_;
  size_t pos_ = 0, op_at_ = 0;
  std::vector<ItemPtr> stack_;
  std::unordered_map<uint64_t, ItemPtr> memo_;
};

}  // namespace

void check_torch_pickle(const std::string& pickle, const std::string& source, const StorageRecordSize& record_size) {
  Checker(pickle, source, record_size).run();
}

}  // namespace hrm
