// Safetensors reader and writer. The reader trusts nothing: every header field
// is checked against the file before a byte of tensor data is read, so a
// corrupt or truncated file gives an Error, never an out-of-bounds read. The
// writer goes through AtomicFile (temp file, fsync, rename), so a failed or
// killed save never leaves a half-written file.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <vector>

#include "autograd/ops.h"
#include "nn/atomic_file.h"

namespace moegrad {
namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100000000;  // 100 MB, the limit of the safetensors crate
constexpr int64_t kMaxInt = std::numeric_limits<int64_t>::max();
constexpr int kMaxHeaderDepth = 16;  // a header needs 3: {name: {"shape": [size]}}

struct DTypeCode {
  const char* code;
  DType dtype;
};
constexpr DTypeCode kDTypeCodes[] = {
    {"F32", DType::Float32}, {"F64", DType::Float64}, {"I64", DType::Int64}, {"BOOL", DType::Bool}};

const char* dtype_code(DType dtype) {
  for (const DTypeCode& c : kDTypeCodes)
    if (c.dtype == dtype) return c.code;
  throw Error(detail::cat("save_safetensors: no safetensors code for dtype ", dtype_name(dtype)));
}

// Tensor bytes are copied as they are in memory, which is only right on a
// little-endian host (every platform moegrad targets).
bool host_little_endian() {
  const uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// A JSON integer >= 0 that fits in int64, or -1 for anything else.
int64_t non_negative_int(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u <= static_cast<uint64_t>(kMaxInt) ? static_cast<int64_t>(u) : -1;
  }
  if (v.is_number_integer()) return std::max<int64_t>(v.get<int64_t>(), -1);
  return -1;
}

// Reads exactly n bytes at byte offset off; false on an error or end of file.
bool read_at(int fd, void* dst, size_t n, uint64_t off) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r, n -= static_cast<size_t>(r), off += static_cast<uint64_t>(r);
  }
  return true;
}

struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

// One tensor's header entry, validated.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  int64_t begin, end;
};

}  // namespace

// Errors of load_safetensors name the file.
#define ST_CHECK(cond, ...) MG_CHECK(cond, "load_safetensors: '", path, "': ", __VA_ARGS__)

SafetensorsFile load_safetensors(const std::string& path) {
  MG_CHECK(host_little_endian(), "load_safetensors: needs a little-endian host");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ST_CHECK(fd >= 0, "cannot open: ", std::strerror(errno));
  FdCloser closer{fd};
  struct stat st;
  ST_CHECK(::fstat(fd, &st) == 0 && S_ISREG(st.st_mode), "not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);

  // Header length, then the header itself.
  ST_CHECK(file_size >= 8, "file is ", file_size, " bytes, too short for the 8-byte header length");
  unsigned char len_bytes[8];
  ST_CHECK(read_at(fd, len_bytes, 8, 0), "cannot read the header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | len_bytes[i];
  ST_CHECK(header_len <= kMaxHeaderBytes, "header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes,
           " bytes");
  ST_CHECK(header_len <= file_size - 8, "header length ", header_len, " exceeds the ", file_size - 8,
           " bytes after the length field (truncated file?)");
  std::string text(header_len, '\0');
  ST_CHECK(read_at(fd, text.data(), header_len, 8), "cannot read the header");
  const uint64_t data_start = 8 + header_len;
  const int64_t buffer_size = static_cast<int64_t>(file_size - data_start);

  // JSON would silently keep the last of two equal keys; the callback sees them all.
  // It also drops what nests deeper than any header does (printing such a value
  // in an error would recurse once per level and overflow the stack).
  std::set<std::string> seen;
  std::string duplicate;
  bool too_deep = false;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && !seen.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    too_deep = too_deep || depth > kMaxHeaderDepth;
    return depth <= kMaxHeaderDepth;
  };
  const json header = json::parse(text, on_event, /*allow_exceptions=*/false);
  ST_CHECK(!header.is_discarded(), "header is not valid JSON");
  ST_CHECK(header.is_object(), "header is not a JSON object");
  ST_CHECK(!too_deep, "header nests deeper than ", kMaxHeaderDepth, " levels");
  ST_CHECK(duplicate.empty(), "tensor name '", duplicate, "' appears twice in the header");

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const json& v = item.value();
    if (name == "__metadata__") {
      ST_CHECK(v.is_object(), "__metadata__ is not a JSON object");
      for (const auto& kv : v.items()) {
        ST_CHECK(kv.value().is_string(), "__metadata__ value of '", kv.key(), "' is not a string");
        out.metadata[kv.key()] = kv.value().get<std::string>();
      }
      continue;
    }
    ST_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), "tensor '",
             name, "' needs an object with dtype, shape and data_offsets");
    Entry e{name, DType::Float32, {}, 0, 0};

    const json& dt = v["dtype"];
    ST_CHECK(dt.is_string(), "tensor '", name, "': dtype is not a string");
    const DTypeCode* code = std::find_if(std::begin(kDTypeCodes), std::end(kDTypeCodes),
                                         [&](const DTypeCode& c) { return dt.get<std::string>() == c.code; });
    ST_CHECK(code != std::end(kDTypeCodes), "tensor '", name, "': unsupported dtype '", dt.get<std::string>(),
             "' (expected F32, F64, I64 or BOOL)");
    e.dtype = code->dtype;

    // The product of the non-zero sizes stays far from overflow (strides are built from it).
    const json& sh = v["shape"];
    ST_CHECK(sh.is_array(), "tensor '", name, "': shape is not an array");
    int64_t product = 1;
    bool has_zero = false;
    for (const json& d : sh) {
      const int64_t n = non_negative_int(d);
      ST_CHECK(n >= 0, "tensor '", name, "': shape ", sh.dump(), " is not a list of non-negative integers");
      e.shape.push_back(n);
      has_zero = has_zero || n == 0;
      if (n == 0) continue;
      ST_CHECK(product <= kMaxInt / 8 / n, "tensor '", name, "': shape ", sh.dump(), " is too large");
      product *= n;
    }
    const int64_t nbytes = has_zero ? 0 : product * static_cast<int64_t>(dtype_size(e.dtype));

    const json& off = v["data_offsets"];
    ST_CHECK(off.is_array() && off.size() == 2 && non_negative_int(off[0]) >= 0 && non_negative_int(off[1]) >= 0,
             "tensor '", name, "': data_offsets ", off.dump(), " is not a pair of non-negative integers");
    e.begin = non_negative_int(off[0]);
    e.end = non_negative_int(off[1]);
    ST_CHECK(e.begin <= e.end, "tensor '", name, "': data_offsets ", off.dump(), " has begin > end");
    ST_CHECK(e.end <= buffer_size, "tensor '", name, "': data_offsets ", off.dump(), " end beyond the ", buffer_size,
             "-byte data buffer (truncated file?)");
    ST_CHECK(e.end - e.begin == nbytes, "tensor '", name, "': data_offsets ", off.dump(), " span ", e.end - e.begin,
             " bytes, but shape ", shape_str(e.shape), " of ", code->code, " needs ", nbytes);
    entries.push_back(e);
  }

  // Byte ranges must not overlap (empty ranges overlap nothing).
  std::vector<const Entry*> by_offset;
  for (const Entry& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return std::tie(a->begin, a->end) < std::tie(b->begin, b->end); });
  for (size_t i = 1; i < by_offset.size(); ++i)
    ST_CHECK(by_offset[i - 1]->end <= by_offset[i]->begin, "byte ranges of tensors '", by_offset[i - 1]->name,
             "' and '", by_offset[i]->name, "' overlap");

  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    const size_t nbytes = static_cast<size_t>(e.end - e.begin);
    ST_CHECK(read_at(fd, t.raw_data(), nbytes, data_start + static_cast<uint64_t>(e.begin)), "cannot read tensor '",
             e.name, "'");
    if (e.dtype == DType::Bool) {  // any byte but 0 or 1 is no valid bool
      const unsigned char* p = static_cast<const unsigned char*>(t.raw_data());
      ST_CHECK(std::all_of(p, p + nbytes, [](unsigned char b) { return b <= 1; }), "tensor '", e.name,
               "': BOOL bytes must be 0 or 1");
    }
    out.tensors.emplace(e.name, t);
  }
  return out;
}

#undef ST_CHECK

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  MG_CHECK(host_little_endian(), "save_safetensors: needs a little-endian host");
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<Tensor> data;
  int64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    MG_CHECK(name != "__metadata__", "save_safetensors: '", path, "': the name __metadata__ is reserved");
    MG_CHECK(t.defined(), "save_safetensors: '", path, "': tensor '", name, "' is undefined");
    Tensor c = contiguous(t.detach().to(Device::cpu()));
    const int64_t nbytes = c.numel() * static_cast<int64_t>(dtype_size(c.dtype()));
    header[name] = {{"dtype", dtype_code(c.dtype())}, {"shape", c.shape()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    data.push_back(c);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception&) {
    throw Error(detail::cat("save_safetensors: '", path, "': a tensor name or metadata string is not valid UTF-8"));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data starts 8-byte aligned
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(static_cast<uint64_t>(text.size()) >> (8 * i));

  AtomicFile file(path, "save_safetensors");
  file.write(len_bytes, 8);
  file.write(text.data(), text.size());
  for (const Tensor& c : data) file.write(c.raw_data(), c.numel() * dtype_size(c.dtype()));
  file.commit();
}

}  // namespace moegrad
