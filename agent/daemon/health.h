// /healthz, /readyz and /metrics on --healthz-ip:--healthz-port.
#pragma once
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/metric_family.h>

#include "absl/status/status.h"
#include "agent.h"

namespace httplib {
class Server;
}

namespace cppnet {

class HealthServer {
 public:
  // stats_fd: the agent's own per-CPU stats map, read on each /metrics scrape.
  HealthServer(AgentHealth* health, int stats_fd);
  ~HealthServer();
  absl::Status Start(const std::string& ip, int port);
  // What /metrics serves: the agent's state and the datapath's counters.
  std::vector<prometheus::MetricFamily> Collect() const;

 private:
  AgentHealth* health_;
  int stats_fd_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace cppnet
