#include "agent.h"

#include <net/if.h>

#include "masq.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <bpf/bpf.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "cppnet/paths.h"
#include "cppnet/version.h"
#include "cppnet/subnet_env.h"
#include "cppnet/vlan.h"
#include "log.h"

namespace cppnet {

namespace {
constexpr absl::Duration kMaxBackoff = absl::Seconds(5);
}  // namespace

Agent::Agent(AgentOptions opts, Interface underlay, uint32_t public_ip,
             unsigned __int128 public_ip6, std::unique_ptr<EtcdClient> etcd,
             std::unique_ptr<Datapath> dp, AgentHealth* health)
    : opts_(std::move(opts)),
      underlay_(std::move(underlay)),
      public_ip_(public_ip),
      public_ip6_(public_ip6),
      // From the IPv4 PublicIP, else (an IPv6-only host) from the PublicIPv6's low bits.
      vtep_mac_(VtepMacFor(public_ip ? public_ip : static_cast<uint32_t>(public_ip6))),
      etcd_(std::move(etcd)),
      dp_(std::move(dp)),
      health_(health),
      lease_mgr_(etcd_.get(), LeaseManagerOptions{opts_.etcd_prefix + "/subnets/", opts_.lease_ttl,
                                                  opts_.renew_margin}),
      route_table_(dp_->maps().routes(), dp_->maps().peers(), dp_->maps().routes6(),
                   dp_->maps().peers6()),
      reconciler_(&route_table_) {
  // What the datapath served before this start (pinned config): lets a restart after
  // a PublicIP change recognise its own old lease instead of leasing a second subnet.
  if (auto prev = ReadConfig(dp_->maps().config()); prev.ok() && (prev->flags & CPPNET_CFG_READY))
    prev_public_ip_ = ntohl(prev->underlay_ip);
  health_->etcd_connected = [etcd = etcd_.get()] { return etcd->Connected(); };
}

Agent::~Agent() {
  Stop();
  if (watcher_.joinable()) watcher_.join();
}

void Agent::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  etcd_->CancelWatch();
  cv_.notify_all();
}

void Agent::SetNotReady(const std::string& why) {
  health_->ready = false;
  std::lock_guard<std::mutex> l(health_->mu);
  health_->not_ready_reason = why;
}

void Agent::MarkEtcdOk() { health_->last_etcd_ok_unix = absl::ToUnixSeconds(absl::Now()); }

// List, then watch from the next revision; relist after compaction or a broken
// stream. Backs off 100 ms → 5 s while etcd is unreachable.
void Agent::WatchLoop() {
  const std::string prefix = opts_.etcd_prefix + "/";
  absl::Duration backoff = absl::Milliseconds(100);
  bool logged_down = false;
  int64_t next_rev = 0;  // where the watch resumes; 0: list first
  auto back_up = [&] {
    if (!logged_down) return;
    LOG_INFO("etcd ", etcd_->endpoints(), " is reachable again");
    logged_down = false;
  };
  auto wait = [&] {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, absl::ToChronoMilliseconds(backoff), [&] { return stop_; });
    backoff = std::min(backoff * 2, kMaxBackoff);
  };
  for (;;) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stop_) return;
    }
    if (next_rev == 0) {
      auto range = etcd_->RangePrefix(prefix);
      if (!range.ok()) {
        health_->etcd_errors++;
        if (!logged_down)
          LOG_ERROR("Failed to list ", prefix, ": ", range.status().message(), " (retrying)");
        logged_down = true;
        wait();
        continue;
      }
      back_up();
      backoff = absl::Milliseconds(100);
      MarkEtcdOk();
      {
        std::lock_guard<std::mutex> l(mu_);
        changes_.push_back(Change{true, std::move(range->kvs), {}});
      }
      cv_.notify_all();
      next_rev = range->revision + 1;
    }
    bool store_rewound = false;
    absl::Status st = etcd_->Watch(prefix, next_rev, [&](EtcdWatchBatch b) {
      MarkEtcdOk();
      if (b.created) {
        back_up();
        backoff = absl::Milliseconds(100);
        // A store behind what we have seen (etcd restored from an older snapshot):
        // resuming would wait for revisions that mean something else. Relist.
        store_rewound = b.revision < next_rev - 1;
        return !store_rewound;
      }
      next_rev = std::max(next_rev, b.last_event_revision + 1);
      {
        std::lock_guard<std::mutex> l(mu_);
        changes_.push_back(Change{false, std::move(b.puts), std::move(b.deletes)});
      }
      cv_.notify_all();
      return true;
    });
    if (absl::IsCancelled(st)) return;
    health_->etcd_reconnects++;
    if (absl::IsOutOfRange(st) || store_rewound) {
      LOG_WARN("Watch of ", prefix, ": ",
               store_rewound ? "etcd's store is older than what we saw" : st.message(),
               "; relisting");
      next_rev = 0;
      continue;
    }
    health_->etcd_errors++;
    if (!logged_down)
      LOG_WARN("Watch of ", prefix, " broke: ", st.message(), "; resuming from revision ",
               next_rev);
    logged_down = true;
    wait();
  }
}

int Agent::Run() {
  LOG_INFO("cppnet-agent starting: version " CPPNET_VERSION " (commit " CPPNET_COMMIT
           "), underlay ",
           underlay_.name, " (", FormatIp4(public_ip_), ", MTU ", underlay_.mtu, "), VtepMAC ",
           FormatMac(vtep_mac_), ", etcd ", etcd_->endpoints(), " prefix ", opts_.etcd_prefix);
  // Host changes arrive as rtnetlink events; the loop sleeps until one
  // comes, an etcd change arrives, or a lease timer or the watchdog is due.
  auto host = HostWatcher::Start([this](unsigned changes) {
    {
      std::lock_guard<std::mutex> l(mu_);
      host_changes_ |= changes;
    }
    cv_.notify_all();
  });
  if (!host.ok()) {
    LOG_ERROR("Cannot follow the host's interfaces: ", host.status().message());
    return 1;
  }
  host_ = std::move(*host);
  // VLAN endpoints on netkit where the kernel has it (tried once: a pair made and deleted).
  std::string device = opts_.endpoint_device;
  if (device != "veth") {
    if (absl::Status nk = NetkitSupported(); nk.ok()) {
      device = "netkit";
    } else if (device == "netkit") {
      LOG_ERROR("--endpoint-device=netkit: ", nk.message(), " (needs a kernel with CONFIG_NETKIT)");
      return 1;
    } else {
      LOG_INFO("netkit is not available (", nk.message(),
               "; a kernel without CONFIG_NETKIT): VLAN endpoints get veth pairs");
      device = "veth";
    }
  }
  LOG_INFO("VLAN endpoints: ", device, " devices");
  LOG_INFO("Overlay containers (CNI): ",
           device == "netkit" ? "netkit devices" : "veth on the bridge");
  endpoint_device_ = device;
  vlan_ = std::make_unique<VlanController>(dp_.get(), host_.get(), opts_.config_dir, underlay_.name,
                                           device);
  containers_ = std::make_unique<ContainerSide>(dp_.get(), host_.get(), opts_.container_iface);
  host_changes_ = HostWatcher::kLinks | HostWatcher::kAddrs;
  LoadNetworks();
  RestoreStaticRoutes();
  auto api = LocalApiServer::Start(
      opts_.api_socket,
      [this](const std::string& m, const nlohmann::json& p) { return Dispatch(m, p); });
  if (!api.ok()) {
    LOG_ERROR("Local API: ", api.status().message());
    return 1;
  }
  api_ = std::move(*api);
  watcher_ = std::thread([this] { WatchLoop(); });
  if (auto r = VlanResolver::Start(dp_->vlan_miss_fd(), dp_->vlan_maps().net(), dp_->vlan_nbr_fd());
      r.ok())
    resolver_ = std::move(*r);
  else
    LOG_ERROR("ipvlan l3 next-hop resolution unavailable: ", r.status().message());
  // systemd WatchdogSec=: ping at half the interval from this loop, so a wedged loop
  // gets the agent restarted.
  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  absl::Time next_watchdog = absl::InfinitePast();
  for (;;) {
    std::deque<Change> batch;
    std::deque<Call> calls;
    unsigned host_changes;
    {
      absl::Time deadline = NextDeadline();
      if (watchdog) deadline = std::min(deadline, next_watchdog);
      std::unique_lock<std::mutex> l(mu_);
      auto ready = [&] {
        return stop_ || !changes_.empty() || host_changes_ != 0 || !calls_.empty();
      };
      if (deadline == absl::InfiniteFuture())
        cv_.wait(l, ready);
      else
        cv_.wait_until(l, absl::ToChronoTime(deadline), ready);
      if (stop_) break;
      batch.swap(changes_);
      calls.swap(calls_);
      host_changes = std::exchange(host_changes_, 0);
    }
    if (host_changes) OnHostChange(host_changes);
    for (Call& c : calls) c.done->set_value(Handle(c.method, c.params));
    if (!batch.empty()) {
      const absl::Time t0 = absl::Now();
      Apply(std::move(batch));
      health_->sync_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - t0));
      health_->leases = static_cast<int64_t>(leases_.size());
    }
    Tick();
    if (watchdog && absl::Now() >= next_watchdog) {
      sd_notify(0, "WATCHDOG=1");
      next_watchdog = absl::Now() + absl::Microseconds(watchdog_usec / 2);
    }
  }
  sd_notify(0, "STOPPING=1");
  {
    // Requests that arrived with the stop get an answer (Dispatch adds none after it).
    std::lock_guard<std::mutex> l(mu_);
    for (Call& c : calls_) c.done->set_value(absl::UnavailableError("cppnet-agent is stopping"));
    calls_.clear();
  }
  api_.reset();
  vlan_.reset();
  containers_.reset();
  host_.reset();
  if (opts_.release_on_exit && lease_mgr_.held()) {
    if (auto st = lease_mgr_.Release(); st.ok())
      LOG_INFO("Released lease ", lease_mgr_.name());
    else
      LOG_ERROR("Failed to release lease ", lease_mgr_.name(), ": ", st.message());
  }
  LOG_INFO("cppnet-agent stopping; datapath stays attached and the lease stays in etcd");
  return 0;
}

void Agent::SetLease(const std::string& key, std::optional<ParsedLeaseRecord> r) {
  if (auto it = leases_.find(key); it != leases_.end()) {
    index_.Remove(*it);
    leases_.erase(it);
  }
  if (!r) return;
  index_.Add(*r);
  leases_.insert(std::move(*r));
}

void Agent::Apply(std::deque<Change> batch) {
  const std::string cfg_key = ConfigKey(), prefix = SubnetsPrefix();
  const std::string own_key = lease_mgr_.key();
  // A batch of watch events whose leases overlap no other lease (nor ours) costs what it
  // touches: their routes are computed alone. Anything else (the first list, the config, our
  // own lease, overlapping leases) is computed from all leases — once for the whole batch, so a
  // writer flooding overlapping leases costs one full computation per loop turn, not per event.
  bool full = false;
  std::set<std::string> changed;
  std::vector<Prefix4> gone;
  std::vector<Prefix6> gone6;
  // What a partial computation needs is collected only while it is still one (a first list of
  // 100,000 leases would otherwise leave their keys' memory behind in the allocator).
  auto change = [&](const std::string& key, std::optional<ParsedLeaseRecord> now) {
    full = full || key == own_key;
    if (auto it = leases_.find(key); it != leases_.end()) {
      const ParsedLeaseRecord old = *it;
      SetLease(key, std::nullopt);
      full = full || index_.Overlaps(old);
      if (old.subnet.ok() && !full) gone.push_back(*old.subnet);
      if (old.subnet6 && !full) gone6.push_back(*old.subnet6);
    }
    if (now) {
      full = full || index_.Overlaps(*now);
      SetLease(key, std::move(now));
    }
    if (!full) changed.insert(key);
  };
  for (Change& c : batch) {
    if (c.snapshot) {
      leases_.clear();
      index_.Clear();
      config_in_store_.reset();
      synced_ = true;
      full = true;
    }
    for (EtcdKV& kv : c.puts) {
      if (kv.key == cfg_key)
        config_in_store_ = kv.value;
      else if (absl::StartsWith(kv.key, prefix))
        change(kv.key, ParseLeaseRecord(prefix, LeaseRecord{kv.key, kv.value, kv.create_revision}));
    }
    if (c.snapshot && !lease_mgr_.held() && first_list_acceptable_) first_list_ = std::move(c.puts);
    for (const std::string& k : c.deletes) {
      if (k == cfg_key)
        config_in_store_.reset();
      else if (leases_.count(k))
        change(k, std::nullopt);
    }
  }
  full = full || config_in_store_ != config_text_;
  OnConfigText(config_in_store_);
  if (!own_key.empty() && !leases_.count(own_key)) {
    // Confirm with etcd: a relist read just before our own write would look the same.
    auto cur = lease_mgr_.Confirm();
    if (cur.ok() && cur->has_value()) {
      SetLease(own_key, ParseLeaseRecord(
                            prefix, LeaseRecord{own_key, (*cur)->value, (*cur)->create_revision}));
      full = true;
    }
  }
  if (full)
    Reconcile();
  else if (!changed.empty())
    ReconcileLeases({changed.begin(), changed.end()}, gone, gone6);
}

void Agent::OnConfigText(const std::optional<std::string>& text) {
  if (text == config_text_) {  // unchanged; a bad one was already logged
    if (!text && !waiting_logged_) {
      LOG_INFO("Waiting for the network config at ", ConfigKey());
      SetNotReady(absl::StrCat("no config at ", ConfigKey()));
      waiting_logged_ = true;
    }
    return;
  }
  config_text_ = text;
  if (!text) {
    LOG_WARN("Config ", ConfigKey(), " was deleted; keeping the current datapath");
    SetNotReady(absl::StrCat("no config at ", ConfigKey()));
    return;
  }
  auto parsed = ParseNetworkConfig(*text);
  if (!parsed.ok()) {
    LOG_ERROR("Bad config at ", ConfigKey(), ": ", parsed.status().message(),
              "; waiting for a good one");
    SetNotReady(std::string(parsed.status().message()));
    return;
  }
  if (config_ && subnet_ && !parsed->network.contains(*subnet_)) {
    LOG_ERROR("Config ", ConfigKey(), ": Network ", FormatPrefix4(parsed->network),
              " no longer contains our lease ", FormatPrefix4(*subnet_),
              "; restart the agent to re-lease");
    SetNotReady("Network changed");
    return;
  }
  if (parsed->enable_ipv4 && !public_ip_) {
    LOG_ERROR("Config ", ConfigKey(), ": IPv4 is enabled, but interface ", underlay_.name,
              " has no IPv4 address (add one or set --public-ip); waiting");
    SetNotReady("IPv4 without a PublicIP");
    return;
  }
  if (parsed->enable_ipv6 && !public_ip6_) {
    LOG_ERROR("Config ", ConfigKey(), ": EnableIPv6, but interface ", underlay_.name,
              " has no global IPv6 address (add one or set --public-ipv6); waiting");
    SetNotReady("EnableIPv6 without a PublicIPv6");
    return;
  }
  if (config_ && lease_mgr_.held() &&
      (parsed->enable_ipv6 != config_->enable_ipv6 || parsed->enable_ipv4 != config_->enable_ipv4 ||
       parsed->ipv6_network != config_->ipv6_network ||
       parsed->ipv6_subnet_len != config_->ipv6_subnet_len)) {
    // The IPv6 subnet is part of the lease's key: it changes with a new lease only.
    LOG_WARN("Config ", ConfigKey(),
             ": the IPv6 settings changed; they take effect when the agent restarts");
    if (parsed->enable_ipv4 != config_->enable_ipv4) {
      SetNotReady("EnableIPv4 changed: restart the agent to re-lease");
      return;
    }
    parsed->enable_ipv6 = config_->enable_ipv6;
    parsed->ipv6_network = config_->ipv6_network;
    parsed->ipv6_subnet_len = config_->ipv6_subnet_len;
    parsed->ipv6_subnet_min = config_->ipv6_subnet_min;
    parsed->ipv6_subnet_max = config_->ipv6_subnet_max;
  }
  const bool backend_changed =
      config_ && (config_->backend.type != parsed->backend.type ||
                  config_->backend.direct_routing != parsed->backend.direct_routing ||
                  config_->backend.vni != parsed->backend.vni ||
                  config_->backend.port != parsed->backend.port);
  config_ = *parsed;
  LOG_INFO("Network config: ",
           config_->enable_ipv4 ? absl::StrCat("Network ", FormatPrefix4(config_->network),
                                               ", SubnetLen ", config_->subnet_len)
                                : std::string("IPv6 only"),
           ", backend ", BackendName(config_->backend.type), " (VNI ", config_->backend.vni,
           ", port ", config_->backend.port, ")");
  if (config_->enable_ipv6)
    LOG_INFO("Network config: IPv6Network ", FormatPrefix6(*config_->ipv6_network),
             ", IPv6SubnetLen ", config_->ipv6_subnet_len, ", PublicIPv6 ", FormatIp6(public_ip6_));
  if (backend_changed && lease_mgr_.held()) {
    // Peers install only leases of the configured type: publish ours with the new one.
    auto st = RepublishLease();
    if (st.ok())
      LOG_INFO("Backend changed to ", BackendName(config_->backend.type), ": lease ",
               lease_mgr_.name(), " re-published");
    else
      LOG_ERROR("Backend changed to ", BackendName(config_->backend.type),
                ": re-publishing the lease failed: ", st.message());
  }
  if (datapath_active_) {
    if (auto st = ActivateDatapath(); !st.ok()) LOG_ERROR("Datapath: ", st.message());
  }
}

void Agent::Tick() {
  absl::Time now = absl::Now();
  if (synced_ && config_) {
    AcquireHints hints;
    if (!lease_mgr_.held()) {
      hints.previous_subnet = ReadSubnetFromEnvFile(opts_.subnet_file);
      hints.previous_subnet6 = ReadSubnet6FromEnvFile(opts_.subnet_file);
      hints.previous_source = opts_.subnet_file;
      hints.previous_public_ip = prev_public_ip_;
      if (first_list_) hints.listed = &*first_list_;
    }
    auto ev = lease_mgr_.Step(*config_, OwnLease(), hints);
    if (first_list_) {
      // Used once (a retry reads afresh); the memory of the list goes back to the system.
      first_list_.reset();
      first_list_acceptable_ = false;
      malloc_trim(0);
    }
    const absl::Time expires = lease_mgr_.expires_at();
    health_->lease_expires_unix =
        expires == absl::InfiniteFuture() ? std::numeric_limits<double>::infinity()
        : expires == absl::InfinitePast() ? std::numeric_limits<double>::quiet_NaN()
                                          : absl::ToDoubleSeconds(expires - absl::UnixEpoch());
    absl::Status st = ev.status();
    if (ev.ok() && *ev == LeaseManager::Event::kAcquired) {
      health_->lease_acquisitions++;
      const std::string key = lease_mgr_.key();
      SetLease(key, ParseLeaseRecord(SubnetsPrefix(), LeaseRecord{key, lease_mgr_.published(), 0}));
      const std::optional<Prefix6> s6 = config_->enable_ipv6 ? lease_mgr_.subnet6() : std::nullopt;
      const bool moved = subnet_ && (*subnet_ != *lease_mgr_.subnet() || subnet6_ != s6);
      subnet_ = lease_mgr_.subnet();
      subnet6_ = s6;
      if (datapath_active_ && moved) st = ActivateDatapath();  // a different subnet this time
    }
    if (st.ok() && lease_mgr_.held() && !datapath_active_) {
      st = ActivateDatapath();
      if (!st.ok()) lease_mgr_.RetryLater(st);
    }
    if (!st.ok()) {
      if (!absl::IsResourceExhausted(st)) health_->etcd_errors++;
      if (!datapath_active_) SetNotReady(std::string(st.message()));
    }
  }
  if (datapath_active_ && config_ && lease_mgr_.held()) {
    int64_t last = health_->last_etcd_ok_unix.load();
    bool etcd_recent = absl::ToUnixSeconds(now) - last < 60 || last == 0;
    if (etcd_recent && !health_->ready) {
      health_->ready = true;
      std::lock_guard<std::mutex> l(health_->mu);
      health_->not_ready_reason.clear();
    }
  }
}

// When the loop must wake without an event: a lease retry or renewal.
absl::Time Agent::NextDeadline() const {
  if (!synced_ || !config_) return absl::InfiniteFuture();
  return lease_mgr_.NextDeadline();
}

// One family of the underlay's addresses (`what`, for the log): when the set in `now` differs
// from `*had` (order aside), `*had` takes it and true is returned; if our published address
// `own` is gone and was not given as a flag (`follow`), `change` gets the first of the new ones.
template <typename P, typename A, typename F>
static bool FollowAddresses(const std::string& underlay, const char* what, std::vector<P>* had,
                            const std::vector<P>& now, A own, bool follow, F change) {
  auto sorted = [](std::vector<P> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  if (sorted(now) == sorted(*had)) return false;
  LOG_INFO("Underlay ", underlay, " ", what, " changed; re-evaluating routes");
  *had = now;
  const bool still_ours =
      std::any_of(now.begin(), now.end(), [&](const P& a) { return a.addr == own; });
  if (follow && !still_ours && !now.empty()) change(now[0].addr);
  return true;
}

// Links, addresses or networks.d changed (and once at start): everything that depends
// on the host's interfaces is brought up to date from the watcher's caches.
void Agent::OnHostChange(unsigned changes) {
  health_->host_events++;
  health_->netlink_dumps = static_cast<int64_t>(host_->dumps());
  if (datapath_active_) containers_->Sync(subnet_, subnet6_);
  vlan_->Sync();
  if (datapath_active_ && (changes & (HostWatcher::kQdiscs | HostWatcher::kLinks))) SyncQueued();
  if (changes & (HostWatcher::kQdiscs | HostWatcher::kLinks)) SyncRates();
  if (datapath_active_ && (changes & HostWatcher::kAddrs)) {
    // Follow the underlay's addresses: host-gw reachability depends on its prefixes,
    // and our PublicIP may change under us (DHCP, renumbering).
    auto cur = host_->Find(underlay_.name);
    if (!cur) return;
    if (FollowAddresses(underlay_.name, "addresses", &underlay_.addrs, cur->addrs, public_ip_,
                        opts_.public_ip.empty(), [this](uint32_t ip) { ChangePublicIp(ip); }))
      Reconcile();
    // The same for IPv6: host-gw over IPv6 and the PublicIPv6 (when not given as a flag).
    if (FollowAddresses(underlay_.name, "IPv6 addresses", &underlay_.addrs6, cur->addrs6,
                        public_ip6_, opts_.public_ip6.empty(),
                        [this](unsigned __int128 ip) { ChangePublicIp6(ip); }))
      Reconcile();
  }
}

// The IPv6 twin of ChangePublicIp: the same lease re-published with the new PublicIPv6.
void Agent::ChangePublicIp6(unsigned __int128 ip) {
  LOG_INFO("PublicIPv6 changed from ", FormatIp6(public_ip6_), " to ", FormatIp6(ip));
  public_ip6_ = ip;
  if (!public_ip_) vtep_mac_ = VtepMacFor(static_cast<uint32_t>(ip));  // derived from it
  if (lease_mgr_.held() && config_ && config_->enable_ipv6) {
    if (auto st = RepublishLease(); st.ok())
      LOG_INFO("Lease ", lease_mgr_.name(), " re-published with PublicIPv6 ", FormatIp6(ip));
    else
      LOG_ERROR("Re-publishing lease ", lease_mgr_.name(), " with PublicIPv6 ", FormatIp6(ip), ": ",
                st.message());
  }
  if (auto st = ActivateDatapath(); !st.ok()) LOG_ERROR("Datapath: ", st.message());
}

// Container veths with a queueing root qdisc (the bandwidth CNI plugin's tbf, the container's
// ingress rate): the datapath delivers to them through the qdisc instead of straight into the
// namespace, which would bypass it.
void Agent::SyncQueued() {
  std::map<int, uint32_t> want;
  auto veth = [&](int ifindex) {
    auto l = host_->FindByIndex(ifindex);
    return l && l->kind == "veth";
  };
  for (int ifindex : host_->Queued())
    if (veth(ifindex)) want[ifindex] |= CPPNET_QUEUED_ROOT;
  for (int ifindex : host_->WithIngressQdisc())
    if (veth(ifindex)) want[ifindex] |= CPPNET_QUEUED_INGRESS;
  if (queued_synced_ && want == queued_) return;
  const int fd = dp_->queued_fd();
  for (const auto& [i, flags] : queued_)
    if (!want.count(i)) (void)bpf_map_delete_elem(fd, &i);
  for (const auto& [i, flags] : want) {
    auto it = queued_.find(i);
    if (it != queued_.end() && it->second == flags) continue;
    if (bpf_map_update_elem(fd, &i, &flags, BPF_ANY) != 0) {
      LOG_ERROR("map " CPPNET_MAP_QUEUED ": ifindex ", i, ": ", strerror(errno));
      continue;
    }
    LOG_INFO(
        "Container veth ifindex ", i, " has the bandwidth plugin's qdiscs:",
        (flags & CPPNET_QUEUED_ROOT) ? " ingress rate (delivered through its qdisc)" : "",
        (flags & CPPNET_QUEUED_INGRESS) ? " egress rate (its packets go through the kernel)" : "");
  }
  queued_ = std::move(want);
  queued_synced_ = true;
  if (auto cfg = ReadConfig(dp_->maps().config()); cfg.ok()) {
    const uint8_t flags = queued_.empty() ? (cfg->flags & ~CPPNET_CFG_QUEUED_PORTS)
                                          : (cfg->flags | CPPNET_CFG_QUEUED_PORTS);
    if (flags != cfg->flags) {
      cfg->flags = flags;
      (void)WriteConfig(dp_->maps().config(), *cfg);
    }
  }
}

// VLAN endpoints with the bandwidth plugin's egress rate (an "ingress" qdisc on the host veth):
// their rate, burst and queue, read from the plugin's tbf, as an htb class of the pacing device
// (abi.h CPPNET_PACE_DEV) that the endpoint program hands their frames to.
void Agent::SyncRates() {
  std::map<int, MirroredRate> want;
  for (int ifindex : host_->WithIngressQdisc()) {
    cppnet_vlan_port port;
    if (bpf_map_lookup_elem(dp_->vlan_maps().port(), &ifindex, &port) != 0) continue;
    auto r = MirroredTbfRate(ifindex);
    if (!r.ok()) {
      LOG_WARN("VLAN endpoint veth ifindex ", ifindex, ": egress rate: ", r.status().message());
      continue;
    }
    if (*r) want[ifindex] = **r;
  }
  if (want.empty() && rates_.empty()) return;
  if (!want.empty() && !pace_) {
    auto devs = EnsurePaceDevices();
    if (!devs.ok()) {
      LOG_ERROR("Egress rates of VLAN endpoints: ", devs.status().message());
      return;
    }
    if (auto st = dp_->AttachPaced(devs->second, CPPNET_PACED_DEV); !st.ok()) {
      LOG_ERROR("Egress rates of VLAN endpoints: ", st.message());
      return;
    }
    pace_ = *devs;
  }
  const int fd = dp_->rates_fd();
  for (auto it = rates_.begin(); it != rates_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    (void)bpf_map_delete_elem(fd, &it->first);
    if (auto st = DeletePaceClass(pace_->first, pace_class_[it->first]); !st.ok())
      LOG_WARN(st.message());
    LOG_INFO("VLAN endpoint veth ifindex ", it->first, ": egress rate removed");
    pace_class_.erase(it->first);
    it = rates_.erase(it);
  }
  for (const auto& [i, r] : want) {
    auto it = rates_.find(i);
    if (it != rates_.end() && it->second.rate == r.rate && it->second.burst == r.burst &&
        it->second.limit == r.limit)
      continue;
    uint32_t minor = pace_class_.count(i) ? pace_class_[i] : 0;
    // A class per endpoint, 1:1 … 1:7fff (the bfifo under it takes major minor + 1).
    for (uint32_t n = 0; !minor && n < 0x7fff; n++) {
      const uint32_t m = (static_cast<uint32_t>(i) + n) % 0x7fff + 1;
      bool taken = false;
      for (const auto& [other, om] : pace_class_) taken |= om == m;
      if (!taken) minor = m;
    }
    if (!minor) {
      LOG_ERROR("VLAN endpoint veth ifindex ", i, ": egress rate: no htb class left");
      continue;
    }
    if (auto st = SetPaceClass(pace_->first, minor, r); !st.ok()) {
      LOG_ERROR("VLAN endpoint veth ifindex ", i, ": egress rate: ", st.message());
      continue;
    }
    const uint32_t classid = CPPNET_PACE_HTB | minor;
    if (bpf_map_update_elem(fd, &i, &classid, BPF_ANY) != 0) {
      LOG_ERROR("map " CPPNET_MAP_RATES ": ifindex ", i, ": ", strerror(errno));
      continue;
    }
    pace_class_[i] = minor;
    rates_[i] = r;
    LOG_INFO("VLAN endpoint veth ifindex ", i, ": egress rate ", r.rate * 8, " bit/s, burst ",
             r.burst, " bytes, limit ", r.limit, " bytes (the bandwidth plugin's tbf): paced by ",
             CPPNET_PACE_DEV, " class 1:", absl::Hex(minor));
  }
  const uint32_t zero = 0, dev = rates_.empty() ? 0 : static_cast<uint32_t>(pace_->first);
  if (bpf_map_update_elem(dp_->pacing_fd(), &zero, &dev, BPF_ANY) != 0)
    LOG_ERROR("map " CPPNET_MAP_PACING ": ", strerror(errno));
}

// VLAN networks (VlanController) read again; the underlay program learns whether an
// untagged network shares the underlay.
void Agent::LoadNetworks() {
  vlan_->Load();
  if (!datapath_active_) return;
  if (auto cfg = ReadConfig(dp_->maps().config()); cfg.ok()) {
    const uint8_t flags = vlan_->UntaggedOnUnderlay() ? (cfg->flags | CPPNET_CFG_UNTAGGED_VLAN)
                                                      : (cfg->flags & ~CPPNET_CFG_UNTAGGED_VLAN);
    if (flags != cfg->flags) {
      cfg->flags = flags;
      (void)WriteConfig(dp_->maps().config(), *cfg);
    }
  }
}

// Our address moved: publish the same subnet under the new PublicIP (no second lease)
// and point the datapath at it.
void Agent::ChangePublicIp(uint32_t ip) {
  LOG_INFO("PublicIP changed from ", FormatIp4(public_ip_), " to ", FormatIp4(ip));
  public_ip_ = ip;
  vtep_mac_ = VtepMacFor(ip);
  etcd_->Reconnect();  // connections from the old address are dead
  if (lease_mgr_.held()) {
    if (auto st = RepublishLease(); st.ok()) {
      LOG_INFO("Lease ", lease_mgr_.name(), " re-published with PublicIP ", FormatIp4(ip));
    } else {
      LOG_ERROR("Re-publishing lease ", lease_mgr_.name(), " with PublicIP ", FormatIp4(ip), ": ",
                st.message());
    }
  }
  if (auto st = ActivateDatapath(); !st.ok()) LOG_ERROR("Datapath: ", st.message());
}

// Our lease, rewritten in place under the same etcd lease with our current data
// (backend, PublicIP); the cache is updated at once rather than by the watch echo.
absl::Status Agent::RepublishLease() {
  if (auto st = lease_mgr_.Republish(OwnLease()); !st.ok()) return st;
  const std::string key = lease_mgr_.key();
  SetLease(key, ParseLeaseRecord(SubnetsPrefix(), LeaseRecord{key, lease_mgr_.published(), 0}));
  return absl::OkStatus();
}

Lease Agent::OwnLease() const {
  // An IPv6-only network's lease carries no PublicIP.
  Lease l{config_->enable_ipv4 ? public_ip_ : 0, BackendName(config_->backend.type)};
  if (config_->backend.type == CPPNET_BACKEND_VXLAN) {
    l.vni = config_->backend.vni;
    l.vtep_mac = vtep_mac_;
  }
  l.cppnet_datapath = config_->backend.type == CPPNET_BACKEND_UDP;
  if (config_->enable_ipv6) {
    // One VTEP for both families: the same MAC in BackendV6Data.
    l.public_ip6 = public_ip6_;
    l.vni6 = l.vni;
    l.vtep_mac6 = l.vtep_mac;
  }
  return l;
}

absl::Status Agent::ActivateDatapath() {
  const NetworkConfig& cfg = *config_;
  const int mtu = cfg.ContainerMtu(underlay_.mtu);
  // IPv6 only: no IPv4 lines (SubnetEnv's IPv4 subnet of length 0).
  SubnetEnv env{cfg.network, subnet_.value_or(Prefix4{}), mtu, opts_.ip_masq};
  if (subnet6_) {
    env.network6 = cfg.ipv6_network;
    env.subnet6 = subnet6_;
  }
  if (auto st = WriteFileAtomically(opts_.subnet_file, RenderSubnetEnv(env)); !st.ok())
    return absl::InternalError(absl::StrCat("subnet file ", st.message()));

  cppnet_config c{};
  // IPv6 only: subnet_len 0 turns the programs' IPv4 paths off.
  c.subnet_addr = subnet_ ? htonl(subnet_->addr) : 0;
  c.subnet_len = subnet_ ? subnet_->len : 0;
  c.network_addr = htonl(cfg.network.addr);
  c.network_len = cfg.network.len;
  c.underlay_ip = subnet_ ? htonl(public_ip_) : 0;
  c.underlay_ifindex = underlay_.ifindex;
  c.container_ifindex = containers_->ifindex();
  c.vni = cfg.backend.vni;
  c.port = cfg.backend.port;
  c.mtu = static_cast<uint16_t>(underlay_.mtu);
  c.backend = cfg.backend.type;
  c.flags = CPPNET_CFG_READY | (vlan_->UntaggedOnUnderlay() ? CPPNET_CFG_UNTAGGED_VLAN : 0) |
            (queued_.empty() ? 0 : CPPNET_CFG_QUEUED_PORTS);
  memcpy(c.underlay_mac, underlay_.mac.data(), 6);
  memcpy(c.vtep_mac, vtep_mac_.data(), 6);
  if (subnet6_) {
    memcpy(c.subnet6, ToBytes6(subnet6_->addr).data(), 16);
    c.subnet6_len = subnet6_->len;
    memcpy(c.network6, ToBytes6(cfg.ipv6_network->addr).data(), 16);
    c.network6_len = cfg.ipv6_network->len;
    memcpy(c.underlay_ip6, ToBytes6(public_ip6_).data(), 16);
  }
  SyncHostDevices(mtu);
  if (host_devs_) {
    c.host_ifindex = static_cast<uint32_t>(host_devs_->host_ifindex);
    c.soft_ifindex = static_cast<uint32_t>(host_devs_->soft_ifindex);
    memcpy(c.host_mac, host_devs_->host_mac.data(), 6);
  }
  if (auto st = WriteConfig(dp_->maps().config(), c); !st.ok()) return st;
  if (!datapath_active_) {
    if (auto st = dp_->AttachUnderlay(underlay_.ifindex, underlay_.name); !st.ok()) return st;
  }
  SyncMasquerade();
  // XDP opens tunnel packets earliest, but only the tunnel backends need it, and on a
  // veth underlay an XDP program takes segmentation offload away from the peer, which
  // costs far more than it saves: there the tc program decapsulates.
  const bool xdp_decap =
      opts_.decap == "xdp" || (opts_.decap == "auto" && underlay_.kind != "veth");
  const bool want_xdp = xdp_decap && cfg.backend.type != CPPNET_BACKEND_HOSTGW;
  if (!datapath_active_ || want_xdp != xdp_attached_) {
    if (want_xdp) {
      if (auto st = dp_->AttachXdp(underlay_.ifindex, underlay_.name); !st.ok()) return st;
    } else {
      dp_->DetachXdp(underlay_.name);
    }
    xdp_attached_ = want_xdp;
  }
  if (!datapath_active_) {
    LOG_INFO("Datapath attached: tc ingress on ", underlay_.name,
             want_xdp                                    ? " with XDP decapsulation"
             : cfg.backend.type == CPPNET_BACKEND_HOSTGW ? ""
                                                         : " (decapsulation in tc)",
             ", tc encapsulation on the container side; subnet file ", opts_.subnet_file, " (MTU ",
             mtu, ")");
    datapath_active_ = true;
    containers_->Sync(subnet_, subnet6_);  // later changes come as host events
    SyncQueued();
    sd_notify(0, absl::StrCat("READY=1\nSTATUS=Lease ", lease_mgr_.name()).c_str());
  }
  Reconcile();
  return absl::OkStatus();
}

// The host's side of the overlay (CPPNET_HOST_DEV): its overlay address, the subnet's .0 as
// flanneld's flannel.1 has it, and the route to the Network through the device, whose tc
// program carries the host's own traffic to other hosts' containers; also the soft device
// for userspace udp peers. Without it the host cannot reach remote containers and such
// peers get unfinished checksums (logged; containers are unaffected).
void Agent::SyncHostDevices(int mtu) {
  if (host_devs_ && host_devs_->host_ifindex != static_cast<int>(if_nametoindex(CPPNET_HOST_DEV)))
    host_devs_.reset();                               // removed (or replaced) behind our back
  const uint32_t addr = subnet_ ? subnet_->addr : 0;  // 0: IPv6 only
  // Dual stack: the IPv6 subnet's first address (::0), as flanneld's flannel-v6.1 holds it.
  const std::optional<unsigned __int128> addr6 =
      subnet6_ ? std::optional(subnet6_->addr) : std::nullopt;
  if (host_devs_ && host_addr_ == addr && host_addr6_ == addr6 && host_mtu_ == mtu) return;
  auto devs = EnsureHostDevices(mtu, addr6.has_value());
  absl::Status st =
      devs.ok() ? dp_->AttachHost(devs->host_ifindex, CPPNET_HOST_DEV) : devs.status();
  if (st.ok() && addr)
    st = SetHostAddress(devs->host_ifindex, CPPNET_HOST_DEV, addr, config_->network);
  if (st.ok() && addr6)
    st = SetHostAddress6(devs->host_ifindex, CPPNET_HOST_DEV, *addr6, *config_->ipv6_network);
  if (!st.ok()) {
    LOG_ERROR("the host's own overlay traffic (", CPPNET_HOST_DEV, "): ", st.message());
    host_devs_.reset();
    return;
  }
  if (addr && (!host_devs_ || host_addr_ != addr))
    LOG_INFO("Host overlay address ", FormatIp4(addr), " on ", CPPNET_HOST_DEV, ", route ",
             FormatPrefix4(config_->network), " through it (MTU ", mtu, ")");
  if (addr6 && (!host_devs_ || host_addr6_ != addr6))
    LOG_INFO("Host overlay address ", FormatIp6(*addr6), " on ", CPPNET_HOST_DEV, ", route ",
             FormatPrefix6(*config_->ipv6_network), " through it");
  host_devs_ = *devs;
  host_addr_ = addr;
  host_addr6_ = addr6;
  host_mtu_ = mtu;
}

// --ip-masq: flanneld's masquerading rules for our Network and subnet; without the
// flag, a table left by an earlier run with it is removed. Failures are logged and
// retried on the next activation; forwarding does not depend on them.
void Agent::SyncMasquerade() {
  MasqSpec want;
  if (opts_.ip_masq && subnet_) want.v4.emplace(config_->network, *subnet_);
  if (opts_.ip_masq && subnet6_) want.v6.emplace(*config_->ipv6_network, *subnet6_);
  if (masq_synced_ && want == masq_) return;
  absl::Status st = InstallMasquerade(want);
  if (!st.ok()) {
    LOG_ERROR("IP masquerading: ", st.message());
    return;
  }
  if (want.v4)
    LOG_INFO("IP masquerading: traffic from ", FormatPrefix4(want.v4->first),
             " leaving it is masqueraded (nftables table ip cppnet)");
  if (want.v6)
    LOG_INFO("IP masquerading: traffic from ", FormatPrefix6(want.v6->first),
             " leaving it is masqueraded (nftables table ip6 cppnet)");
  masq_ = want;
  masq_synced_ = true;
}

void Agent::Reconcile() {
  if (!synced_ || !config_ || !datapath_active_) return;
  std::vector<const ParsedLeaseRecord*> all;
  all.reserve(leases_.size());
  for (const ParsedLeaseRecord& r : leases_) all.push_back(&r);
  DesiredRoutes want = ComputeRoutes(*config_, subnet_, std::move(all), underlay_.addrs,
                                     SubnetsPrefix(), underlay_.name, subnet6_, underlay_.addrs6);
  // Log each skipped lease once per reason, not on every change of other leases.
  std::map<std::string, std::string> skipped;
  for (const SkippedLease& s : want.skipped) {
    auto it = skip_logged_.find(s.key);
    if (it == skip_logged_.end() || it->second != s.reason)
      LOG_WARN("Skipping lease ", s.key, ": ", s.reason);
    skipped[s.key] = s.reason;
  }
  skip_logged_.swap(skipped);
  health_->leases_skipped = static_cast<int64_t>(skip_logged_.size());
  auto n = reconciler_.Apply(want);
  if (!n.ok()) {
    LOG_ERROR(n.status().message());
    return;
  }
  health_->routes = *n;
  health_->routes_pending = reconciler_.pending();
  // The full computation's temporaries (a copy of every route) go back to the system: with
  // 100,000 leases they would otherwise stay in the agent's resident memory.
  want = DesiredRoutes{};
  malloc_trim(0);
}

void Agent::ReconcileLeases(const std::vector<std::string>& keys, const std::vector<Prefix4>& gone,
                            const std::vector<Prefix6>& gone6) {
  if (!synced_ || !config_ || !datapath_active_) return;
  std::vector<const ParsedLeaseRecord*> some;
  std::map<std::string, std::string> logged;
  for (const std::string& k : keys) {
    if (auto it = leases_.find(k); it != leases_.end()) some.push_back(&*it);
    if (auto it = skip_logged_.find(k); it != skip_logged_.end()) {
      logged[k] = it->second;
      skip_logged_.erase(it);
    }
  }
  DesiredRoutes want = ComputeRoutes(*config_, subnet_, std::move(some), underlay_.addrs,
                                     SubnetsPrefix(), underlay_.name, subnet6_, underlay_.addrs6);
  for (const SkippedLease& s : want.skipped) {
    auto it = logged.find(s.key);
    if (it == logged.end() || it->second != s.reason)
      LOG_WARN("Skipping lease ", s.key, ": ", s.reason);
    skip_logged_[s.key] = s.reason;
  }
  health_->leases_skipped = static_cast<int64_t>(skip_logged_.size());
  reconciler_.ApplyLeases(gone, gone6, want);
  health_->routes = reconciler_.lease_routes();
  health_->routes_pending = reconciler_.pending();
}

}  // namespace cppnet
