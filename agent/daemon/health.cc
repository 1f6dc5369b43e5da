#include "health.h"

#include "cppnet/abi.h"
#include "cppnet/version.h"

#include <httplib.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cppnet/maps.h"

namespace cppnet {

namespace {
constexpr auto kIoTimeout = std::chrono::seconds(2);  // each read and write of a connection
constexpr size_t kMaxConnections = 1024;
}  // namespace

// httplib's server, guarded for an endpoint any local user can reach: every connection
// gets a thread of its own, so slow clients never delay a probe, reads and writes time
// out after kIoTimeout, one request per connection, and at most kMaxConnections are
// served at once (more wait to be accepted), far below the fd limit main() raises.
// (httplib 0.11 cannot bound a connection's total time: a client trickling a byte
// every 2 s holds its thread until its request is complete or too long.)
class GuardedHttpServer : public httplib::Server {
 public:
  GuardedHttpServer() {
    new_task_queue = [this] { return new ThreadPerConnection(this); };
    set_read_timeout(kIoTimeout);
    set_write_timeout(kIoTimeout);
    set_keep_alive_max_count(1);
  }
  // Shutdown: no connection waits for a slot any more; then true once every connection
  // thread has finished (within `timeout`).
  void StopAccepting() {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  bool Drain(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [&] { return threads_ == 0; });
  }

 private:
  class ThreadPerConnection : public httplib::TaskQueue {
   public:
    explicit ThreadPerConnection(GuardedHttpServer* s) : s_(s) {}
    void enqueue(std::function<void()> fn) override {
      {
        std::unique_lock<std::mutex> l(s_->mu_);
        s_->cv_.wait(l, [&] { return s_->threads_ < kMaxConnections || s_->stopping_; });
        s_->threads_++;
      }
      std::thread([s = s_, fn = std::move(fn)] {
        fn();
        std::lock_guard<std::mutex> l(s->mu_);
        s->threads_--;
        s->cv_.notify_all();
      }).detach();
    }
    void shutdown() override {}

   private:
    GuardedHttpServer* s_;
  };

  std::mutex mu_;
  std::condition_variable cv_;
  size_t threads_ = 0;
  bool stopping_ = false;
};

HealthServer::HealthServer(AgentHealth* health, int stats_fd)
    : health_(health), stats_fd_(stats_fd), server_(std::make_unique<GuardedHttpServer>()) {}

HealthServer::~HealthServer() {
  auto* guarded = static_cast<GuardedHttpServer*>(server_.get());
  guarded->StopAccepting();
  server_->stop();
  if (thread_.joinable()) thread_.join();
  // A connection thread still inside the server (a client trickling bytes) would use it
  // after it is freed: at shutdown, leave it to the process's exit instead.
  if (!guarded->Drain(std::chrono::duration_cast<std::chrono::milliseconds>(kIoTimeout * 2)))
    (void)server_.release();
}

absl::Status HealthServer::Start(const std::string& ip, int port) {
  server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (health_->ready) {
      res.set_content("ready\n", "text/plain");
      return;
    }
    std::lock_guard<std::mutex> l(health_->mu);
    res.status = 503;
    res.set_content(absl::StrCat("not ready: ", health_->not_ready_reason, "\n"), "text/plain");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string out = absl::StrCat(
        "# HELP cppnet_build_info The agent's version and commit (value 1).\n# TYPE "
        "cppnet_build_info gauge\ncppnet_build_info{version=\"" CPPNET_VERSION
        "\",commit=\"" CPPNET_COMMIT "\",abi=\"",
        CPPNET_ABI_VERSION, "\"} 1\n",
        "# HELP cppnet_ready 1 when the lease is held and the datapath attached.\n# TYPE "
        "cppnet_ready gauge\n",
        "cppnet_ready ", health_->ready ? 1 : 0, "\n",
        "# HELP cppnet_routes Routes to other hosts' subnets installed from leases.\n# TYPE "
        "cppnet_routes gauge\n",
        "cppnet_routes ", health_->routes.load(), "\n",
        "# HELP cppnet_leases_skipped Leases in etcd skipped as malformed, foreign or "
        "overlapping.\n",
        "# TYPE cppnet_leases_skipped gauge\ncppnet_leases_skipped ",
        health_->leases_skipped.load(), "\n",
        "# HELP cppnet_lease_acquisitions_total Subnet leases acquired by this agent.\n",
        "# TYPE cppnet_lease_acquisitions_total counter\ncppnet_lease_acquisitions_total ",
        health_->lease_acquisitions.load(), "\n",
        "# HELP cppnet_leases Subnet leases in etcd under the prefix (all hosts).\n# TYPE "
        "cppnet_leases gauge\n",
        "cppnet_leases ", health_->leases.load(), "\n",
        "# HELP cppnet_etcd_errors_total Failed etcd operations (list, watch, lease, put).\n",
        "# TYPE cppnet_etcd_errors_total counter\ncppnet_etcd_errors_total ",
        health_->etcd_errors.load(), "\n",
        "# HELP cppnet_etcd_reconnects_total Watches re-established (with a relist) after a "
        "break.\n",
        "# TYPE cppnet_etcd_reconnects_total counter\ncppnet_etcd_reconnects_total ",
        health_->etcd_reconnects.load(), "\n",
        "# HELP cppnet_etcd_last_ok_timestamp_seconds When etcd last answered.\n",
        "# TYPE cppnet_etcd_last_ok_timestamp_seconds "
        "gauge\ncppnet_etcd_last_ok_timestamp_seconds ",
        health_->last_etcd_ok_unix.load(), "\n",
        "# HELP cppnet_sync_duration_seconds Time to apply etcd changes to the datapath maps.\n",
        "# TYPE cppnet_sync_duration_seconds summary\n", "cppnet_sync_duration_seconds_sum ",
        absl::StrFormat("%.6f", health_->sync_micros.load() / 1e6), "\n",
        "cppnet_sync_duration_seconds_count ", health_->syncs.load(), "\n",
        "# HELP cppnet_host_events_total Batches of link, address and networks.d changes "
        "handled.\n",
        "# TYPE cppnet_host_events_total counter\ncppnet_host_events_total ",
        health_->host_events.load(), "\n",
        "# HELP cppnet_netlink_dumps_total Full netlink dumps (at start and after lost "
        "notifications).\n",
        "# TYPE cppnet_netlink_dumps_total counter\ncppnet_netlink_dumps_total ",
        health_->netlink_dumps.load(), "\n");
    if (auto stats = ReadStats(stats_fd_); stats.ok()) {
      // Same labels for both families: counter=… for traffic, reason=… for drops.
      for (bool bytes : {false, true}) {
        const char* metric = bytes ? "cppnet_bytes_total" : "cppnet_packets_total";
        absl::StrAppend(&out, "# HELP ", metric, " Datapath ", bytes ? "bytes" : "packets",
                        " by counter (drops carry a reason).\n# TYPE ", metric, " counter\n");
        for (size_t i = 0; i < stats->size(); i++) {
          const CounterInfo& c = Counters()[i];
          absl::StrAppend(&out, metric, "{", c.is_drop ? "reason" : "counter", "=\"", c.name,
                          "\"} ", bytes ? (*stats)[i].bytes : (*stats)[i].packets, "\n");
        }
      }
    }
    res.set_content(out, "text/plain; version=0.0.4");
  });
  if (!server_->bind_to_port(ip.c_str(), port))
    return absl::UnavailableError(
        absl::StrCat("health endpoint ", ip, ":", port, ": cannot listen: ", strerror(errno)));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

}  // namespace cppnet
