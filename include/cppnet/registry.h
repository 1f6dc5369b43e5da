// What the lease manager needs from etcd, as an interface (flannel's subnet Registry):
// the keys under a prefix, conditional writes, and etcd leases. EtcdClient implements
// it; unit tests use an in-memory fake with a simulated clock.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace cppnet {

struct EtcdKV {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t lease = 0;
};

struct EtcdRange {
  std::vector<EtcdKV> kvs;
  int64_t revision = 0;  // store revision the range was read at
};

class SubnetRegistry {
 public:
  virtual ~SubnetRegistry() = default;
  virtual absl::StatusOr<EtcdRange> RangePrefix(const std::string& prefix) = 0;
  virtual absl::StatusOr<std::optional<EtcdKV>> Get(const std::string& key) = 0;
  // lease 0: the key does not expire.
  virtual absl::Status Put(const std::string& key, const std::string& value, int64_t lease) = 0;
  virtual absl::StatusOr<int64_t> Delete(const std::string& key) = 0;
  // Put only if the key does not exist; false: it exists.
  virtual absl::StatusOr<bool> CreateIfAbsent(const std::string& key, const std::string& value,
                                              int64_t lease) = 0;
  // Put only if the key is unchanged since mod_revision; false: it changed.
  virtual absl::StatusOr<bool> ReplaceIfUnchanged(const std::string& key, const std::string& value,
                                                  int64_t lease, int64_t mod_revision) = 0;
  virtual absl::StatusOr<int64_t> GrantLease(absl::Duration ttl) = 0;  // the lease ID
  // One keep-alive; the remaining TTL (<= 0: the lease is gone).
  virtual absl::StatusOr<absl::Duration> KeepAliveOnce(int64_t lease_id) = 0;
  virtual absl::Status RevokeLease(int64_t lease_id) = 0;
};

}  // namespace cppnet
