#include "lease_manager.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "log.h"

namespace cppnet {

namespace {
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(5);
constexpr absl::Duration kOutOfSubnetsMaxBackoff = absl::Seconds(10);
constexpr absl::Duration kMinRenewal = absl::Seconds(10);
}  // namespace

LeaseManager::LeaseManager(SubnetRegistry* registry, LeaseManagerOptions opts, Clock now)
    : registry_(registry), opts_(std::move(opts)), now_(std::move(now)) {}

std::string LeaseManager::key() const {
  if (subnet_) return opts_.subnets_prefix + FormatSubnetKey(*subnet_, subnet6_);
  return subnet6_ ? opts_.subnets_prefix + FormatSubnetKey6(*subnet6_) : "";
}

absl::Time LeaseManager::NextDeadline() const {
  if (!held()) return retry_at_;
  return std::max(retry_at_, renew_at_);
}

void LeaseManager::RetryLater(const absl::Status& why) {
  const absl::Time now = now_();
  // Every failure while backing off, then once a minute: a long etcd outage must not
  // fill the journal.
  if (backoff_ < kMaxBackoff || now - last_retry_log_ >= absl::Minutes(1)) {
    LOG_ERROR(why.message(), " (retrying in ", absl::FormatDuration(backoff_), ")");
    last_retry_log_ = now;
  }
  retry_at_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2,
                      absl::IsResourceExhausted(why) ? kOutOfSubnetsMaxBackoff : kMaxBackoff);
  failing_ = true;
}

absl::StatusOr<LeaseManager::Event> LeaseManager::Step(const NetworkConfig& cfg, const Lease& own,
                                                       const AcquireHints& hints) {
  const absl::Time now = now_();
  if (now < retry_at_) return Event::kNone;
  absl::StatusOr<Event> ev = Event::kNone;
  if (!held())
    ev = Acquire(cfg, own, hints);
  else if (now >= renew_at_)
    ev = Renew();
  if (!ev.ok()) {
    RetryLater(ev.status());
    return ev;
  }
  if (failing_ && *ev != Event::kNone) {
    LOG_INFO("Lease operations succeed again");
    failing_ = false;
  }
  if (*ev != Event::kNone) backoff_ = kFirstBackoff;
  return ev;
}

void LeaseManager::ScheduleRenewal(absl::Duration ttl) {
  const absl::Duration margin = opts_.renew_margin < ttl ? opts_.renew_margin : ttl * 2 / 3;
  expires_at_ = now_() + ttl;
  renew_at_ = now_() + std::max(ttl - margin, kMinRenewal);
}

std::string LeaseManager::name() const {
  if (subnet_ && subnet6_)
    return absl::StrCat(FormatPrefix4(*subnet_), " and ", FormatPrefix6(*subnet6_));
  if (subnet_) return FormatPrefix4(*subnet_);
  return subnet6_ ? FormatPrefix6(*subnet6_) : "";
}

void LeaseManager::Held(std::optional<Prefix4> s, std::optional<Prefix6> s6, int64_t lease_id,
                        const std::string& value, const std::string& how) {
  subnet_ = s;
  subnet6_ = s6;
  lease_id_ = lease_id;
  value_ = value;
  if (lease_id)
    ScheduleRenewal(opts_.ttl);
  else
    renew_at_ = absl::InfiniteFuture();  // a reservation does not expire
  LOG_INFO("Lease acquired: ", name(), " (", how, ")");
}

std::optional<Prefix6> LeaseManager::PickSubnet6(const NetworkConfig& cfg,
                                                 const std::vector<Prefix6>& taken,
                                                 std::optional<Prefix6> want) {
  if (!cfg.enable_ipv6 || !cfg.ipv6_network) return std::nullopt;
  if (want) {
    const Prefix6 w{want->addr & Prefix6{0, cfg.ipv6_subnet_len}.mask(), cfg.ipv6_subnet_len};
    if (w.addr >= cfg.ipv6_subnet_min && w.addr <= cfg.ipv6_subnet_max &&
        std::none_of(taken.begin(), taken.end(), [&](const Prefix6& t) { return t.overlaps(w); }))
      return w;
  }
  static std::mt19937_64 rng{std::random_device{}()};
  std::vector<Prefix6> free = FreeSubnets6(cfg, taken, 1, rng);
  if (free.empty()) return std::nullopt;
  return free[0];
}

// An IPv6-only network: the same order (our PublicIPv6's lease, the previous subnet, a random
// free one) over IPv6-only keys. The caller revokes `lease_id` on failure or reservation.
absl::StatusOr<LeaseManager::Event> LeaseManager::AcquireIpv6Only(
    const NetworkConfig& cfg, const Lease& own, const AcquireHints& hints, int64_t lease_id,
    const std::string& value, const std::vector<EtcdKV>& existing) {
  const std::string& prefix = opts_.subnets_prefix;
  std::vector<Prefix6> taken6;
  for (const EtcdKV& kv : existing) {
    absl::string_view name = kv.key;
    if (!absl::ConsumePrefix(&name, prefix)) continue;
    if (auto s6 = ParseSubnetKey6(name); s6.ok() && s6->has_value()) taken6.push_back(**s6);
  }
  for (const EtcdKV& kv : existing) {
    absl::string_view name = kv.key;
    if (!absl::ConsumePrefix(&name, prefix) || !IsIpv6OnlyKey(name)) continue;
    auto s6 = ParseSubnetKey6(name);
    auto l = ParseLease(kv.value);
    if (!s6.ok() || !l.ok() || l->public_ip6 != own.public_ip6 ||
        !cfg.ipv6_network->contains(**s6) || (*s6)->len != cfg.ipv6_subnet_len)
      continue;
    const bool reserved = kv.lease == 0;
    auto ok =
        registry_->ReplaceIfUnchanged(kv.key, value, reserved ? 0 : lease_id, kv.mod_revision);
    if (!ok.ok()) return ok.status();
    if (!*ok) continue;
    Held(std::nullopt, **s6, reserved ? 0 : lease_id, value,
         reserved ? "reservation of this PublicIPv6" : "reclaimed the lease of this PublicIPv6");
    return Event::kAcquired;
  }
  LOG_INFO("Picking IPv6 subnet in range ", FormatIp6(cfg.ipv6_subnet_min), " ... ",
           FormatIp6(cfg.ipv6_subnet_max));
  std::optional<Prefix6> want = hints.previous_subnet6;
  for (int i = 0; i < 8; i++, want.reset()) {
    std::optional<Prefix6> s6 = PickSubnet6(cfg, taken6, want);
    if (!s6)
      return absl::ResourceExhaustedError(
          absl::StrCat("out of IPv6 subnets in ", FormatPrefix6(*cfg.ipv6_network)));
    auto ok = registry_->CreateIfAbsent(prefix + FormatSubnetKey6(*s6), value, lease_id);
    if (!ok.ok()) return ok.status();
    if (*ok) {
      Held(std::nullopt, s6, lease_id, value,
           want ? absl::StrCat("from ", hints.previous_source) : "new");
      return Event::kAcquired;
    }
    taken6.push_back(*s6);
  }
  return absl::UnavailableError("every IPv6 subnet tried was taken concurrently; retrying");
}

absl::StatusOr<LeaseManager::Event> LeaseManager::Acquire(const NetworkConfig& cfg,
                                                          const Lease& own,
                                                          const AcquireHints& hints) {
  auto grant = registry_->GrantLease(opts_.ttl);
  if (!grant.ok()) return grant.status();
  const int64_t lease_id = *grant;
  const std::string value = SerializeLease(own);
  const std::string& prefix = opts_.subnets_prefix;
  auto fail = [&](absl::Status st) {  // do not leave an unused etcd lease behind
    (void)registry_->RevokeLease(lease_id);
    return st;
  };
  // Fresh from etcd, not the watch cache: our own last write may still be in flight.
  const std::vector<EtcdKV>* existing = hints.listed;
  absl::StatusOr<EtcdRange> fresh;
  if (!existing) {
    fresh = registry_->RangePrefix(prefix);
    if (!fresh.ok()) return fail(fresh.status());
    existing = &fresh->kvs;
  }
  if (!cfg.enable_ipv4) {
    auto ev = AcquireIpv6Only(cfg, own, hints, lease_id, value, *existing);
    if (!ev.ok()) return fail(ev.status());
    if (reservation()) (void)registry_->RevokeLease(lease_id);
    return ev;
  }
  // 1. A lease that already carries our PublicIP: take it over with our current data.
  //    A reservation (a key written without TTL) stays one: rewritten without a lease.
  //    With IPv6 enabled, a lease of ours without an IPv6 subnet is replaced by a dual-stack
  //    key for the same IPv4 subnet (step 2); a reservation is used as it is.
  struct Keyed {  // an existing key with its subnets, parsed once
    const EtcdKV* kv;
    Prefix4 s;
    std::optional<Prefix6> s6;
  };
  std::vector<Keyed> keys;
  std::vector<Prefix4> taken;
  std::vector<Prefix6> taken6;
  std::optional<Prefix4> previous = hints.previous_subnet;
  std::string previous_source = hints.previous_source;
  for (const EtcdKV& kv : *existing) {
    absl::string_view name = kv.key;
    if (!absl::ConsumePrefix(&name, prefix)) continue;
    auto s = ParseSubnetKey(name);
    if (!s.ok()) continue;
    keys.push_back({&kv, *s, *ParseSubnetKey6(name)});
    taken.push_back(*s);
    if (keys.back().s6) taken6.push_back(*keys.back().s6);
  }
  const std::string own_ip = FormatIp4(own.public_ip);
  for (const auto& [kvp, s, s6] : keys) {
    const EtcdKV& kv = *kvp;
    // Most leases are other hosts': a value without our address text is none of ours (unless
    // its JSON spells characters as \u escapes, which flanneld and cppnet never write).
    if (kv.value.find(own_ip) == std::string::npos && kv.value.find("\\u") == std::string::npos)
      continue;
    auto l = ParseLease(kv.value);
    if (!l.ok() || l->public_ip != own.public_ip || !cfg.network.contains(s) ||
        s.len != cfg.subnet_len)
      continue;
    const bool reserved = kv.lease == 0;
    const bool v6_usable =
        s6 && cfg.ipv6_network && cfg.ipv6_network->contains(*s6) && s6->len == cfg.ipv6_subnet_len;
    if (cfg.enable_ipv6 && !v6_usable && !reserved) {
      // Re-keyed below as a dual-stack lease of the same IPv4 subnet.
      auto del = registry_->Delete(kv.key);
      if (!del.ok()) return fail(del.status());
      taken.erase(std::find(taken.begin(), taken.end(), s));
      if (s6) taken6.erase(std::find(taken6.begin(), taken6.end(), *s6));
      previous = s;
      previous_source = absl::StrCat("our IPv4-only lease ", kv.key, " (IPv6 now enabled)");
      break;
    }
    if (cfg.enable_ipv6 && !v6_usable)
      LOG_WARN("Reservation ", kv.key, " has no IPv6 subnet in IPv6Network: IPv4 only");
    auto ok =
        registry_->ReplaceIfUnchanged(kv.key, value, reserved ? 0 : lease_id, kv.mod_revision);
    if (!ok.ok()) return fail(ok.status());
    if (!*ok) continue;
    if (reserved) {
      (void)registry_->RevokeLease(lease_id);
      Held(s, s6, 0, value, "reservation of this PublicIP");
    } else {
      Held(s, s6, lease_id, value, "reclaimed the lease of this PublicIP");
    }
    return Event::kAcquired;
  }
  auto v6_or_fail = [&](std::optional<Prefix6>* s6) {
    *s6 = PickSubnet6(cfg, taken6, hints.previous_subnet6);
    return !cfg.enable_ipv6 || s6->has_value();
  };
  std::optional<Prefix6> s6;
  if (!v6_or_fail(&s6))
    return fail(absl::ResourceExhaustedError(
        absl::StrCat("out of IPv6 subnets in ", FormatPrefix6(*cfg.ipv6_network))));
  // 2. The subnet we had before (subnet.env), when its key is free, or still held by
  //    our own lease under the PublicIP we had before (changed while we were down).
  if (previous) {
    const Prefix4 s{previous->addr & Prefix4{0, cfg.subnet_len}.mask(), cfg.subnet_len};
    const std::string key = prefix + FormatSubnetKey(s, s6);
    if (cfg.network.contains(s) && s.addr >= cfg.subnet_min && s.addr <= cfg.subnet_max &&
        std::none_of(taken.begin(), taken.end(), [&](const Prefix4& t) { return t.overlaps(s); })) {
      auto ok = registry_->CreateIfAbsent(key, value, lease_id);
      if (!ok.ok()) return fail(ok.status());
      if (*ok) {
        Held(s, s6, lease_id, value, absl::StrCat("from ", previous_source));
        return Event::kAcquired;
      }
    }
    const uint32_t prev_ip = hints.previous_public_ip;
    if (prev_ip && prev_ip != own.public_ip) {
      const std::string v4key = FormatSubnetKey(s);
      for (const EtcdKV& kv : *existing) {
        absl::string_view name = kv.key;
        if (!absl::ConsumePrefix(&name, prefix) || name.substr(0, name.find('&')) != v4key)
          continue;
        auto l = ParseLease(kv.value);
        if (!l.ok() || l->public_ip != prev_ip) break;
        const std::optional<Prefix6> old6 = *ParseSubnetKey6(name);
        auto ok = registry_->ReplaceIfUnchanged(kv.key, value, lease_id, kv.mod_revision);
        if (!ok.ok()) return fail(ok.status());
        if (*ok) {
          if (kv.lease) (void)registry_->RevokeLease(kv.lease);  // nothing left to hold
          Held(s, old6, lease_id, value,
               absl::StrCat("ours from before the PublicIP change ", FormatIp4(prev_ip), " -> ",
                            FormatIp4(own.public_ip)));
          return Event::kAcquired;
        }
      }
    }
  }
  // 3. A random free one, as flanneld picks.
  LOG_INFO("Picking subnet in range ", FormatIp4(cfg.subnet_min), " ... ",
           FormatIp4(cfg.subnet_max));
  std::vector<Prefix4> free = FreeSubnets(cfg, taken, 1 << 16);
  if (free.empty())
    return fail(absl::ResourceExhaustedError(
        absl::StrCat("out of subnets in ", FormatPrefix4(cfg.network))));
  static std::mt19937_64 rng{std::random_device{}()};
  std::shuffle(free.begin(), free.end(), rng);
  for (size_t i = 0; i < free.size() && i < 8; i++) {
    auto ok = registry_->CreateIfAbsent(prefix + FormatSubnetKey(free[i], s6), value, lease_id);
    if (!ok.ok()) return fail(ok.status());
    if (*ok) {
      Held(free[i], s6, lease_id, value, "new");
      return Event::kAcquired;
    }
  }
  return fail(absl::UnavailableError("every subnet tried was taken concurrently; retrying"));
}

absl::StatusOr<LeaseManager::Event> LeaseManager::Renew() {
  auto ttl = registry_->KeepAliveOnce(lease_id_);
  if (!ttl.ok()) return ttl.status();
  if (*ttl <= absl::ZeroDuration()) {
    LOG_WARN("etcd lease of ", name(), " expired; re-acquiring");
    subnet_.reset();
    subnet6_.reset();
    lease_id_ = 0;
    retry_at_ = absl::InfinitePast();
    return Event::kExpired;
  }
  ScheduleRenewal(*ttl);
  return Event::kRenewed;
}

absl::Status LeaseManager::Republish(const Lease& own) {
  if (!held()) return absl::FailedPreconditionError("no lease held");
  const std::string value = SerializeLease(own);
  if (auto st = registry_->Put(key(), value, lease_id_); !st.ok()) return st;
  value_ = value;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<EtcdKV>> LeaseManager::Confirm() {
  if (!held()) return std::nullopt;
  auto cur = registry_->Get(key());
  if (!cur.ok()) return cur.status();
  if (cur->has_value()) return cur;
  LOG_WARN("Our lease ", name(), " disappeared from etcd; re-acquiring");
  if (lease_id_) (void)registry_->RevokeLease(lease_id_);  // no key is bound to it any more
  subnet_.reset();
  subnet6_.reset();
  lease_id_ = 0;
  retry_at_ = absl::InfinitePast();
  return std::nullopt;
}

absl::Status LeaseManager::Release() {
  if (!held() || reservation()) return absl::OkStatus();
  auto del = registry_->Delete(key());
  return del.ok() ? absl::OkStatus() : del.status();
}

}  // namespace cppnet
