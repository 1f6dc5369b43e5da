// The network configuration a runtime passes to the cppnet CNI plugin: hostile input,
// checked before anything acts on it.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cppnet/vlan.h"

namespace cppnet {

// A configuration with a prevResult stays far below this.
inline constexpr size_t kMaxCniConfigBytes = 1 << 20;

// Bounded (size, depth), a JSON object, and the fields the plugin reads of the right
// type. Errors: InvalidArgument for a mistyped field (CNI code 7), OutOfRange for input
// that is no bounded JSON object (CNI code 6); both name the field or the cause.
absl::StatusOr<nlohmann::json> ParseCniConfig(absl::string_view text);

// Address ranges a runtime brings in its own "ipam" must lie inside the network's
// subnets and must not cover its gateway (host-local skips only a range's own
// "gateway"): an endpoint must never get an address the network does not route to it.
absl::Status CheckRuntimeRanges(const nlohmann::json& ipam, const VlanNetwork& n);

// The host end of a container's pair, named by the plugin: stable for (container ID, interface
// name), so DEL finds it without saved state. "cv…": a VLAN endpoint (veth or netkit); "cn…":
// an overlay container's netkit primary, which the agent recognises by that prefix (and kind)
// to give it the overlay's programs, also after a restart.
inline constexpr char kVlanEndPrefix[] = "cv";
inline constexpr char kOverlayNetkitPrefix[] = "cn";
std::string HostEndName(absl::string_view prefix, const std::string& container,
                        const std::string& ifname);

}  // namespace cppnet
