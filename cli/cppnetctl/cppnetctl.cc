// cppnetctl: inspect cppnet's datapath state from the pinned maps (works while the
// agent is down). Exit codes: 0 ok, 1 failure, 2 usage error.
#include <arpa/inet.h>
#include <net/if.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cppnet/config.h"
#include "cppnet/maps.h"
#include "cppnet/lease.h"
#include "cppnet/local_api.h"
#include "cppnet/version.h"
#include "cppnet/net.h"
#include "cppnet/paths.h"
#include "cppnet/subnet_env.h"
#include "cppnet/vlan.h"
#include "cppnet/vlan_maps.h"
#include "cppnet/credentials.h"
#include "cppnet/etcd_client.h"

using namespace cppnet;
using nlohmann::ordered_json;

namespace {

struct Globals {
  std::string bpffs_dir = CPPNET_PIN_DIR_DEFAULT;
  std::string config_dir = kConfigDirDefault;
  EtcdOptions etcd;  // show leases --etcd-endpoints …: read etcd instead of the maps
  std::string etcd_prefix = "/coreos.com/network";
  bool json = false;
};

int Fail(const absl::Status& st) {
  fprintf(stderr, "cppnetctl: %s\n", std::string(st.message()).c_str());
  return 1;
}

Mac MacOf(const __u8* p) {
  Mac m;
  std::copy(p, p + 6, m.begin());
  return m;
}

std::string IfName(uint32_t ifindex) {
  char buf[IF_NAMESIZE] = {};
  return ifindex && if_indextoname(ifindex, buf) ? buf : "";
}

int ShowRoutes(const Globals& g, const MapFds& m) {
  auto routes = ListRoutes(m.routes());
  if (!routes.ok()) return Fail(routes.status());
  auto routes6 = ListRoutes6(m.routes6());
  if (!routes6.ok()) return Fail(routes6.status());
  if (g.json) {
    ordered_json arr = ordered_json::array();
    for (const RouteEntry& e : *routes)
      arr.push_back({{"subnet", FormatPrefix4(e.subnet)},
                     {"backend", BackendName(e.route.backend)},
                     {"public_ip", FormatIp4(ntohl(e.route.public_ip))},
                     {"vtep_mac", FormatMac(MacOf(e.route.vtep_mac))},
                     {"vni", e.route.vni},
                     {"port", e.route.port},
                     {"origin", e.route.origin == CPPNET_ORIGIN_STATIC ? "static" : "lease"},
                     {"userspace_peer", (e.route.flags & CPPNET_ROUTE_USERSPACE_PEER) != 0}});
    for (const Route6Entry& e : *routes6)
      arr.push_back({{"subnet", FormatPrefix6(e.subnet)},
                     {"backend", BackendName(e.route.backend)},
                     {"public_ip", FormatIp6(FromBytes6(e.route.public_ip6))},
                     {"vtep_mac", FormatMac(MacOf(e.route.vtep_mac))},
                     {"vni", e.route.vni},
                     {"port", e.route.port},
                     {"origin", "lease"},
                     {"outer_csum", (e.route.flags & CPPNET_ROUTE_OUTER_CSUM) != 0}});
    printf("%s\n", arr.dump(2).c_str());
    return 0;
  }
  printf("%-18s %-8s %-15s %-17s %-8s %-5s %s\n", "SUBNET", "BACKEND", "PUBLIC IP", "VTEP MAC",
         "VNI", "PORT", "ORIGIN");
  // "+soft": a udp peer that may read its tunnel in userspace (checksums finished first).
  for (const RouteEntry& e : *routes)
    printf("%-18s %-8s %-15s %-17s %-8u %-5u %s%s\n", FormatPrefix4(e.subnet).c_str(),
           BackendName(e.route.backend), FormatIp4(ntohl(e.route.public_ip)).c_str(),
           FormatMac(MacOf(e.route.vtep_mac)).c_str(), e.route.vni, e.route.port,
           e.route.origin == CPPNET_ORIGIN_STATIC ? "static" : "lease",
           (e.route.flags & CPPNET_ROUTE_USERSPACE_PEER) ? "+soft" : "");
  // "+csum": a kernel vxlan peer over IPv6, sent the outer UDP checksum (through the soft device).
  for (const Route6Entry& e : *routes6)
    printf("%-18s %-8s %-15s %-17s %-8u %-5u lease%s\n", FormatPrefix6(e.subnet).c_str(),
           BackendName(e.route.backend), FormatIp6(FromBytes6(e.route.public_ip6)).c_str(),
           FormatMac(MacOf(e.route.vtep_mac)).c_str(), e.route.vni, e.route.port,
           (e.route.flags & CPPNET_ROUTE_OUTER_CSUM) ? "+csum" : "");
  return 0;
}

// Leases: from the pinned maps (our own from the config, the others' from the lease
// routes), or with --etcd-endpoints straight from etcd, each key as it stands there.
int ShowLeases(const Globals& g, const MapFds* m) {
  struct Row {
    std::string subnet, public_ip, backend, vtep_mac, note;
  };
  std::vector<Row> rows;
  if (!g.etcd.endpoints.empty()) {
    EtcdOptions eo = g.etcd;
    if (auto st = LoadEtcdPassword(&eo); !st.ok()) return Fail(st);
    auto etcd = EtcdClient::Create(eo);
    if (!etcd.ok()) return Fail(etcd.status());
    for (const std::string& w : (*etcd)->warnings())
      fprintf(stderr, "cppnetctl: warning: %s\n", w.c_str());
    const std::string prefix = g.etcd_prefix + "/subnets/";
    auto range = (*etcd)->RangePrefix(prefix);
    if (!range.ok()) return Fail(range.status());
    for (const EtcdKV& kv : range->kvs) {
      absl::string_view name = kv.key;
      name.remove_prefix(prefix.size());
      auto subnet = ParseSubnetKey(name);
      auto lease = ParseLease(kv.value);
      Row r{subnet.ok() ? FormatPrefix4(*subnet) : std::string(name), "", "", "", ""};
      if (!subnet.ok()) r.note = std::string(subnet.status().message());
      if (lease.ok()) {
        r.public_ip = FormatIp4(lease->public_ip);
        r.backend = lease->backend_type.empty() ? "udp" : lease->backend_type;
        if (lease->vtep_mac) r.vtep_mac = FormatMac(*lease->vtep_mac);
      } else {
        r.note = std::string(lease.status().message());
      }
      rows.push_back(r);
    }
  } else {
    auto c = ReadConfig(m->config());
    if (!c.ok()) return Fail(c.status());
    if (c->flags & CPPNET_CFG_READY)
      rows.push_back({FormatPrefix4(Prefix4{ntohl(c->subnet_addr), c->subnet_len}),
                      FormatIp4(ntohl(c->underlay_ip)), BackendName(c->backend),
                      c->backend == CPPNET_BACKEND_VXLAN ? FormatMac(MacOf(c->vtep_mac)) : "",
                      "this host"});
    auto routes = ListRoutes(m->routes());
    if (!routes.ok()) return Fail(routes.status());
    for (const RouteEntry& e : *routes)
      if (e.route.origin == CPPNET_ORIGIN_LEASE)
        rows.push_back(
            {FormatPrefix4(e.subnet), FormatIp4(ntohl(e.route.public_ip)),
             BackendName(e.route.backend),
             e.route.backend == CPPNET_BACKEND_VXLAN ? FormatMac(MacOf(e.route.vtep_mac)) : "",
             ""});
  }
  if (g.json) {
    ordered_json arr = ordered_json::array();
    for (const Row& r : rows) {
      ordered_json j = {{"subnet", r.subnet},
                        {"public_ip", r.public_ip},
                        {"backend", r.backend},
                        {"vtep_mac", r.vtep_mac}};
      if (!r.note.empty()) j["note"] = r.note;
      arr.push_back(j);
    }
    printf("%s\n", arr.dump(2).c_str());
    return 0;
  }
  printf("%-18s %-15s %-8s %-17s %s\n", "SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "NOTE");
  for (const Row& r : rows)
    printf("%-18s %-15s %-8s %-17s %s\n", r.subnet.c_str(), r.public_ip.c_str(), r.backend.c_str(),
           r.vtep_mac.c_str(), r.note.c_str());
  return 0;
}

// Containers on this host that the receive path delivers to directly.
int ShowEndpoints(const Globals& g, const MapFds& m) {
  auto eps = ListEndpoints(m.endpoints());
  if (!eps.ok()) return Fail(eps.status());
  std::sort(eps->begin(), eps->end(),
            [](const EndpointEntry& a, const EndpointEntry& b) { return a.addr < b.addr; });
  if (g.json) {
    ordered_json arr = ordered_json::array();
    for (const EndpointEntry& e : *eps)
      arr.push_back({{"ip", FormatIp4(e.addr)},
                     {"mac", FormatMac(MacOf(e.endpoint.mac))},
                     {"gateway_mac", FormatMac(MacOf(e.endpoint.gw_mac))},
                     {"ifindex", e.endpoint.ifindex},
                     {"iface", IfName(e.endpoint.ifindex)}});
    printf("%s\n", arr.dump(2).c_str());
    return 0;
  }
  printf("%-15s %-17s %-17s %s\n", "IP", "MAC", "GATEWAY MAC", "HOST VETH");
  for (const EndpointEntry& e : *eps)
    printf("%-15s %-17s %-17s %s (%u)\n", FormatIp4(e.addr).c_str(),
           FormatMac(MacOf(e.endpoint.mac)).c_str(), FormatMac(MacOf(e.endpoint.gw_mac)).c_str(),
           IfName(e.endpoint.ifindex).c_str(), e.endpoint.ifindex);
  return 0;
}

// Whether an endpoint (from the maps) belongs to a network (from its definition): a
// network is one VLAN of one trunk on this host.
bool PortOf(const cppnet_vlan_port& p, const VlanNetwork& n) {
  if (n.parentless()) return p.trunk_ifindex == n.TrunkKey(0);
  return p.vlan == n.vlan && IfName(p.trunk_ifindex) == n.trunk;
}

// VLAN networks with their endpoints on this host: definitions from networks.d, the
// endpoints, their addresses and counters from the maps.
int ShowVlans(const Globals& g, const MapFds&) {
  auto maps = VlanMaps::OpenPinned(g.bpffs_dir);
  if (!maps.ok()) return Fail(maps.status());
  auto ports = ListVlanPorts(maps->port());
  if (!ports.ok()) return Fail(ports.status());
  auto addrs = ListVlanAddrs(maps->ep());
  if (!addrs.ok()) return Fail(addrs.status());
  auto defs = LoadVlanNetworks(NetworksDir(g.config_dir));
  std::vector<VlanNetwork> nets = defs.ok() ? *defs : std::vector<VlanNetwork>{};
  auto owner = [&](const cppnet_vlan_port& p) -> const VlanNetwork* {
    for (const VlanNetwork& n : nets)
      if (PortOf(p, n)) return &n;
    return nullptr;
  };
  ordered_json out = ordered_json::array();
  auto endpoints_of = [&](const VlanNetwork* net, uint32_t trunk, uint16_t vlan) {
    ordered_json eps = ordered_json::array();
    for (const VlanPortEntry& p : *ports) {
      if (net ? owner(p.port) != net : (p.port.trunk_ifindex != trunk || p.port.vlan != vlan))
        continue;
      std::vector<std::string> ips;
      for (const VlanAddrEntry& a : *addrs)
        if (a.ep.ifindex == p.ifindex && a.key.kind != CPPNET_VLAN_ADDR_MAC)
          ips.push_back(FormatVlanAddr(a.key));
      std::sort(ips.begin(), ips.end());
      const cppnet_vlan_cnt cnt = ReadVlanCounters(maps->cnt(), p.ifindex);
      eps.push_back({{"iface", IfName(p.ifindex)},
                     {"ifindex", p.ifindex},
                     {"mac", FormatMac(MacOf(p.port.mac))},
                     {"ips", ips},
                     {"rx_packets", cnt.rx_packets},
                     {"rx_bytes", cnt.rx_bytes},
                     {"tx_packets", cnt.tx_packets},
                     {"tx_bytes", cnt.tx_bytes}});
    }
    return eps;
  };
  for (const VlanNetwork& n : nets) {
    std::vector<std::string> subnets;
    for (const auto& s : n.subnets4) subnets.push_back(FormatPrefix4(s.subnet));
    for (const auto& s : n.subnets6) subnets.push_back(FormatPrefix6(s.subnet));
    out.push_back({{"name", n.name},
                   {"driver", n.driver},
                   {"mode", n.mode},
                   {"parent", n.parent},
                   {"trunk", n.trunk},
                   {"vlan", n.vlan},
                   {"subnets", subnets},
                   {"endpoints", endpoints_of(&n, 0, 0)}});
  }
  // Endpoints whose network definition was deleted while they were attached.
  std::set<std::pair<uint32_t, uint16_t>> orphans;
  for (const VlanPortEntry& p : *ports)
    if (!owner(p.port)) orphans.insert({p.port.trunk_ifindex, p.port.vlan});
  for (const auto& [trunk, vlan] : orphans)
    out.push_back({{"name", "(definition deleted)"},
                   {"trunk", IfName(trunk)},
                   {"vlan", vlan},
                   {"endpoints", endpoints_of(nullptr, trunk, vlan)}});
  if (g.json) {
    printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  printf("%-16s %-17s %-10s %-5s %-15s %-17s %-30s %s\n", "NETWORK", "MODE", "PARENT", "VLAN",
         "ENDPOINT", "MAC", "IPS", "RX/TX PACKETS");
  for (const auto& n : out) {
    const std::string mode = n.contains("driver") ? absl::StrCat(n["driver"].get<std::string>(),
                                                                 " ", n["mode"].get<std::string>())
                                                  : "";
    const std::string parent =
        n.contains("parent") ? n["parent"].get<std::string>() : n["trunk"].get<std::string>();
    const std::string vlan = n["vlan"].get<int>() ? absl::StrCat(n["vlan"].get<int>()) : "-";
    if (n["endpoints"].empty())
      printf("%-16s %-17s %-10s %-5s %s\n", n["name"].get<std::string>().c_str(), mode.c_str(),
             parent.c_str(), vlan.c_str(), "-");
    for (const auto& e : n["endpoints"])
      printf("%-16s %-17s %-10s %-5s %-15s %-17s %-30s %llu/%llu\n",
             n["name"].get<std::string>().c_str(), mode.c_str(), parent.c_str(), vlan.c_str(),
             e["iface"].get<std::string>().c_str(), e["mac"].get<std::string>().c_str(),
             absl::StrJoin(e["ips"].get<std::vector<std::string>>(), ",").c_str(),
             static_cast<unsigned long long>(e["rx_packets"].get<uint64_t>()),
             static_cast<unsigned long long>(e["tx_packets"].get<uint64_t>()));
  }
  return 0;
}

int ShowConfig(const Globals& g, const MapFds& m) {
  auto c = ReadConfig(m.config());
  if (!c.ok()) return Fail(c.status());
  Prefix4 subnet{ntohl(c->subnet_addr), c->subnet_len},
      network{ntohl(c->network_addr), c->network_len};
  ordered_json j = {{"ready", (c->flags & CPPNET_CFG_READY) != 0},
                    {"subnet", FormatPrefix4(subnet)},
                    {"network", FormatPrefix4(network)},
                    {"backend", BackendName(c->backend)},
                    {"vni", c->vni},
                    {"port", c->port},
                    {"public_ip", FormatIp4(ntohl(c->underlay_ip))},
                    {"underlay_ifindex", c->underlay_ifindex},
                    {"underlay_iface", IfName(c->underlay_ifindex)},
                    {"underlay_mac", FormatMac(MacOf(c->underlay_mac))},
                    {"underlay_mtu", c->mtu},
                    {"vtep_mac", FormatMac(MacOf(c->vtep_mac))},
                    {"container_ifindex", c->container_ifindex},
                    {"container_iface", IfName(c->container_ifindex)}};
  if (c->subnet6_len) {
    j["subnet6"] = FormatPrefix6({FromBytes6(c->subnet6), c->subnet6_len});
    j["network6"] = FormatPrefix6({FromBytes6(c->network6), c->network6_len});
    j["public_ipv6"] = FormatIp6(FromBytes6(c->underlay_ip6));
  }
  if (g.json) {
    printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string v = it->is_string() ? it->get<std::string>() : it->dump();
    printf("%-18s %s\n", (it.key() + ":").c_str(), v.c_str());
  }
  return 0;
}

int ShowStats(const Globals& g, const MapFds& m) {
  auto stats = ReadStats(m.stats());
  if (!stats.ok()) return Fail(stats.status());
  const auto& info = Counters();
  if (g.json) {
    ordered_json traffic = ordered_json::object(), drops = ordered_json::object();
    for (size_t i = 0; i < stats->size(); i++)
      (info[i].is_drop ? drops : traffic)[info[i].name] = {{"packets", (*stats)[i].packets},
                                                           {"bytes", (*stats)[i].bytes}};
    printf("%s\n", ordered_json{{"traffic", traffic}, {"drops", drops}}.dump(2).c_str());
    return 0;
  }
  printf("%-26s %12s %14s  %s\n", "COUNTER", "PACKETS", "BYTES", "MEANING");
  for (size_t i = 0; i < stats->size(); i++)
    printf("%-26s %12llu %14llu  %s\n",
           absl::StrCat(info[i].is_drop ? "drop/" : "", info[i].name).c_str(),
           static_cast<unsigned long long>((*stats)[i].packets),
           static_cast<unsigned long long>((*stats)[i].bytes), info[i].help);
  return 0;
}

// --- VLAN networks (Docker's macvlan/ipvlan syntax) -----------------------------

std::string VlanText(const VlanNetwork& n) { return n.vlan ? absl::StrCat(n.vlan) : "untagged"; }

ordered_json NetworkJson(const VlanNetwork& n) {
  ordered_json subnets = ordered_json::array(), gateways = ordered_json::array();
  for (const auto& s : n.subnets4) {
    subnets.push_back(FormatPrefix4(s.subnet));
    gateways.push_back(FormatIp4(s.gateway));
  }
  for (const auto& s : n.subnets6) {
    subnets.push_back(FormatPrefix6(s.subnet));
    gateways.push_back(FormatIp6(s.gateway));
  }
  return {{"name", n.name}, {"driver", n.driver}, {"mode", n.mode},       {"parent", n.parent},
          {"vlan", n.vlan}, {"subnets", subnets}, {"gateways", gateways}, {"internal", n.internal}};
}

// Network changes go through the agent, which validates, keeps the definition in
// networks.d and serves it (refused when no agent runs on this host).
int NetworkCreate(const Globals& g, const NetworkCreateArgs& args) {
  // The arguments on their own (driver, subnets, options), checked here first with the agent's
  // rules; conflicts with other networks and the parent interface are the agent's to judge.
  if (auto n = BuildVlanNetwork(args, {}, [](const std::string&) { return true; }); !n.ok())
    return Fail(n.status());
  auto r = CallAgent("network.create", NetworkArgsToJson(args));
  if (!r.ok()) return Fail(r.status());
  printf("%s\n", r->value("name", args.name).c_str());
  return 0;
}

int NetworkDelete(const Globals& g, const std::vector<std::string>& names) {
  int rc = 0;
  for (const std::string& name : names) {
    auto r = CallAgent("network.delete", {{"name", name}});
    if (!r.ok()) {
      if (absl::IsUnavailable(r.status())) return Fail(r.status());
      fprintf(stderr, "cppnetctl: %s\n", std::string(r.status().message()).c_str());
      rc = 1;
      continue;
    }
    printf("%s\n", name.c_str());
  }
  return rc;
}

int NetworkList(const Globals& g, const std::string& only) {
  auto nets = LoadVlanNetworks(NetworksDir(g.config_dir));
  if (!nets.ok()) return Fail(nets.status());
  if (!only.empty()) {
    auto it = std::find_if(nets->begin(), nets->end(),
                           [&](const VlanNetwork& n) { return n.name == only; });
    if (it == nets->end())
      return Fail(absl::NotFoundError(absl::StrCat("network ", only, " not found")));
    if (g.json) {
      printf("%s\n", NetworkJson(*it).dump(2).c_str());
    } else {
      printf("%s", SerializeVlanNetwork(*it).c_str());
    }
    return 0;
  }
  if (g.json) {
    ordered_json arr = ordered_json::array();
    for (const VlanNetwork& n : *nets) arr.push_back(NetworkJson(n));
    printf("%s\n", arr.dump(2).c_str());
    return 0;
  }
  printf("%-16s %-8s %-9s %-12s %-9s %s\n", "NAME", "DRIVER", "MODE", "PARENT", "VLAN", "SUBNETS");
  for (const VlanNetwork& n : *nets) {
    std::vector<std::string> subs;
    for (const auto& s : n.subnets4) subs.push_back(FormatPrefix4(s.subnet));
    for (const auto& s : n.subnets6) subs.push_back(FormatPrefix6(s.subnet));
    printf("%-16s %-8s %-9s %-12s %-9s %s\n", n.name.c_str(), n.driver.c_str(), n.mode.c_str(),
           n.parent.c_str(), VlanText(n).c_str(), absl::StrJoin(subs, ",").c_str());
  }
  return 0;
}

int Usage(const std::string& msg) {
  fprintf(stderr, "cppnetctl: %s\n", msg.c_str());
  return 2;
}

const char* kRouteAddUsage =
    "usage: route add CIDR via IP [backend vxlan|udp|host-gw] [vtep-mac MAC] [vni N] [port P]";

// Static route: kept in the routes map with origin "static", never touched by the agent. The
// arguments are checked before anything else; the defaults (backend, VNI, port) come from this
// host's config in the pinned maps.
int RouteAdd(const Globals& g, const std::vector<std::string>& a) {
  if (a.size() < 3 || a[1] != "via" || a.size() % 2 == 0)
    return Usage(std::string("route add: ") + kRouteAddUsage);
  auto subnet = ParsePrefix4(a[0]);
  if (!subnet.ok()) return Usage(absl::StrCat("route add: ", subnet.status().message()));
  auto via = ParseIp4(a[2]);
  if (!via.ok()) return Usage(absl::StrCat("route add: via: ", via.status().message()));
  std::optional<uint8_t> backend;
  std::optional<uint32_t> vni;
  std::optional<uint16_t> port;
  Mac vtep = VtepMacFor(*via);  // what a cppnet peer publishes; name another with vtep-mac
  for (size_t i = 3; i + 1 < a.size(); i += 2) {
    const std::string &k = a[i], &v = a[i + 1];
    if (k == "backend") {
      backend = BackendFromName(v);
      if (!backend)
        return Usage(absl::StrCat("route add: unknown backend \"", v, "\" (vxlan, udp, host-gw)"));
    } else if (k == "vtep-mac") {
      auto mac = ParseMac(v);
      if (!mac.ok()) return Usage(absl::StrCat("route add: vtep-mac: ", mac.status().message()));
      vtep = *mac;
    } else if (k == "vni" || k == "port") {
      int n = 0;
      if (!absl::SimpleAtoi(v, &n) || n < (k == "vni" ? 0 : 1) ||
          n > (k == "vni" ? 0xffffff : 65535))
        return Usage(absl::StrCat("route add: invalid ", k, " \"", v, "\""));
      if (k == "vni")
        vni = static_cast<uint32_t>(n);
      else
        port = static_cast<uint16_t>(n);
    } else {
      return Usage(absl::StrCat("route add: unknown option \"", k, "\"; ", kRouteAddUsage));
    }
  }
  auto m = MapFds::OpenPinned(g.bpffs_dir);
  if (!m.ok()) return Fail(m.status());
  auto cfg = ReadConfig(m->config());
  if (!cfg.ok()) return Fail(cfg.status());
  if (!(cfg->flags & CPPNET_CFG_READY))
    return Fail(absl::FailedPreconditionError(
        "route add: cppnet-agent has not set up this host yet (no lease)"));
  const Prefix4 network{ntohl(cfg->network_addr), cfg->network_len},
      own{ntohl(cfg->subnet_addr), cfg->subnet_len};
  const std::string what = absl::StrCat("route add ", FormatPrefix4(*subnet), ": ");
  if (!network.contains(*subnet))
    return Fail(absl::InvalidArgumentError(absl::StrCat(what, "outside the Network ",
                                                        FormatPrefix4(network),
                                                        " (cppnet routes only overlay subnets)")));
  if (subnet->overlaps(own))
    return Fail(absl::InvalidArgumentError(
        absl::StrCat(what, "overlaps this host's subnet ", FormatPrefix4(own))));
  cppnet_route r{};
  r.public_ip = htonl(*via);
  r.backend = backend.value_or(cfg->backend);
  r.vni = vni.value_or(cfg->vni);
  r.port = port.value_or(r.backend != cfg->backend ? DefaultBackendPort(r.backend) : cfg->port);
  if (r.backend == CPPNET_BACKEND_VXLAN) memcpy(r.vtep_mac, vtep.data(), 6);
  r.origin = CPPNET_ORIGIN_STATIC;
  if (auto res = CallAgent("route.add", RouteToJson(*subnet, r)); !res.ok())
    return Fail(res.status());
  return 0;
}

int RouteDel(const std::vector<std::string>& a) {
  if (a.size() != 1) return Usage("route del: usage: route del CIDR");
  auto subnet = ParsePrefix4(a[0]);
  if (!subnet.ok()) return Usage(absl::StrCat("route del: ", subnet.status().message()));
  auto res = CallAgent("route.del", {{"subnet", FormatPrefix4(*subnet)}});
  if (!res.ok() && !absl::IsUnavailable(res.status()))
    return Fail(absl::Status(res.status().code(), absl::StrCat("route del ", FormatPrefix4(*subnet),
                                                               ": ", res.status().message())));
  if (!res.ok()) return Fail(res.status());
  return 0;
}

}  // namespace

// What the parsed command line holds for a handler.
// cppnetctl's version, the running agent's (local API) and the layout of the pinned maps.
int Version(const Globals& g) {
  ordered_json out = {
      {"cppnetctl",
       {{"version", CPPNET_VERSION}, {"commit", CPPNET_COMMIT}, {"abi", CPPNET_ABI_VERSION}}}};
  auto agent = CallAgent("version", nlohmann::json::object());
  if (agent.ok())
    out["agent"] = *agent;
  else
    out["agent"] = {{"error", std::string(agent.status().message())}};
  const std::string pin = g.bpffs_dir + "/" CPPNET_MAP_ABI;
  const int fd = bpf_obj_get(pin.c_str());
  uint32_t zero = 0, abi = 0;
  if (fd >= 0 && bpf_map_lookup_elem(fd, &zero, &abi) == 0 && abi)
    out["pinned_maps"] = {{"dir", g.bpffs_dir}, {"abi", abi}};
  else
    out["pinned_maps"] = {
        {"dir", g.bpffs_dir},
        {"error", fd < 0 ? absl::StrCat(pin, ": ", strerror(errno))
                         : absl::StrCat(pin, ": no ABI recorded (an agent before 0.2.0)")}};
  if (fd >= 0) close(fd);
  if (g.json) {
    printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  printf("cppnetctl     %s (commit %s, datapath ABI %d)\n", CPPNET_VERSION, CPPNET_COMMIT,
         CPPNET_ABI_VERSION);
  if (agent.ok())
    printf("cppnet-agent  %s (commit %s, datapath ABI %d)\n",
           out["agent"].value("version", "?").c_str(), out["agent"].value("commit", "?").c_str(),
           out["agent"].value("abi", 0));
  else
    printf("cppnet-agent  not reachable: %s\n", std::string(agent.status().message()).c_str());
  if (out["pinned_maps"].contains("abi"))
    printf("pinned maps   %s: datapath ABI %u\n", g.bpffs_dir.c_str(), abi);
  else
    printf("pinned maps   %s\n", out["pinned_maps"]["error"].get<std::string>().c_str());
  return 0;
}

struct Ctx {
  Globals g;
  std::vector<std::string> args;  // route add/del
  NetworkCreateArgs create;
  std::vector<std::string> names;  // network delete
  std::string name;                // network show
};

// The one command table: every command with its group, help, options and handler.
// Commands with `maps` get the pinned maps opened first (read only); those that
// change state ask the agent through its local API.
struct Command {
  const char* group;
  const char* name;
  const char* alias;
  const char* help;
  bool maps;
  std::function<void(CLI::App*, Ctx&)> options;
  std::function<int(Ctx&, const MapFds*)> run;
  const char* example = nullptr;  // shown under --help
};

void EtcdFlags(CLI::App* sub, Ctx& c) {
  sub->add_option("--etcd-endpoints", c.g.etcd.endpoints, "read the leases from etcd")
      ->envname("CPPNET_ETCD_ENDPOINTS");
  sub->add_option("--etcd-prefix", c.g.etcd_prefix, "etcd prefix")
      ->envname("CPPNET_ETCD_PREFIX")
      ->capture_default_str();
  sub->add_option("--etcd-cafile", c.g.etcd.cafile, "TLS: CA of etcd's certificate")
      ->envname("CPPNET_ETCD_CAFILE");
  sub->add_option("--etcd-certfile", c.g.etcd.certfile, "TLS: client certificate")
      ->envname("CPPNET_ETCD_CERTFILE");
  sub->add_option("--etcd-keyfile", c.g.etcd.keyfile, "TLS: client key")
      ->envname("CPPNET_ETCD_KEYFILE");
  sub->add_option("--etcd-username", c.g.etcd.username, "etcd user")
      ->envname("CPPNET_ETCD_USERNAME");
  sub->add_option("--etcd-password", c.g.etcd.password, "etcd password")
      ->envname("CPPNET_ETCD_PASSWORD");
  sub->add_option("--etcd-password-file", c.g.etcd.password_file,
                  "file whose first line is the etcd password")
      ->envname("CPPNET_ETCD_PASSWORD_FILE");
}

void CreateOptions(CLI::App* sub, Ctx& c) {
  NetworkCreateArgs& a = c.create;
  sub->add_option("-d,--driver", a.driver, "macvlan (default) or ipvlan");
  sub->add_option("--subnet", a.subnets, "subnet in CIDR form; repeat for dual stack")->take_all();
  sub->add_option("--gateway", a.gateways, "gateway of the subnet that contains it; repeatable")
      ->take_all();
  sub->add_option("--ip-range", a.ip_ranges,
                  "allocate container addresses from this range of the subnet that contains it; "
                  "repeatable")
      ->take_all();
  sub->add_option("--aux-address", a.aux_addresses, "name=IP reserved, never given to a container")
      ->take_all();
  sub->add_option("--ipv4", a.ipv4, "false: an IPv6-only network (with --ipv6)")
      ->default_str("true");
  sub->add_flag("--ipv6", a.ipv6, "enable the IPv6 subnet");
  sub->add_flag("--internal", a.internal, "no default route to the outside");
  sub->add_option("-o,--opt", a.options,
                  "parent=IF[.VLAN], macvlan_mode=..., ipvlan_mode=l2|l3|l3s, "
                  "ipvlan_flag=bridge|private|vepa")
      ->take_all();
  sub->add_option("name", a.name, "network name")->required();
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> kCommands = {
      {"show", "leases", nullptr,
       "subnet leases: this host's and the others' (from the maps, or etcd with --etcd-endpoints)",
       false, EtcdFlags,
       [](Ctx& c, const MapFds*) {
         if (!c.g.etcd.endpoints.empty()) return ShowLeases(c.g, nullptr);  // no maps needed
         auto m = MapFds::OpenPinned(c.g.bpffs_dir);
         return m.ok() ? ShowLeases(c.g, &*m) : Fail(m.status());
       },
       "cppnetctl show leases --etcd-endpoints http://10.0.0.10:2379"},
      {"show", "routes", nullptr, "routes to other hosts' subnets", true, nullptr,
       [](Ctx& c, const MapFds* m) { return ShowRoutes(c.g, *m); },
       "cppnetctl show routes -o json"},
      {"show", "endpoints", nullptr,
       "local containers learned for direct delivery (IP, MAC, host veth)", true, nullptr,
       [](Ctx& c, const MapFds* m) { return ShowEndpoints(c.g, *m); }, "cppnetctl show endpoints"},
      {"show", "vlans", nullptr,
       "VLAN networks: endpoints on this host, their MACs, IPs and counters", true, nullptr,
       [](Ctx& c, const MapFds* m) { return ShowVlans(c.g, *m); }, "cppnetctl show vlans"},
      {"show", "config", nullptr,
       "this host's lease, underlay and backend as the datapath sees them", true, nullptr,
       [](Ctx& c, const MapFds* m) { return ShowConfig(c.g, *m); },
       "cppnetctl show config -o json"},
      {"show", "stats", nullptr, "packet counters, drops by reason (summed over CPUs)", true,
       nullptr, [](Ctx& c, const MapFds* m) { return ShowStats(c.g, *m); },
       "cppnetctl show stats   # every drop reason: watch vxlan_wrong_mac, bad_inner_source"},
      {"route", "list", nullptr, "all routes, lease and static", true, nullptr,
       [](Ctx& c, const MapFds* m) { return ShowRoutes(c.g, *m); }, "cppnetctl route list"},
      {"route", "add", nullptr,
       "route add CIDR via IP [backend B] [vtep-mac MAC] [vni N] [port P] (through the agent)",
       false,
       [](CLI::App* sub, Ctx& c) {
         sub->add_option("route", c.args,
                         "the subnet, the host that takes it (its PublicIP), then any of: backend "
                         "vxlan|udp|host-gw (default: the Network's), vtep-mac MAC (default: the "
                         "one a cppnet host derives from IP), vni N, port P")
             ->required()
             ->type_name("CIDR via IP [OPTION VALUE]...");
         sub->footer(
             "Examples:\n"
             "  cppnetctl route add 10.5.202.0/24 via 10.0.0.4\n"
             "  cppnetctl route add 10.5.203.0/24 via 10.0.0.5 backend host-gw\n"
             "  cppnetctl route add 10.5.204.0/24 via 10.0.0.6 vtep-mac 7a:1b:2c:3d:4e:5f vni 1\n");
       },
       [](Ctx& c, const MapFds*) { return RouteAdd(c.g, c.args); }},
      {"route", "del", nullptr, "route del CIDR (static routes only; through the agent)", false,
       [](CLI::App* sub, Ctx& c) {
         sub->add_option("subnet", c.args, "a static route's subnet")
             ->required()
             ->type_name("CIDR");
         sub->footer("Example:\n  cppnetctl route del 10.5.202.0/24\n");
       },
       [](Ctx& c, const MapFds*) { return RouteDel(c.args); }},
      {"network", "create", nullptr,
       "network create -d macvlan|ipvlan --subnet CIDR ... -o parent=eth1.10 NAME (through the "
       "agent)",
       false, CreateOptions, [](Ctx& c, const MapFds*) { return NetworkCreate(c.g, c.create); },
       "cppnetctl network create -d macvlan --subnet 192.168.10.0/24 --gateway 192.168.10.1 "
       "-o parent=eth1.10 vlan10"},
      {"network", "delete", "rm", "network delete NAME... (through the agent)", false,
       [](CLI::App* sub, Ctx& c) {
         sub->add_option("names", c.names, "network names")->required();
       },
       [](Ctx& c, const MapFds*) { return NetworkDelete(c.g, c.names); },
       "cppnetctl network rm vlan10"},
      {"network", "list", "ls", "all VLAN networks on this host", false, nullptr,
       [](Ctx& c, const MapFds*) { return NetworkList(c.g, ""); }, "cppnetctl network ls -o json"},
      {"network", "show", "inspect", "network show NAME", false,
       [](CLI::App* sub, Ctx& c) { sub->add_option("name", c.name, "network name")->required(); },
       [](Ctx& c, const MapFds*) { return NetworkList(c.g, c.name); },
       "cppnetctl network inspect vlan10"},
  };
  return kCommands;
}

int main(int argc, char** argv) {
  Ctx ctx;
  CLI::App app{
      "cppnetctl: inspect the cppnet datapath (pinned BPF maps); change static routes and VLAN "
      "networks through cppnet-agent"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "cppnetctl " CPPNET_VERSION " (commit " CPPNET_COMMIT
                                    ", datapath ABI " +
                                        std::to_string(CPPNET_ABI_VERSION) + ")");
  app.add_option("--bpffs-dir", ctx.g.bpffs_dir, "where cppnet-agent pins its maps")
      ->envname("CPPNET_BPFFS_DIR")
      ->capture_default_str();
  app.add_option("--config-dir", ctx.g.config_dir,
                 "host configuration (VLAN networks in networks.d/)")
      ->envname("CPPNET_CONFIG_DIR")
      ->capture_default_str();
  // -o json|table everywhere; on network create, -o is Docker's --opt, so only --output there.
  auto output = [&ctx](CLI::App* a, bool short_flag = true) {
    a->add_flag("--json", ctx.g.json, "machine-readable output (as -o json)");
    a->add_option_function<std::string>(
         short_flag ? "-o,--output" : "--output",
         [&ctx](const std::string& v) { ctx.g.json = v == "json"; },
         "output format: table (default) or json")
        ->check(CLI::IsMember({"json", "table"}));
  };
  output(&app);
  const std::map<std::string, const char*> groups = {
      {"show", "show datapath state"},
      {"route", "static routes in the datapath (kept apart from lease routes)"},
      {"network", "VLAN networks (Docker's macvlan/ipvlan syntax)"}};
  std::map<std::string, CLI::App*> group_apps;
  for (const auto& [name, help] : groups) {
    group_apps[name] = app.add_subcommand(name, help);
    group_apps[name]->require_subcommand(1);
  }
  bool version = false;
  CLI::App* ver = app.add_subcommand(
      "version", "versions of cppnetctl, the running cppnet-agent and the pinned maps' layout");
  output(ver);
  ver->callback([&version] { version = true; });
  const Command* chosen = nullptr;
  for (const Command& cmd : Commands()) {
    CLI::App* sub = group_apps[cmd.group]->add_subcommand(cmd.name, cmd.help);
    if (cmd.alias) sub->alias(cmd.alias);
    output(sub, !(std::string(cmd.group) == "network" && std::string(cmd.name) == "create"));
    if (cmd.options) cmd.options(sub, ctx);
    if (cmd.example) sub->footer(absl::StrCat("Example:\n  ", cmd.example, "\n"));
    sub->callback([&chosen, &cmd] { chosen = &cmd; });
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fprintf(stderr, "cppnetctl: %s\nRun cppnetctl --help for the commands.\n", e.what());
    return 2;
  }
  if (std::string w = ScrubPasswordArg(argc, argv); !w.empty())
    fprintf(stderr, "cppnetctl: warning: %s\n", w.c_str());
  if (version) return Version(ctx.g);
  if (!chosen) return 2;
  if (!chosen->maps) return chosen->run(ctx, nullptr);
  auto maps = MapFds::OpenPinned(ctx.g.bpffs_dir);
  if (!maps.ok()) return Fail(maps.status());
  return chosen->run(ctx, &*maps);
}
