// Subnet leases as flanneld stores them under <prefix>/subnets/, and the rules
// that turn the set of leases into routes.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "cppnet/config.h"
#include "cppnet/net.h"

namespace cppnet {

struct Lease {
  uint32_t public_ip = 0;    // 0 only in an IPv6-only network's lease (no "PublicIP")
  std::string backend_type;  // empty in old udp leases
  uint32_t vni = 0;
  std::optional<Mac> vtep_mac;
  // udp: BackendData {"CppnetDatapath":1}, which cppnet publishes and flanneld ignores. Such a
  // peer decapsulates in its kernel and takes offloaded packets (checksums left to finish,
  // GSO); any other udp peer may read its tunnel in userspace, as flanneld does.
  bool cppnet_datapath = false;
  // Dual stack: PublicIPv6 (0: none) and BackendV6Data {"VNI","VtepMAC"} (vxlan), as flanneld
  // publishes them. BackendV6Data {"CppnetDatapath":1}: the peer opens IPv6 tunnel packets in
  // BPF before the UDP stack, so it takes them with a zero UDP checksum (a kernel vxlan
  // device, flanneld's flannel-v6.1, drops those).
  unsigned __int128 public_ip6 = 0;
  uint32_t vni6 = 0;
  std::optional<Mac> vtep_mac6;
  bool cppnet_datapath6 = false;
};

absl::StatusOr<Lease> ParseLease(absl::string_view json);
// flanneld's JSON: {"PublicIP":…,"BackendType":"vxlan","BackendData":{"VNI":…,"VtepMAC":…}};
// udp: "BackendData":{"CppnetDatapath":1} (flanneld writes none and reads none). With an
// IPv6 part: "PublicIPv6" and (vxlan) "BackendV6Data".
std::string SerializeLease(const Lease& lease);

// One key/value read from etcd.
struct LeaseRecord {
  std::string key;  // full etcd key
  std::string value;
  int64_t create_revision = 0;
};

// A route to install for another host's lease.
struct PeerRoute {
  Prefix4 subnet;
  Lease lease;
  // The lease's IPv6 subnet, when the key has one, our config enables IPv6 and the lease can
  // be reached over IPv6 (PublicIPv6, and the vxlan data).
  std::optional<Prefix6> subnet6;
  bool operator==(const PeerRoute& o) const {
    return subnet == o.subnet && lease.public_ip == o.lease.public_ip && lease.vni == o.lease.vni &&
           lease.vtep_mac == o.lease.vtep_mac && lease.backend_type == o.lease.backend_type &&
           lease.cppnet_datapath == o.lease.cppnet_datapath && subnet6 == o.subnet6 &&
           lease.public_ip6 == o.lease.public_ip6 && lease.vtep_mac6 == o.lease.vtep_mac6 &&
           lease.cppnet_datapath6 == o.lease.cppnet_datapath6;
  }
};

struct SkippedLease {
  std::string key;
  std::string reason;
};

struct LeaseSet {
  std::map<Prefix4, PeerRoute> routes;  // accepted peers, by subnet
  // An IPv6-only network's peers, by IPv6 subnet (their PeerRoute::subnet is empty).
  std::map<Prefix6, PeerRoute> routes6only;
  std::vector<SkippedLease> skipped;
};

// A lease record parsed once, when it arrives from etcd.
struct ParsedLeaseRecord {
  std::string key;
  int64_t create_revision = 0;
  absl::StatusOr<Prefix4> subnet;  // from the key (an error for an IPv6-only key)
  std::optional<Prefix6> subnet6;  // from a dual-stack or IPv6-only key
  absl::StatusOr<Lease> lease;     // from the value
};
ParsedLeaseRecord ParseLeaseRecord(absl::string_view subnets_prefix, const LeaseRecord& r);

// Applies DESIGN §2: inside the Network, valid key/PublicIP/VtepMAC, same backend
// type, no overlap with ours or an older accepted lease. `own` may be empty. The IPv6 part
// (EnableIPv6) follows the same rules inside IPv6Network; a lease whose IPv6 part fails them
// is still routed for IPv4 (a skipped entry says why IPv6 is not). An IPv6-only network
// (EnableIPv4 false) takes IPv6-only keys by the same rules, into routes6only.
LeaseSet SelectPeerLeases(const NetworkConfig& cfg, std::optional<Prefix4> own,
                          std::vector<const ParsedLeaseRecord*> records,
                          std::optional<Prefix6> own6 = std::nullopt);
// Convenience form for raw records (keys outside subnets_prefix are ignored).
LeaseSet SelectPeerLeases(const NetworkConfig& cfg, absl::string_view subnets_prefix,
                          std::optional<Prefix4> own, const std::vector<LeaseRecord>& records);

// Free subnets between SubnetMin and SubnetMax that overlap no taken one.
std::vector<Prefix4> FreeSubnets(const NetworkConfig& cfg, const std::vector<Prefix4>& taken,
                                 size_t limit);
// Up to `limit` free IPv6 subnets between IPv6SubnetMin and IPv6SubnetMax, drawn at random
// (the range is usually far too large to list).
std::vector<Prefix6> FreeSubnets6(const NetworkConfig& cfg, const std::vector<Prefix6>& taken,
                                  size_t limit, std::mt19937_64& rng);

}  // namespace cppnet
