// Multi-process tests: the test binary re-executes itself once per rank,
// running a single "rank" test case selected by --gtest_filter, with the
// torchrun variables set. Rank test cases skip themselves unless
// METALM_TEST_SCENARIO is set, so a plain run of the suite only sees the
// parent tests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace metalm::test {

// A port that was free a moment ago on 127.0.0.1 (bind port 0, read it back).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind failed");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline std::string scenario() {
  const char* s = std::getenv("METALM_TEST_SCENARIO");
  return s == nullptr ? "" : s;
}

inline std::string env_or(const char* name, const std::string& fallback = "") {
  const char* s = std::getenv(name);
  return s == nullptr ? fallback : s;
}

// Starts this binary as rank `rank` of `world`, running the test `filter`.
inline pid_t spawn_rank(const std::string& filter, int rank, int world, int port,
                        const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  env["RANK"] = std::to_string(rank);
  env["LOCAL_RANK"] = std::to_string(rank);
  env["WORLD_SIZE"] = std::to_string(world);
  env["MASTER_ADDR"] = "127.0.0.1";
  env["MASTER_PORT"] = std::to_string(port);
  env["OMP_NUM_THREADS"] = "1";
  for (const auto& [k, v] : extra) env[k] = v;
  std::vector<std::string> env_strings, args{"/proc/self/exe", "--gtest_filter=" + filter};
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, argv;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  // Only exec after fork: the parent has threads.
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execve("/proc/self/exe", argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Exit code of `pid` (128 + signal if killed), or -1 if it did not end
// within `seconds` (it is then killed).
inline int wait_exit(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (true) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -2;
}

// Runs `world` ranks of the test `filter` to completion; returns exit codes.
inline std::vector<int> run_ranks(const std::string& filter, int world,
                                  const std::map<std::string, std::string>& extra, double seconds = 60) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) pids.push_back(spawn_rank(filter, r, world, port, extra));
  std::vector<int> codes;
  for (pid_t p : pids) codes.push_back(wait_exit(p, seconds));
  return codes;
}

}  // namespace metalm::test
