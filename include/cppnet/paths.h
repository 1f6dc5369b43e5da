// Host paths shared by the agent and cppnetctl (DESIGN: runtime state in /run/cppnet,
// persistent host configuration in /etc/cppnet).
#pragma once
#include <string>

namespace cppnet {

inline constexpr char kRunDir[] = "/run/cppnet";
// The agent's local API (root only): the one way for cppnetctl and the CNI plugin to
// change what the agent owns.
inline constexpr char kAgentSocket[] = "/run/cppnet/agent.sock";
inline constexpr char kConfigDirDefault[] = "/etc/cppnet";
inline std::string NetworksDir(const std::string& config_dir) { return config_dir + "/networks.d"; }
// Static routes added with cppnetctl route add, restored by the agent at start.
inline std::string StaticRoutesFile(const std::string& config_dir) {
  return config_dir + "/routes.json";
}

}  // namespace cppnet
