#include "cppnet/local_api.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"
#include "cppnet/config.h"
#include "absl/time/clock.h"
#include "cppnet/json_util.h"
#include "cppnet/paths.h"

namespace cppnet {

using nlohmann::json;

json ApiAnswer(const absl::StatusOr<json>& r) {
  if (r.ok()) return {{"ok", true}, {"result", *r}};
  return {{"ok", false},
          {"code", static_cast<int>(r.status().code())},
          {"error", std::string(r.status().message())}};
}

absl::StatusOr<json> FromApiAnswer(const json& a) {
  if (!a.is_object() || !a.contains("ok") || !a["ok"].is_boolean())
    return absl::InternalError("cppnet-agent sent a malformed answer");
  if (a["ok"].get<bool>()) return a.value("result", json());
  const int code = a.contains("code") && a["code"].is_number_integer() ? a["code"].get<int>() : 2;
  std::string msg = a.contains("error") && a["error"].is_string() ? a["error"].get<std::string>()
                                                                  : "unknown error";
  return absl::Status(static_cast<absl::StatusCode>(code >= 1 && code <= 16 ? code : 2), msg);
}

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// 0: connected; else errno.
int Connect(const Fd& s, const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path)) return ENAMETOOLONG;
  memcpy(a.sun_path, path.data(), path.size());
  return connect(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 ? 0 : errno;
}

}  // namespace

absl::StatusOr<json> CallAgent(const std::string& method, const json& params, absl::Duration wait,
                               const std::string& socket_path) {
  const std::string path = socket_path.empty() ? kAgentSocket : socket_path;
  const absl::Time deadline = absl::Now() + wait;
  Fd s;
  for (;;) {
    s.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s.fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
    const int err = Connect(s, path);
    if (err == 0) break;
    close(s.fd);
    s.fd = -1;
    if (err == EACCES || err == EPERM)
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": ", strerror(err), " (the agent's API is for root)"));
    if (absl::Now() >= deadline)
      return absl::UnavailableError(absl::StrCat("cppnet-agent is not running on this host (", path,
                                                 ": ", strerror(err), ")"));
    absl::SleepFor(absl::Milliseconds(50));  // the agent is (re)starting
  }
  timeval tv{30, 0};  // the agent answers from its loop; never wait forever
  setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const std::string req = json{{"method", method}, {"params", params}}.dump() + "\n";
  for (size_t off = 0; off < req.size();) {
    const ssize_t n = send(s.fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return absl::UnavailableError(absl::StrCat(path, ": send: ", strerror(errno)));
    off += static_cast<size_t>(n);
  }
  std::string in;
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(s.fd, buf, sizeof(buf), 0);
    if (n < 0) return absl::UnavailableError(absl::StrCat(path, ": no answer: ", strerror(errno)));
    if (n == 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > kMaxApiMessageBytes)
      return absl::InternalError(absl::StrCat(path, ": answer too large"));
  }
  if (in.empty())
    return absl::UnavailableError(absl::StrCat(path, ": cppnet-agent closed the connection"));
  auto a = ParseJsonObject(in, "cppnet-agent's answer", kMaxApiMessageBytes);
  if (!a.ok()) return a.status();
  return FromApiAnswer(*a);
}

json RouteToJson(const Prefix4& subnet, const cppnet_route& r) {
  json j = {{"subnet", FormatPrefix4(subnet)},
            {"public_ip", FormatIp4(ntohl(r.public_ip))},
            {"backend", BackendName(r.backend)},
            {"vni", r.vni},
            {"port", r.port}};
  if (r.backend == CPPNET_BACKEND_UDP)
    j["userspace_peer"] = (r.flags & CPPNET_ROUTE_USERSPACE_PEER) != 0;
  if (r.backend == CPPNET_BACKEND_VXLAN) {
    Mac m;
    memcpy(m.data(), r.vtep_mac, 6);
    j["vtep_mac"] = FormatMac(m);
  }
  return j;
}

absl::StatusOr<RouteEntry> RouteFromJson(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("route: not a JSON object");
  auto str = [&](const char* k) -> std::string {
    return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : "";
  };
  RouteEntry e;
  auto subnet = ParsePrefix4(str("subnet"));
  if (!subnet.ok())
    return absl::InvalidArgumentError(absl::StrCat("route: subnet: ", subnet.status().message()));
  auto via = ParseIp4(str("public_ip"));
  if (!via.ok())
    return absl::InvalidArgumentError(absl::StrCat("route: via: ", via.status().message()));
  auto backend = BackendFromName(str("backend"));
  if (!backend)
    return absl::InvalidArgumentError(
        absl::StrCat("route: unknown backend \"", str("backend"), "\""));
  int64_t vni = 0, port = 0;
  if (auto st = GetInt(j, "vni", &vni, "route"); !st.ok()) return st;
  if (auto st = GetInt(j, "port", &port, "route"); !st.ok()) return st;
  if (vni < 0 || vni > 0xffffff)
    return absl::InvalidArgumentError(absl::StrCat("route: invalid vni ", vni));
  if (port < 0 || port > 65535)
    return absl::InvalidArgumentError(absl::StrCat("route: invalid port ", port));
  e.subnet = *subnet;
  e.route.public_ip = htonl(*via);
  e.route.backend = *backend;
  e.route.vni = static_cast<uint32_t>(vni);
  e.route.port = static_cast<uint16_t>(port);
  e.route.origin = CPPNET_ORIGIN_STATIC;
  // A udp host known by no lease may be flanneld, reading its tunnel in userspace.
  if (*backend == CPPNET_BACKEND_UDP) e.route.flags = CPPNET_ROUTE_USERSPACE_PEER;
  if (*backend == CPPNET_BACKEND_VXLAN) {
    auto mac = ParseMac(str("vtep_mac"));
    if (!mac.ok())
      return absl::InvalidArgumentError(absl::StrCat("route: vtep_mac: ", mac.status().message()));
    memcpy(e.route.vtep_mac, mac->data(), 6);
  }
  return e;
}

json NetworkArgsToJson(const NetworkCreateArgs& a) {
  return {{"name", a.name},
          {"driver", a.driver},
          {"subnets", a.subnets},
          {"gateways", a.gateways},
          {"aux_addresses", a.aux_addresses},
          {"ip_ranges", a.ip_ranges},
          {"options", a.options},
          {"ipv4", a.ipv4},
          {"ipv6", a.ipv6},
          {"internal", a.internal}};
}

absl::StatusOr<NetworkCreateArgs> NetworkArgsFromJson(const json& j) {
  try {
    NetworkCreateArgs a;
    a.name = j.at("name").get<std::string>();
    a.driver = j.at("driver").get<std::string>();
    a.subnets = j.at("subnets").get<std::vector<std::string>>();
    a.gateways = j.at("gateways").get<std::vector<std::string>>();
    a.aux_addresses = j.at("aux_addresses").get<std::vector<std::string>>();
    a.ip_ranges = j.at("ip_ranges").get<std::vector<std::string>>();
    a.options = j.at("options").get<std::vector<std::string>>();
    a.ipv4 = j.value("ipv4", true);
    a.ipv6 = j.at("ipv6").get<bool>();
    a.internal = j.at("internal").get<bool>();
    return a;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("network create: malformed request: ", e.what()));
  }
}

}  // namespace cppnet
