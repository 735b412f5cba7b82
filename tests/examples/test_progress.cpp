// Tests of the training output (examples/common/progress): the plain and
// terminal progress lines under a fake clock, rate/duration formatting, and
// the JSONL metrics writer (each record written whole and parsing back; a
// failed write, under a file size limit or on a full device, is an Error and
// leaves whole records only).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "examples/common/progress.h"
#include "test_helpers.h"
#include "test_io_helpers.h"

using namespace moegrad;
using namespace moegrad::data;

namespace {

// Everything written to a tmpfile so far.
std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
  std::fseek(f, 0, SEEK_END);
  return s;
}

std::vector<std::string> file_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A progress reporter on a tmpfile whose clock advances only when told.
struct FakeRun {
  std::FILE* out = std::tmpfile();
  double now = 100.0;
  Progress progress;
  FakeRun(int64_t total, int64_t start, int64_t every, int terminal)
      : progress({total, start, every, out, terminal, "tok", [this] { return now; }}) {}
  ~FakeRun() { std::fclose(out); }
};

}  // namespace

TEST(Progress, PlainLinesEveryNSteps) {
  FakeRun run(1000, 0, 100, 0);
  EXPECT_FALSE(run.progress.terminal());
  for (int64_t step = 1; step <= 1000; ++step) {
    run.now += 0.25;  // 4 steps/s, 512 tokens per step: 2048 tok/s
    run.progress.update(step, 2.5, 512);
  }
  std::string out = contents(run.out);
  std::istringstream in(out);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 10u) << out;
  EXPECT_EQ(lines[0], "step 100/1000 loss 2.500 | 2.0k tok/s | ETA 3m45s");
  EXPECT_EQ(lines[9], "step 1000/1000 loss 2.500 | 2.0k tok/s | ETA 0s");
  EXPECT_EQ(out.find('\r'), std::string::npos);
}

TEST(Progress, PlainLastStepAndResume) {
  FakeRun run(250, 200, 100, 0);  // resumed at step 200
  run.now += 10.0;
  run.progress.update(210, 1.25, 1000);  // not a multiple of 100: silent
  EXPECT_EQ(contents(run.out), "");
  run.now += 40.0;
  run.progress.update(250, 1.0, 4000);  // the last step always prints
  // 50 steps in 50 s since the resume, 5000 tokens
  EXPECT_EQ(contents(run.out), "step 250/250 loss 1.000 | 100 tok/s | ETA 0s\n");
  run.progress.log("valid loss 1.100");
  EXPECT_EQ(contents(run.out), "step 250/250 loss 1.000 | 100 tok/s | ETA 0s\nvalid loss 1.100\n");
}

TEST(Progress, TerminalBarRedrawsOneLine) {
  FakeRun run(1000, 0, 100, 1);
  EXPECT_TRUE(run.progress.terminal());
  run.now += 62.5;
  run.progress.update(250, 2.134, 250 * 512);
  std::string bar = "[====>               ]";
  EXPECT_EQ(contents(run.out), "\rstep 250/1000 " + bar + " loss 2.134 | 2.0k tok/s | ETA 3m08s\033[K");
  run.now += 0.01;  // too soon to redraw
  run.progress.update(251, 2.0, 512);
  EXPECT_EQ(contents(run.out).find("251/1000"), std::string::npos);
  run.progress.log("eval: ppl 12.3");
  std::string out = contents(run.out);
  EXPECT_NE(out.find("\r\033[Keval: ppl 12.3\nstep 251/1000 "), std::string::npos) << out;
  run.now += 1.0;
  run.progress.update(1000, 1.5, 512);
  run.progress.finish();
  out = contents(run.out);
  EXPECT_NE(out.find("step 1000/1000 [====================] loss 1.500"), std::string::npos) << out;
  EXPECT_EQ(out.back(), '\n');
}

TEST(Progress, FormatsAndErrors) {
  EXPECT_EQ(format_rate(950), "950");
  EXPECT_EQ(format_rate(15240), "15.2k");
  EXPECT_EQ(format_rate(3.4e6), "3.40M");
  EXPECT_EQ(format_rate(-1), "?");
  EXPECT_EQ(format_duration(45.2), "45s");
  EXPECT_EQ(format_duration(192), "3m12s");
  EXPECT_EQ(format_duration(7500), "2h05m");
  EXPECT_EQ(format_duration(std::nan("")), "?");
  auto options = [](int64_t total, int64_t start, int64_t every) {
    ProgressOptions o;
    o.total_steps = total, o.start_step = start, o.every = every;
    return o;
  };
  EXPECT_MG_ERROR(Progress(options(0, 0, 1)), "Progress: total_steps must be > 0");
  EXPECT_MG_ERROR(Progress(options(10, 11, 1)), "Progress: start_step");
  EXPECT_MG_ERROR(Progress(options(10, 0, 0)), "Progress: every");
}

TEST(MetricsWriter, AppendsFlushedJsonLines) {
  const std::string path = ::testing::TempDir() + "moegrad_metrics_" + std::to_string(getpid()) + ".jsonl";
  std::filesystem::remove(path);
  {
    MetricsWriter w(path);
    w.write({{"step", 100}, {"split", "train"}, {"loss", 2.5}});
    // flushed: readable while the writer is still open
    ASSERT_EQ(file_lines(path).size(), 1u);
    w.write({{"step", 200}, {"loss", std::nan("")}, {"tokens_per_expert", {3, 5, 0}}});
    EXPECT_MG_ERROR(w.write(nlohmann::json::array({1, 2})), "MetricsWriter::write: a record must be a JSON object");
  }
  MetricsWriter(path).write({{"step", 300}, {"note", "resumed"}});  // appends
  std::vector<std::string> lines = file_lines(path);
  ASSERT_EQ(lines.size(), 3u);
  nlohmann::json a = nlohmann::json::parse(lines[0]), b = nlohmann::json::parse(lines[1]),
                 c = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(a["step"], 100);
  EXPECT_EQ(a["split"], "train");
  EXPECT_DOUBLE_EQ(a["loss"].get<double>(), 2.5);
  EXPECT_TRUE(b["loss"].is_null());  // NaN is written as null
  EXPECT_EQ(b["tokens_per_expert"], nlohmann::json({3, 5, 0}));
  EXPECT_EQ(c["note"], "resumed");
  std::filesystem::remove(path);
  EXPECT_MG_ERROR(MetricsWriter("/nonexistent-moegrad-dir/m.jsonl"),
                  "MetricsWriter: cannot open /nonexistent-moegrad-dir/m.jsonl");
}

TEST(MetricsWriter, FailedWriteIsAnErrorAndLeavesWholeRecords) {
  const std::string path = ::testing::TempDir() + "moegrad_metrics_limit_" + std::to_string(getpid()) + ".jsonl";
  std::filesystem::remove(path);
  MetricsWriter w(path);
  w.write({{"step", 1}});
  const std::string one = moegrad::testing::read_whole_file(path);
  {
    // Room for 10 more bytes: the first 10 of the record are written, then the write fails.
    moegrad::testing::FileSizeLimit limit(one.size() + 10);
    EXPECT_MG_ERROR(w.write({{"step", 2}, {"note", "a record longer than ten bytes"}}),
                    "MetricsWriter: cannot append to " + path + ": " + std::strerror(EFBIG));
  }
  EXPECT_EQ(moegrad::testing::read_whole_file(path), one);  // the partial line is cut off
  w.write({{"step", 2}});
  w.sync();
  const std::vector<std::string> lines = file_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["step"], 2);
  std::filesystem::remove(path);

  if (!std::filesystem::exists("/dev/full")) return;  // a device whose every write fails with ENOSPC
  MetricsWriter full("/dev/full");
  EXPECT_MG_ERROR(full.write({{"step", 1}}),
                  "MetricsWriter: cannot append to /dev/full: " + std::string(std::strerror(ENOSPC)));
}
