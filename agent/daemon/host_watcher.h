// The host as the agent sees it, kept current by events instead of polling: links,
// addresses and root qdiscs from rtnetlink notifications (a socket subscribed to the link,
// IPv4/IPv6 address and tc groups, messages parsed by libnl; one dump at start, another only when
// the kernel reports lost notifications). Queries are answered from that state;
// `on_change` runs on the watcher's thread after each batch.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "cppnet/net.h"
#include "cppnet/netlink.h"

struct nl_msg;
struct nl_object;
struct nl_sock;

namespace cppnet {

class HostWatcher {
 public:
  enum Change : unsigned { kLinks = 1, kAddrs = 2, kQdiscs = 4 };
  static absl::StatusOr<std::unique_ptr<HostWatcher>> Start(
      std::function<void(unsigned changes)> on_change);
  ~HostWatcher();

  std::optional<Interface> Find(const std::string& name) const;
  std::optional<Interface> FindByIndex(int ifindex) const;
  // The first interface with an IPv4 address inside `subnet` (a Docker/CNI bridge).
  std::optional<Interface> WithAddressIn(const Prefix4& subnet) const;
  std::optional<Interface> WithAddressIn(const Prefix6& subnet) const;
  // Interfaces enslaved to `master_ifindex` (the ports of a bridge).
  std::vector<Interface> PortsOf(int master_ifindex) const;
  // Interfaces of rtnetlink kind `kind` ("netkit") whose name starts with `prefix`.
  std::vector<Interface> OfKind(const std::string& kind, const std::string& prefix) const;
  // Interfaces whose root qdisc queues (anything but noqueue, e.g. the bandwidth CNI plugin's
  // tbf): their traffic must pass that qdisc.
  std::vector<int> Queued() const;
  // Interfaces with an "ingress" qdisc (the bandwidth CNI plugin's egress rate).
  std::vector<int> WithIngressQdisc() const;
  // The kind of the interface's ingress-side qdisc ("clsact", "ingress"), "" when none.
  std::string IngressQdisc(int ifindex) const;
  // Full netlink dumps made since start (links + addresses at start, again per resync).
  uint64_t dumps() const { return dumps_.load(); }

 private:
  struct Link {
    Interface ifc;  // without addresses
    int master = 0;
  };
  HostWatcher() = default;
  absl::Status Subscribe();
  absl::Status Dump();  // replaces the state with a full dump
  void Loop();
  static int OnMessage(nl_msg* msg, void* arg);
  static void OnObject(nl_object* obj, void* arg);
  Interface WithAddrs(const Link& l) const;  // under mu_

  std::function<void(unsigned)> on_change_;
  mutable std::mutex mu_;  // the state below: written by the loop, read by queries
  std::map<int, Link> links_;
  std::map<int, std::vector<Prefix4>> addrs_;   // IPv4, by ifindex
  std::map<int, std::vector<Prefix6>> addrs6_;  // global IPv6, by ifindex
  std::map<int, std::string> root_qdisc_;       // root qdisc kind, by ifindex
  std::map<int, std::string> ingress_qdisc_;    // ingress/clsact qdisc kind, by ifindex
  nl_sock* sock_ = nullptr;
  int msg_type_ = 0;      // of the message being parsed (loop thread)
  unsigned pending_ = 0;  // changes seen in the current batch (loop thread)
  int stop_fd_ = -1;
  std::atomic<uint64_t> dumps_{0};
  std::thread thread_;
};

}  // namespace cppnet
