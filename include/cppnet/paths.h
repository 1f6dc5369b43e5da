// Host paths shared by the agent and cppnetctl (DESIGN: runtime state in /run/cppnet,
// persistent host configuration in /etc/cppnet).
#pragma once
#include <string>

namespace cppnet {

inline constexpr char kRunDir[] = "/run/cppnet";
inline constexpr char kAgentPidFile[] = "/run/cppnet/agent.pid";  // exists while an agent runs
inline constexpr char kConfigDirDefault[] = "/etc/cppnet";
inline std::string NetworksDir(const std::string& config_dir) { return config_dir + "/networks.d"; }

}  // namespace cppnet
