#include "local_api_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cppnet/json_util.h"
#include "cppnet/local_api.h"
#include "log.h"

namespace cppnet {

using nlohmann::json;

absl::StatusOr<std::unique_ptr<LocalApiServer>> LocalApiServer::Start(const std::string& path,
                                                                      Dispatch dispatch,
                                                                      uid_t allowed_uid) {
  std::unique_ptr<LocalApiServer> s(new LocalApiServer());
  s->allowed_uid_ = allowed_uid;
  s->path_ = path;
  s->dispatch_ = std::move(dispatch);
  std::error_code ec;
  const std::string dir = std::filesystem::path(path).parent_path();
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof(a.sun_path))
    return absl::InvalidArgumentError(absl::StrCat(path, ": path too long for a unix socket"));
  memcpy(a.sun_path, path.data(), path.size());
  s->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s->listen_fd_ < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  unlink(path.c_str());  // left by an agent that did not exit cleanly
  // Created 0600 (umask), so no other user can connect in the moment before chmod.
  const mode_t old = umask(0177);
  const int rc = bind(s->listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  umask(old);
  if (rc != 0) return absl::InternalError(absl::StrCat(path, ": bind: ", strerror(errno)));
  if (listen(s->listen_fd_, 64) != 0)
    return absl::InternalError(absl::StrCat(path, ": listen: ", strerror(errno)));
  s->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->stop_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

LocalApiServer::~LocalApiServer() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    thread_.join();
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    unlink(path_.c_str());
  }
  if (stop_fd_ >= 0) close(stop_fd_);
}

void LocalApiServer::Loop() {
  for (;;) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("Local API ", path_, ": poll: ", strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    Serve(fd);
    close(fd);
  }
}

void LocalApiServer::Serve(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != allowed_uid_) return;
  timeval tv{5, 0};  // a slow client cannot hold the API
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::string in;
  char buf[4096];
  while (in.find('\n') == std::string::npos) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > kMaxApiMessageBytes) return;
  }
  absl::StatusOr<json> result;
  const std::string text = in.substr(0, in.find('\n'));
  auto req = ParseJsonObject(text, "local API request", kMaxApiMessageBytes);
  if (!req.ok())
    result = req.status();
  else if (!req->contains("method") || !(*req)["method"].is_string())
    result =
        absl::InvalidArgumentError("local API: a request is {\"method\": ..., \"params\": ...}");
  else
    result = dispatch_((*req)["method"].get<std::string>(), req->value("params", json::object()));
  const std::string out = ApiAnswer(result).dump();
  for (size_t off = 0; off < out.size();) {
    const ssize_t n = send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace cppnet
