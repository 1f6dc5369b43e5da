// CNI plugin "cppnet" (CNI spec 1.0.0): attaches containers to the cppnet overlay.
// {"network":"overlay"} does what flannel's CNI plugin does: it reads the agent's
// subnet.env and delegates to the standard bridge plugin (bridge cni0, gateway = the
// subnet's first address, host-local IPAM over the leased subnet). The agent then
// finds the bridge and attaches its programs to it and to every container veth. Where the
// agent uses netkit, the plugin makes a netkit pair itself instead (no bridge; see "Overlay
// containers on netkit") and asks the agent to attach it.
// A VLAN network (cppnetctl network create) gets a veth endpoint on its trunk and VLAN
// and addresses from host-local IPAM; the agent, asked through its local API, puts it in
// the VLAN datapath's maps and attaches its program (the plugin writes no map and
// attaches nothing). While the agent restarts, calls wait up to 10 s, then fail with
// CNI error 11 (try again later).
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cppnet/abi.h"
#include "cppnet/cni_config.h"
#include "cppnet/file_lock.h"
#include "cppnet/paths.h"
#include "cppnet/subnet_env.h"
#include "cppnet/vlan.h"
#include "cppnet/json_util.h"
#include "cppnet/local_api.h"
#include "cppnet/version.h"
#include "cppnet/vlan_maps.h"
#include "cppnet/netlink.h"
#include "cppnet/nft.h"

using nlohmann::json;
using namespace cppnet;

namespace {

const char* const kVersions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
// The delegated bridge plugin (Debian's containernetworking-plugins) speaks up to 1.0.0;
// 1.0.0 and 1.1.0 results have the same form.
const char* const kDelegateVersionMax = "1.0.0";
// CNI error codes (spec: "Error"); 100+ are this plugin's own.
enum {
  kIncompatibleVersion = 1,
  kInvalidEnv = 4,
  kIoFailure = 5,
  kDecodeFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kNotAvailable = 50  // CNI 1.1 STATUS: the plugin cannot serve ADD now
};

std::string g_version = "1.0.0";
constexpr absl::Duration kAgentWait = absl::Seconds(10);  // an agent restart takes less
// Room a VLAN endpoint's packets need for the 802.1Q tag the program pushes (netkit headroom).
constexpr uint16_t kVlanTagRoom = 4;

// An answer from the agent, or the CNI error for its failure.
int AgentError(const absl::Status& st, int config_code = kInvalidConfig);
// What a netkit ADD made for (container `id`, `ifname`), removed (see below).
absl::Status OverlayNetkitRelease(const nlohmann::json& d, const std::string& id,
                                  const std::string& ifname);

int Error(int code, const std::string& msg, const std::string& details = "") {
  json e = {{"cniVersion", g_version}, {"code", code}, {"msg", msg}};
  if (!details.empty()) e["details"] = details;
  std::cout << e.dump() << std::endl;
  return 1;
}

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v ? v : "";
}

// Runs the delegate plugin `type` from CNI_PATH with `conf` on stdin; its stdout is
// passed through (a result, or its own error JSON), or kept in *captured, and its exit
// status returned.
int Delegate(const std::string& type, const json& conf, std::string* captured = nullptr,
             const std::string& command = "",
             const std::vector<std::pair<std::string, std::string>>& env = {}) {
  std::string path;
  for (absl::string_view dir : absl::StrSplit(Env("CNI_PATH"), ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", type);
    if (access(candidate.c_str(), X_OK) == 0) {
      path = candidate;
      break;
    }
  }
  if (path.empty())
    return Error(kIoFailure, absl::StrCat("delegate plugin ", type, " not found in CNI_PATH"),
                 Env("CNI_PATH"));
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0)
    return Error(kIoFailure, absl::StrCat("pipe: ", strerror(errno)));
  pid_t pid = fork();
  if (pid < 0) return Error(kIoFailure, absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    if (!command.empty()) setenv("CNI_COMMAND", command.c_str(), 1);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    close(in[0]), close(in[1]), close(out[0]), close(out[1]);
    execl(path.c_str(), type.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  const std::string text = conf.dump();
  for (size_t off = 0; off < text.size();) {
    ssize_t n = write(in[1], text.data() + off, text.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  close(in[1]);
  std::string result;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;)
    result.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (captured) {
    *captured = result;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  }
  std::cout << result;
  if (!result.empty() && result.back() != '\n') std::cout << std::endl;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

// What a runtime asks of the IPAM plugin: static addresses in runtimeConfig "ips" (the "ips"
// capability) and "args" {"cni": {"ips": …}}; host-local reads both (and CNI_ARGS IP=, which
// it inherits with the environment) and refuses addresses outside its ranges.
void PassRuntimeArgs(const json& conf, json* to) {
  for (const char* k : {"runtimeConfig", "args"})
    if (conf.contains(k) && conf[k].is_object()) (*to)[k] = conf[k];
}

// The bridge plugin's configuration for the overlay, as flannel's CNI plugin builds it.
// flannel's CNI plugin's contract: the bridge plugin configured from subnet.env, with the
// user's "delegate" object merged over it (e.g. hairpinMode, isDefaultGateway) — all but
// "ipam", which is bound to the leased subnet. ipMasq defaults to the opposite of
// FLANNEL_IPMASQ, as flannel's: when the agent masquerades, the bridge must not.
absl::StatusOr<json> OverlayDelegate(const json& conf, const SubnetEnv& env) {
  const std::string version = conf.value("cniVersion", "1.0.0");
  json d = {{"cniVersion", version == "1.1.0" ? kDelegateVersionMax : version},
            {"name", conf.value("name", "cppnet")},
            {"type", "bridge"},
            {"bridge", conf.value("bridge", "cni0")},
            {"isGateway", true},
            {"isDefaultGateway", true},
            {"ipMasq", !env.ipmasq},
            {"hairpinMode", true},
            {"mtu", env.mtu}};
  if (conf.contains("delegate")) {
    const json& del = conf["delegate"];
    if (!del.is_object()) return absl::InvalidArgumentError("\"delegate\" must be an object");
    for (const auto& [k, v] : del.items()) {
      if (k == "ipam" || k == "cniVersion" || k == "name") continue;  // ours
      if (k == "type" && v != "bridge")
        return absl::InvalidArgumentError(
            absl::StrCat("delegate type ", DescribeJson(v),
                         " is not supported: cppnet's overlay uses the bridge "
                         "plugin (its agent attaches to the bridge)"));
      d[k] = v;
    }
  }
  // The config's own "ipam" is honoured as flannel's plugin does: its keys (dataDir, routes, a
  // type of its own, …) kept, host-local by default, the leased subnet as the range; dual stack
  // (FLANNEL_IPV6_SUBNET) adds the IPv6 subnet as a second range set, one address of each.
  json ipam = conf.contains("ipam") && conf["ipam"].is_object() ? conf["ipam"] : json::object();
  if (!ipam.contains("type")) ipam["type"] = "host-local";
  if (!ipam.contains("dataDir")) ipam["dataDir"] = absl::StrCat(kRunDir, "/ipam");
  ipam["ranges"] = json::array();
  if (env.subnet.len)
    ipam["ranges"].push_back(json::array({{{"subnet", FormatPrefix4(env.subnet)}}}));
  if (env.subnet6)
    ipam["ranges"].push_back(json::array({{{"subnet", FormatPrefix6(*env.subnet6)}}}));
  ipam.erase("subnet");
  d["ipam"] = ipam;
  if (conf.contains("prevResult")) d["prevResult"] = conf["prevResult"];
  PassRuntimeArgs(conf, &d);
  return d;
}

// Where ADD keeps the delegated configuration: <dataDir>/<container ID>-<interface>
// ("dataDir" as flannel's, default /var/lib/cni/cppnet). Both names come from the runtime
// and become a file name: refused unless they are plain names.
absl::StatusOr<std::string> SavedConfPath(const json& conf) {
  const std::string dir = conf.value("dataDir", "/var/lib/cni/cppnet");
  if (dir.empty() || dir[0] != '/')
    return absl::InvalidArgumentError(
        absl::StrCat("dataDir \"", dir, "\" must be an absolute path"));
  const std::string id = Env("CNI_CONTAINERID"), ifname = Env("CNI_IFNAME");
  if (!PlainName(id, 255))
    return absl::InvalidArgumentError(
        "CNI_CONTAINERID must be letters, digits, '_', '.' or '-', starting with a letter or "
        "digit");
  if (!PlainName(ifname, 15))
    return absl::InvalidArgumentError(
        absl::StrCat("CNI_IFNAME \"", ifname, "\" is not an interface name"));
  return absl::StrCat(dir, "/", id, "-", ifname);
}

// The bridge plugin with `d`; its result is passed through, relabelled 1.1.0 when the
// runtime speaks 1.1.0 (the bridge plugin is driven at 1.0.0, which has the same result).
int RunBridge(const json& d, const std::string& cmd) {
  if (g_version != "1.1.0") return Delegate("bridge", d, nullptr, cmd);
  std::string out;
  const int rc = Delegate("bridge", d, &out, cmd);
  json r = json::parse(out, nullptr, false);
  if (rc == 0 && r.is_object() && r.contains("cniVersion")) r["cniVersion"] = "1.1.0";
  if (!out.empty()) std::cout << (r.is_discarded() ? out : r.dump()) << std::endl;
  return rc;
}

// CNI 1.1 GC: what attachments not in "cni.dev/valid-attachments" still hold is released —
// the network's host-local addresses and (overlay) the saved delegated configurations, after
// the bridge plugin's DEL for each. Endpoints need nothing: the agent forgets an endpoint when
// its veth goes, with the container's namespace.
int Gc(const json& conf, const std::string& network) {
  auto it = conf.find("cni.dev/valid-attachments");
  if (it == conf.end() || it->is_null()) return 0;  // nothing named: nothing can be judged stale
  if (!it->is_array())
    return Error(kInvalidConfig, "\"cni.dev/valid-attachments\" must be an array");
  std::set<std::pair<std::string, std::string>> valid;
  for (const json& a : *it) {
    if (!a.is_object() || !a.contains("containerID") || !a["containerID"].is_string())
      return Error(kInvalidConfig,
                   "\"cni.dev/valid-attachments\": each entry needs a \"containerID\" string");
    valid.emplace(a["containerID"].get<std::string>(), a.value("ifname", ""));
  }
  auto stale = [&](const std::string& id, const std::string& ifname) {
    return !valid.count({id, ifname});
  };
  const std::string name = conf.value("name", network == "overlay" ? "cppnet" : network);
  if (!PlainName(name, 255))
    return Error(kInvalidConfig, absl::StrCat("network name \"", name, "\" is not a plain name"));
  if (network == "overlay") {
    const std::string dir = conf.value("dataDir", "/var/lib/cni/cppnet");
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      auto text = ReadFileHead(e.path().string(), kMaxCniConfigBytes);
      json d = text.ok() ? json::parse(*text, nullptr, false) : json();
      if (!d.is_object() || d.value("name", "") != name || !d.contains("cppnet.attachment") ||
          !d["cppnet.attachment"].is_object())
        continue;
      const std::string id = d["cppnet.attachment"].value("containerID", "");
      const std::string ifname = d["cppnet.attachment"].value("ifname", "");
      if (!stale(id, ifname)) continue;
      std::string ignored;
      const bool released =
          d.value("cppnet.device", "") == "netkit"
              ? OverlayNetkitRelease(d, id, ifname).ok()
              : Delegate("bridge", d, &ignored, "DEL",
                         {{"CNI_CONTAINERID", id}, {"CNI_IFNAME", ifname}, {"CNI_NETNS", ""}}) == 0;
      if (released) unlink(e.path().c_str());
    }
  }
  // host-local's allocations: one file per address, named by it and holding
  // "<container ID>\r\n<ifname>", changed under its own lock. The directory comes from the
  // (untrusted) configuration: only a host-local store (its lock file exists) is touched, and
  // in it only files named by an IP address.
  std::string ipam_dir = absl::StrCat(kRunDir, "/ipam");
  if (network != "overlay" && conf.contains("ipam") && conf["ipam"].is_object())
    ipam_dir = conf["ipam"].value("dataDir", ipam_dir);
  const std::string dir = absl::StrCat(ipam_dir, "/", name);
  if (std::filesystem::is_regular_file(absl::StrCat(dir, "/lock"))) {
    auto lock = FileLock::Acquire(absl::StrCat(dir, "/lock"));
    if (!lock.ok()) return Error(kIoFailure, std::string(lock.status().message()));
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string file = e.path().filename().string();
      if (!ParseIp4(file).ok() && !ParseIp6(file).ok()) continue;
      auto text = ReadFileHead(e.path().string(), 512);
      if (!text.ok() || absl::StartsWith(*text, "aux-address")) continue;
      std::vector<std::string> f =
          absl::StrSplit(*text, absl::ByAnyChar("\r\n"), absl::SkipEmpty());
      if (f.empty() || !stale(f[0], f.size() > 1 ? f[1] : "")) continue;
      unlink(e.path().c_str());
    }
  }
  return 0;
}

// ---- VLAN network endpoints ----
// A veth pair: the container end (CNI_IFNAME) in the container's namespace with the
// endpoint's MAC and addresses, the host end carrying cppnet_tc_vlan_port. The maps say
// which trunk and VLAN it belongs to; the agent owns the trunk side.

// Host end of the endpoint's veth: stable for (container, interface), so DEL finds it.
std::string HostVethName(const std::string& container, const std::string& ifname) {
  return HostEndName(kVlanEndPrefix, container, ifname);
}

// Enters a network namespace for the lifetime of the object (the plugin is single-threaded).
class NetnsGuard {
 public:
  static absl::StatusOr<std::unique_ptr<NetnsGuard>> Enter(const std::string& path) {
    std::unique_ptr<NetnsGuard> g(new NetnsGuard());
    g->host_ = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::NotFoundError(absl::StrCat("netns ", path, ": ", strerror(errno)));
    int rc = setns(fd, CLONE_NEWNET);
    int err = errno;
    close(fd);
    if (rc != 0)
      return absl::InternalError(absl::StrCat("netns ", path, ": enter: ", strerror(err)));
    return g;
  }
  ~NetnsGuard() {
    if (host_ >= 0) {
      (void)setns(host_, CLONE_NEWNET);
      close(host_);
    }
  }

 private:
  NetnsGuard() = default;
  int host_ = -1;
};

// The container's namespace as an fd (where a pair's peer goes; the caller closes it).
absl::StatusOr<int> OpenNetns(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("netns ", path, ": ", strerror(errno)));
  return fd;
}

// The container's side of a new pair, for the lifetime of this object: inside its namespace, a
// netlink socket there and CNI_IFNAME's index. `ipv6`: DAD off (the addresses are ours by IPAM).
struct InContainer {
  std::unique_ptr<NetnsGuard> ns;
  NlSock sk;
  int ifindex = 0;
};
absl::StatusOr<InContainer> EnterContainer(const std::string& netns, const std::string& ifname,
                                           bool ipv6) {
  InContainer c;
  auto ns = NetnsGuard::Enter(netns);
  if (!ns.ok()) return ns.status();
  c.ns = std::move(*ns);
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  c.sk = std::move(*sk);
  c.ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (!c.ifindex)
    return absl::InternalError(absl::StrCat("interface ", ifname, " not found in ", netns));
  if (ipv6) (void)WriteSysctl(absl::StrCat("/proc/sys/net/ipv6/conf/", ifname, "/accept_dad"), "0");
  return c;
}

// `no_prefix_route`: without the kernel's route to the address's prefix (a netkit container
// reaches its subnet through the gateway, as everything else).
absl::Status AddAddress(nl_sock* sk, int ifindex, const std::string& cidr, bool v6,
                        bool no_prefix_route = false) {
  nl_addr* local = nullptr;
  if (int err = nl_addr_parse(cidr.c_str(), v6 ? AF_INET6 : AF_INET, &local); err < 0)
    return NlErr(cidr, err);
  rtnl_addr* a = rtnl_addr_alloc();
  rtnl_addr_set_ifindex(a, ifindex);
  rtnl_addr_set_local(a, local);
  unsigned flags = no_prefix_route ? IFA_F_NOPREFIXROUTE : 0;
  if (v6) flags |= IFA_F_NODAD;  // the address is ours by IPAM
  if (flags) rtnl_addr_set_flags(a, flags);
  int err = rtnl_addr_add(sk, a, 0);
  rtnl_addr_put(a);
  nl_addr_put(local);
  return err < 0 ? NlErr(absl::StrCat("address ", cidr), err) : absl::OkStatus();
}

// Route to `dst` ("default" or a prefix) on `ifindex`, via `gw` ("": on the link).
absl::Status AddRoute(nl_sock* sk, int ifindex, const std::string& dst_text, const std::string& gw,
                      bool v6) {
  const int family = v6 ? AF_INET6 : AF_INET;
  const std::string what = absl::StrCat("route ", dst_text, gw.empty() ? "" : " via " + gw);
  nl_addr* dst = nullptr;
  if (int err = nl_addr_parse(dst_text.c_str(), family, &dst); err < 0) return NlErr(what, err);
  rtnl_route* r = rtnl_route_alloc();
  rtnl_route_set_family(r, family);
  rtnl_route_set_dst(r, dst);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(nh, ifindex);
  nl_addr* via = nullptr;
  if (!gw.empty()) {
    if (int err = nl_addr_parse(gw.c_str(), family, &via); err < 0) {
      rtnl_route_nh_free(nh);
      rtnl_route_put(r);
      nl_addr_put(dst);
      return NlErr(gw, err);
    }
    rtnl_route_nh_set_gateway(nh, via);
  } else {
    rtnl_route_set_scope(r, RT_SCOPE_LINK);
  }
  rtnl_route_add_nexthop(r, nh);
  int err = rtnl_route_add(sk, r, NLM_F_CREATE);
  rtnl_route_put(r);
  nl_addr_put(dst);
  if (via) nl_addr_put(via);
  return err < 0 ? NlErr(what, err) : absl::OkStatus();
}

// Default route via `gw` ("" = through the device, ipvlan l3).
absl::Status AddDefaultRoute(nl_sock* sk, int ifindex, const std::string& gw, bool v6) {
  return AddRoute(sk, ifindex, "default", gw, v6);
}

// A permanent neighbour entry: `ip` is at `mac` on `ifindex` (no ARP or neighbour discovery).
absl::Status AddNeighbour(nl_sock* sk, int ifindex, const std::string& ip, const Mac& mac,
                          bool v6) {
  nl_addr* dst = nullptr;
  if (int err = nl_addr_parse(ip.c_str(), v6 ? AF_INET6 : AF_INET, &dst); err < 0)
    return NlErr(ip, err);
  nl_addr* ll = nl_addr_build(AF_LLC, mac.data(), 6);
  rtnl_neigh* n = rtnl_neigh_alloc();
  rtnl_neigh_set_ifindex(n, ifindex);
  rtnl_neigh_set_dst(n, dst);
  rtnl_neigh_set_lladdr(n, ll);
  rtnl_neigh_set_state(n, NUD_PERMANENT);
  int err = rtnl_neigh_add(sk, n, NLM_F_CREATE | NLM_F_REPLACE);
  rtnl_neigh_put(n);
  nl_addr_put(ll);
  nl_addr_put(dst);
  return err < 0 ? NlErr(absl::StrCat("neighbour ", ip, " at ", FormatMac(mac)), err)
                 : absl::OkStatus();
}

// host-local over the network's subnets (gateway, --ip-range), unless the config brings
// its own "ranges". State in /run/cppnet/ipam; --aux-address entries are reserved there
// the way host-local records its own allocations, so it never hands them out.
json IpamConf(const json& conf, const VlanNetwork& n) {
  json ipam = conf.contains("ipam") && conf["ipam"].is_object() ? conf["ipam"] : json::object();
  if (!ipam.contains("type")) ipam["type"] = "host-local";
  if (!ipam.contains("dataDir")) ipam["dataDir"] = absl::StrCat(kRunDir, "/ipam");
  if (ipam["type"] == "host-local" && !ipam.contains("ranges") && !ipam.contains("subnet")) {
    // One range set per family, one range per subnet: host-local gives an endpoint one
    // address of each family, from the first subnet with room, as Docker's IPAM does.
    json set4 = json::array(), set6 = json::array();
    for (const VlanSubnet4& s : n.subnets4) {
      json r = {{"subnet", FormatPrefix4(s.subnet)}, {"gateway", FormatIp4(s.gateway)}};
      if (s.ip_range) {
        const Prefix4& ir = *s.ip_range;
        r["rangeStart"] = FormatIp4(std::max(ir.addr, s.subnet.addr + 1));
        r["rangeEnd"] =
            FormatIp4(std::min(ir.addr + ir.size() - 1, s.subnet.addr + s.subnet.size() - 2));
      }
      set4.push_back(r);
    }
    for (const VlanSubnet6& s : n.subnets6) {
      json r = {{"subnet", FormatPrefix6(s.subnet)}, {"gateway", FormatIp6(s.gateway)}};
      if (s.ip_range) {
        const Prefix6& ir = *s.ip_range;
        r["rangeStart"] = FormatIp6(std::max(ir.addr, s.subnet.addr + 1));
        r["rangeEnd"] = FormatIp6(ir.addr | ~ir.mask());
      }
      set6.push_back(r);
    }
    json ranges = json::array();
    if (!set4.empty()) ranges.push_back(set4);
    if (!set6.empty()) ranges.push_back(set6);
    ipam["ranges"] = ranges;
  }
  json out = {{"cniVersion", conf.value("cniVersion", "1.0.0")},
              {"name", conf.value("name", n.name)},
              {"ipam", ipam}};
  PassRuntimeArgs(conf, &out);
  return out;
}

void ReserveAuxAddresses(const json& ipam_conf, const VlanNetwork& n) {
  if (n.aux_addresses.empty() || ipam_conf["ipam"]["type"] != "host-local") return;
  const std::string dir =
      absl::StrCat(ipam_conf["ipam"].value("dataDir", ""), "/", ipam_conf.value("name", ""));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  for (const auto& [name, ip] : n.aux_addresses) {
    const std::string file = absl::StrCat(dir, "/", FormatIp4(ip));
    if (std::filesystem::exists(file)) continue;
    if (FILE* f = fopen(file.c_str(), "w")) {
      fprintf(f, "aux-address %s", name.c_str());
      fclose(f);
    }
  }
}

absl::StatusOr<FileLock> CniLock() { return FileLock::Acquire(absl::StrCat(kRunDir, "/cni.lock")); }

// Docker's macvlan MAC: 02:42 and the IPv4 address, so it is stable and readable.
Mac EndpointMac(const VlanNetwork& n, const Mac& trunk_mac, const std::vector<uint32_t>& v4) {
  if (n.driver == "ipvlan") return trunk_mac;  // ipvlan endpoints share the parent's MAC
  Mac m{0x02, 0x42, 0, 0, 0, 0};
  if (!v4.empty()) {
    for (int i = 0; i < 4; i++) m[2 + i] = static_cast<uint8_t>(v4[0] >> (24 - 8 * i));
  } else {
    std::random_device rd;
    for (int i = 2; i < 6; i++) m[i] = static_cast<uint8_t>(rd());
  }
  return m;
}

// Also without the network's definition (deleted meanwhile): the endpoint is found by
// its veth name; the address is released when the IPAM configuration is known.
int VlanDel(const json& conf, const VlanNetwork* n) {
  const std::string host = HostVethName(Env("CNI_CONTAINERID"), Env("CNI_IFNAME"));
  auto lock = CniLock();
  if (!lock.ok()) return Error(kTryAgainLater, std::string(lock.status().message()));
  const unsigned ifindex = if_nametoindex(host.c_str());
  if (ifindex) {
    if (auto r = CallAgent("endpoint.del", {{"host_ifindex", ifindex}}, kAgentWait); !r.ok())
      return AgentError(r.status());
    auto sk = NlConnect();
    if (!sk.ok()) return Error(kIoFailure, std::string(sk.status().message()));
    if (auto st = DeleteLink(sk->get(), host); !st.ok())
      return Error(kIoFailure, std::string(st.message()));
  }
  const bool own_ipam =
      conf.contains("ipam") && conf["ipam"].is_object() && conf["ipam"].contains("ranges");
  if (!n && !own_ipam) return 0;
  const json ipam_conf = IpamConf(conf, n ? *n : VlanNetwork{});
  std::string out;
  if (Delegate(ipam_conf["ipam"].value("type", "host-local"), ipam_conf, &out, "DEL") != 0) {
    std::cout << out;
    return 1;
  }
  return 0;
}

// CHECK inside the container: CNI_IFNAME exists and holds every address of prevResult.
absl::Status CheckContainerAddresses(const json& conf) {
  if (!conf.contains("prevResult")) return absl::OkStatus();
  auto ns = NetnsGuard::Enter(Env("CNI_NETNS"));
  if (!ns.ok()) return ns.status();
  const std::string ifname = Env("CNI_IFNAME");
  if (!if_nametoindex(ifname.c_str()))
    return absl::NotFoundError(absl::StrCat("interface ", ifname, " is missing in the container"));
  std::set<std::string> have;
  ifaddrs* ifa = nullptr;
  if (getifaddrs(&ifa) == 0) {
    for (ifaddrs* i = ifa; i; i = i->ifa_next) {
      if (!i->ifa_addr || ifname != i->ifa_name) continue;
      char buf[INET6_ADDRSTRLEN] = {};
      const int fam = i->ifa_addr->sa_family;
      if (fam == AF_INET)
        inet_ntop(fam, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof(buf));
      if (fam == AF_INET6)
        inet_ntop(fam, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, buf, sizeof(buf));
      if (buf[0]) have.insert(buf);
    }
    freeifaddrs(ifa);
  }
  for (const auto& ip : conf["prevResult"].value("ips", json::array())) {
    std::string addr = ip.value("address", "");
    addr = addr.substr(0, addr.find('/'));
    if (!have.count(addr))
      return absl::NotFoundError(
          absl::StrCat("interface ", ifname, " does not have address ", addr));
  }
  return absl::OkStatus();
}

int VlanCheck(const json& conf, const VlanNetwork& n) {
  const std::string host = HostVethName(Env("CNI_CONTAINERID"), Env("CNI_IFNAME"));
  const unsigned ifindex = if_nametoindex(host.c_str());
  if (!ifindex)
    return Error(kIoFailure,
                 absl::StrCat("network ", n.name, ": endpoint veth ", host, " is missing"));
  auto reg = CallAgent("endpoint.get", {{"host_ifindex", ifindex}}, kAgentWait);
  if (!reg.ok()) return AgentError(reg.status());
  if (!reg->value("registered", false))
    return Error(kIoFailure, absl::StrCat("network ", n.name, ": endpoint ", host,
                                          " is not in map " CPPNET_MAP_VLAN_PORT));
  if (auto st = CheckContainerAddresses(conf); !st.ok())
    return Error(kIoFailure, std::string(st.message()));
  return 0;
}

// `info`: the agent's network.get answer (definition, trunk, room).
int VlanAdd(const json& conf, const VlanNetwork& n, const json& info) {
  const std::string ifname = Env("CNI_IFNAME"), netns = Env("CNI_NETNS");
  const std::string host = HostVethName(Env("CNI_CONTAINERID"), ifname);
  // One ADD or DEL of a VLAN endpoint at a time on this host: a concurrent duplicate
  // ADD then finds the first one's veth below and is refused before it allocates.
  auto lock = CniLock();
  if (!lock.ok()) return Error(kTryAgainLater, std::string(lock.status().message()));
  // A repeated ADD must not touch the endpoint the first one made (nor its address).
  if (if_nametoindex(host.c_str()))
    return Error(kIoFailure, absl::StrCat("network ", n.name, ": container ",
                                          Env("CNI_CONTAINERID"), " interface ", ifname,
                                          " is already attached (veth ", host, "); DEL it first"));
  if (info.contains("trunk_error"))
    return Error(kIoFailure, info["trunk_error"].get<std::string>());
  const uint8_t mode = VlanModeId(n.driver, n.mode);
  // Refused before anything is allocated (registration checks again).
  if (info.contains("room_error"))
    return Error(kInvalidConfig, info["room_error"].get<std::string>());
  Mac trunk_mac{};
  if (auto m = ParseMac(info["trunk"].value("mac", "")); m.ok()) trunk_mac = *m;
  const int trunk_mtu = info["trunk"].value("mtu", 1500);

  // Addresses first: nothing to undo if IPAM says no.
  if (conf.contains("ipam"))
    if (auto st = CheckRuntimeRanges(conf["ipam"], n); !st.ok())
      return Error(kInvalidConfig, absl::StrCat("network ", n.name, ": ", st.message()));
  const json ipam_conf = IpamConf(conf, n);
  ReserveAuxAddresses(ipam_conf, n);
  std::string ipam_out;
  if (Delegate(ipam_conf["ipam"].value("type", "host-local"), ipam_conf, &ipam_out, "ADD") != 0) {
    std::cout << ipam_out;
    return 1;
  }
  json ipam = json::parse(ipam_out, nullptr, false);
  if (!ipam.is_object() || !ipam.contains("ips"))
    return Error(kIoFailure, absl::StrCat("IPAM plugin returned no addresses: ", ipam_out));
  std::vector<uint32_t> v4;
  std::vector<unsigned __int128> v6;
  for (auto& ip : ipam["ips"]) {
    std::string a = ip.value("address", "");
    a = a.substr(0, a.find('/'));
    if (auto p4 = ParseIp4(a); p4.ok())
      v4.push_back(*p4);
    else if (auto p6 = ParseIp6(a); p6.ok())
      v6.push_back(*p6);
  }
  const Mac mac = EndpointMac(n, trunk_mac, v4);

  bool created = false;  // undo removes only what this ADD made
  auto undo = [&](const absl::Status& st, int code = kIoFailure) {
    if (unsigned idx = if_nametoindex(host.c_str()); idx && created)
      (void)CallAgent("endpoint.del", {{"host_ifindex", idx}});
    if (auto sk = NlConnect(); sk.ok() && created) (void)DeleteLink(sk->get(), host);
    std::string ignored;
    (void)Delegate(ipam_conf["ipam"].value("type", "host-local"), ipam_conf, &ignored, "DEL");
    return Error(code, std::string(st.message()));
  };
  auto sk = NlConnect();
  if (!sk.ok()) return undo(sk.status());
  auto ns_fd = OpenNetns(netns);
  if (!ns_fd.ok()) return undo(ns_fd.status(), kInvalidEnv);
  const int nsfd = *ns_fd;
  // The agent says which device: netkit (the endpoint's frames switched inside its own
  // transmit) where the kernel has it, else a veth pair.
  const bool netkit = info.value("endpoint_device", "veth") == "netkit";
  if (netkit) {
    const NetkitSpec spec{.primary = host,
                          .peer = ifname,
                          .mtu = static_cast<unsigned>(trunk_mtu),
                          .peer_mac = mac,
                          .peer_netns_fd = nsfd,  // NOARP (l3) is set inside, below
                          .headroom = kVlanTagRoom};
    const absl::Status st = CreateNetkitPair(sk->get(), spec);
    close(nsfd);
    if (!st.ok()) return undo(st);
    created = true;
  } else {
    rtnl_link* veth = rtnl_link_veth_alloc();
    rtnl_link* peer = rtnl_link_veth_get_peer(veth);
    rtnl_link_set_name(veth, host.c_str());
    rtnl_link_set_mtu(veth, static_cast<unsigned>(trunk_mtu));
    rtnl_link_set_name(peer, ifname.c_str());
    rtnl_link_set_mtu(peer, static_cast<unsigned>(trunk_mtu));
    nl_addr* lladdr = nl_addr_build(AF_LLC, mac.data(), 6);
    rtnl_link_set_addr(peer, lladdr);
    if (mode == CPPNET_VLAN_IPVLAN_L3)
      rtnl_link_set_flags(peer, IFF_NOARP);  // routed: no neighbours
    rtnl_link_set_ns_fd(peer, nsfd);
    int err = rtnl_link_add(sk->get(), veth, NLM_F_CREATE | NLM_F_EXCL);
    nl_addr_put(lladdr);
    rtnl_link_put(peer);
    rtnl_link_put(veth);
    close(nsfd);
    if (err < 0) return undo(NlErr(absl::StrCat("veth ", host, "/", ifname), err));
    created = true;
  }
  const int host_ifindex = static_cast<int>(if_nametoindex(host.c_str()));
  if (!host_ifindex) return undo(absl::InternalError(absl::StrCat("veth ", host, " vanished")));
  const std::string host_mac = FormatMac(LinkMac(sk->get(), host_ifindex));
  // The host end never talks itself: no IPv6 link-local, no router solicitations.
  (void)WriteSysctl(absl::StrCat("/proc/sys/net/ipv6/conf/", host, "/disable_ipv6"), "1");

  json result = {{"cniVersion", g_version}};
  // Inside the container's namespace; errors are undone after leaving it.
  auto configure = [&]() -> absl::Status {
    auto c = EnterContainer(netns, ifname, !v6.empty());
    if (!c.ok()) return c.status();
    nl_sock* const csk = c->sk.get();
    const int inner = c->ifindex;
    if (mode == CPPNET_VLAN_IPVLAN_L3 && netkit)  // routed: no neighbours (a veth has it already)
      if (auto st = SetNoArp(csk, inner, ifname); !st.ok()) return st;
    if (auto st = SetUp(csk, inner, ifname); !st.ok()) return st;
    json ips = json::array();
    for (auto& ip : ipam["ips"]) {
      const std::string a = ip.value("address", "");
      const bool is6 = a.find(':') != std::string::npos;
      if (auto st = AddAddress(csk, inner, a, is6); !st.ok()) return st;
      json r = ip;
      r["interface"] = 1;
      if (mode == CPPNET_VLAN_IPVLAN_L3) r.erase("gateway");  // routed through the device
      ips.push_back(r);
    }
    json routes = json::array();
    if (!n.internal) {
      for (auto& ip : ipam["ips"]) {
        const std::string a = ip.value("address", "");
        const bool is6 = a.find(':') != std::string::npos;
        const std::string gw = mode == CPPNET_VLAN_IPVLAN_L3 ? "" : ip.value("gateway", "");
        if (gw.empty() && mode != CPPNET_VLAN_IPVLAN_L3) continue;
        if (std::any_of(routes.begin(), routes.end(),
                        [&](const json& r) { return r["dst"] == (is6 ? "::/0" : "0.0.0.0/0"); }))
          continue;
        if (auto st = AddDefaultRoute(csk, inner, gw, is6); !st.ok()) return st;
        json r = {{"dst", is6 ? "::/0" : "0.0.0.0/0"}};
        if (!gw.empty()) r["gw"] = gw;
        routes.push_back(r);
      }
    }
    // The host end first (no sandbox), as the bridge plugin lists its veth: chained plugins
    // (bandwidth) find it there.
    result["interfaces"] =
        json::array({{{"name", host}, {"mac", host_mac}},
                     {{"name", ifname}, {"mac", FormatMac(mac)}, {"sandbox", netns}}});
    result["ips"] = ips;
    if (!routes.empty()) result["routes"] = routes;
    if (ipam.contains("dns")) result["dns"] = ipam["dns"];
    return absl::OkStatus();
  };
  if (auto st = configure(); !st.ok()) return undo(st);
  json addrs4 = json::array(), addrs6 = json::array();
  for (uint32_t a : v4) addrs4.push_back(FormatIp4(a));
  for (unsigned __int128 a : v6) addrs6.push_back(FormatIp6(a));
  auto reg = CallAgent("endpoint.add",
                       {{"network", n.name},
                        {"host_ifindex", host_ifindex},
                        {"mac", FormatMac(mac)},
                        {"ipv4", addrs4},
                        {"ipv6", addrs6}},
                       kAgentWait);
  if (!reg.ok())
    return undo(reg.status(), absl::IsFailedPrecondition(reg.status()) ? kInvalidConfig
                              : absl::IsUnavailable(reg.status())      ? kTryAgainLater
                                                                       : kIoFailure);
  if (auto st = SetUp(sk->get(), host_ifindex, host); !st.ok()) return undo(st);
  std::cout << result.dump() << std::endl;
  return 0;
}

// ---- Overlay containers on netkit ----
// Where the agent says netkit (a kernel that has it), an overlay container gets a netkit pair
// instead of a veth on cni0: the host end "cn…" (HostEndName) carries the agent's programs, so
// the container's packets are encapsulated, routed or delivered inside its own transmit. No
// bridge: the container has its address without the prefix route, the gateway (the subnet's
// first address, as on cni0) as a permanent neighbour at the host end's MAC and as its only
// next hop; the host reaches it by a /32 (/128) route and a permanent neighbour entry on the
// host end. host-local over the leased subnet, as with the bridge.

// The bridge plugin's configuration `d` (OverlayDelegate) says what IPAM to run.
std::string IpamType(const json& d) { return d["ipam"].value("type", "host-local"); }

// The bridge plugin's "ipMasq" for netkit containers: what a container sends outside its subnet
// through the kernel (not multicast) leaves with the host's address. One nftables table per
// family ("cppnet_cni"), its rule for the host's subnet, the masqueraded containers in a set.
constexpr char kCniTables[] = "nftables tables ip/ip6 cppnet_cni";

std::string CniMasqTable(bool v6, const std::string& subnet) {
  const std::string f = v6 ? "ip6" : "ip";
  return absl::StrCat(
      "table ", f, " cppnet_cni {\n  set masq { type ", v6 ? "ipv6_addr" : "ipv4_addr",
      "; }\n  chain postrouting { type nat hook postrouting priority srcnat; }\n}\n",
      "flush chain ", f, " cppnet_cni postrouting\n", "add rule ", f, " cppnet_cni postrouting ", f,
      " saddr @masq ", f, " daddr != ", subnet, " ", f,
      " daddr != ", v6 ? "ff00::/8" : "224.0.0.0/4", " masquerade\n");
}

// The container's addresses `ips` in (add) or out of the set; an address not in it is no error.
absl::Status CniMasq(const std::vector<std::string>& ips, bool add, const std::string& subnet4 = "",
                     const std::string& subnet6 = "") {
  std::string script;
  for (const std::string& ip : ips) {
    const bool v6 = ip.find(':') != std::string::npos;
    const std::string f = v6 ? "ip6" : "ip";
    if (add) {
      script += CniMasqTable(v6, v6 ? subnet6 : subnet4);
      absl::StrAppend(&script, "add element ", f, " cppnet_cni masq { ", ip, " }\n");
    } else {
      // Declared first (no-op when present), so the delete cannot fail on a missing table.
      absl::StrAppend(&script, "table ", f, " cppnet_cni {\n  set masq { type ",
                      v6 ? "ipv6_addr" : "ipv4_addr", "; }\n}\n", "add element ", f,
                      " cppnet_cni masq { ", ip, " }\ndelete element ", f, " cppnet_cni masq { ",
                      ip, " }\n");
    }
  }
  return script.empty() ? absl::OkStatus() : RunNft(script, kCniTables);
}

// Removes what a netkit ADD made for (container `id`, `ifname`): the pair (its routes and
// neighbour entries go with it) and the address (IPAM DEL with the saved configuration `d`).
absl::Status OverlayNetkitRelease(const json& d, const std::string& id, const std::string& ifname) {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  if (auto st = DeleteLink(sk->get(), HostEndName(kOverlayNetkitPrefix, id, ifname)); !st.ok())
    return st;
  if (d.contains("cppnet.masq") && d["cppnet.masq"].is_array()) {
    std::vector<std::string> ips;
    for (const json& ip : d["cppnet.masq"])
      if (ip.is_string() &&
          (ParseIp4(ip.get<std::string>()).ok() || ParseIp6(ip.get<std::string>()).ok()))
        ips.push_back(ip.get<std::string>());
    if (auto st = CniMasq(ips, false); !st.ok()) return st;
  }
  std::string out;
  if (Delegate(IpamType(d), d, &out, "DEL", {{"CNI_CONTAINERID", id}, {"CNI_IFNAME", ifname}}))
    return absl::InternalError(absl::StrCat("IPAM plugin ", IpamType(d), " DEL: ", out));
  return absl::OkStatus();
}

int OverlayNetkitCheck(const json& conf) {
  const std::string host =
      HostEndName(kOverlayNetkitPrefix, Env("CNI_CONTAINERID"), Env("CNI_IFNAME"));
  if (!if_nametoindex(host.c_str()))
    return Error(kIoFailure,
                 absl::StrCat("overlay: the container's netkit device ", host, " is missing"));
  if (auto st = CheckContainerAddresses(conf); !st.ok())
    return Error(kIoFailure, std::string(st.message()));
  return 0;
}

// ADD with the bridge plugin's configuration `d` (its "ipam", "mtu", "ipMasq" and name are
// used); `keep` is saved at `saved` with what DEL needs beyond it.
int OverlayNetkitAdd(const json& d, json keep, const std::string& saved) {
  const std::string ifname = Env("CNI_IFNAME"), netns = Env("CNI_NETNS");
  const std::string host = HostEndName(kOverlayNetkitPrefix, Env("CNI_CONTAINERID"), ifname);
  auto lock = CniLock();
  if (!lock.ok()) return Error(kTryAgainLater, std::string(lock.status().message()));
  if (if_nametoindex(host.c_str()))
    return Error(kIoFailure,
                 absl::StrCat("overlay: container ", Env("CNI_CONTAINERID"), " interface ", ifname,
                              " is already attached (netkit ", host, "); DEL it first"));
  std::string ipam_out;
  if (Delegate(IpamType(d), d, &ipam_out, "ADD") != 0) {
    std::cout << ipam_out;
    return 1;
  }
  json ipam = json::parse(ipam_out, nullptr, false);
  if (!ipam.is_object() || !ipam.contains("ips") || !ipam["ips"].is_array())
    return Error(kIoFailure, absl::StrCat("IPAM plugin returned no addresses: ", ipam_out));
  struct Addr {
    std::string cidr, ip, gw;
    bool v6;
  };
  std::vector<Addr> addrs;
  std::vector<std::string> ips_only;
  std::string subnet4, subnet6;  // of the addresses (the leased subnets)
  for (const json& ip : ipam["ips"]) {
    const std::string cidr = ip.value("address", "");
    const std::string a = cidr.substr(0, cidr.find('/'));
    const bool v6 = a.find(':') != std::string::npos;
    std::string gw = ip.value("gateway", "");
    auto p4 = v6 ? absl::InvalidArgumentError("") : ParsePrefix4(cidr, false);
    auto p6 = v6 ? ParsePrefix6(cidr) : absl::InvalidArgumentError("");
    if (v6 ? !ParseIp6(a).ok() || !p6.ok() : !ParseIp4(a).ok() || !p4.ok())
      return Error(kIoFailure, absl::StrCat("IPAM plugin returned a bad address: ", cidr));
    if (v6)
      subnet6 = FormatPrefix6(*p6);
    else
      subnet4 = FormatPrefix4({p4->addr & p4->mask(), p4->len});
    addrs.push_back({cidr, a, gw, v6});
    ips_only.push_back(a);
  }
  const bool masq = d.value("ipMasq", false);

  bool created = false, masqueraded = false;  // undo removes only what this ADD made
  auto undo = [&](const absl::Status& st, int code = kIoFailure) {
    if (masqueraded) (void)CniMasq(ips_only, false);
    if (auto sk = NlConnect(); sk.ok() && created) (void)DeleteLink(sk->get(), host);
    std::string ignored;
    (void)Delegate(IpamType(d), d, &ignored, "DEL");
    return Error(code, std::string(st.message()));
  };
  auto sk = NlConnect();
  if (!sk.ok()) return undo(sk.status());
  auto ns_fd = OpenNetns(netns);
  if (!ns_fd.ok()) return undo(ns_fd.status(), kInvalidEnv);
  const int nsfd = *ns_fd;
  const NetkitSpec spec{.primary = host,
                        .peer = ifname,
                        .mtu = static_cast<unsigned>(d.value("mtu", 1500)),
                        .peer_netns_fd = nsfd,
                        .headroom = CPPNET_VXLAN6_OVERHEAD};  // the largest encapsulation
  absl::Status made = CreateNetkitPair(sk->get(), spec);
  close(nsfd);
  if (!made.ok()) return undo(made);
  created = true;
  const int host_ifindex = static_cast<int>(if_nametoindex(host.c_str()));
  if (!host_ifindex) return undo(absl::InternalError(absl::StrCat("netkit ", host, " vanished")));
  const Mac host_mac = LinkMac(sk->get(), host_ifindex);
  const bool any6 = std::any_of(addrs.begin(), addrs.end(), [](const Addr& a) { return a.v6; });
  // The host end holds no address; IPv6 stays on it only for the routes to an IPv6 container.
  if (!any6)
    (void)WriteSysctl(absl::StrCat("/proc/sys/net/ipv6/conf/", host, "/disable_ipv6"), "1");

  Mac mac{};
  json result = {{"cniVersion", g_version}};
  auto configure = [&]() -> absl::Status {
    auto c = EnterContainer(netns, ifname, any6);
    if (!c.ok()) return c.status();
    nl_sock* const csk = c->sk.get();
    const int inner = c->ifindex;
    mac = LinkMac(csk, inner);
    if (auto st = SetUp(csk, inner, ifname); !st.ok()) return st;
    json ips = json::array(), routes = json::array();
    for (const Addr& a : addrs) {
      if (auto st = AddAddress(csk, inner, a.cidr, a.v6, true); !st.ok()) return st;
      json r = {{"address", a.cidr}, {"interface", 1}};
      if (!a.gw.empty()) r["gateway"] = a.gw;
      ips.push_back(r);
      if (a.gw.empty()) continue;
      // The gateway is the host end: known without asking, the next hop for everything.
      if (auto st = AddNeighbour(csk, inner, a.gw, host_mac, a.v6); !st.ok()) return st;
      if (auto st = AddRoute(csk, inner, a.gw + (a.v6 ? "/128" : "/32"), "", a.v6); !st.ok())
        return st;
      const std::string any = a.v6 ? "::/0" : "0.0.0.0/0";
      if (std::any_of(routes.begin(), routes.end(), [&](const json& r) { return r["dst"] == any; }))
        continue;
      if (auto st = AddDefaultRoute(csk, inner, a.gw, a.v6); !st.ok()) return st;
      routes.push_back({{"dst", any}, {"gw", a.gw}});
    }
    // Routes the IPAM configuration asks for, through the gateway of their family.
    for (const json& r : ipam.value("routes", json::array())) {
      if (!r.is_object() || !r.contains("dst") || !r["dst"].is_string() ||
          (r.contains("gw") && !r["gw"].is_string()))
        return absl::InvalidArgumentError(
            absl::StrCat("IPAM plugin returned a malformed route: ", DescribeJson(r)));
      const std::string dst = r.value("dst", "");
      const bool v6 = dst.find(':') != std::string::npos;
      std::string gw = r.value("gw", "");
      for (const Addr& a : addrs)
        if (gw.empty() && a.v6 == v6) gw = a.gw;
      if (dst.empty() || gw.empty() || dst == (v6 ? "::/0" : "0.0.0.0/0")) continue;
      if (auto st = AddRoute(csk, inner, dst, gw, v6); !st.ok()) return st;
      routes.push_back({{"dst", dst}, {"gw", gw}});
    }
    result["interfaces"] =
        json::array({{{"name", host}, {"mac", FormatMac(host_mac)}},
                     {{"name", ifname}, {"mac", FormatMac(mac)}, {"sandbox", netns}}});
    result["ips"] = ips;
    if (!routes.empty()) result["routes"] = routes;
    if (ipam.contains("dns")) result["dns"] = ipam["dns"];
    return absl::OkStatus();
  };
  if (auto st = configure(); !st.ok()) return undo(st);
  // The host's way to the container: its address on the host end, its MAC known.
  if (auto st = SetUp(sk->get(), host_ifindex, host); !st.ok()) return undo(st);
  for (const Addr& a : addrs) {
    if (auto st = AddRoute(sk->get(), host_ifindex, a.ip + (a.v6 ? "/128" : "/32"), "", a.v6);
        !st.ok())
      return undo(st);
    if (auto st = AddNeighbour(sk->get(), host_ifindex, a.ip, mac, a.v6); !st.ok()) return undo(st);
  }
  if (masq) {
    if (auto st = CniMasq(ips_only, true, subnet4, subnet6); !st.ok()) return undo(st);
    masqueraded = true;
    keep["cppnet.masq"] = ips_only;  // for DEL, which has no addresses to go by
    if (auto st = WriteFileAtomically(saved, keep.dump()); !st.ok())
      return undo(
          absl::InternalError(absl::StrCat("saving the delegated configuration: ", st.message())));
  }
  // The container's end drops what it sends until the agent's program is attached.
  if (auto r = CallAgent("overlay.attach", {{"host_ifindex", host_ifindex}}, kAgentWait); !r.ok())
    return undo(r.status(), absl::IsUnavailable(r.status()) ? kTryAgainLater : kIoFailure);
  std::cout << result.dump() << std::endl;
  return 0;
}

int AgentError(const absl::Status& st, int config_code) {
  const std::string msg(st.message());
  if (absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st)) return Error(kTryAgainLater, msg);
  if (absl::IsNotFound(st) || absl::IsFailedPrecondition(st) || absl::IsInvalidArgument(st))
    return Error(config_code, msg);
  return Error(kIoFailure, msg);
}

}  // namespace

// What the plugin says when run without CNI_COMMAND (as the reference plugins' skel does):
// its version and the spec versions it speaks, on stderr.
constexpr const char* kAbout = "CNI cppnet plugin " CPPNET_VERSION " (commit " CPPNET_COMMIT ")";

int Run(bool version_flag) {
  const std::string cmd = Env("CNI_COMMAND");
  if (version_flag || (cmd.empty() && !getenv("CNI_COMMAND"))) {
    std::cerr << kAbout << "\nCNI protocol versions supported: " << absl::StrJoin(kVersions, ", ")
              << std::endl;
    return 0;
  }
  if (cmd == "VERSION") {
    std::cout << json{{"cniVersion", "1.1.0"}, {"supportedVersions", kVersions}}.dump()
              << std::endl;
    return 0;
  }
  if (cmd != "ADD" && cmd != "DEL" && cmd != "CHECK" && cmd != "STATUS" && cmd != "GC")
    return Error(kInvalidEnv, cmd.empty() ? "CNI_COMMAND is not set"
                                          : absl::StrCat("unknown CNI_COMMAND ", cmd));
  std::string input;
  char buf[4096];
  while (std::cin.read(buf, sizeof(buf)) || std::cin.gcount() > 0) {
    input.append(buf, static_cast<size_t>(std::cin.gcount()));
    if (input.size() > kMaxCniConfigBytes) break;  // reported by ParseCniConfig
  }
  auto parsed = ParseCniConfig(input);
  if (!parsed.ok())
    return Error(absl::IsInvalidArgument(parsed.status()) ? kInvalidConfig : kDecodeFailure,
                 std::string(parsed.status().message()));
  json conf = std::move(*parsed);
  if (conf.contains("cniVersion") && conf["cniVersion"].is_string()) {
    g_version = conf["cniVersion"].get<std::string>();
    if (std::find(std::begin(kVersions), std::end(kVersions), g_version) == std::end(kVersions))
      return Error(kIncompatibleVersion,
                   absl::StrCat("cniVersion ", g_version, " is not supported"), "1.1.0");
  }
  const std::string network = conf.contains("network") && conf["network"].is_string()
                                  ? conf["network"].get<std::string>()
                                  : "overlay";  // flannel's configs name none
  // CNI 1.1. STATUS: ready when the agent has leased a subnet (overlay) or answers (VLAN).
  if (cmd == "GC") return Gc(conf, network);
  if (cmd == "STATUS") {
    if (network == "overlay") {
      auto env = ReadSubnetEnvFile(conf.value("subnetFile", "/run/flannel/subnet.env"));
      return env.ok() ? 0
                      : Error(kNotAvailable, absl::StrCat("overlay: ", env.status().message(),
                                                          " (is cppnet-agent running?)"));
    }
    auto info = CallAgent("network.get", {{"name", network}});
    return info.ok() ? 0 : Error(kNotAvailable, std::string(info.status().message()));
  }
  for (const char* v : {"CNI_CONTAINERID", "CNI_IFNAME"})
    if (Env(v).empty()) return Error(kInvalidEnv, absl::StrCat(v, " is not set"));
  if (cmd != "DEL" && Env("CNI_NETNS").empty()) return Error(kInvalidEnv, "CNI_NETNS is not set");

  if (network == "overlay") {
    // As flannel's plugin: the delegated configuration is saved at ADD and used at DEL, so
    // DEL releases what ADD took whatever happened to subnet.env since.
    auto saved = SavedConfPath(conf);
    if (!saved.ok()) return Error(kInvalidEnv, std::string(saved.status().message()));
    json saved_conf;  // what ADD saved: DEL and CHECK act on it
    if (cmd != "ADD")
      if (auto text = ReadFileHead(*saved, kMaxCniConfigBytes); text.ok())
        saved_conf = json::parse(*text, nullptr, false);
    const bool saved_netkit =
        saved_conf.is_object() && saved_conf.value("cppnet.device", "") == "netkit";
    if (cmd == "DEL" && saved_conf.is_object()) {
      int rc = 0;
      if (!saved_netkit) {
        rc = RunBridge(saved_conf, cmd);
      } else if (auto st =
                     OverlayNetkitRelease(saved_conf, Env("CNI_CONTAINERID"), Env("CNI_IFNAME"));
                 !st.ok()) {
        rc = Error(kIoFailure, std::string(st.message()));
      }
      if (rc == 0) unlink(saved->c_str());
      return rc;
    }
    if (cmd == "CHECK" && saved_netkit) return OverlayNetkitCheck(conf);
    const std::string file = conf.value("subnetFile", "/run/flannel/subnet.env");
    auto env = ReadSubnetEnvFile(file);
    if (!env.ok()) {
      // DEL must succeed when there is nothing left to remove.
      if (cmd == "DEL") return 0;
      return Error(kIoFailure, absl::StrCat("overlay: ", env.status().message(),
                                            " (is cppnet-agent running?)"));
    }
    auto del = OverlayDelegate(conf, *env);
    if (!del.ok()) return Error(kInvalidConfig, std::string(del.status().message()));
    // netkit where the agent says so; veth on the bridge where it says veth or does not answer
    // (the bridge needs no agent: its veths get their programs once the agent runs).
    bool netkit = false;
    if (cmd == "ADD")
      if (auto info = CallAgent("overlay.get", json::object()); info.ok())
        netkit = info->value("endpoint_device", "") == "netkit";
    json keep;
    if (cmd == "ADD") {
      keep = *del;
      keep.erase("prevResult");
      if (netkit) keep["cppnet.device"] = "netkit";
      // Which attachment it belongs to, for GC (the bridge plugin ignores the key).
      keep["cppnet.attachment"] = {{"containerID", Env("CNI_CONTAINERID")},
                                   {"ifname", Env("CNI_IFNAME")}};
      if (auto st = WriteFileAtomically(*saved, keep.dump()); !st.ok())
        return Error(kIoFailure,
                     absl::StrCat("saving the delegated configuration: ", st.message()));
    }
    const int rc = netkit ? OverlayNetkitAdd(*del, keep, *saved) : RunBridge(*del, cmd);
    if ((cmd == "ADD" && rc != 0) || (cmd == "DEL" && rc == 0)) unlink(saved->c_str());
    return rc;
  }
  // A VLAN network: its definition, trunk and room come from the agent.
  auto info = CallAgent("network.get", {{"name", network}}, kAgentWait);
  if (!info.ok()) {
    // DEL of an endpoint whose network was deleted meanwhile still removes its veth.
    if (cmd == "DEL" && absl::IsNotFound(info.status())) return VlanDel(conf, nullptr);
    return AgentError(info.status());
  }
  auto n = ParseVlanNetwork((*info)["network"].dump());
  if (!n.ok()) return Error(kIoFailure, std::string(n.status().message()));
  if (cmd == "DEL") return VlanDel(conf, &*n);
  if (cmd == "CHECK") return VlanCheck(conf, *n);
  return VlanAdd(conf, *n, *info);
}

int main(int argc, char** argv) {
  // Whatever a runtime sends, the answer is CNI error JSON, never an abort.
  try {
    return Run(argc == 2 && std::string(argv[1]) == "--version");
  } catch (const nlohmann::json::exception& e) {
    return Error(kInvalidConfig,
                 absl::StrCat("network configuration: a field has the wrong type or is missing: ",
                              e.what()));
  } catch (const std::exception& e) {
    return Error(kIoFailure, absl::StrCat("internal error: ", e.what()));
  }
}
