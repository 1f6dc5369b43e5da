// Choosing the underlay interface as flanneld does: --iface (repeatable; a name or an
// address, the first that exists wins), then --iface-regex (repeatable; matched against
// every interface's addresses first, then against names), then --iface-can-reach (the
// interface a route lookup for that address picks).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cppnet/netlink.h"

namespace cppnet {

struct UnderlayFlags {
  std::vector<std::string> ifaces;
  std::vector<std::string> regexes;
  std::string can_reach;
  bool any() const { return !ifaces.empty() || !regexes.empty() || !can_reach.empty(); }
};

struct UnderlayPick {
  Interface iface;
  uint32_t addr = 0;  // the address that matched (host byte order); 0: the interface's first
  std::string how;    // e.g. "--iface-regex ^ens"
};

// --iface, then --iface-regex, over `links` (in ifindex order). NotFound when nothing
// matches; InvalidArgument for a regex that does not compile. `notes` gets a line for
// each option that matched nothing.
absl::StatusOr<UnderlayPick> MatchUnderlay(const std::vector<Interface>& links,
                                           const UnderlayFlags& flags,
                                           std::vector<std::string>* notes);

// Every interface with its IPv4 addresses.
absl::StatusOr<std::vector<Interface>> ListInterfaces();
// The interface and preferred source address the kernel's routing picks for `ip`
// (`ip route get`).
absl::StatusOr<UnderlayPick> InterfaceToReach(uint32_t ip);

}  // namespace cppnet
