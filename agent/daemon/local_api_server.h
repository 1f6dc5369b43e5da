// Serves the local API (cppnet/local_api.h) on a unix socket: accepts one connection at a
// time (bounded request size and I/O time, root peers only) and hands each request to
// `dispatch`, which runs it on the agent's loop.
#pragma once
#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace cppnet {

class LocalApiServer {
 public:
  using Dispatch =
      std::function<absl::StatusOr<nlohmann::json>(const std::string&, const nlohmann::json&)>;
  // Only peers with `allowed_uid` (root) are served; the socket is created 0600.
  static absl::StatusOr<std::unique_ptr<LocalApiServer>> Start(const std::string& path,
                                                               Dispatch dispatch,
                                                               uid_t allowed_uid = 0);
  ~LocalApiServer();

 private:
  LocalApiServer() = default;
  void Loop();
  void Serve(int fd);

  std::string path_;
  Dispatch dispatch_;
  uid_t allowed_uid_ = 0;
  int listen_fd_ = -1, stop_fd_ = -1;
  std::thread thread_;
};

}  // namespace cppnet
