// IP masquerading of container traffic that leaves the cluster network (--ip-masq),
// with flanneld's rules, as nftables tables ("ip cppnet", and "ip6 cppnet" for the IPv6
// network) replaced atomically, both in one transaction.
#pragma once
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "cppnet/net.h"

namespace cppnet {

// What to masquerade: the cluster network and our subnet, per family (absent: no table).
struct MasqSpec {
  std::optional<std::pair<Prefix4, Prefix4>> v4;
  std::optional<std::pair<Prefix6, Prefix6>> v6;
  bool operator==(const MasqSpec&) const = default;
  bool empty() const { return !v4 && !v6; }
};

// The nftables script that (re)creates both tables: one transaction, no gap.
std::string MasqueradeRules(const MasqSpec& spec);
// Installs (or replaces, or with an empty spec removes) the tables in the current network
// namespace.
absl::Status InstallMasquerade(const MasqSpec& spec);
// Removes the tables if they exist (an earlier run with --ip-masq).
absl::Status RemoveMasquerade();
// Removes the CNI plugin's tables for netkit containers' ipMasq ("ip cppnet_cni", "ip6
// cppnet_cni"), for --cleanup.
absl::Status RemoveCniMasquerade();

}  // namespace cppnet
