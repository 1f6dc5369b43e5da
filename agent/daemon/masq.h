// IP masquerading of container traffic that leaves the cluster network (--ip-masq),
// with flanneld's rules, as one nftables table ("ip cppnet") replaced atomically.
#pragma once
#include <string>

#include "absl/status/status.h"
#include "cppnet/net.h"

namespace cppnet {

// The nftables script that (re)creates the table: one transaction, no gap.
std::string MasqueradeRules(const Prefix4& network, const Prefix4& subnet);
// Installs (or replaces) the table in the current network namespace.
absl::Status InstallMasquerade(const Prefix4& network, const Prefix4& subnet);
// Removes the table if it exists (an earlier run with --ip-masq).
absl::Status RemoveMasquerade();

}  // namespace cppnet
