// The cluster config at <prefix>/config, as flanneld reads it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "cppnet/abi.h"
#include "cppnet/net.h"

namespace cppnet {

struct BackendConfig {
  // enum cppnet_backend (BackendName() spells it as the config and leases do); udp is
  // flanneld's default when Backend is absent.
  uint8_t type = CPPNET_BACKEND_UDP;
  uint32_t vni = 1;
  uint16_t port = 0;  // 0 until defaulted per type
  bool direct_routing = false;
};

struct NetworkConfig {
  Prefix4 network;
  uint8_t subnet_len = 0;
  uint32_t subnet_min = 0;
  uint32_t subnet_max = 0;
  BackendConfig backend;
  bool enable_ipv4 = true;  // false: IPv6 only (no Network; the IPv4 fields stay zero)
  bool enable_ipv6 = false;
  // EnableIPv6: validated as flanneld does.
  std::optional<Prefix6> ipv6_network;
  uint8_t ipv6_subnet_len = 0;
  unsigned __int128 ipv6_subnet_min = 0, ipv6_subnet_max = 0;

  Prefix4 SubnetAt(uint32_t addr) const { return Prefix4{addr, subnet_len}; }
  // MTU that containers must use for this backend on an underlay of `underlay_mtu`.
  int ContainerMtu(int underlay_mtu) const;
};

// The backends by name, as the config and leases spell them, and as the datapath
// numbers them (enum cppnet_backend).
std::optional<uint8_t> BackendFromName(absl::string_view type);
const char* BackendName(uint8_t backend);
// Backend.Port when the config does not set it: vxlan 8472, udp 8285, host-gw none.
uint16_t DefaultBackendPort(uint8_t backend);

// Parses and validates; every error names the field and the value.
absl::StatusOr<NetworkConfig> ParseNetworkConfig(absl::string_view json);

}  // namespace cppnet
