// AtomicFile (temp file, fsync, rename, folder fsync), the removal of temp
// files left by killed writers, and the MOEGRAD_TEST_STOP_AT hook; see
// atomic_file.h.
#include "nn/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "tensor/error.h"

namespace moegrad {
namespace fs = std::filesystem;

namespace {

std::atomic<int> atomic_files_made{0};

// Removes "<path>.tmp.<pid>" files whose process has ended (kill(pid, 0)
// finds no such process). Best effort: a file it cannot remove is harmless.
void remove_stale_temp_files(const std::string& path) {
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
}

}  // namespace

bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return false;
    }
    p += w, n -= static_cast<size_t>(w);
  }
  return true;
}

bool sync_parent_folder(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  const std::string folder = parent.empty() ? "." : parent.string();
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL;
  const int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

AtomicFile::AtomicFile(std::string path, std::string who)
    : path_(std::move(path)), temp_(path_ + ".tmp." + std::to_string(::getpid())), who_(std::move(who)),
      serial_(++atomic_files_made) {
  remove_stale_temp_files(path_);
  fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  MG_CHECK(fd_ >= 0, who_, ": cannot write '", path_, "': cannot create '", temp_, "': ", std::strerror(errno));
  stop_if_asked("created");
}

AtomicFile::~AtomicFile() {
  if (fd_ < 0) return;
  ::close(fd_);
  ::unlink(temp_.c_str());
}

void AtomicFile::fail(int err) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(temp_.c_str());
  throw Error(detail::cat(who_, ": cannot write '", path_, "': ", std::strerror(err)));
}

void AtomicFile::write(const void* data, size_t n) {
  MG_CHECK(fd_ >= 0, who_, ": '", path_, "' is already committed or failed");
  if (!write_all(fd_, data, n)) fail(errno);
  if (!written_) stop_if_asked("written");
  written_ = true;
}

void AtomicFile::commit() {
  MG_CHECK(fd_ >= 0, who_, ": '", path_, "' is already committed or failed");
  if (::fsync(fd_) != 0) fail(errno);
  const int fd = fd_;
  fd_ = -1;  // closed below whatever happens; fail() still removes the temp file
  if (::close(fd) != 0) fail(errno);
  stop_if_asked("synced");
  if (::rename(temp_.c_str(), path_.c_str()) != 0) fail(errno);
  stop_if_asked("renamed");
  MG_CHECK(sync_parent_folder(path_), who_, ": wrote '", path_, "' but cannot sync its folder, so the new file may ",
           "not survive a crash: ", std::strerror(errno));
}

void AtomicFile::stop_if_asked(const char* stage) const {
  static const char* const spec = std::getenv("MOEGRAD_TEST_STOP_AT");
  if (spec == nullptr) return;
  int n = 0;
  char name[16] = {};
  if (std::sscanf(spec, "%d:%15s", &n, name) == 2 && n == serial_ && std::strcmp(name, stage) == 0)
    ::raise(SIGSTOP);
}

}  // namespace moegrad
