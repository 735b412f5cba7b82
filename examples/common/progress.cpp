// Progress bar / plain progress lines and the JSONL metrics writer (see
// progress.h).
#include "examples/common/progress.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "nn/atomic_file.h"
#include "tensor/error.h"

namespace moegrad::data {
namespace {

constexpr int kBarWidth = 20;
constexpr double kRedrawSeconds = 0.1;  // terminal: redraw at most this often

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

template <typename... Args>
std::string format(const char* fmt, Args... args) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

}  // namespace

std::string format_rate(double per_second) {
  if (!std::isfinite(per_second) || per_second < 0) return "?";
  if (per_second < 1e3) return format("%.0f", per_second);
  if (per_second < 1e6) return format("%.1fk", per_second / 1e3);
  return format("%.2fM", per_second / 1e6);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long long s = std::llround(seconds);
  if (s < 60) return format("%llds", s);
  if (s < 3600) return format("%lldm%02llds", s / 60, s % 60);
  return format("%lldh%02lldm", s / 3600, (s % 3600) / 60);
}

// ---- Progress ----

Progress::Progress(ProgressOptions options) : opt_(std::move(options)) {
  MG_CHECK(opt_.total_steps > 0, "Progress: total_steps must be > 0, got ", opt_.total_steps);
  MG_CHECK(opt_.start_step >= 0 && opt_.start_step <= opt_.total_steps, "Progress: start_step must be in [0, ",
           opt_.total_steps, "], got ", opt_.start_step);
  MG_CHECK(opt_.every > 0, "Progress: every must be > 0, got ", opt_.every);
  MG_CHECK(opt_.out != nullptr, "Progress: out is null");
  if (!opt_.clock) opt_.clock = steady_seconds;
  terminal_ = opt_.terminal < 0 ? isatty(fileno(opt_.out)) != 0 : opt_.terminal != 0;
  start_time_ = opt_.clock();
  last_step_ = opt_.start_step;
}

std::string Progress::line(int64_t step, double loss) const {
  const double elapsed = opt_.clock() - start_time_;
  const int64_t done = step - opt_.start_step;
  std::string s = opt_.label + " " + std::to_string(step) + "/" + std::to_string(opt_.total_steps);
  if (terminal_) {
    const int filled = static_cast<int>(std::min<int64_t>(step, opt_.total_steps) * kBarWidth / opt_.total_steps);
    std::string bar(kBarWidth, ' ');
    for (int i = 0; i < filled; ++i) bar[i] = '=';
    if (filled > 0 && filled < kBarWidth) bar[filled - 1] = '>';
    s += " [" + bar + "]";
  }
  s += format(" loss %.3f", loss);
  s += " | " + format_rate(elapsed > 0 ? static_cast<double>(units_) / elapsed : -1.0) + " " + opt_.unit + "/s";
  s += " | ETA " + format_duration(done > 0 ? elapsed / done * static_cast<double>(opt_.total_steps - step) : -1.0);
  return s;
}

void Progress::update(int64_t step, double loss, int64_t units) {
  units_ += units;
  last_step_ = step;
  if (terminal_) {
    const double now = opt_.clock();
    if (bar_drawn_ && step < opt_.total_steps && now - last_draw_ < kRedrawSeconds) return;
    last_draw_ = now;
    std::fprintf(opt_.out, "\r%s\033[K", line(step, loss).c_str());
    bar_drawn_ = true;
  } else {
    if (step % opt_.every != 0 && step != opt_.total_steps) return;
    std::fprintf(opt_.out, "%s\n", line(step, loss).c_str());
  }
  last_loss_ = loss;
  std::fflush(opt_.out);
}

void Progress::log(const std::string& text) {
  if (terminal_ && bar_drawn_) {
    std::fprintf(opt_.out, "\r\033[K%s\n%s", text.c_str(), line(last_step_, last_loss_).c_str());
  } else {
    std::fprintf(opt_.out, "%s\n", text.c_str());
  }
  std::fflush(opt_.out);
}

void Progress::finish() {
  if (terminal_ && bar_drawn_) std::fputc('\n', opt_.out);
  bar_drawn_ = false;
  std::fflush(opt_.out);
}

// ---- MetricsWriter ----

MetricsWriter::MetricsWriter(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  MG_CHECK(fd_ >= 0, "MetricsWriter: cannot open ", path, " for appending: ", std::strerror(errno));
}

MetricsWriter::~MetricsWriter() { ::close(fd_); }

void MetricsWriter::write(const nlohmann::json& record) {
  MG_CHECK(record.is_object(), "MetricsWriter::write: a record must be a JSON object, got ", record.type_name());
  // Invalid UTF-8 in a string is replaced rather than thrown on.
  const std::string text = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const off_t end = ::lseek(fd_, 0, SEEK_END);
  if (write_all(fd_, text.data(), text.size())) return;
  const int err = errno;
  const bool cut = end >= 0 && ::ftruncate(fd_, end) == 0;
  throw Error(detail::cat("MetricsWriter: cannot append to ", path_, ": ", std::strerror(err),
                          cut ? "" : "; its last line may be cut short"));
}

void MetricsWriter::sync() {
  MG_CHECK(::fsync(fd_) == 0 || errno == EINVAL, "MetricsWriter: cannot sync ", path_, ": ", std::strerror(errno));
}

}  // namespace moegrad::data
