#include "health.h"

#include "cppnet/abi.h"
#include "cppnet/version.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <cmath>

#include <httplib.h>

#include <cerrno>
#include <chrono>
#include <thread>
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
  // httplib's stop() acts only on a running server: stopped before its thread got there (an
  // agent failing early at start), it would accept forever and the join below never return.
  // The thread gets there at once, or fails and ends: bounded either way.
  for (int i = 0; thread_.joinable() && !server_->is_running() && i < 2000; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  server_->stop();
  if (thread_.joinable()) thread_.join();
  // A connection thread still inside the server (a client trickling bytes) would use it
  // after it is freed: at shutdown, leave it to the process's exit instead.
  if (!guarded->Drain(std::chrono::duration_cast<std::chrono::milliseconds>(kIoTimeout * 2)))
    (void)server_.release();
}

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

// One sample; `labels` as name/value pairs.
void Sample(MetricFamily& f, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

}  // namespace

std::vector<MetricFamily> HealthServer::Collect() const {
  std::vector<MetricFamily> out;
  auto gauge = [&](const char* name, const char* help, double v) {
    out.push_back(Family(name, help, MetricType::Gauge));
    Sample(out.back(), v);
  };
  auto counter = [&](const char* name, const char* help, double v) {
    out.push_back(Family(name, help, MetricType::Counter));
    Sample(out.back(), v);
  };
  out.push_back(Family("cppnet_build_info", "The agent's version and commit, and the datapath ABI.",
                       MetricType::Gauge));
  Sample(out.back(), 1,
         {{"version", CPPNET_VERSION},
          {"commit", CPPNET_COMMIT},
          {"abi", std::to_string(CPPNET_ABI_VERSION)}});
  gauge("cppnet_ready", "1 when the lease is held and the datapath attached.",
        health_->ready ? 1 : 0);
  const double expires = health_->lease_expires_unix.load();
  if (!std::isnan(expires))
    gauge("cppnet_lease_expiry_seconds",
          "Seconds until etcd drops our subnet lease unless it is renewed (+Inf: a reservation).",
          expires - absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  gauge("cppnet_routes", "Routes to other hosts' subnets installed from leases.",
        health_->routes.load());
  gauge("cppnet_routes_pending",
        "Lease routes not installed because their route map is full (installed when room frees).",
        health_->routes_pending.load());
  gauge("cppnet_leases", "Subnet leases in etcd under the prefix (all hosts).",
        health_->leases.load());
  gauge("cppnet_leases_skipped", "Leases in etcd skipped as malformed, foreign or overlapping.",
        health_->leases_skipped.load());
  counter("cppnet_lease_acquisitions_total", "Subnet leases acquired by this agent.",
          health_->lease_acquisitions.load());
  gauge("cppnet_etcd_up", "1 while the connection to etcd is up.",
        health_->etcd_connected && health_->etcd_connected() ? 1 : 0);
  gauge("cppnet_etcd_last_contact_timestamp_seconds",
        "When etcd last answered the agent (a list, or a watch event).",
        health_->last_etcd_ok_unix.load());
  counter("cppnet_etcd_errors_total", "Failed etcd operations (list, watch, lease, put).",
          health_->etcd_errors.load());
  counter("cppnet_etcd_reconnects_total", "Watches re-established (with a relist) after a break.",
          health_->etcd_reconnects.load());
  out.push_back(Family("cppnet_sync_duration_seconds",
                       "Time to apply a batch of etcd changes to the datapath maps.",
                       MetricType::Histogram));
  out.back().metric.push_back(health_->sync_seconds.Collect());
  counter("cppnet_host_events_total", "Batches of link, address and networks.d changes handled.",
          health_->host_events.load());
  counter("cppnet_netlink_dumps_total",
          "Full netlink dumps (at start and after lost notifications).",
          health_->netlink_dumps.load());
  if (auto stats = ReadStats(stats_fd_); stats.ok()) {
    // Traffic by counter (packets and bytes); drops by reason in families of their own.
    MetricFamily packets = Family("cppnet_packets_total", "Datapath packets by counter.",
                                  MetricType::Counter),
                 bytes = Family("cppnet_bytes_total", "Datapath bytes by counter.",
                                MetricType::Counter),
                 drops = Family("cppnet_drops_total", "Packets the datapath dropped, by reason.",
                                MetricType::Counter),
                 drop_bytes = Family("cppnet_dropped_bytes_total",
                                     "Bytes the datapath dropped, by reason.", MetricType::Counter);
    for (size_t i = 0; i < stats->size(); i++) {
      const CounterInfo& c = Counters()[i];
      const std::vector<ClientMetric::Label> l = {{c.is_drop ? "reason" : "counter", c.name}};
      Sample(c.is_drop ? drops : packets, static_cast<double>((*stats)[i].packets), l);
      Sample(c.is_drop ? drop_bytes : bytes, static_cast<double>((*stats)[i].bytes), l);
    }
    for (MetricFamily* f : {&packets, &bytes, &drops, &drop_bytes}) out.push_back(std::move(*f));
  }
  return out;
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
    res.set_content(prometheus::TextSerializer().Serialize(Collect()), "text/plain; version=0.0.4");
  });
  if (!server_->bind_to_port(ip.c_str(), port))
    return absl::UnavailableError(
        absl::StrCat("health endpoint ", ip, ":", port, ": cannot listen: ", strerror(errno)));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::OkStatus();
}

}  // namespace cppnet
