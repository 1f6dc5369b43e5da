// The subnet lease lifecycle, as flanneld runs it, over a SubnetRegistry (etcd or a
// fake) and an injectable clock: acquire in flannel's reclaim order, renew before the
// TTL runs out, re-acquire when the lease is lost, reservations (keys without TTL)
// used as they are, and retries with backoff. The agent's loop calls Step() when
// NextDeadline() is due.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cppnet/config.h"
#include "cppnet/lease.h"
#include "cppnet/registry.h"

namespace cppnet {

struct LeaseManagerOptions {
  std::string subnets_prefix;  // "<etcd prefix>/subnets/"
  absl::Duration ttl = absl::Hours(24);
  absl::Duration renew_margin = absl::Minutes(60);
};

// What acquisition may reuse from before this start.
struct AcquireHints {
  std::optional<Prefix4> previous_subnet;   // from subnet.env
  std::optional<Prefix6> previous_subnet6;  // from subnet.env (FLANNEL_IPV6_SUBNET)
  uint32_t previous_public_ip = 0;          // the pinned datapath's, if it differs
  std::string previous_source;              // where previous_subnet came from (for the log)
  // The keys under the prefix as listed after this process started and before it wrote any:
  // fresh enough for a first acquisition (every write is conditional), and one read of
  // 100,000 leases fewer for etcd at start-up. Null: read them now.
  const std::vector<EtcdKV>* listed = nullptr;
};

class LeaseManager {
 public:
  using Clock = std::function<absl::Time()>;
  LeaseManager(SubnetRegistry* registry, LeaseManagerOptions opts, Clock now = absl::Now);

  enum class Event { kNone, kAcquired, kRenewed, kExpired };
  // Acquires when nothing is held, renews when due, else does nothing. A failure is
  // returned (ResourceExhausted: out of subnets) and retried after a backoff.
  absl::StatusOr<Event> Step(const NetworkConfig& cfg, const Lease& own, const AcquireHints& hints);
  // When Step has work: the next retry or renewal (InfiniteFuture: none).
  absl::Time NextDeadline() const;
  // A failure outside the manager that must be retried like one of its own (the
  // datapath could not be activated with the lease).
  void RetryLater(const absl::Status& why);

  bool held() const { return subnet_.has_value() || subnet6_.has_value(); }
  std::optional<Prefix4> subnet() const { return subnet_; }  // none in an IPv6-only network
  // Our IPv6 subnet (dual stack: the key carries both).
  std::optional<Prefix6> subnet6() const { return subnet6_; }
  std::string name() const;  // our subnet(s), for logs
  std::string key() const;   // our subnet's key, empty when nothing is held
  bool reservation() const { return held() && lease_id_ == 0; }
  // When etcd drops our key unless renewed: InfiniteFuture for a reservation, InfinitePast
  // while nothing is held.
  absl::Time expires_at() const {
    return !held() ? absl::InfinitePast() : lease_id_ ? expires_at_ : absl::InfiniteFuture();
  }
  int64_t lease_id() const { return lease_id_; }
  const std::string& published() const { return value_; }  // our key's value

  // Rewrites our key with new data (backend, PublicIP), same etcd lease.
  absl::Status Republish(const Lease& own);
  // Our key is missing from the watch's view: asks etcd. Returns the key's record if it
  // is still there; nullopt if it is gone (then nothing is held and Step re-acquires).
  absl::StatusOr<std::optional<EtcdKV>> Confirm();
  // Deletes our key (--release-on-exit); a reservation is left alone.
  absl::Status Release();

 private:
  absl::StatusOr<Event> Acquire(const NetworkConfig& cfg, const Lease& own,
                                const AcquireHints& hints);
  absl::StatusOr<Event> Renew();
  absl::StatusOr<Event> AcquireIpv6Only(const NetworkConfig& cfg, const Lease& own,
                                        const AcquireHints& hints, int64_t lease_id,
                                        const std::string& value,
                                        const std::vector<EtcdKV>& existing);
  void Held(std::optional<Prefix4> s, std::optional<Prefix6> s6, int64_t lease_id,
            const std::string& value, const std::string& how);
  // An IPv6 subnet for a new key: `want` when free and inside the range, else a random free one.
  std::optional<Prefix6> PickSubnet6(const NetworkConfig& cfg, const std::vector<Prefix6>& taken,
                                     std::optional<Prefix6> want);
  void ScheduleRenewal(absl::Duration ttl);

  SubnetRegistry* registry_;
  LeaseManagerOptions opts_;
  Clock now_;
  std::optional<Prefix4> subnet_;
  std::optional<Prefix6> subnet6_;
  int64_t lease_id_ = 0;  // 0 with a subnet: a reservation (no TTL, nothing to renew)
  std::string value_;
  absl::Time renew_at_ = absl::InfiniteFuture();
  absl::Time expires_at_ = absl::InfinitePast();
  absl::Time retry_at_ = absl::InfinitePast();
  absl::Duration backoff_ = absl::Milliseconds(100);
  absl::Time last_retry_log_ = absl::InfinitePast();
  bool failing_ = false;
};

}  // namespace cppnet
