/* cppnet ABI shared by the BPF programs and the C++ agent/CLI.
 * One definition of every map key/value, enum and pin name: BPF code includes it
 * after vmlinux.h, C++ after <linux/types.h>. Layouts are fixed by static asserts. */
#ifndef CPPNET_ABI_H
#define CPPNET_ABI_H

#ifndef __bpf__
#include <linux/types.h>
#endif

#ifdef __cplusplus
#define CPPNET_ASSERT_SIZE(type, size) static_assert(sizeof(type) == (size), #type " size is ABI")
#else
#define CPPNET_ASSERT_SIZE(type, size) _Static_assert(sizeof(type) == (size), #type " size is ABI")
#endif

#define CPPNET_PIN_DIR_DEFAULT "/sys/fs/bpf/cppnet"
/* The layout of maps and programs this header describes: raised with every change of a map's
 * key or value, a counter, a flag or a pin. The agent records it in CPPNET_MAP_ABI (one __u32,
 * key 0) when it loads the datapath, so tools can tell which layout the pinned maps have. */
#define CPPNET_ABI_VERSION 2
#define CPPNET_MAP_ABI "cppnet_abi"
/* Map names are also the pin file names (libbpf LIBBPF_PIN_BY_NAME); max 15 chars. */
#define CPPNET_MAP_ROUTES "cppnet_routes"
#define CPPNET_MAP_CONFIG "cppnet_config"
#define CPPNET_MAP_STATS "cppnet_stats"
#define CPPNET_MAP_ENDPOINTS "cppnet_endpoint"
#define CPPNET_MAP_PEERS "cppnet_peers"
#define CPPNET_MAP_BINDS "cppnet_binds"
#define CPPNET_LINK_XDP_PREFIX "link_xdp_"
/* + ifindex: a container endpoint's link: tcx on a veth's host end, BPF_NETKIT_PEER on a
 * netkit pair's primary */
#define CPPNET_LINK_TCX_PREFIX "link_tcx_"
/* + ifindex: an overlay container's netkit primary: its tcx egress link (flow recording) */
#define CPPNET_LINK_TCX_OUT_PREFIX CPPNET_LINK_TCX_PREFIX "out_"
/* Routes per family: 100,000 leases with room (a /8 of /26 subnets); LPM tries without
 * preallocation, so an entry costs memory only when it exists. */
#define CPPNET_ROUTES_MAX 262144
#define CPPNET_ENDPOINTS_MAX 16384

#define CPPNET_VXLAN_PORT_DEFAULT 8472
#define CPPNET_VXLAN_VNI_DEFAULT 1
#define CPPNET_UDP_PORT_DEFAULT 8285
/* outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) */
#define CPPNET_VXLAN_OVERHEAD 50
/* outer IPv6 (40) + UDP (8) + VXLAN (8) + inner Ethernet (14) */
#define CPPNET_VXLAN6_OVERHEAD 70
/* outer IPv4 (20) + UDP (8); the inner IP packet follows directly (flanneld's udp backend) */
#define CPPNET_UDP_OVERHEAD 28

enum cppnet_backend {
  CPPNET_BACKEND_NONE = 0,
  CPPNET_BACKEND_VXLAN = 1,
  CPPNET_BACKEND_UDP = 2,
  CPPNET_BACKEND_HOSTGW = 3,
};

enum cppnet_origin {
  CPPNET_ORIGIN_LEASE = 0,
  CPPNET_ORIGIN_STATIC = 1,
};

/* The udp peer reads tunnel payloads in userspace (flanneld's udp backend writes them
 * into a TUN device, where the kernel checks inner checksums): its packets are handed
 * to the kernel to finish checksums and segmentation before they are encapsulated. */
#define CPPNET_ROUTE_USERSPACE_PEER 0x1
/* IPv6 routes: the peer's kernel checks the outer UDP checksum (a vxlan device such as
 * flanneld's flannel-v6.1 drops UDP/IPv6 with checksum 0, RFC 6935 aside). Its packets take
 * the soft device too, and cppnet_tc_soft computes the checksum over the finished packet.
 * Peers with the cppnet datapath take checksum 0 and whole GSO packets. */
#define CPPNET_ROUTE_OUTER_CSUM 0x2
/* The peer's PublicIP lies in one of the underlay's prefixes: tunnel packets to it name it as
 * the next hop (bpf_redirect_neigh without a route lookup per packet). Set by the agent, which
 * follows the underlay's addresses. */
#define CPPNET_ROUTE_ONLINK 0x4

/* The veth pair the agent creates (every backend). CPPNET_HOST_DEV holds the host's overlay
 * address (the subnet's .0, as flanneld's flannel.1 does) and the route to the Network: its
 * tc egress program carries the host's own traffic to other hosts' containers, and overlay
 * packets for that address are delivered into the host through it. CPPNET_SOFT_DEV has its
 * transmit offloads off: packets for userspace udp peers are sent into it, so the kernel
 * segments and checksums them in software, and leave through CPPNET_HOST_DEV's tc ingress,
 * which encapsulates them. */
#define CPPNET_HOST_DEV "cppnet.host"
#define CPPNET_SOFT_DEV "cppnet.soft"

/* LPM trie key: prefixlen first, as the kernel requires; addr in network byte order. */
struct cppnet_route_key {
  __u32 prefixlen;
  __u32 addr;
};
CPPNET_ASSERT_SIZE(struct cppnet_route_key, 8);

/* How to reach a remote subnet. */
struct cppnet_route {
  __u32 public_ip;  /* peer underlay address, network byte order */
  __u32 vni;        /* host byte order */
  __u8 vtep_mac[6]; /* inner destination MAC (vxlan) */
  __u16 port;       /* UDP destination port, host byte order */
  __u8 backend;     /* enum cppnet_backend */
  __u8 origin;      /* enum cppnet_origin */
  __u8 flags;       /* CPPNET_ROUTE_* */
  __u8 pad;
};
CPPNET_ASSERT_SIZE(struct cppnet_route, 20);

/* Dual stack: routes to other hosts' IPv6 subnets (LPM, key address in network order). */
#define CPPNET_MAP_ROUTES6 "cppnet_routes6"
struct cppnet_route6_key {
  __u32 prefixlen;
  __u8 addr[16];
};
CPPNET_ASSERT_SIZE(struct cppnet_route6_key, 20);

struct cppnet_route6 {
  __u8 public_ip6[16]; /* peer's PublicIPv6 */
  __u32 vni;           /* host byte order */
  __u8 vtep_mac[6];    /* inner destination MAC (vxlan): BackendV6Data's VtepMAC */
  __u16 port;          /* UDP destination port, host byte order */
  __u8 backend;        /* enum cppnet_backend (vxlan, host-gw) */
  __u8 origin;         /* enum cppnet_origin */
  __u8 flags;          /* CPPNET_ROUTE_* */
  __u8 pad;
};
CPPNET_ASSERT_SIZE(struct cppnet_route6, 32);

/* The IPv6 peers (key: PublicIPv6, value: how many IPv6 routes name it), written by the agent
 * with the routes. Read only when a tunnel packet fails the route check, to tell a stranger
 * (unknown_peer) from a peer sending outside its subnet (bad_inner_source). */
#define CPPNET_MAP_PEERS6 "cppnet_peers6"
/* Container (and VLAN endpoint) host veths with qdiscs of the bandwidth CNI plugin (key:
 * ifindex, value: CPPNET_QUEUED_*): a queueing root qdisc (tbf, the container's ingress rate) —
 * delivery passes it; an "ingress" qdisc (its egress rate, through an ifb) — the veth's program
 * checks the container's packets and hands them on to that qdisc instead of sending them
 * itself (the kernel then forwards them, through cppnet.host onto the overlay). */
#define CPPNET_MAP_QUEUED "cppnet_queued"
#define CPPNET_QUEUED_ROOT 0x1
#define CPPNET_QUEUED_INGRESS 0x2

/* Flows the kernel's conntrack translated to one of our containers (DNAT: a portmap hostPort),
 * keyed as the container answers them; written by the bridge's tc egress program, which sees
 * the kernel deliver them. A container's answer in such a flow must meet that conntrack entry
 * again (to get the host's address back as its source), so the container side hands it to the
 * kernel instead of sending it itself. LRU: an entry outliving its flow only costs the slow
 * path. Addresses in network byte order (IPv4: the first 4 bytes). */
#define CPPNET_MAP_NAT_FLOWS "cppnet_natflows"
#define CPPNET_NAT_FLOWS_MAX 65536
struct cppnet_nat_flow {
  __u8 local[16];  /* the container's address */
  __u8 remote[16]; /* the address it answers (a container on another host, say) */
  __be16 local_port;
  __be16 remote_port;
  __u8 proto;  /* TCP or UDP */
  __u8 family; /* 4 or 6 */
  __u8 pad[2];
};
CPPNET_ASSERT_SIZE(struct cppnet_nat_flow, 40);
/* One entry (key 0): nonzero once cppnet_natflows got an entry, so that containers pay for
 * the flow lookup only on hosts where the kernel translated flows to them. */
#define CPPNET_MAP_NAT_SEEN "cppnet_natseen"

/* A container on this host, by its IPv4 address (network byte order): where the
 * receive path delivers straight into the container's namespace (bpf_redirect_peer).
 * Learned by the container-side program from the container's own packets. */
struct cppnet_endpoint {
  __u32 ifindex;  /* host end of the container's veth */
  __u8 mac[6];    /* the container's MAC */
  __u8 gw_mac[6]; /* the MAC the container sends to for its gateway */
};
CPPNET_ASSERT_SIZE(struct cppnet_endpoint, 16);

/* Peer hosts, written by the agent from the routes it knows (leases, static routes),
 * in a direct-mapped array: slot cppnet_peer_slot(PublicIP), so the receive path finds
 * a tunnel packet's sender in a few instructions. A peer with one route carries that
 * subnet, and its packets' inner source is checked against it; otherwise (several
 * routes, a static route the agent has not seen, or a peer that shares its slot with
 * a lower address) the route of the inner source decides. */
#define CPPNET_PEER_SLOTS (1u << 16)
struct cppnet_peer {
  __be32 public_ip; /* 0: free */
  __u32 routes;
  __be32 subnet; /* when routes == 1 */
  __u8 subnet_len;
  __u8 pad[3];
};
CPPNET_ASSERT_SIZE(struct cppnet_peer, 16);

static inline __u32 cppnet_peer_slot(__be32 public_ip) {
  return (public_ip ^ (public_ip >> 16)) & (CPPNET_PEER_SLOTS - 1);
}

/* Its IPv6 twin: a container by its IPv6 address (same value), for direct delivery. */
#define CPPNET_MAP_ENDPOINTS6 "cppnet_endpt6"

/* A container veth bound to the one IPv4 address and MAC it sends from, on first
 * sight, in slot (ifindex & (CPPNET_BINDS_SLOTS - 1)) of an array (a lookup costs a
 * few instructions on every packet a container sends). Frames with another source are
 * dropped, and an address bound to a live veth is never re-bound to another; the agent
 * frees the slot of a veth that is gone. */
#define CPPNET_BINDS_SLOTS (1u << 18)
struct cppnet_bind {
  __u32 ifindex; /* 0: free */
  __be32 addr;
  __u8 mac[6];
  __u8 delivery; /* 1 once the delivery entry (cppnet_endpoint) has its gateway MAC */
  __u8 pad;
};
CPPNET_ASSERT_SIZE(struct cppnet_bind, 16);

/* The IPv6 binding of a container veth (global address in our IPv6 subnet), same slots and
 * rules as cppnet_bind; the MAC is the IPv4 binding's, or bound here when IPv6 comes first.
 * Link-local and unspecified sources stay on the link (neighbour discovery). */
#define CPPNET_MAP_BINDS6 "cppnet_binds6"
struct cppnet_bind6 {
  __u32 ifindex; /* 0: free */
  __u8 addr[16];
  __u8 mac[6];
  __u8 delivery;
  __u8 pad;
};
CPPNET_ASSERT_SIZE(struct cppnet_bind6, 28);

/* XDP metadata in front of a packet the XDP program decapsulated from a verified
 * peer: the tc program delivers such packets without a second check. */
#define CPPNET_XDP_META_DECAP 0x63707064u

/* VLAN networks (Docker's macvlan/ipvlan on an 802.1Q trunk, done in BPF).
 * A network is identified on this host by its trunk and VLAN id (0 = untagged): one
 * network per (trunk, VLAN). Its endpoints are veth pairs; the host end carries
 * cppnet_tc_vlan_port (the endpoint's egress), the trunk carries the demultiplexer. */
#define CPPNET_MAP_VLAN_EP "cppnet_vlan_ep"
#define CPPNET_MAP_VLAN_NET "cppnet_vlan_net"
#define CPPNET_MAP_VLAN_PORT "cppnet_vlan_port"
/* The endpoint program, pinned so the CNI plugin attaches what the agent loaded. */
#define CPPNET_PIN_PROG_VLAN_PORT "cppnet_prog_vport"
#define CPPNET_VLAN_EP_MAX 16384
#define CPPNET_VLAN_NET_MAX 4096
#define CPPNET_VLAN_PORTS_MAX 32 /* endpoints of one network on one host */

enum cppnet_vlan_mode {
  CPPNET_VLAN_MACVLAN_BRIDGE = 0,
  CPPNET_VLAN_MACVLAN_VEPA = 1,
  CPPNET_VLAN_MACVLAN_PRIVATE = 2,
  CPPNET_VLAN_MACVLAN_PASSTHRU = 3,
  CPPNET_VLAN_IPVLAN_L2 = 4,
  CPPNET_VLAN_IPVLAN_L3 = 5,
};

/* The trunk key of a network without parent (Docker's internal network on a dummy link):
 * CPPNET_VLAN_LOCAL_TRUNK | the network's local id. No interface has such an ifindex; what
 * its endpoints send stays on the host. */
#define CPPNET_VLAN_LOCAL_TRUNK 0x80000000u

/* Docker's ipvlan_flag (ipvlan modes only; bridge = none). */
#define CPPNET_VLAN_F_PRIVATE 0x1 /* endpoints on one host do not reach each other */
#define CPPNET_VLAN_F_VEPA 0x2    /* everything goes to the switch, which reflects local traffic */

enum cppnet_vlan_addr_kind {
  CPPNET_VLAN_ADDR_MAC = 0,  /* macvlan modes: frames are found by destination MAC */
  CPPNET_VLAN_ADDR_IPV4 = 1, /* ipvlan: endpoints share the trunk's MAC, found by IP */
  CPPNET_VLAN_ADDR_IPV6 = 2,
};

/* An endpoint by (trunk, VLAN, its MAC or one of its IPs). */
struct cppnet_vlan_ep_key {
  __u32 trunk_ifindex;
  __u16 vlan;
  __u8 kind; /* enum cppnet_vlan_addr_kind */
  __u8 pad;
  __u8 addr[16]; /* MAC in the first 6 bytes, IPv4 in the first 4, or IPv6 */
};
CPPNET_ASSERT_SIZE(struct cppnet_vlan_ep_key, 24);

struct cppnet_vlan_ep {
  __u32 ifindex; /* host end of the endpoint's veth */
  __u8 mac[6];   /* the endpoint's MAC */
  __u8 pad[2];
};
CPPNET_ASSERT_SIZE(struct cppnet_vlan_ep, 12);

struct cppnet_vlan_net_key {
  __u32 trunk_ifindex;
  __u16 vlan;
  __u16 pad;
};
CPPNET_ASSERT_SIZE(struct cppnet_vlan_net_key, 8);

/* A network with endpoints on this host; ports = the host veths of its endpoints,
 * the flood list for broadcast and multicast. ipvlan l3 routes: to an address of the
 * network's (first) subnet directly, to anything else through its gateway (0/:: = none). */
struct cppnet_vlan_net {
  __u8 mode; /* enum cppnet_vlan_mode */
  __u8 nports;
  __u8 trunk_mac[6]; /* ipvlan: the MAC every endpoint shares */
  __u32 ports[CPPNET_VLAN_PORTS_MAX];
  __be32 subnet4;
  __be32 gw4;
  __u8 subnet4_len;
  __u8 subnet6_len;
  __u8 flags; /* CPPNET_VLAN_F_* */
  __u8 pad;
  __u8 subnet6[16];
  __u8 gw6[16];
};
CPPNET_ASSERT_SIZE(struct cppnet_vlan_net, 180);

/* ipvlan l3 next hops on a VLAN (key kind IPv4/IPv6). The agent creates an entry when
 * it asks for a next hop (PENDING) and when it re-checks one (REFRESH); the trunk
 * program fills it only from an ARP reply or solicited advertisement addressed to the
 * trunk's MAC for such an entry: unsolicited or gratuitous messages never write one. */
#define CPPNET_MAP_VLAN_NBR "cppnet_vlan_nbr"
enum cppnet_nbr_state {
  CPPNET_NBR_RESOLVED = 0,
  CPPNET_NBR_PENDING = 1, /* asked, no answer yet: not usable */
  CPPNET_NBR_REFRESH = 2, /* usable, asked again: an answer may replace the MAC */
};
struct cppnet_vlan_nbr {
  __u8 mac[6];
  __u8 state; /* enum cppnet_nbr_state */
  __u8 pad;
};
CPPNET_ASSERT_SIZE(struct cppnet_vlan_nbr, 8);

/* ipvlan l3: a next hop with no known MAC, for the agent to resolve (ARP request or
 * neighbour solicitation on the VLAN). Ring buffer events. */
#define CPPNET_MAP_VLAN_MISS "cppnet_vlan_miss"
struct cppnet_vlan_miss {
  __u32 trunk_ifindex;
  __u16 vlan;
  __u8 kind; /* CPPNET_VLAN_ADDR_IPV4 or _IPV6 */
  __u8 pad;
  __u8 src[16]; /* the endpoint's address (sender of the request) */
  __u8 target[16];
};
CPPNET_ASSERT_SIZE(struct cppnet_vlan_miss, 40);

/* An endpoint's host veth (key: its ifindex): where its frames go. */
struct cppnet_vlan_port {
  __u32 trunk_ifindex;
  __u16 vlan;
  __u8 mode;   /* enum cppnet_vlan_mode */
  __u8 flags;  /* CPPNET_VLAN_F_* */
  __u8 mac[6]; /* the endpoint's MAC (frames with another source are dropped) */
  __u8 pad2[2];
};
CPPNET_ASSERT_SIZE(struct cppnet_vlan_port, 16);

/* Egress rates of VLAN endpoints: the bandwidth CNI plugin's egressRate, egressBurst and tbf
 * limit, which the agent reads from the plugin's tbf (on the ifb its "ingress" filter on the
 * endpoint's veth mirrors to). The plugin's own path cannot carry them: the ifb hands a frame
 * back to the veth's receive path past tc, where no program sends it on. So the endpoint program
 * hands a rated endpoint's frames (tagged for the wire, or for a local endpoint) to
 * CPPNET_PACE_DEV, whose root htb has a class per rated endpoint with the plugin's rate and burst
 * and a bfifo of tbf's queue under it: skb->priority names the class, skb->mark where the frame
 * goes next (a trunk's ifindex, or CPPNET_PACED_LOCAL | a local endpoint's veth), and
 * cppnet_tc_paced on the pair's other end, CPPNET_PACED_DEV, sends it there. */
#define CPPNET_PACE_DEV "cppnet.pace"
#define CPPNET_PACED_DEV "cppnet.paced"
#define CPPNET_PACE_HTB 0x10000u        /* the htb's handle (1:); a class is 1:<n> */
#define CPPNET_PACED_LOCAL 0x80000000u  /* skb->mark: to a local endpoint (else a trunk) */
#define CPPNET_MAP_RATES "cppnet_rates" /* key: host veth ifindex, value: __u32 htb class id */
/* One entry (key 0): CPPNET_PACE_DEV's ifindex while some endpoint is rated, else 0 (the
 * endpoint program then skips the rates lookup). */
#define CPPNET_MAP_PACING "cppnet_pacing"

/* Per-CPU traffic of an endpoint (key: its host veth's ifindex), created with it. */
#define CPPNET_MAP_VLAN_CNT "cppnet_vlan_cnt"
struct cppnet_vlan_cnt {
  __u64 rx_packets, rx_bytes, tx_packets, tx_bytes;
};
CPPNET_ASSERT_SIZE(struct cppnet_vlan_cnt, 32);

#define CPPNET_CFG_READY 0x1         /* agent has filled the config; programs act only then */
#define CPPNET_CFG_UNTAGGED_VLAN 0x2 /* an untagged VLAN network uses the underlay as trunk */
#define CPPNET_CFG_QUEUED_PORTS 0x4  /* some container veth has a queueing qdisc (cppnet_queued) */

/* Local host state, single entry (key 0) of an array map. */
struct cppnet_config {
  __u32 subnet_addr;  /* our leased subnet, network byte order */
  __u32 network_addr; /* the cluster Network, network byte order */
  __u32 underlay_ip;  /* our PublicIP, network byte order */
  __u32 underlay_ifindex;
  __u32 container_ifindex; /* bridge carrying our subnet, 0 until found */
  __u32 vni;
  __u16 port; /* vxlan UDP port, host byte order */
  __u16 mtu;  /* underlay MTU */
  __u8 subnet_len;
  __u8 network_len;
  __u8 backend;
  __u8 flags; /* CPPNET_CFG_* */
  __u8 underlay_mac[6];
  __u8 vtep_mac[6];
  __u32 soft_ifindex; /* CPPNET_SOFT_DEV, 0 when absent */
  __u32 host_ifindex; /* CPPNET_HOST_DEV, 0 when absent */
  __u8 host_mac[6];
  __u8 pad[2];
  /* Dual stack (subnet6_len 0: IPv6 off): addresses in network byte order. */
  __u8 subnet6[16];
  __u8 network6[16];
  __u8 underlay_ip6[16]; /* our PublicIPv6 */
  __u8 subnet6_len;
  __u8 network6_len;
  __u8 pad6[2];
};
CPPNET_ASSERT_SIZE(struct cppnet_config, 112);

/* Counters: X(id, name, help). Traffic counters first, then one per drop reason. */
#define CPPNET_TRAFFIC_COUNTERS(X)                                                               \
  X(VXLAN_TX, "vxlan_tx", "packets encapsulated into VXLAN and sent to a peer")                  \
  X(VXLAN_RX, "vxlan_rx", "VXLAN packets decapsulated and delivered to containers")              \
  X(UDP_TX, "udp_tx", "packets encapsulated into UDP (udp backend) and sent")                    \
  X(UDP_RX, "udp_rx", "UDP-encapsulated packets decapsulated and delivered")                     \
  X(HOSTGW_TX, "hostgw_tx", "packets forwarded to a peer as next hop (host-gw)")                 \
  X(FRAG_NEEDED_TX, "frag_needed_tx",                                                            \
    "ICMP fragmentation-needed sent back for too-big DF packets")                                \
  X(PKT_TOO_BIG_TX, "packet_too_big_tx", "ICMPv6 packet-too-big sent back for too-big packets")  \
  X(DELIVER_PEER, "deliver_direct",                                                              \
    "overlay packets delivered straight into a container (or through its veth's qdisc)")         \
  X(DELIVER_BRIDGE, "deliver_bridge",                                                            \
    "overlay packets handed to the container bridge (endpoint not learned yet)")                 \
  X(DELIVER_HOST, "deliver_host", "overlay packets for the host's own overlay address")          \
  X(HOST_TX, "host_tx", "packets the host itself sent to other hosts' containers")               \
  X(VLAN_RX, "vlan_rx", "trunk frames untagged and delivered to a VLAN network endpoint")        \
  X(VLAN_TX, "vlan_tx", "endpoint frames tagged and sent out of the trunk")                      \
  X(VLAN_LOCAL, "vlan_local", "frames switched between endpoints on this host (bridge, ipvlan)") \
  X(VLAN_PROXY, "vlan_proxy",                                                                    \
    "ARP/neighbour solicitations for ipvlan l3 endpoints answered on the trunk")                 \
  X(NAT_REPLY, "nat_reply",                                                                      \
    "container answers in flows the kernel translated (hostPort), handed to the kernel")         \
  X(VLAN_PACED, "vlan_paced",                                                                    \
    "frames of VLAN endpoints with an egress rate handed to " CPPNET_PACE_DEV "'s htb")

#define CPPNET_DROP_REASONS(X)                                                                     \
  X(DROP_TRUNCATED, "truncated", "headers shorter than they claim")                                \
  X(DROP_VXLAN_FLAGS, "vxlan_bad_flags", "VXLAN header without the valid-VNI flag")                \
  X(DROP_VNI_UNKNOWN, "vxlan_unknown_vni", "VXLAN to our port with a VNI we do not serve")         \
  X(DROP_VTEP_MAC, "vxlan_wrong_mac", "inner destination MAC is not our VtepMAC")                  \
  X(DROP_INNER_NOT_IPV4, "inner_not_ipv4", "inner frame is not IPv4")                              \
  X(DROP_INNER_BAD_IP, "inner_bad_ip", "inner IPv4 header invalid")                                \
  X(DROP_NOT_LOCAL, "not_local_subnet", "decapsulated packet not for our subnet")                  \
  X(DROP_TOO_BIG, "too_big", "packet too big for the underlay after encapsulation")                \
  X(DROP_BACKEND, "backend_unsupported", "route uses a backend this datapath lacks")               \
  X(DROP_ENCAP_FAILED, "encap_failed", "kernel refused to grow or shrink the packet")              \
  X(DROP_VLAN_NO_PORT, "vlan_no_port", "frame from a veth that is no VLAN endpoint (any more)")    \
  X(DROP_VLAN_SOURCE, "vlan_bad_source",                                                           \
    "VLAN endpoint sent with a MAC or IP that is not its own")                                     \
  X(DROP_VLAN_LOOP, "vlan_looped", "our own endpoint's frame came back from the wire")             \
  X(DROP_VLAN_L3, "vlan_l3_no_l2", "broadcast, multicast or ARP from an ipvlan l3 endpoint")       \
  X(DROP_VLAN_NO_ROUTE, "vlan_no_route", "ipvlan l3: off the network's subnet and no gateway")     \
  X(DROP_VLAN_UNRESOLVED, "vlan_unresolved",                                                       \
    "ipvlan l3: next hop's MAC unknown yet (the agent resolves it)")                               \
  X(DROP_UNKNOWN_PEER, "unknown_peer",                                                             \
    "overlay packet from a host that is no peer (outer source, or source MAC of a routed packet)") \
  X(DROP_BAD_INNER_SOURCE, "bad_inner_source",                                                     \
    "overlay packet whose inner source is not in the sending peer's subnet")                       \
  X(DROP_BAD_SOURCE, "bad_source", "container sent from an address or MAC that is not its own")    \
  X(DROP_TO_TUNNEL, "container_to_tunnel", "container sent to a host's tunnel port")               \
  X(DROP_VLAN_TAGGED, "vlan_tagged_by_endpoint",                                                   \
    "VLAN endpoint sent an 802.1Q/802.1ad tagged frame")                                           \
  X(DROP_NO_ROUTE, "no_route",                                                                     \
    "the host sent to an overlay address that no lease or route covers")                           \
  X(DROP_VLAN_PRIVATE, "vlan_private",                                                             \
    "ipvlan_flag=private: an endpoint sent to another endpoint on the same host")                  \
  X(DROP_VLAN_NO_PARENT, "vlan_no_parent",                                                         \
    "network without parent: the destination is no endpoint on this host")                         \
  X(DROP_INNER_NOT_IPV6, "inner_not_ipv6", "IPv6 tunnel packet whose inner frame is not IPv6")

#define CPPNET_ENUM_ENTRY(id, name, help) CPPNET_CNT_##id,
enum cppnet_counter_id {
  CPPNET_TRAFFIC_COUNTERS(CPPNET_ENUM_ENTRY) CPPNET_DROP_REASONS(CPPNET_ENUM_ENTRY) CPPNET_CNT_MAX
};
#undef CPPNET_ENUM_ENTRY

/* Per-CPU value of the stats array (index = enum cppnet_counter_id). */
struct cppnet_counter {
  __u64 packets;
  __u64 bytes;
};
CPPNET_ASSERT_SIZE(struct cppnet_counter, 16);

#endif /* CPPNET_ABI_H */
