// subnet.env, the file Docker and CNI read (same variables as flanneld writes).
#pragma once
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppnet/net.h"

namespace cppnet {

struct SubnetEnv {
  Prefix4 network;
  Prefix4 subnet;  // the leased subnet; FLANNEL_SUBNET carries its first host address (len 0:
                   // an IPv6-only network, no IPv4 variables)
  int mtu = 0;
  bool ipmasq = false;
  // Dual stack: FLANNEL_IPV6_NETWORK, FLANNEL_IPV6_SUBNET (its first host address).
  std::optional<Prefix6> network6;
  std::optional<Prefix6> subnet6;
};

std::string RenderSubnetEnv(const SubnetEnv& env);
// The subnet we had last time, if the file exists and holds one.
std::optional<Prefix4> ReadSubnetFromEnvFile(const std::string& path);
std::optional<Prefix6> ReadSubnet6FromEnvFile(const std::string& path);
// The whole file as RenderSubnetEnv writes it (what the CNI plugin reads); errors name the file.
absl::StatusOr<SubnetEnv> ReadSubnetEnvFile(const std::string& path);
// Write to a temporary file in the same directory, fsync, rename: readers never see half a file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);
// At most `limit` bytes of a file: a longer one is cut there, so the caller's own size
// check (CheckJsonBounds with limit - 1) reports it; errors name the file.
absl::StatusOr<std::string> ReadFileHead(const std::string& path, size_t limit);

}  // namespace cppnet
