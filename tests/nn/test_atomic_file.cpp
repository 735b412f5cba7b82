// Tests of durable file replacement (nn/atomic_file) and of save_safetensors
// on top of it: under a file size limit (a write fails with EFBIG, as on a
// full disk) every save is an Error naming the file, the previous file stays
// byte for byte and no temp file is left; an AtomicFile dropped without
// commit leaves nothing; temp files of ended processes are removed by the
// next save, those of live processes and of other files are not.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "nn/atomic_file.h"
#include "nn/safetensors.h"
#include "test_helpers.h"
#include "test_io_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;
namespace fs = std::filesystem;

namespace {

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = ::testing::TempDir() + "moegrad_atomic_" + std::to_string(::getpid()) + "_" + info->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

// A pid that no process has: a child that has exited and been reaped.
pid_t ended_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

}  // namespace

TEST_F(AtomicFileTest, CommitReplacesAndDropLeavesTheOldFile) {
  const std::string p = file("a.txt");
  {
    AtomicFile f(p, "test");
    f.write("first", 5);
    EXPECT_TRUE(fs::exists(f.temp_path()));
    EXPECT_FALSE(fs::exists(p));  // nothing at path until commit
    f.commit();
  }
  EXPECT_EQ(read_whole_file(p), "first");
  {
    AtomicFile f(p, "test");
    f.write("second, never committed", 23);
  }
  EXPECT_EQ(read_whole_file(p), "first");
  EXPECT_TRUE(temp_files(dir_).empty());
  AtomicFile done(p, "test");
  done.commit();
  EXPECT_EQ(read_whole_file(p), "");
  EXPECT_MG_ERROR(done.write("x", 1), "test: '" + p + "' is already committed");
  EXPECT_TRUE(sync_parent_folder(p));
  EXPECT_FALSE(sync_parent_folder(file("no_such_folder/x")));
}

TEST_F(AtomicFileTest, SaveUnderAFileSizeLimitFailsAndKeepsThePreviousFile) {
  const std::string p = file("model.safetensors");
  Generator gen(3);
  save_safetensors(p, {{"w", Tensor::randn({64, 64}, 0, 1, DType::Float32, &gen)}}, {{"step", "1"}});
  const std::string before = read_whole_file(p);
  const TensorMap next = {{"w", Tensor::randn({64, 64}, 0, 1, DType::Float32, &gen)}};
  const rlim_t size = before.size();
  // Nothing written, inside the length field, the header, the data, one byte short.
  for (rlim_t limit : {rlim_t(0), rlim_t(4), rlim_t(40), size / 2, size - 1}) {
    SCOPED_TRACE(limit);
    {
      FileSizeLimit fsize(limit);
      EXPECT_MG_ERROR(save_safetensors(p, next, {{"step", "2"}}),
                      "save_safetensors: cannot write '" + p + "': " + std::strerror(EFBIG));
    }
    EXPECT_EQ(read_whole_file(p), before);
    EXPECT_TRUE(temp_files(dir_).empty());
  }
  {
    FileSizeLimit fsize(size);  // exactly enough
    save_safetensors(p, next, {{"step", "2"}});
  }
  EXPECT_EQ(load_safetensors(p).metadata.at("step"), "2");
  EXPECT_TRUE(temp_files(dir_).empty());
}

TEST_F(AtomicFileTest, WriteFailureNamesTheFileAndRemovesTheTemp) {
  const std::string p = file("data.bin");
  write_text(p, "old");
  FileSizeLimit fsize(10);
  AtomicFile f(p, "writer");
  f.write("0123456789", 10);
  EXPECT_MG_ERROR(f.write("x", 1), "writer: cannot write '" + p + "': " + std::strerror(EFBIG));
  EXPECT_FALSE(fs::exists(f.temp_path()));
  EXPECT_MG_ERROR(f.commit(), "already committed or failed");
  EXPECT_EQ(read_whole_file(p), "old");
}

TEST_F(AtomicFileTest, NextSaveRemovesTempFilesOfEndedProcessesOnly) {
  const std::string p = file("checkpoint.safetensors");
  const std::string dead = p + ".tmp." + std::to_string(ended_pid());
  const std::string live = p + ".tmp.1";  // init: always running
  const std::string other = file("other.safetensors.tmp." + std::to_string(ended_pid()));
  const std::string not_a_pid = p + ".tmp.backup";
  for (const std::string& f : {dead, live, other, not_a_pid}) write_text(f, "half a checkpoint");
  save_safetensors(p, {{"a", Tensor::ones({2})}});
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(not_a_pid));
  EXPECT_EQ(load_safetensors(p).tensors.at("a").to_vector(), std::vector<double>({1, 1}));
}
