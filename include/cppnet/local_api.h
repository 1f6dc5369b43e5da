// The agent's local API: one JSON request per connection on a unix stream socket
// (kAgentSocket, 0600, root only), one JSON answer.
//   request:  {"method": "route.add", "params": {...}}\n
//   answer:   {"ok": true, "result": ...}  or  {"ok": false, "code": N, "error": "..."}
// (N: the absl::StatusCode). cppnetctl and the CNI plugin call it; the agent serves it
// from its event loop, so every write to its maps, attachments and files has one writer.
#pragma once
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cppnet/maps.h"
#include "cppnet/vlan.h"
#include "nlohmann/json.hpp"

namespace cppnet {

inline constexpr size_t kMaxApiMessageBytes = 1 << 20;

// Calls `method`. While nobody answers on the socket (agent not running, or restarting)
// it retries until `wait` has passed, then fails with Unavailable naming the socket.
absl::StatusOr<nlohmann::json> CallAgent(const std::string& method, const nlohmann::json& params,
                                         absl::Duration wait = absl::ZeroDuration(),
                                         const std::string& socket_path = "");

// The answer for a handler's outcome, and back.
nlohmann::json ApiAnswer(const absl::StatusOr<nlohmann::json>& r);
absl::StatusOr<nlohmann::json> FromApiAnswer(const nlohmann::json& answer);

// Payloads. A static route as cppnetctl sends it and the agent keeps it (routes.json):
// {"subnet": CIDR, "public_ip": IP, "backend": name, "vni": N, "port": N, "vtep_mac": MAC}.
nlohmann::json RouteToJson(const Prefix4& subnet, const cppnet_route& r);
absl::StatusOr<RouteEntry> RouteFromJson(const nlohmann::json& j);
// `cppnetctl network create`'s arguments, validated by the agent.
nlohmann::json NetworkArgsToJson(const NetworkCreateArgs& a);
absl::StatusOr<NetworkCreateArgs> NetworkArgsFromJson(const nlohmann::json& j);

}  // namespace cppnet
