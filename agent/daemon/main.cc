// cppnet-agent entry point: flags (also from CPPNET_* environment variables),
// start-up checks with one-line errors, signals, then the agent loop.
#include <bpf/libbpf.h>
#include <net/if.h>
#include <signal.h>

#include <cstdarg>
#include <systemd/sd-daemon.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <vector>
#include <thread>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "agent.h"
#include "cppnet/paths.h"
#include "masq.h"
#include "health.h"
#include "cppnet/credentials.h"
#include "cppnet/netlink.h"
#include "cppnet/underlay.h"
#include "cppnet/version.h"
#include "log.h"

#include <sys/resource.h>

using namespace cppnet;

namespace {

// libbpf's warnings go to our log; "Exclusivity flag on" is the expected answer when
// the clsact qdisc already exists (agent restart) and says nothing useful.
int LibbpfLog(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[512];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  std::string line(buf);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (line.find("Exclusivity flag on") != std::string::npos) return 0;
  LOG_WARN("libbpf: ", line);
  return 0;
}

int Fail(const std::string& msg) {
  fprintf(stderr, "cppnet-agent: %s\n", msg.c_str());
  return 1;
}

}  // namespace

// --iface / --iface-regex / --iface-can-reach, in flanneld's order; an option that
// matches nothing is logged, and when none matches the error lists what was tried.
static absl::StatusOr<UnderlayPick> SelectUnderlay(const UnderlayFlags& uf) {
  auto links = ListInterfaces();
  if (!links.ok()) return links.status();
  std::vector<std::string> notes;
  auto pick = MatchUnderlay(*links, uf, &notes);
  if (!pick.ok() && absl::IsNotFound(pick.status()) && !uf.can_reach.empty()) {
    auto ip = ParseIp4(uf.can_reach);
    if (!ip.ok())
      return absl::InvalidArgumentError(absl::StrCat("--iface-can-reach: ", ip.status().message()));
    pick = InterfaceToReach(*ip);
    if (!pick.ok()) notes.push_back(std::string(pick.status().message()));
  }
  for (const std::string& n : notes) LOG_INFO("Could not find a valid interface: ", n);
  if (pick.ok() || !absl::IsNotFound(pick.status())) return pick;
  return absl::NotFoundError(
      absl::StrCat("no interface matches the interfaces and/or regexes provided (",
                   absl::StrJoin(notes, "; "), ")"));
}

int main(int argc, char** argv) {
  // Block SIGTERM/SIGINT before any thread exists (gRPC starts its own), so only
  // the sigwait thread below receives them and shutdown is always orderly.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  libbpf_set_print(LibbpfLog);
  SetLogToJournal(StderrIsJournal());
  AgentOptions o;
  EtcdOptions etcd_opts;
  std::string ttl = "24h";
  int renew_minutes = 60;
  CLI::App app{"cppnet-agent: Flannel-compatible overlay network agent with an eBPF datapath"};
  app.set_version_flag("--version", "cppnet-agent " CPPNET_VERSION " (commit " CPPNET_COMMIT
                                    ", datapath ABI " +
                                        std::to_string(CPPNET_ABI_VERSION) + ")");
  auto env = [](const char* name) { return std::string("CPPNET_") + name; };
  app.add_option("--etcd-endpoints", o.etcd_endpoints, "etcd endpoints, comma separated")
      ->envname(env("ETCD_ENDPOINTS"))
      ->capture_default_str();
  app.add_option("--etcd-cafile", etcd_opts.cafile,
                 "CA bundle that signed etcd's certificate (TLS)")
      ->envname(env("ETCD_CAFILE"));
  app.add_option("--etcd-certfile", etcd_opts.certfile, "client certificate for etcd (TLS)")
      ->envname(env("ETCD_CERTFILE"));
  app.add_option("--etcd-keyfile", etcd_opts.keyfile, "client key for etcd (TLS)")
      ->envname(env("ETCD_KEYFILE"));
  app.add_option("--etcd-username", etcd_opts.username, "etcd user (authentication)")
      ->envname(env("ETCD_USERNAME"));
  app.add_option("--etcd-password", etcd_opts.password,
                 "etcd password (prefer --etcd-password-file or CPPNET_ETCD_PASSWORD)")
      ->envname(env("ETCD_PASSWORD"));
  app.add_option("--etcd-password-file", etcd_opts.password_file,
                 "file whose first line is the etcd password")
      ->envname(env("ETCD_PASSWORD_FILE"));
  app.add_option("--etcd-prefix", o.etcd_prefix, "etcd prefix of the network config and leases")
      ->envname(env("ETCD_PREFIX"))
      ->capture_default_str();
  UnderlayFlags uf;
  app.add_option("--iface", uf.ifaces,
                 "underlay interface (name or IP); repeat to try several in order, the first "
                 "that exists wins; default: the interface of --public-ip, else of the default "
                 "route")
      ->envname(env("IFACE"))
      ->delimiter(',');
  app.add_option("--iface-regex", uf.regexes,
                 "regular expression for the underlay, matched against interface addresses "
                 "first, then names; repeatable, tried after --iface")
      ->envname(env("IFACE_REGEX"));
  app.add_option("--iface-can-reach", uf.can_reach,
                 "the underlay is the interface the route to this address uses (ip route get), "
                 "tried after --iface and --iface-regex")
      ->envname(env("IFACE_CAN_REACH"));
  app.add_option("--public-ip", o.public_ip,
                 "IP published to other hosts; default: the underlay interface's first IPv4")
      ->envname(env("PUBLIC_IP"));
  app.add_option("--public-ipv6", o.public_ip6,
                 "IPv6 address published to other hosts (EnableIPv6); must be on the underlay, "
                 "which it picks when neither --iface* nor --public-ip does; default: the "
                 "underlay's first global IPv6 address")
      ->envname(env("PUBLIC_IPV6"));
  app.add_option("--subnet-file", o.subnet_file, "where to write the subnet environment")
      ->envname(env("SUBNET_FILE"))
      ->capture_default_str();
  app.add_option("--subnet-lease-ttl", ttl,
                 "TTL of the etcd lease bound to our subnet (e.g. 24h, 90s)")
      ->envname(env("SUBNET_LEASE_TTL"))
      ->capture_default_str();
  app.add_option("--subnet-lease-renew-margin", renew_minutes,
                 "renew the lease this many minutes before it expires")
      ->envname(env("SUBNET_LEASE_RENEW_MARGIN"))
      ->check(CLI::Range(1, 1439))
      ->capture_default_str();
  app.add_flag("--ip-masq", o.ip_masq,
               "masquerade container traffic leaving the cluster network (nftables)")
      ->envname(env("IP_MASQ"));
  app.add_option("--healthz-ip", o.healthz_ip, "address of the health endpoint")
      ->envname(env("HEALTHZ_IP"))
      ->capture_default_str();
  app.add_option("--healthz-port", o.healthz_port, "port of the health endpoint (0 = off)")
      ->envname(env("HEALTHZ_PORT"))
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--bpffs-dir", o.bpffs_dir, "where maps and links are pinned")
      ->envname(env("BPFFS_DIR"))
      ->capture_default_str();
  app.add_option("--config-dir", o.config_dir, "host configuration: VLAN networks in networks.d/")
      ->envname(env("CONFIG_DIR"))
      ->capture_default_str();
  app.add_option("--container-iface", o.container_iface,
                 "container-side interface; default: the one carrying our subnet")
      ->envname(env("CONTAINER_IFACE"));
  app.add_option("--decap", o.decap,
                 "where tunnel packets are decapsulated: xdp, tc, or auto (tc on veth underlays)")
      ->envname(env("DECAP"))
      ->check(CLI::IsMember({"auto", "xdp", "tc"}))
      ->capture_default_str();
  app.add_option("--endpoint-device", o.endpoint_device,
                 "what the CNI plugin gives containers (overlay and VLAN networks): netkit (kernel "
                 ">= 6.7), veth, or auto (netkit where the kernel has it)")
      ->envname(env("ENDPOINT_DEVICE"))
      ->check(CLI::IsMember({"auto", "netkit", "veth"}))
      ->capture_default_str();
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "error, warn, info or debug")
      ->envname(env("LOG_LEVEL"))
      ->check(CLI::IsMember({"error", "warn", "warning", "info", "debug"}))
      ->capture_default_str();
  int verbosity = 0;
  app.add_option("-v", verbosity,
                 "flanneld's verbosity: 0 keeps --log-level, 1 or more logs debug messages too")
      ->envname(env("V"))
      ->check(CLI::Range(0, 10));
  bool cleanup = false;
  app.add_flag("--cleanup", cleanup,
               "uninstall: remove cppnet's tc/XDP programs, pinned maps, nftables table and subnet "
               "file, then exit (stop the agent first)");
  app.add_flag("--release-on-exit", o.release_on_exit, "delete our lease from etcd on SIGTERM")
      ->envname(env("RELEASE_ON_EXIT"));
  // flanneld's EnvironmentFile works unchanged: FLANNELD_<FLAG> stands for CPPNET_<FLAG>
  // (flags both agents have) unless that is set; flanneld-only settings are named once.
  {
    std::set<std::string> ours;
    for (const CLI::Option* opt : app.get_options())
      if (!opt->get_envname().empty()) ours.insert(opt->get_envname());
    std::vector<std::pair<std::string, std::string>> aliases;
    for (char** e = environ; *e; ++e) {
      const absl::string_view kv(*e);
      const size_t eq = kv.find('=');
      if (!absl::StartsWith(kv, "FLANNELD_") || eq == absl::string_view::npos) continue;
      const std::string name = absl::StrCat("CPPNET_", kv.substr(9, eq - 9));
      if (ours.count(name))
        aliases.emplace_back(name, std::string(kv.substr(eq + 1)));
      else
        LOG_WARN(kv.substr(0, eq), " is a flanneld setting cppnet-agent does not have; ignored");
    }
    for (const auto& [name, value] : aliases) setenv(name.c_str(), value.c_str(), /*overwrite=*/0);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fprintf(stderr, "cppnet-agent: %s\nRun cppnet-agent --help for the flags.\n", e.what());
    return 2;
  }
  auto usage = [](const std::string& msg) {
    fprintf(stderr, "cppnet-agent: %s\n", msg.c_str());
    return 2;
  };
  SetLogLevel(verbosity > 0 ? LogLevel::kDebug : *ParseLogLevel(log_level));
  if (cleanup) {
    auto removed = Datapath::Cleanup(o.bpffs_dir);
    if (!removed.ok()) return Fail(std::string(removed.status().message()));
    for (const std::string& r : *removed) printf("removed %s\n", r.c_str());
    // The agent's veth pairs: each peer goes with its first end.
    for (const auto& [dev, peer] : {std::pair{CPPNET_HOST_DEV, CPPNET_SOFT_DEV},
                                    std::pair{CPPNET_PACE_DEV, CPPNET_PACED_DEV}}) {
      if (!if_nametoindex(dev)) continue;
      auto sk = NlConnect();
      absl::Status st = sk.ok() ? DeleteLink(sk->get(), dev) : sk.status();
      if (!st.ok()) return Fail(std::string(st.message()));
      printf("removed interface %s (and %s)\n", dev, peer);
    }
    for (auto st : {RemoveMasquerade(), RemoveCniMasquerade()})
      if (!st.ok()) fprintf(stderr, "cppnet-agent: %s\n", std::string(st.message()).c_str());
    if (unlink(o.subnet_file.c_str()) == 0) printf("removed %s\n", o.subnet_file.c_str());
    printf(
        "cppnet datapath removed; the lease stays in etcd until its TTL (or delete it with "
        "etcdctl)\n");
    return 0;
  }
  if (!absl::ParseDuration(ttl, &o.lease_ttl) || o.lease_ttl < absl::Seconds(10))
    return usage(absl::StrCat("--subnet-lease-ttl: invalid duration \"", ttl,
                              "\" (e.g. 24h, 90s; at least 10s)"));
  o.renew_margin = absl::Minutes(renew_minutes);
  uint32_t public_ip = 0;
  if (!o.public_ip.empty()) {
    auto ip = ParseIp4(o.public_ip);
    if (!ip.ok()) return usage(absl::StrCat("--public-ip: ", ip.status().message()));
    public_ip = *ip;
  }
  unsigned __int128 public_ip6 = 0;
  if (!o.public_ip6.empty()) {
    auto ip = ParseIp6(o.public_ip6);
    if (!ip.ok()) return usage(absl::StrCat("--public-ipv6: ", ip.status().message()));
    public_ip6 = *ip;
  }
  if (std::string w = ScrubPasswordArg(argc, argv); !w.empty()) LOG_WARN(w);
  // Soft fd limit up to the hard one: clients of the health endpoint must never leave
  // the agent without the netlink and BPF fds it needs.
  if (struct rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      LOG_WARN("raising the open-file limit: ", strerror(errno));
  }
  if (auto st = LoadEtcdPassword(&etcd_opts); !st.ok()) return usage(std::string(st.message()));
  etcd_opts.endpoints = o.etcd_endpoints;
  auto etcd = EtcdClient::Create(etcd_opts);
  if (!etcd.ok()) return usage(std::string(etcd.status().message()));
  for (const std::string& w : (*etcd)->warnings()) LOG_WARN(w);

  // The underlay, as flanneld picks it: --iface, --iface-regex, --iface-can-reach in that
  // order; without them the interface carrying --public-ip (peers send their tunnel packets
  // there, so that is where decapsulation must run), else the default route's.
  absl::StatusOr<Interface> underlay = absl::NotFoundError("");
  if (uf.any()) {
    auto pick = SelectUnderlay(uf);
    if (!pick.ok()) return Fail(std::string(pick.status().message()));
    LOG_INFO("Underlay ", pick->iface.name, " chosen by ", pick->how);
    if (public_ip == 0 && pick->addr) public_ip = pick->addr;
    underlay = pick->iface;
  } else {
    // The interface holding --public-ip, else --public-ipv6, else the default route's.
    underlay = public_ip    ? FindInterface(FormatIp4(public_ip))
               : public_ip6 ? FindInterface(FormatIp6(public_ip6))
                            : DefaultRouteInterface();
    if (!underlay.ok() && (public_ip || public_ip6)) underlay = DefaultRouteInterface();
  }
  if (!underlay.ok()) return Fail(std::string(underlay.status().message()));
  // No IPv4 address at all: only an IPv6-only network can be served (the config says).
  if (public_ip == 0 && !underlay->addrs.empty()) public_ip = underlay->addrs[0].addr;
  if (public_ip == 0 && underlay->addrs6.empty())
    return Fail(absl::StrCat("interface ", underlay->name,
                             ": has no IPv4 or global IPv6 address (set --public-ip)"));
  // Both families ride the one underlay: its tc program opens IPv6 tunnel packets too.
  if (public_ip6) {
    if (std::none_of(underlay->addrs6.begin(), underlay->addrs6.end(),
                     [&](const Prefix6& a) { return a.addr == public_ip6; }))
      return Fail(absl::StrCat("--public-ipv6 ", FormatIp6(public_ip6),
                               " is not an address of the underlay ", underlay->name,
                               " (cppnet carries IPv4 and IPv6 on one interface)"));
  } else if (!underlay->addrs6.empty()) {
    public_ip6 = underlay->addrs6[0].addr;
  }
  auto dp = Datapath::Load(o.bpffs_dir);
  if (!dp.ok()) {
    auto maps = MapFds::OpenPinned(o.bpffs_dir);  // a clearer cause when bpffs is missing
    if (!maps.ok() && absl::IsFailedPrecondition(maps.status()))
      return Fail(std::string(maps.status().message()));
    return Fail(std::string(dp.status().message()));
  }

  for (const std::string& name : (*dp)->replaced_maps())
    LOG_WARN("Pinned map ", name, " in ", o.bpffs_dir,
             " had another layout (an upgrade): replaced by a new one");

  AgentHealth health;
  const int stats_fd = (*dp)->maps().stats();
  Agent agent(o, *underlay, public_ip, public_ip6, std::move(*etcd), std::move(*dp), &health);
  // Declared after the agent, so it stops before the agent's maps are closed.
  HealthServer hs(&health, stats_fd);
  if (o.healthz_port != 0) {
    if (auto st = hs.Start(o.healthz_ip, o.healthz_port); !st.ok())
      return Fail(std::string(st.message()));
  }
  std::thread sig([&] {
    int s = 0;
    sigwait(&sigs, &s);
    LOG_INFO("Received ", strsignal(s), ", shutting down");
    agent.Stop();
  });
  sig.detach();
  return agent.Run();
}
