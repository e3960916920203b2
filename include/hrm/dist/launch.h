#pragma once
// Where this process sits in a distributed run, read from its launcher's environment: torchrun's variables (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK, LOCAL_WORLD_SIZE) win over Slurm's (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE, and MASTER_ADDR or the first host of
// SLURM_JOB_NODELIST); without either, one process. No LibTorch here: the rules are tested on their own.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace hrm::dist {

struct LaunchInfo {
  int64_t rank = 0, world_size = 1;
  int64_t local_rank = 0, local_world_size = 1;  // within this node: the GPU index and the thread share
  std::string master_addr;
  int port = 0;
  std::string launcher;  // "torchrun" (or plain environment variables), "slurm", or "" for one process

  bool distributed() const { return world_size > 1; }
};

// Reads a variable; std::nullopt when unset (an empty value counts as set).
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Once any of RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT is set, all four are required (the error names the missing
// ones) -- except under Slurm (SLURM_PROCID and SLURM_NTASKS set), where MASTER_ADDR/MASTER_PORT without RANK and
// WORLD_SIZE only name the rendezvous; LOCAL_RANK defaults to 0 and LOCAL_WORLD_SIZE to 1. Under Slurm the port is
// MASTER_PORT or 29500. Values are checked (integers, 0 <= rank < world_size, port in 1..65535); errors name the
// variable.
LaunchInfo launch_info(const EnvLookup& env);
LaunchInfo launch_info_from_environment();

// A loopback port nobody listens on now (the kernel's pick for an ephemeral bind; two callers get different ones).
int free_local_port();

// Starts `world_size` copies of this program with `args` (args[0] is ignored) on this machine, each with the
// variables torchrun would set (loopback MASTER_ADDR, a free MASTER_PORT), and waits for them. When one fails the
// others are killed. Returns 0 when every rank exited 0, else the first failing rank's exit status.
int run_local_ranks(const std::vector<std::string>& args, int64_t world_size);

// The first host of a Slurm node list: "gpu[003-005,010],cpu01" -> "gpu003".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace hrm::dist
