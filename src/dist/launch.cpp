#include "hrm/dist/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdlib>
#include <vector>

#include "hrm/util/error.h"

namespace hrm::dist {
namespace {

int64_t parse_count(const std::string& name, const std::string& text) {
  size_t used = 0;
  long long v = -1;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < 0)
    throw Error("distributed launch: " + name + "='" + text + "' is not a non-negative integer");
  return v;
}

// SLURM_TASKS_PER_NODE looks like "4(x2),3": the first node's count.
int64_t first_count(const std::string& name, const std::string& text) {
  const size_t end = text.find_first_of("(,");
  return parse_count(name, text.substr(0, end));
}

void check_placement(const LaunchInfo& l, const std::string& rank_var, const std::string& world_var) {
  check(l.world_size >= 1, "distributed launch: " + world_var + " must be >= 1");
  check(l.rank < l.world_size, "distributed launch: " + rank_var + "=" + std::to_string(l.rank) + " is not below " +
                                   world_var + "=" + std::to_string(l.world_size));
  check(l.local_world_size >= 1 && l.local_rank < l.local_world_size,
        "distributed launch: the local rank " + std::to_string(l.local_rank) + " is not below the local world size " +
            std::to_string(l.local_world_size));
  check(l.port >= 1 && l.port <= 65535, "distributed launch: MASTER_PORT must be in 1..65535");
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets.
  std::string first;
  int depth = 0;
  for (char c : nodelist) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) break;
    first += c;
  }
  const size_t open = first.find('[');
  if (open == std::string::npos) return first;
  // prefix[003-005,010]suffix -> prefix003suffix
  const size_t close = first.find(']', open);
  check(close != std::string::npos, "SLURM_JOB_NODELIST='" + nodelist + "': unbalanced '['");
  const std::string inside = first.substr(open + 1, close - open - 1);
  const std::string range = inside.substr(0, inside.find(','));
  return first.substr(0, open) + range.substr(0, range.find('-')) + first.substr(close + 1);
}

LaunchInfo launch_info(const EnvLookup& env) {
  LaunchInfo l;
  const std::vector<std::string> required = {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
  std::string missing;
  bool any = false;
  for (const auto& v : required) {
    if (env(v))
      any = true;
    else
      missing += (missing.empty() ? "" : ", ") + v;
  }
  // Under Slurm, MASTER_ADDR/MASTER_PORT alone name the rendezvous; RANK or WORLD_SIZE means torchrun's contract.
  const bool slurm = env("SLURM_PROCID") && env("SLURM_NTASKS");
  if (slurm && !env("RANK") && !env("WORLD_SIZE")) any = false;
  if (any) {
    if (!missing.empty())
      throw Error("distributed launch: " + missing +
                  " not set (once any of RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT is set, all four are required)");
    l.launcher = "torchrun";
    l.rank = parse_count("RANK", *env("RANK"));
    l.world_size = parse_count("WORLD_SIZE", *env("WORLD_SIZE"));
    l.master_addr = *env("MASTER_ADDR");
    l.port = static_cast<int>(parse_count("MASTER_PORT", *env("MASTER_PORT")));
    l.local_rank = env("LOCAL_RANK") ? parse_count("LOCAL_RANK", *env("LOCAL_RANK")) : 0;
    l.local_world_size = env("LOCAL_WORLD_SIZE") ? parse_count("LOCAL_WORLD_SIZE", *env("LOCAL_WORLD_SIZE")) : 1;
    check(!l.master_addr.empty(), "distributed launch: MASTER_ADDR is empty");
    check_placement(l, "RANK", "WORLD_SIZE");
    return l;
  }
  if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    l.world_size = parse_count("SLURM_NTASKS", *env("SLURM_NTASKS"));
    if (l.world_size <= 1) return LaunchInfo{};
    l.launcher = "slurm";
    l.rank = parse_count("SLURM_PROCID", *env("SLURM_PROCID"));
    l.local_rank = env("SLURM_LOCALID") ? parse_count("SLURM_LOCALID", *env("SLURM_LOCALID")) : 0;
    if (env("SLURM_NTASKS_PER_NODE"))
      l.local_world_size = first_count("SLURM_NTASKS_PER_NODE", *env("SLURM_NTASKS_PER_NODE"));
    else if (env("SLURM_TASKS_PER_NODE"))
      l.local_world_size = first_count("SLURM_TASKS_PER_NODE", *env("SLURM_TASKS_PER_NODE"));
    if (env("MASTER_ADDR"))
      l.master_addr = *env("MASTER_ADDR");
    else if (env("SLURM_JOB_NODELIST"))
      l.master_addr = first_slurm_host(*env("SLURM_JOB_NODELIST"));
    else if (env("SLURM_NODELIST"))
      l.master_addr = first_slurm_host(*env("SLURM_NODELIST"));
    check(!l.master_addr.empty(),
          "distributed launch under Slurm: set MASTER_ADDR (SLURM_JOB_NODELIST is not set either)");
    l.port = env("MASTER_PORT") ? static_cast<int>(parse_count("MASTER_PORT", *env("MASTER_PORT"))) : 29500;
    check_placement(l, "SLURM_PROCID", "SLURM_NTASKS");
    return l;
  }
  return l;
}

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  check(fd >= 0, "free_local_port: socket() failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  check(ok, "free_local_port: could not find a free port on 127.0.0.1");
  return ntohs(a.sin_port);
}

int run_local_ranks(const std::vector<std::string>& args, int64_t world_size) {
  check(world_size >= 1, "run_local_ranks: world size must be >= 1");
  const std::string port = std::to_string(free_local_port());
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  check(n > 0, "run_local_ranks: cannot find this program (/proc/self/exe)");
  exe[n] = 0;
  std::vector<pid_t> pids;
  for (int64_t r = 0; r < world_size; ++r) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) {
      const std::string v = *e;
      const std::string name = v.substr(0, v.find('='));
      if (name != "RANK" && name != "WORLD_SIZE" && name != "LOCAL_RANK" && name != "LOCAL_WORLD_SIZE" &&
          name != "MASTER_ADDR" && name != "MASTER_PORT")
        env.push_back(v);
    }
    for (const auto& [k, v] : {std::pair<std::string, std::string>{"RANK", std::to_string(r)},
                               {"LOCAL_RANK", std::to_string(r)},
                               {"WORLD_SIZE", std::to_string(world_size)},
                               {"LOCAL_WORLD_SIZE", std::to_string(world_size)},
                               {"MASTER_ADDR", "127.0.0.1"},
                               {"MASTER_PORT", port}})
      env.push_back(k + "=" + v);
    std::vector<char*> envp, argv;
    for (auto& v : env) envp.push_back(v.data());
    envp.push_back(nullptr);
    std::vector<std::string> a = args;
    a[0] = exe;
    for (auto& v : a) argv.push_back(v.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, exe, nullptr, nullptr, argv.data(), envp.data());
    if (rc != 0) {
      for (pid_t p : pids) ::kill(p, SIGKILL);
      throw Error("run_local_ranks: could not start rank " + std::to_string(r));
    }
    pids.push_back(pid);
  }
  int result = 0;
  for (size_t left = pids.size(); left > 0; --left) {
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, 0);
    if (done < 0) break;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && result == 0) {
      result = code;
      for (pid_t p : pids)
        if (p != done) ::kill(p, SIGTERM);  // the others would fail at their next collective anyway
    }
  }
  return result;
}

LaunchInfo launch_info_from_environment() {
  return launch_info([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace hrm::dist
