// moegrad::Error and the MG_CHECK macro: every public entry point validates its
// input and throws an Error whose message names the op, what it expected and
// what it got. Nothing in moegrad aborts on bad input.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moegrad {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using Shape = std::vector<int64_t>;

// "[2, 3, 4]"
std::string shape_str(const Shape& shape);

namespace detail {
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace moegrad

// MG_CHECK(cond, "op: expected ...", got, ...) throws moegrad::Error with the
// concatenated message when cond is false.
#define MG_CHECK(cond, ...)                                         \
  do {                                                              \
    if (!(cond)) throw ::moegrad::Error(::moegrad::detail::cat(__VA_ARGS__)); \
  } while (0)
