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
  uint32_t public_ip = 0;
  std::string backend_type;  // empty in old udp leases
  uint32_t vni = 0;
  std::optional<Mac> vtep_mac;
  // udp: BackendData {"CppnetDatapath":1}, which cppnet publishes and flanneld ignores. Such a
  // peer decapsulates in its kernel and takes offloaded packets (checksums left to finish,
  // GSO); any other udp peer may read its tunnel in userspace, as flanneld does.
  bool cppnet_datapath = false;
};

absl::StatusOr<Lease> ParseLease(absl::string_view json);
// flanneld's JSON: {"PublicIP":…,"BackendType":"vxlan","BackendData":{"VNI":…,"VtepMAC":…}};
// udp: "BackendData":{"CppnetDatapath":1} (flanneld writes none and reads none).
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
  bool operator==(const PeerRoute& o) const {
    return subnet == o.subnet && lease.public_ip == o.lease.public_ip && lease.vni == o.lease.vni &&
           lease.vtep_mac == o.lease.vtep_mac && lease.backend_type == o.lease.backend_type &&
           lease.cppnet_datapath == o.lease.cppnet_datapath;
  }
};

struct SkippedLease {
  std::string key;
  std::string reason;
};

struct LeaseSet {
  std::map<Prefix4, PeerRoute> routes;  // accepted peers, by subnet
  std::vector<SkippedLease> skipped;
};

// A lease record parsed once, when it arrives from etcd.
struct ParsedLeaseRecord {
  std::string key;
  int64_t create_revision = 0;
  absl::StatusOr<Prefix4> subnet;  // from the key
  absl::StatusOr<Lease> lease;     // from the value
};
ParsedLeaseRecord ParseLeaseRecord(absl::string_view subnets_prefix, const LeaseRecord& r);

// Applies DESIGN §2: inside the Network, valid key/PublicIP/VtepMAC, same backend
// type, no overlap with ours or an older accepted lease. `own` may be empty.
LeaseSet SelectPeerLeases(const NetworkConfig& cfg, std::optional<Prefix4> own,
                          std::vector<const ParsedLeaseRecord*> records);
// Convenience form for raw records (keys outside subnets_prefix are ignored).
LeaseSet SelectPeerLeases(const NetworkConfig& cfg, absl::string_view subnets_prefix,
                          std::optional<Prefix4> own, const std::vector<LeaseRecord>& records);

// Free subnets between SubnetMin and SubnetMax that overlap no taken one.
std::vector<Prefix4> FreeSubnets(const NetworkConfig& cfg, const std::vector<Prefix4>& taken,
                                 size_t limit);

}  // namespace cppnet
