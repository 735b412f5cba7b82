// Durable file output. AtomicFile replaces a whole file so that a reader, a
// crash or a kill sees either the old file or the complete new one, never a
// part; write_all and sync_parent_folder are the pieces an appending writer
// needs (examples/common/progress.h's MetricsWriter).
#pragma once
#include <cstddef>
#include <string>

namespace moegrad {

// Replaces the file at `path`:
//   AtomicFile file(path, "save_safetensors");
//   file.write(bytes, n); ...
//   file.commit();
// The bytes go to the temp file "<path>.tmp.<pid>"; commit() fsyncs it,
// renames it over path and fsyncs the folder, so once commit() returns the
// new file survives a crash, and until then path is untouched. Any failure
// (a full disk, a file size limit, an I/O error) is an Error
// "<who>: cannot write '<path>': <reason>" that removes the temp file, and
// so does destroying an AtomicFile without commit().
//
// A process killed while writing leaves its temp file behind (nothing can
// run at a SIGKILL). Such a file is never read, and the next AtomicFile for
// the same path removes every "<path>.tmp.<pid>" whose process has ended
// before it writes, so leftovers never pile up. One process at a time
// writes a given path.
//
// Test hook, inert unless the environment sets MOEGRAD_TEST_STOP_AT to
// "<n>:<stage>": the n-th AtomicFile of the process stops the process with
// SIGSTOP at that stage, so that a test can look at the folder and kill the
// writer at an exact point. Stages: "created" (the empty temp file exists),
// "written" (after the first write), "synced" (the temp file is complete and
// fsynced, not yet renamed), "renamed" (in place, the folder not yet synced).
class AtomicFile {
 public:
  AtomicFile(std::string path, std::string who);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void commit();
  const std::string& temp_path() const { return temp_; }

 private:
  [[noreturn]] void fail(int err);
  void stop_if_asked(const char* stage) const;

  std::string path_, temp_, who_;
  int fd_ = -1;
  int serial_ = 0;  // this AtomicFile's number in the process, from 1 (the test hook)
  bool written_ = false;
};

// Writes all n bytes to fd, retrying after interrupts and short writes;
// false with errno set when a write fails.
bool write_all(int fd, const void* data, size_t n);

// fsyncs the folder that holds `path`, which makes a file created or renamed
// there survive a crash; false with errno set on failure (a file system that
// cannot sync folders, EINVAL, counts as success).
bool sync_parent_folder(const std::string& path);

}  // namespace moegrad
