// Helpers of the tests of durable file output: a file size limit for this
// process (so a write fails with EFBIG as on a full disk), running a program
// as a child process (with a file size limit and extra environment), reading
// a file whole and listing the temp files writers left in a folder.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern char** environ;  // POSIX: the process's environment

namespace moegrad::testing {

// While it lives, files this process writes may not grow beyond `bytes`: a
// write past it fails with EFBIG (SIGXFSZ, which would kill the process, is
// ignored meanwhile). Restores the old limit and signal action.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &old_limit_);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGXFSZ, &ignore, &old_action_);
    rlimit limit = old_limit_;
    limit.rlim_cur = std::min(bytes, old_limit_.rlim_max);
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_limit_);
    ::sigaction(SIGXFSZ, &old_action_, nullptr);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit old_limit_{};
  struct sigaction old_action_ {};
};

// Starts `program` with `args`, its stdout and stderr going to output_fd,
// with "NAME=value" entries of `env` added to this process's environment and,
// when file_size_limit >= 0, that RLIMIT_FSIZE (SIGXFSZ ignored, so writes
// fail with EFBIG); returns its pid, for the caller to wait for. Only
// async-signal-safe calls run between fork and exec.
inline pid_t start_program(const std::string& program, const std::vector<std::string>& args, int output_fd,
                           const std::vector<std::string>& env = {}, long long file_size_limit = -1) {
  std::vector<std::string> environment = env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('=') + 1);  // "NAME="
    auto overrides = [&](const std::string& o) { return o.compare(0, name.size(), name) == 0; };
    if (std::none_of(env.begin(), env.end(), overrides)) environment.push_back(entry);
  }
  std::vector<std::string> argv_text = {program};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv, envp;
  for (std::string& a : argv_text) argv.push_back(a.data());
  for (std::string& e : environment) envp.push_back(e.data());
  argv.push_back(nullptr), envp.push_back(nullptr);
  const rlimit limit{static_cast<rlim_t>(file_size_limit), static_cast<rlim_t>(file_size_limit)};
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;

  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (::dup2(output_fd, 1) < 0 || ::dup2(output_fd, 2) < 0) ::_exit(126);
  if (file_size_limit >= 0 && (::sigaction(SIGXFSZ, &ignore, nullptr) != 0 || ::setrlimit(RLIMIT_FSIZE, &limit) != 0))
    ::_exit(126);
  ::execve(program.c_str(), argv.data(), envp.data());
  ::_exit(127);
}

struct ProgramResult {
  int status = 0;      // the exit code, or 128 + the signal that ended it
  std::string output;  // stdout and stderr
};

// Runs `program` to its end (arguments as start_program's).
inline ProgramResult run_program(const std::string& program, const std::vector<std::string>& args,
                                 const std::vector<std::string>& env = {}, long long file_size_limit = -1) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {-1, "pipe2 failed"};
  const pid_t pid = start_program(program, args, fds[1], env, file_size_limit);
  ::close(fds[1]);
  ProgramResult result;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) != 0;)
    if (n > 0) result.output.append(buf, static_cast<size_t>(n));
    else if (errno != EINTR) break;
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

inline std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Names of the files in `folder` that contain ".tmp" (a writer's temp files), sorted.
inline std::vector<std::string> temp_files(const std::string& folder) {
  std::vector<std::string> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().find(".tmp") != std::string::npos)
      out.push_back(it->path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moegrad::testing
