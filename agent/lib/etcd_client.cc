#include "cppnet/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cppnet/credentials.h"
#include "etcd.grpc.pb.h"

namespace cppnet {

namespace pb = etcdserverpb;

struct EtcdClient::Stubs {
  // How to (re)build the channel.
  std::string target;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  grpc::ChannelArguments args;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Auth::Stub> auth;
};

namespace {

constexpr auto kCallTimeout = std::chrono::seconds(5);
constexpr int64_t kRangePageKeys = 1000;
constexpr int kMaxReceiveBytes = 64 << 20;

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

absl::StatusCode ToAbsl(grpc::StatusCode c) {
  return static_cast<absl::StatusCode>(static_cast<int>(c));
}

const char* CodeName(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::UNAVAILABLE:
      return "unavailable";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "deadline exceeded";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "permission denied";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "unauthenticated";
    case grpc::StatusCode::NOT_FOUND:
      return "not found";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "out of range";
    case grpc::StatusCode::CANCELLED:
      return "cancelled";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "invalid argument";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "failed precondition";
    default:
      return "error";
  }
}

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": ", strerror(errno)));
  std::stringstream ss;
  ss << f.rdbuf();
  if (ss.str().find("-----BEGIN") == std::string::npos)
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": not a PEM file"));
  return ss.str();
}

EtcdKV FromPb(const pb::KeyValue& kv) {
  return EtcdKV{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
}

}  // namespace

std::string PrefixRangeEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // whole key space
}

absl::Status EtcdClient::Error(absl::string_view op, absl::string_view key,
                               const grpc::Status& st) const {
  return absl::Status(ToAbsl(st.error_code()),
                      absl::StrCat("etcd ", endpoints_, ": ", op, " ", key, ": ",
                                   CodeName(st.error_code()), ": ", st.error_message()));
}

absl::Status LoadEtcdPassword(EtcdOptions* o) {
  if (o->password_file.empty()) return absl::OkStatus();
  if (!o->password.empty())
    return absl::InvalidArgumentError(
        "--etcd-password and --etcd-password-file exclude each other");
  return ReadSecretFile("--etcd-password-file", o->password_file, &o->password);
}

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(const EtcdOptions& o) {
  std::vector<std::string> addrs, hosts, c_warnings;
  bool all_ipv4 = true, tls = !o.cafile.empty() || !o.certfile.empty() || !o.keyfile.empty();
  for (absl::string_view e : absl::StrSplit(o.endpoints, ',', absl::SkipWhitespace())) {
    e = absl::StripAsciiWhitespace(e);
    if (absl::ConsumePrefix(&e, "https://")) tls = true;
    absl::ConsumePrefix(&e, "http://");
    absl::ConsumeSuffix(&e, "/");
    std::vector<std::string> hp = absl::StrSplit(e, absl::MaxSplits(':', 1));
    if (hp.size() != 2 || hp[0].empty() || hp[1].empty())
      return absl::InvalidArgumentError(
          absl::StrCat("--etcd-endpoints: \"", e, "\" is not host:port"));
    all_ipv4 &= hp[0].find_first_not_of("0123456789.") == std::string::npos;
    addrs.emplace_back(e);
    hosts.push_back(hp[0]);
  }
  if (addrs.empty()) return absl::InvalidArgumentError("--etcd-endpoints: no endpoint given");
  if (o.certfile.empty() != o.keyfile.empty())
    return absl::InvalidArgumentError("--etcd-certfile and --etcd-keyfile go together");
  if (o.username.empty() && !o.password.empty())
    return absl::InvalidArgumentError("--etcd-password needs --etcd-username");
  // Several IP endpoints: one channel that fails over between them.
  std::string target = all_ipv4 ? absl::StrCat("ipv4:", absl::StrJoin(addrs, ","))
                                : absl::StrCat("dns:///", addrs[0]);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);  // etcd's minimum is 5 s; stay well above
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // Our own connections: Reconnect() must not get the process-wide pool's old ones back.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // Above etcd's own request limit (1.5 MiB a value): one oversized key cannot stop a
  // page or a watch; pages are sized in keys (RangePrefix).
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    if (!o.cafile.empty()) {
      auto pem = ReadPem("--etcd-cafile", o.cafile);
      if (!pem.ok()) return pem.status();
      ssl.pem_root_certs = *pem;
    }
    if (!o.certfile.empty()) {
      auto cert = ReadPem("--etcd-certfile", o.certfile);
      if (!cert.ok()) return cert.status();
      auto key = ReadPem("--etcd-keyfile", o.keyfile);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
    // The certificate is checked against the first endpoint's host (one name for the
    // whole list, as the channel fails over between the addresses).
    if (addrs.size() > 1) args.SetSslTargetNameOverride(hosts[0]);
  }
  if (!tls && !o.username.empty())
    c_warnings.push_back(absl::StrCat("etcd credentials of user ", o.username,
                                      " travel unencrypted over http:// to ",
                                      absl::StrJoin(addrs, ","), "; use https:// endpoints"));
  std::unique_ptr<EtcdClient> c(new EtcdClient());
  c->warnings_ = std::move(c_warnings);
  c->endpoints_ = absl::StrJoin(addrs, ",");
  c->username_ = o.username;
  c->password_ = o.password;
  c->stubs_ = Connect(target, creds, args);
  return c;
}

std::shared_ptr<EtcdClient::Stubs> EtcdClient::Connect(
    const std::string& target, std::shared_ptr<grpc::ChannelCredentials> creds,
    const grpc::ChannelArguments& args) {
  auto s = std::make_shared<Stubs>();
  s->target = target;
  s->creds = std::move(creds);
  s->args = args;
  s->channel = grpc::CreateCustomChannel(s->target, s->creds, s->args);
  s->kv = pb::KV::NewStub(s->channel);
  s->lease = pb::Lease::NewStub(s->channel);
  s->watch = pb::Watch::NewStub(s->channel);
  s->auth = pb::Auth::NewStub(s->channel);
  return s;
}

std::shared_ptr<EtcdClient::Stubs> EtcdClient::stubs() const { return std::atomic_load(&stubs_); }

bool EtcdClient::Connected() const {
  return stubs()->channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
}

void EtcdClient::Reconnect() {
  auto old = stubs();
  std::atomic_store(&stubs_, Connect(old->target, old->creds, old->args));
  std::lock_guard<std::mutex> l(watch_mu_);
  if (watch_ctx_) {
    watch_interrupted_ = true;
    watch_ctx_->TryCancel();
  }
}

grpc::Status EtcdClient::Prepare(grpc::ClientContext* ctx, bool deadline) {
  if (deadline) SetDeadline(ctx);
  if (username_.empty()) return grpc::Status::OK;
  std::lock_guard<std::mutex> l(token_mu_);
  if (token_.empty()) {
    pb::AuthenticateRequest req;
    req.set_name(username_);
    req.set_password(password_);
    pb::AuthenticateResponse resp;
    grpc::ClientContext actx;
    SetDeadline(&actx);
    grpc::Status st = stubs()->auth->Authenticate(&actx, req, &resp);
    if (!st.ok())
      return grpc::Status(st.error_code(),
                          absl::StrCat("authenticate as ", username_, ": ", st.error_message()));
    token_ = resp.token();
  }
  ctx->AddMetadata("token", token_);
  return grpc::Status::OK;
}

template <typename Stub, typename Req, typename Resp>
grpc::Status EtcdClient::Unary(Stub* stub,
                               grpc::Status (Stub::*method)(grpc::ClientContext*, const Req&,
                                                            Resp*),
                               const Req& req, Resp* resp) {
  for (int attempt = 0;; attempt++) {
    grpc::ClientContext ctx;
    if (grpc::Status st = Prepare(&ctx); !st.ok()) return st;
    grpc::Status st = (stub->*method)(&ctx, req, resp);
    // Simple tokens expire when unused; get a new one and retry once.
    if (st.error_code() != grpc::StatusCode::UNAUTHENTICATED || username_.empty() || attempt > 0)
      return st;
    std::lock_guard<std::mutex> l(token_mu_);
    token_.clear();
  }
}

EtcdClient::~EtcdClient() = default;

// Paged, as etcd's own clients read large prefixes: `limit` keys per call, each page
// from the key after the last one, all at the first page's revision (one snapshot).
// A page over the receive limit (huge values) is asked again with fewer keys.
absl::StatusOr<EtcdRange> EtcdClient::RangePrefix(const std::string& prefix) {
  EtcdRange r;
  std::string from = prefix;
  const std::string end = PrefixRangeEnd(prefix);
  int64_t limit = kRangePageKeys;
  for (;;) {
    pb::RangeRequest req;
    req.set_key(from);
    req.set_range_end(end);
    req.set_limit(limit);
    if (r.revision) req.set_revision(r.revision);
    pb::RangeResponse resp;
    grpc::Status st = Unary(stubs()->kv.get(), &pb::KV::Stub::Range, req, &resp);
    if (st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && limit > 1) {
      limit = std::max<int64_t>(1, limit / 8);
      continue;
    }
    if (!st.ok()) return Error("range", prefix, st);
    if (!r.revision) r.revision = resp.header().revision();
    for (const auto& kv : resp.kvs()) r.kvs.push_back(FromPb(kv));
    if (!resp.more() || resp.kvs_size() == 0) return r;
    from = resp.kvs(resp.kvs_size() - 1).key() + std::string(1, '\0');
    limit = kRangePageKeys;
  }
}

absl::StatusOr<std::optional<EtcdKV>> EtcdClient::Get(const std::string& key) {
  pb::RangeRequest req;
  req.set_key(key);
  pb::RangeResponse resp;
  grpc::Status st = Unary(stubs()->kv.get(), &pb::KV::Stub::Range, req, &resp);
  if (!st.ok()) return Error("get", key, st);
  if (resp.kvs_size() == 0) return std::optional<EtcdKV>();
  return std::optional<EtcdKV>(FromPb(resp.kvs(0)));
}

absl::Status EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  pb::PutResponse resp;
  grpc::Status st = Unary(stubs()->kv.get(), &pb::KV::Stub::Put, req, &resp);
  if (!st.ok()) return Error("put", key, st);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> EtcdClient::Delete(const std::string& key) {
  pb::DeleteRangeRequest req;
  req.set_key(key);
  pb::DeleteRangeResponse resp;
  grpc::Status st = Unary(stubs()->kv.get(), &pb::KV::Stub::DeleteRange, req, &resp);
  if (!st.ok()) return Error("delete", key, st);
  return resp.deleted();
}

absl::StatusOr<bool> EtcdClient::PutIf(const pb::Compare& cmp, const std::string& key,
                                       const std::string& value, int64_t lease) {
  pb::TxnRequest req;
  *req.add_compare() = cmp;
  pb::PutRequest* put = req.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  pb::TxnResponse resp;
  grpc::Status st = Unary(stubs()->kv.get(), &pb::KV::Stub::Txn, req, &resp);
  if (!st.ok()) return Error("txn", key, st);
  return resp.succeeded();
}

absl::StatusOr<bool> EtcdClient::CreateIfAbsent(const std::string& key, const std::string& value,
                                                int64_t lease) {
  pb::Compare cmp;
  cmp.set_key(key);
  cmp.set_target(pb::Compare::CREATE);
  cmp.set_result(pb::Compare::EQUAL);
  cmp.set_create_revision(0);
  return PutIf(cmp, key, value, lease);
}

absl::StatusOr<bool> EtcdClient::ReplaceIfUnchanged(const std::string& key,
                                                    const std::string& value, int64_t lease,
                                                    int64_t mod_revision) {
  pb::Compare cmp;
  cmp.set_key(key);
  cmp.set_target(pb::Compare::MOD);
  cmp.set_result(pb::Compare::EQUAL);
  cmp.set_mod_revision(mod_revision);
  return PutIf(cmp, key, value, lease);
}

absl::StatusOr<int64_t> EtcdClient::GrantLease(absl::Duration ttl) {
  pb::LeaseGrantRequest req;
  req.set_ttl(absl::ToInt64Seconds(ttl));
  pb::LeaseGrantResponse resp;
  grpc::Status st = Unary(stubs()->lease.get(), &pb::Lease::Stub::LeaseGrant, req, &resp);
  if (!st.ok()) return Error("lease grant", absl::FormatDuration(ttl), st);
  if (!resp.error().empty())
    return absl::InternalError(absl::StrCat("etcd ", endpoints_, ": lease grant: ", resp.error()));
  return resp.id();
}

absl::StatusOr<absl::Duration> EtcdClient::KeepAliveOnce(int64_t lease_id) {
  grpc::ClientContext ctx;
  if (grpc::Status st = Prepare(&ctx); !st.ok())
    return Error("lease keep-alive", absl::StrCat(lease_id), st);
  auto s = stubs();
  auto stream = s->lease->LeaseKeepAlive(&ctx);
  pb::LeaseKeepAliveRequest req;
  req.set_id(lease_id);
  pb::LeaseKeepAliveResponse resp;
  bool ok = stream->Write(req) && stream->Read(&resp);
  stream->WritesDone();
  grpc::Status st = stream->Finish();
  if (!ok || !st.ok()) {
    if (st.ok()) st = grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed");
    if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
      std::lock_guard<std::mutex> l(token_mu_);
      token_.clear();
    }
    return Error("lease keep-alive", absl::StrCat(lease_id), st);
  }
  return absl::Seconds(resp.ttl());
}

absl::Status EtcdClient::RevokeLease(int64_t lease_id) {
  pb::LeaseRevokeRequest req;
  req.set_id(lease_id);
  pb::LeaseRevokeResponse resp;
  grpc::Status st = Unary(stubs()->lease.get(), &pb::Lease::Stub::LeaseRevoke, req, &resp);
  if (!st.ok()) return Error("lease revoke", absl::StrCat(lease_id), st);
  return absl::OkStatus();
}

absl::Status EtcdClient::Watch(const std::string& prefix, int64_t start_revision,
                               const std::function<bool(EtcdWatchBatch)>& on_batch) {
  grpc::ClientContext ctx;
  {
    std::lock_guard<std::mutex> l(watch_mu_);
    if (watch_cancelled_) return absl::CancelledError("watch cancelled");
    watch_ctx_ = &ctx;
  }
  struct Clear {
    EtcdClient* c;
    ~Clear() {
      std::lock_guard<std::mutex> l(c->watch_mu_);
      c->watch_ctx_ = nullptr;
    }
  } clear{this};

  if (grpc::Status st = Prepare(&ctx, /*deadline=*/false); !st.ok())
    return Error("watch", prefix, st);
  auto s = stubs();
  auto stream = s->watch->Watch(&ctx);
  pb::WatchRequest req;
  pb::WatchCreateRequest* create = req.mutable_create_request();
  create->set_key(prefix);
  create->set_range_end(PrefixRangeEnd(prefix));
  create->set_start_revision(start_revision);
  create->set_progress_notify(true);
  if (!stream->Write(req)) {
    grpc::Status st = stream->Finish();
    return Error("watch", prefix, st);
  }
  pb::WatchResponse resp;
  while (stream->Read(&resp)) {
    if (resp.compact_revision() > 0) {
      ctx.TryCancel();
      stream->Finish();
      return absl::OutOfRangeError(absl::StrCat("etcd ", endpoints_, ": watch ", prefix,
                                                ": revision ", start_revision, " compacted (now ",
                                                resp.compact_revision(), ")"));
    }
    if (resp.canceled()) {
      ctx.TryCancel();
      stream->Finish();
      return absl::AbortedError(absl::StrCat("etcd ", endpoints_, ": watch ", prefix,
                                             ": cancelled by server: ", resp.cancel_reason()));
    }
    if (resp.events_size() == 0 && !resp.created()) continue;  // progress notification
    EtcdWatchBatch b;
    b.created = resp.created();
    b.revision = resp.header().revision();
    for (const auto& ev : resp.events()) {
      b.last_event_revision = std::max(b.last_event_revision, ev.kv().mod_revision());
      if (ev.type() == pb::Event::DELETE)
        b.deletes.push_back(ev.kv().key());
      else
        b.puts.push_back(FromPb(ev.kv()));
    }
    if (!on_batch(std::move(b))) {
      ctx.TryCancel();
      stream->Finish();
      return absl::AbortedError(absl::StrCat("etcd ", endpoints_, ": watch ", prefix, ": stopped"));
    }
  }
  grpc::Status st = stream->Finish();
  if (st.error_code() == grpc::StatusCode::CANCELLED) {
    std::lock_guard<std::mutex> l(watch_mu_);
    if (!std::exchange(watch_interrupted_, false)) return absl::CancelledError("watch cancelled");
    return absl::UnavailableError(
        absl::StrCat("etcd ", endpoints_, ": watch ", prefix, ": reconnecting"));
  }
  if (st.error_code() ==
      grpc::StatusCode::UNAUTHENTICATED) {  // renew the token on the next attempt
    std::lock_guard<std::mutex> l(token_mu_);
    token_.clear();
  }
  if (st.ok()) st = grpc::Status(grpc::StatusCode::UNAVAILABLE, "watch stream closed");
  return Error("watch", prefix, st);
}

void EtcdClient::CancelWatch() {
  std::lock_guard<std::mutex> l(watch_mu_);
  watch_cancelled_ = true;
  if (watch_ctx_) watch_ctx_->TryCancel();
}

}  // namespace cppnet
