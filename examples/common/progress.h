// Training output: a progress reporter and a metrics file.
//
// Progress prints, on a terminal, one line redrawn in place:
//   step 120/2000 [====>               ] loss 2.134 | 15.2k tok/s | ETA 3m12s
// and, when the output is not a terminal (a log file, CI), a plain line every
// `every` steps and at the last step:
//   step 120/2000 loss 2.134 | 15.2k tok/s | ETA 3m12s
// Rates and ETA count from the step the reporter was created at, so a resumed
// run reports its own speed.
//
// MetricsWriter appends one JSON object per line (JSONL), each record
// written whole straight to the file (no buffer), so a killed process loses
// nothing already written; a write that fails (full disk, file size limit) is
// an Error and leaves the file as it was before that record; sync() makes
// the records durable.
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace moegrad::data {

struct ProgressOptions {
  int64_t total_steps = 0;
  int64_t start_step = 0;  // the step training starts from (a resume's step)
  int64_t every = 100;     // plain mode: print every `every` steps
  std::FILE* out = stderr;
  int terminal = -1;       // 1: bar, 0: plain lines, -1: bar when isatty(out)
  std::string unit = "tok";  // "tok/s" in the line; e.g. "img" for images
  std::function<double()> clock;  // seconds; a steady clock when empty (tests pass their own)
  std::string label = "step";     // the line's first word: "step 120/2000 ..."
};

class Progress {
 public:
  explicit Progress(ProgressOptions options);
  // After finishing `step` (1-based) with this loss, having processed
  // `units` tokens (or images) in that step.
  void update(int64_t step, double loss, int64_t units);
  // Prints a line of its own (an eval result) without breaking the bar.
  void log(const std::string& line);
  // Ends the bar's line on a terminal.
  void finish();
  bool terminal() const { return terminal_; }
  // The text of the status line (without the bar in plain mode).
  std::string line(int64_t step, double loss) const;

 private:
  ProgressOptions opt_;
  bool terminal_;
  double start_time_, last_draw_ = -1.0, last_loss_ = 0.0;
  int64_t units_ = 0, last_step_ = 0;
  bool bar_drawn_ = false;
};

// "950", "15.2k", "3.40M"
std::string format_rate(double per_second);
// "45s", "3m12s", "2h05m"; "?" when unknown (negative or not finite)
std::string format_duration(double seconds);

class MetricsWriter {
 public:
  // Appends to path (creating it); Error naming the path when it cannot.
  explicit MetricsWriter(const std::string& path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  // One line: record.dump() and '\n'. record must be an object. Error naming
  // the file and the reason when the write fails; the partial line is then
  // cut off again, so the file holds whole records only.
  void write(const nlohmann::json& record);
  // fsyncs the file: the records written so far survive a crash.
  void sync();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace moegrad::data
