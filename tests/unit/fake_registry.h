// An in-memory SubnetRegistry with etcd's semantics where the lease manager depends on
// them (revisions, conditional writes, leases expiring on a simulated clock), and
// switchable failures.
#pragma once
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "cppnet/registry.h"

namespace cppnet::test {

class FakeClock {
 public:
  absl::Time Now() const { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
};

class FakeRegistry : public SubnetRegistry {
 public:
  explicit FakeRegistry(const FakeClock* clock) : clock_(clock) {}

  // Every call fails with this while it is not OK (etcd unreachable).
  absl::Status down = absl::OkStatus();
  int calls = 0;

  absl::StatusOr<EtcdRange> RangePrefix(const std::string& prefix) override {
    if (auto st = Enter(); !st.ok()) return st;
    EtcdRange r{{}, rev_};
    for (const auto& [k, kv] : kvs_)
      if (absl::StartsWith(k, prefix)) r.kvs.push_back(kv);
    return r;
  }
  absl::StatusOr<std::optional<EtcdKV>> Get(const std::string& key) override {
    if (auto st = Enter(); !st.ok()) return st;
    auto it = kvs_.find(key);
    if (it == kvs_.end()) return std::optional<EtcdKV>();
    return std::optional<EtcdKV>(it->second);
  }
  absl::Status Put(const std::string& key, const std::string& value, int64_t lease) override {
    if (auto st = Enter(); !st.ok()) return st;
    if (lease && !leases_.count(lease)) return absl::NotFoundError("requested lease not found");
    Write(key, value, lease);
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> Delete(const std::string& key) override {
    if (auto st = Enter(); !st.ok()) return st;
    return static_cast<int64_t>(kvs_.erase(key));
  }
  absl::StatusOr<bool> CreateIfAbsent(const std::string& key, const std::string& value,
                                      int64_t lease) override {
    if (auto st = Enter(); !st.ok()) return st;
    if (kvs_.count(key)) return false;
    Write(key, value, lease);
    return true;
  }
  absl::StatusOr<bool> ReplaceIfUnchanged(const std::string& key, const std::string& value,
                                          int64_t lease, int64_t mod_revision) override {
    if (auto st = Enter(); !st.ok()) return st;
    auto it = kvs_.find(key);
    if (it == kvs_.end() || it->second.mod_revision != mod_revision) return false;
    Write(key, value, lease);
    return true;
  }
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl) override {
    if (auto st = Enter(); !st.ok()) return st;
    leases_[++next_lease_] = Lease{ttl, clock_->Now() + ttl};
    return next_lease_;
  }
  absl::StatusOr<absl::Duration> KeepAliveOnce(int64_t id) override {
    if (auto st = Enter(); !st.ok()) return st;
    auto it = leases_.find(id);
    if (it == leases_.end()) return absl::ZeroDuration();
    it->second.expiry = clock_->Now() + it->second.ttl;
    return it->second.ttl;
  }
  absl::Status RevokeLease(int64_t id) override {
    if (auto st = Enter(); !st.ok()) return st;
    Drop(id);
    return absl::OkStatus();
  }

  // Written as an operator or another host would, outside the manager.
  void Set(const std::string& key, const std::string& value, int64_t lease = 0) {
    Write(key, value, lease);
  }
  const EtcdKV* Find(const std::string& key) const {
    auto it = kvs_.find(key);
    return it == kvs_.end() ? nullptr : &it->second;
  }
  size_t live_leases() const { return leases_.size(); }
  size_t size() const { return kvs_.size(); }
  // Lets etcd expire what is due (etcd does it on its own clock).
  void Expire() {
    for (auto it = leases_.begin(); it != leases_.end();) {
      auto next = std::next(it);
      if (it->second.expiry <= clock_->Now()) Drop(it->first);
      it = next;
    }
  }

 private:
  struct Lease {
    absl::Duration ttl;
    absl::Time expiry;
  };
  absl::Status Enter() {
    calls++;
    Expire();
    return down;
  }
  void Write(const std::string& key, const std::string& value, int64_t lease) {
    EtcdKV& kv = kvs_[key];
    if (kv.key.empty()) kv.create_revision = rev_ + 1;
    kv.key = key;
    kv.value = value;
    kv.mod_revision = ++rev_;
    kv.lease = lease;
  }
  void Drop(int64_t id) {
    leases_.erase(id);
    for (auto it = kvs_.begin(); it != kvs_.end();)
      it = it->second.lease == id ? kvs_.erase(it) : std::next(it);
  }
  const FakeClock* clock_;
  std::map<std::string, EtcdKV> kvs_;
  std::map<int64_t, Lease> leases_;
  int64_t rev_ = 1, next_lease_ = 0x1000;
};

}  // namespace cppnet::test
