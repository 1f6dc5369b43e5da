// A small etcd v3 client over gRPC: KV, Lease and Watch, with errors that name
// the endpoint, the operation, the key and etcd's status.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cppnet/registry.h"

namespace grpc {
class Channel;
class ChannelArguments;
class ChannelCredentials;
class ClientContext;
class Status;
}  // namespace grpc
namespace etcdserverpb {
class Compare;
}

namespace cppnet {

struct EtcdWatchBatch {
  bool created = false;             // the watch is established (no events yet)
  int64_t revision = 0;             // store revision in the response header
  int64_t last_event_revision = 0;  // highest revision among the events
  std::vector<EtcdKV> puts;
  std::vector<std::string> deletes;
};

struct EtcdOptions {
  std::string endpoints;  // "http://198.18.0.254:2379,…" (scheme optional; https:// = TLS)
  // TLS: CA bundle to verify etcd (system roots when empty), client certificate + key.
  std::string cafile, certfile, keyfile;
  // etcd authentication (etcdctl user …; auth enable). The password may instead come
  // from a file (first line), which no other user can read from /proc.
  std::string username, password, password_file;
};
// Reads --etcd-password-file into o->password; errors name the file and the cause.
absl::Status LoadEtcdPassword(EtcdOptions* o);

class EtcdClient : public SubnetRegistry {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(const EtcdOptions& opts);
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(const std::string& endpoints) {
    return Create(EtcdOptions{.endpoints = endpoints});
  }
  ~EtcdClient() override;

  absl::StatusOr<EtcdRange> RangePrefix(const std::string& prefix) override;
  absl::StatusOr<std::optional<EtcdKV>> Get(const std::string& key) override;
  absl::Status Put(const std::string& key, const std::string& value, int64_t lease = 0) override;
  absl::StatusOr<int64_t> Delete(const std::string& key) override;
  // Txn: put only if the key does not exist (create_revision == 0). false: it exists.
  absl::StatusOr<bool> CreateIfAbsent(const std::string& key, const std::string& value,
                                      int64_t lease) override;
  // Txn: put only if the key is unchanged since mod_revision. false: it changed.
  absl::StatusOr<bool> ReplaceIfUnchanged(const std::string& key, const std::string& value,
                                          int64_t lease, int64_t mod_revision) override;
  // Returns the lease ID.
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl) override;
  // One keep-alive round trip; returns the remaining TTL (<= 0: lease is gone).
  absl::StatusOr<absl::Duration> KeepAliveOnce(int64_t lease_id) override;
  absl::Status RevokeLease(int64_t lease_id) override;

  // Streams changes under `prefix` from `start_revision` until the stream breaks,
  // the revision is compacted (returns OutOfRange), on_batch returns false (Aborted),
  // or CancelWatch() is called (Cancelled).
  absl::Status Watch(const std::string& prefix, int64_t start_revision,
                     const std::function<bool(EtcdWatchBatch)>& on_batch);
  void CancelWatch();
  // New connections to etcd (e.g. our address changed and the old TCP connections are
  // dead); a running watch ends with Unavailable so its caller relists.
  void Reconnect();

  const std::string& endpoints() const { return endpoints_; }
  // Whether the connection to etcd is up now (gRPC's channel state; keepalive pings notice a
  // silent etcd within about 40 s).
  bool Connected() const;
  // What the caller should log about how the client was configured (e.g. credentials
  // over plain http).
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  EtcdClient() = default;
  // "etcd <endpoints>: <op> <key>: <status>: <message>"
  absl::Status Error(absl::string_view op, absl::string_view key, const grpc::Status& st) const;
  // Deadline and auth token on a call; authenticates first when a user is set.
  grpc::Status Prepare(grpc::ClientContext* ctx, bool deadline = true);
  // One unary call; with authentication, an expired token is renewed and the call retried once.
  template <typename Stub, typename Req, typename Resp>
  grpc::Status Unary(Stub* stub,
                     grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
                     const Req& req, Resp* resp);
  // Txn: put when `cmp` holds; false when it does not.
  absl::StatusOr<bool> PutIf(const etcdserverpb::Compare& cmp, const std::string& key,
                             const std::string& value, int64_t lease);
  struct Stubs;
  static std::shared_ptr<Stubs> Connect(const std::string& target,
                                        std::shared_ptr<grpc::ChannelCredentials> creds,
                                        const grpc::ChannelArguments& args);
  std::shared_ptr<Stubs> stubs() const;  // the current connection (swapped by Reconnect)
  std::shared_ptr<Stubs> stubs_;
  std::string endpoints_;
  std::string username_, password_;
  std::vector<std::string> warnings_;
  std::mutex token_mu_;
  std::string token_;  // etcd auth token, empty until authenticated
  std::mutex watch_mu_;
  grpc::ClientContext* watch_ctx_ = nullptr;
  bool watch_cancelled_ = false;
  bool watch_interrupted_ = false;
};

// The exclusive end of the key range holding every key that starts with prefix.
std::string PrefixRangeEnd(const std::string& prefix);

}  // namespace cppnet
