// The files of the real train_lm and train_image programs, run as child
// processes, survive a kill and a full disk.
//
// Kills: train_lm (a tiny model, a checkpoint every step) is killed with
// SIGKILL 36 times over one run and resumed after each kill: 20 times inside
// a file replacement, stopped there by the MOEGRAD_TEST_STOP_AT hook of
// nn/atomic_file.h (the temp file just created, after its first write,
// complete but not renamed, renamed but the folder not synced; in checkpoint
// saves and in the metrics rewrite of a resume), and 16 times at a random
// moment of training (after a given step's progress line, a random part of a
// step later). After every kill the checkpoint loads and never goes back,
// metrics.jsonl is the uninterrupted run's records in order (none lost, none
// doubled: exactly those up to the step being saved, at a stop in a save),
// and the only temp files are those of killed writers, which the next save
// removes. The finished run equals the uninterrupted one: every checkpoint
// tensor bit for bit, and metrics.jsonl record for record but for the
// timing field tokens_per_s.
//
// Full disk: under a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored, so a
// write fails with EFBIG) a checkpoint save, a metrics append and the
// metrics rewrite of a resume in train_lm, and the model save and a metrics
// append in train_image, each end the program with an Error naming the file,
// keep the previous file byte for byte and leave no temp file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "nn/safetensors.h"
#include "test_helpers.h"
#include "test_io_helpers.h"

#if defined(MOEGRAD_TRAIN_LM) && defined(MOEGRAD_TRAIN_IMAGE)

using namespace moegrad;
using namespace moegrad::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Genesis 1, KJV: a few lines are a corpus for a 16-wide model.
const char* const kGenesis[] = {
    "in the beginning god created the heaven and the earth .",
    "and the earth was without form , and void ; and darkness was upon the face of the deep .",
    "and the spirit of god moved upon the face of the waters .",
    "and god said , let there be light : and there was light .",
    "and god saw the light , that it was good : and god divided the light from the darkness .",
    "and god called the light day , and the darkness he called night .",
    "and the evening and the morning were the first day .",
    "and god said , let there be a firmament in the midst of the waters .",
    "and god made the firmament , and divided the waters which were under the firmament .",
    "and god called the firmament heaven . and the evening and the morning were the second day .",
};

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// Records of a metrics file, in order, without the timing field; a last
// line cut short (no newline) is left out.
std::vector<json> metric_records(const std::string& path) {
  const std::string text = read_whole_file(path);
  std::vector<json> out;
  size_t begin = 0;
  for (size_t end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
    json r = json::parse(text.substr(begin, end - begin));
    r.erase("tokens_per_s");
    out.push_back(r);
  }
  return out;
}

// The records of `all` up to `step` (no final record).
std::vector<json> records_up_to(const std::vector<json>& all, int64_t step) {
  std::vector<json> out;
  for (const json& r : all)
    if (r["type"] != "final" && r["step"].get<int64_t>() <= step) out.push_back(r);
  return out;
}

int64_t checkpoint_step(const std::string& path) { return std::stoll(load_safetensors(path).metadata.at("step")); }

// The pid in a temp file's name "<file>.tmp.<pid>".
pid_t temp_owner(const std::string& name) { return std::stoi(name.substr(name.rfind('.') + 1)); }

int wait_for(pid_t pid, int options = 0) {
  int status = 0;
  while (::waitpid(pid, &status, options) < 0 && errno == EINTR) {
  }
  return status;
}

// Whether the child has ended, without reaping it.
bool has_ended(pid_t pid) {
  siginfo_t info{};
  return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != 0;
}

// A child process that is killed and reaped if a failed assertion leaves it behind.
struct Child {
  pid_t pid;
  bool reaped = false;
  int wait() {
    reaped = true;
    return wait_for(pid);
  }
  ~Child() {
    if (reaped) return;
    ::kill(pid, SIGKILL);
    wait_for(pid);
  }
};

class DurableOutputs : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = ::testing::TempDir() + "moegrad_durable_" + std::to_string(::getpid()) + "_" + info->name();
    fs::remove_all(root_);
    fs::create_directories(root_ + "/text");
    std::string train, held_out;
    for (int copy = 0; copy < 4; ++copy)
      for (const char* line : kGenesis) train += std::string(line) + "\n";
    for (int i = 0; i < 3; ++i) held_out += std::string(kGenesis[3 * i + 1]) + "\n";
    write_text(root_ + "/text/train.txt", train);
    write_text(root_ + "/text/valid.txt", held_out);
    write_text(root_ + "/text/test.txt", held_out);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(root_);
  }

  // train_lm's flags: a tiny AC model with dropout, a checkpoint every step.
  std::vector<std::string> lm_flags(const std::string& out, int64_t steps) const {
    return {"--data", root_ + "/text", "--out", root_ + "/" + out, "--arch", "sgsc", "--dim", "16", "--heads", "2",
            "--experts", "4", "--k", "2", "--expert-hidden", "16", "--ffn-hidden", "16", "--seq-len", "16",
            "--batch", "4", "--dropout", "0.1", "--optimizer", "adamw", "--weight-decay", "0.01", "--lr", "3e-3",
            "--warmup", "3", "--cosine", "--min-lr", "3e-4", "--steps", std::to_string(steps), "--log-every", "1",
            "--eval-every", "4", "--eval-batches", "2", "--checkpoint-every", "1", "--threads", "1"};
  }
  // Starts train_lm with its output going to a log file of its own, whose path it sets.
  pid_t start_train_lm(const std::vector<std::string>& args, const std::vector<std::string>& env, std::string* log) {
    *log = root_ + "/child_" + std::to_string(++children_) + ".log";
    const int fd = ::open(log->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const pid_t pid = start_program(MOEGRAD_TRAIN_LM, args, fd, env);
    ::close(fd);
    return pid;
  }

  std::string root_;
  int children_ = 0;
};

// One kill: stop at `stage` of the n-th file replacement, or (stage empty)
// kill delay_us after the progress line of the step `ahead` steps past the
// checkpoint.
struct KillPlan {
  std::string stage;
  int n = 0;
  int ahead = 0;
  int64_t delay_us = 0;
};

}  // namespace

TEST_F(DurableOutputs, TrainLmSurvivesKillsAtAnyMomentAndResumesBitExact) {
  const int64_t steps = 100;
  const auto t0 = std::chrono::steady_clock::now();
  const ProgramResult whole = run_program(MOEGRAD_TRAIN_LM, lm_flags("whole", steps));
  ASSERT_EQ(whole.status, 0) << whole.output;
  const double run_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  const double step_us = run_us / static_cast<double>(steps);  // with the start and the end: a step at most
  const std::vector<json> reference = metric_records(root_ + "/whole/metrics.jsonl");
  // a train record per step, an eval every 4
  ASSERT_EQ(records_up_to(reference, steps).size(), static_cast<size_t>(steps + steps / 4));

  std::mt19937 rng(2025);
  std::vector<KillPlan> plans;
  for (const char* stage : {"created", "written", "synced", "renamed"})
    for (int n : {1, 2, 3, 4, 2}) plans.push_back({stage, n, 0, 0});
  std::uniform_int_distribution<int> ahead(1, 2);
  std::uniform_int_distribution<int64_t> delay_us(0, static_cast<int64_t>(1.5 * step_us));
  for (int i = 0; i < 16; ++i) plans.push_back({"", 0, ahead(rng), delay_us(rng)});
  std::shuffle(plans.begin(), plans.end(), rng);

  const std::string out = root_ + "/killed", ckpt = out + "/checkpoint.safetensors", metrics = out + "/metrics.jsonl";
  int64_t saved = -1;  // the checkpoint's step; -1: none yet
  std::set<pid_t> killed;
  int stop_kills = 0, random_kills = 0, random_kills_in_a_write = 0;
  for (const KillPlan& plan : plans) {
    const bool resumed = saved >= 0;
    const int64_t base = std::max<int64_t>(saved, 0);
    std::vector<std::string> args = lm_flags("killed", steps);
    if (resumed) args.push_back("--resume");
    const std::vector<std::string> temps_before = temp_files(out);
    std::vector<std::string> env;
    if (!plan.stage.empty()) env.push_back("MOEGRAD_TEST_STOP_AT=" + std::to_string(plan.n) + ":" + plan.stage);
    std::string log;
    Child child{start_train_lm(args, env, &log)};
    const pid_t pid = child.pid;
    SCOPED_TRACE((plan.stage.empty() ? "kill " + std::to_string(plan.delay_us) + " us after step " +
                                           std::to_string(base + plan.ahead)
                                     : "stop in file replacement " + std::to_string(plan.n) + " at " + plan.stage) +
                 ", from step " + std::to_string(base) + "; log " + log);

    if (!plan.stage.empty()) {
      const int status = wait_for(pid, WUNTRACED);
      ASSERT_TRUE(WIFSTOPPED(status)) << "the run ended (status " << status << ") before its stop";
      // Stopped inside a replacement: of metrics.jsonl (a resume's first), or of the checkpoint of step `step`.
      const bool metrics_rewrite = resumed && plan.n == 1;
      const int64_t step = base + plan.n - (resumed ? 1 : 0);
      const std::string temp = (metrics_rewrite ? metrics : ckpt) + ".tmp." + std::to_string(pid);
      if (plan.stage == "renamed") {
        EXPECT_FALSE(fs::exists(temp));
        EXPECT_EQ(checkpoint_step(ckpt), metrics_rewrite ? base : step);
      } else {
        ASSERT_TRUE(fs::exists(temp)) << "the stop is not inside the write of " << temp;
        EXPECT_EQ(fs::file_size(temp) == 0, plan.stage == "created");  // the first write has data
      }
      if (plan.stage == "synced" && metrics_rewrite) {  // the temp file is complete
        EXPECT_EQ(metric_records(temp), records_up_to(reference, base));
      } else if (plan.stage == "synced") {
        EXPECT_EQ(checkpoint_step(temp), step);
      }
      // The records up to the step being saved, none lost, none doubled; after the rewrite, up to the checkpoint's.
      const bool rewritten = metrics_rewrite && plan.stage == "renamed";
      if (!metrics_rewrite || rewritten) {
        EXPECT_EQ(metric_records(metrics), records_up_to(reference, rewritten ? base : step));
      }
      ::kill(pid, SIGKILL);
      ASSERT_TRUE(WIFSIGNALED(child.wait()));
    } else {
      const std::string line = "step " + std::to_string(base + plan.ahead) + "/";
      while (read_whole_file(log).find(line) == std::string::npos && !has_ended(pid))
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      std::this_thread::sleep_for(std::chrono::microseconds(plan.delay_us));
      ::kill(pid, SIGKILL);  // a no-op if it has ended
      const int status = child.wait();
      if (WIFEXITED(status)) {  // the run finished before the kill: nothing left to kill
        ASSERT_EQ(WEXITSTATUS(status), 0);
        break;
      }
      ASSERT_TRUE(WIFSIGNALED(status));
      for (const std::string& t : temp_files(out)) random_kills_in_a_write += temp_owner(t) == pid;
    }
    ++(plan.stage.empty() ? random_kills : stop_kills);
    killed.insert(pid);

    // After the kill: a checkpoint that loads and never goes back, the reference's records in order, and temp
    // files of killed writers only, none left over from before unless this run never replaced that file.
    ASSERT_TRUE(saved < 0 || fs::exists(ckpt));
    if (fs::exists(ckpt)) {
      const int64_t now = checkpoint_step(ckpt);
      EXPECT_GE(now, saved);
      saved = now;
    }
    const std::vector<json> records = metric_records(metrics);
    ASSERT_LE(records.size(), reference.size());
    EXPECT_EQ(records, std::vector<json>(reference.begin(), reference.begin() + records.size()));
    for (const std::string& t : temp_files(out)) {
      EXPECT_TRUE(killed.count(temp_owner(t))) << t;
      EXPECT_TRUE(temp_owner(t) == pid || std::count(temps_before.begin(), temps_before.end(), t)) << t;
    }
  }
  EXPECT_EQ(stop_kills, 20);
  EXPECT_GE(random_kills, 1);

  // The last run, to the end.
  std::vector<std::string> args = lm_flags("killed", steps);
  if (saved >= 0) args.push_back("--resume");
  const ProgramResult last = run_program(MOEGRAD_TRAIN_LM, args);
  ASSERT_EQ(last.status, 0) << last.output;
  EXPECT_TRUE(temp_files(out).empty());
  EXPECT_EQ(metric_records(metrics), reference);
  const SafetensorsFile a = load_safetensors(root_ + "/whole/checkpoint.safetensors"), b = load_safetensors(ckpt);
  EXPECT_EQ(b.metadata.at("step"), std::to_string(steps));
  EXPECT_EQ(b.metadata.at("rng"), a.metadata.at("rng"));
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    const Tensor& u = b.tensors.at(name);
    ASSERT_EQ(u.shape(), t.shape()) << name;
    ASSERT_EQ(u.dtype(), t.dtype()) << name;
    EXPECT_EQ(std::memcmp(u.raw_data(), t.raw_data(), t.numel() * dtype_size(t.dtype())), 0) << name;
  }
  std::printf("train_lm killed %d times: %d stopped inside a file replacement, %d at random moments (%d of them "
              "inside a write); the uninterrupted run took %.0f ms\n",
              stop_kills + random_kills, stop_kills, random_kills, random_kills_in_a_write, run_us / 1000);
}

TEST_F(DurableOutputs, TrainLmWriteLimitsAreClearErrors) {
  const std::string out = root_ + "/run", ckpt = out + "/checkpoint.safetensors", metrics = out + "/metrics.jsonl";
  ASSERT_EQ(run_program(MOEGRAD_TRAIN_LM, lm_flags("run", 4)).status, 0);
  const std::string ckpt_bytes = read_whole_file(ckpt), metrics_bytes = read_whole_file(metrics);
  std::vector<std::string> resume = lm_flags("run", 8);
  resume.push_back("--resume");
  auto expect_error = [](const ProgramResult& r, const std::string& text) {
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find(text + ": " + std::strerror(EFBIG)), std::string::npos) << r.output;
  };

  // The metrics rewrite of the resume cannot be written: the metrics stay as they were.
  expect_error(run_program(MOEGRAD_TRAIN_LM, resume, {}, static_cast<long long>(metrics_bytes.size() / 2)),
               "train_lm: cannot write '" + metrics + "'");
  EXPECT_EQ(read_whole_file(metrics), metrics_bytes);
  EXPECT_TRUE(temp_files(out).empty());

  // The first checkpoint save of the resume (step 5) fails: the checkpoint of step 4 stays; the metrics hold
  // whole records, those up to step 4 (train 1-4, eval 4) and the train record of step 5.
  expect_error(run_program(MOEGRAD_TRAIN_LM, resume, {}, static_cast<long long>(ckpt_bytes.size() / 2)),
               "save_safetensors: cannot write '" + ckpt + "'");
  EXPECT_EQ(read_whole_file(ckpt), ckpt_bytes);
  EXPECT_TRUE(temp_files(out).empty());
  EXPECT_EQ(metric_records(metrics).size(), 6u);

  // Without the limit the run resumes and ends with each record once.
  ASSERT_EQ(run_program(MOEGRAD_TRAIN_LM, resume).status, 0);
  std::vector<int64_t> train_steps;
  for (const json& r : metric_records(metrics))
    if (r["type"] == "train") train_steps.push_back(r["step"]);
  EXPECT_EQ(train_steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));

  // A fresh run saving only at its end: a metrics append fails first, leaving whole records only.
  std::vector<std::string> fresh = lm_flags("fresh", 40);
  fresh.insert(fresh.end(), {"--checkpoint-every", "0"});
  const std::string fresh_metrics = root_ + "/fresh/metrics.jsonl";
  expect_error(run_program(MOEGRAD_TRAIN_LM, fresh, {}, 1500), "MetricsWriter: cannot append to " + fresh_metrics);
  const std::string partial = read_whole_file(fresh_metrics);
  ASSERT_FALSE(partial.empty());
  EXPECT_EQ(partial.back(), '\n');
  EXPECT_GT(metric_records(fresh_metrics).size(), 1u);
  EXPECT_FALSE(fs::exists(root_ + "/fresh/checkpoint.safetensors"));
}

namespace {

// An IDX file of unsigned bytes: magic 0x0000080<dims.size()>, the dimensions, the data.
void write_idx(const std::string& path, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string bytes = {0, 0, 8, static_cast<char>(dims.size() == 1 ? 1 : 3)};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) bytes += static_cast<char>((d >> shift) & 0xff);
  bytes.append(data.begin(), data.end());
  write_text(path, bytes);  // zlib reads a plain file behind a .gz name as it is
}

}  // namespace

TEST_F(DurableOutputs, TrainImageWriteLimitsAreClearErrors) {
  // 64 training and 16 test images of 8x8, ten classes.
  const std::string data = root_ + "/images";
  fs::create_directories(data);
  for (auto [prefix, n] : {std::pair{"train", 64u}, {"t10k", 16u}}) {
    std::vector<uint8_t> pixels(n * 64), labels(n);
    for (uint32_t i = 0; i < n; ++i) {
      labels[i] = static_cast<uint8_t>(i % 10);
      for (uint32_t p = 0; p < 64; ++p) pixels[i * 64 + p] = static_cast<uint8_t>((p * 7 + labels[i] * 25) % 256);
    }
    write_idx(data + "/" + prefix + "-images-idx3-ubyte.gz", {n, 8, 8}, pixels);
    write_idx(data + "/" + prefix + "-labels-idx1-ubyte.gz", {n}, labels);
  }
  const std::string out = root_ + "/image", model = out + "/model.safetensors", metrics = out + "/metrics.jsonl";
  auto flags = [&](const char* seed) {
    return std::vector<std::string>{"--data", data, "--out", out, "--seed", seed, "--steps", "4", "--batch", "16",
                                    "--dim", "8", "--heads", "2", "--expert-hidden", "8", "--experts", "4", "--eps",
                                    "2", "--pgd-steps", "1", "--eval-batch", "16", "--log-every", "1", "--threads",
                                    "1"};
  };
  const ProgramResult first = run_program(MOEGRAD_TRAIN_IMAGE, flags("0"));
  ASSERT_EQ(first.status, 0) << first.output;
  const std::string model_bytes = read_whole_file(model);
  const std::string config_line = read_whole_file(metrics).substr(0, read_whole_file(metrics).find('\n') + 1);

  // Another seed, a limit below the model's size: the save fails, the old model stays.
  ProgramResult r = run_program(MOEGRAD_TRAIN_IMAGE, flags("1"), {}, static_cast<long long>(model_bytes.size() / 2));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("save_safetensors: cannot write '" + model + "': " + std::strerror(EFBIG)),
            std::string::npos)
      << r.output;
  EXPECT_EQ(read_whole_file(model), model_bytes);
  EXPECT_TRUE(temp_files(out).empty());

  // Room for the config record only: the first train record fails and is not left half-written.
  r = run_program(MOEGRAD_TRAIN_IMAGE, flags("0"), {}, static_cast<long long>(config_line.size() + 20));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("MetricsWriter: cannot append to " + metrics + ": " + std::strerror(EFBIG)),
            std::string::npos)
      << r.output;
  EXPECT_EQ(read_whole_file(metrics), config_line);
  EXPECT_EQ(read_whole_file(model), model_bytes);
}

#endif  // MOEGRAD_TRAIN_LM && MOEGRAD_TRAIN_IMAGE
