// /healthz, /readyz and /metrics on --healthz-ip:--healthz-port.
#pragma once
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "agent.h"

namespace httplib {
class Server;
}

namespace cppnet {

class HealthServer {
 public:
  HealthServer(AgentHealth* health, std::string bpffs_dir);
  ~HealthServer();
  absl::Status Start(const std::string& ip, int port);

 private:
  AgentHealth* health_;
  std::string bpffs_dir_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace cppnet
