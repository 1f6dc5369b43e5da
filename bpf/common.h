/* Helpers shared by cppnet's BPF programs: maps, counters and bounded header access. */
#ifndef CPPNET_BPF_COMMON_H
#define CPPNET_BPF_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "cppnet/abi.h"

/* UAPI macros that vmlinux.h cannot carry. */
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define IP_DF 0x4000
#define IP_MF_OFFSET 0x3fff
#define IPPROTO_UDP_ 17
#define IPPROTO_TCP_ 6
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define PACKET_HOST 0
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88a8
#define ETH_P_ARP 0x0806
#define ARPHRD_ETHER_ 1
#define ARPOP_REQUEST_ 1
#define ARPOP_REPLY_ 2
#define AF_INET_ 2
#define ETH_P_IPV6 0x86dd
#define VXLAN_FLAG_VNI 0x08
#define ADJ_ROOM_ENCAP_L2(len) \
  (((__u64)(len)&BPF_ADJ_ROOM_ENCAP_L2_MASK) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT)

/* Ethernet/IPv4 ARP, as on the wire. */
struct arp_eth_ {
  __be16 htype, ptype;
  __u8 hlen, plen;
  __be16 op;
  __u8 sha[6], spa[4], tha[6], tpa[4];
} __attribute__((packed));

struct vxlanhdr_ {
  __u8 flags;
  __u8 reserved1[3];
  __be32 vni_reserved; /* VNI in the upper 24 bits */
};

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, CPPNET_ROUTES_MAX);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct cppnet_route_key);
  __type(value, struct cppnet_route);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_routes SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct cppnet_config);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, CPPNET_CNT_MAX);
  __type(key, __u32);
  __type(value, struct cppnet_counter);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, CPPNET_ENDPOINTS_MAX);
  __type(key, __u32);
  __type(value, struct cppnet_endpoint);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_endpoint SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, CPPNET_PEER_SLOTS);
  __type(key, __u32);
  __type(value, struct cppnet_peer);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_peers SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, CPPNET_BINDS_SLOTS);
  __type(key, __u32);
  __type(value, struct cppnet_bind);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_binds SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, CPPNET_VLAN_EP_MAX);
  __type(key, struct cppnet_vlan_ep_key);
  __type(value, struct cppnet_vlan_ep);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_ep SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, CPPNET_VLAN_NET_MAX);
  __type(key, struct cppnet_vlan_net_key);
  __type(value, struct cppnet_vlan_net);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_net SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, CPPNET_VLAN_EP_MAX);
  __type(key, __u32);
  __type(value, struct cppnet_vlan_port);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_port SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, CPPNET_VLAN_EP_MAX);
  __type(key, __u32);
  __type(value, struct cppnet_vlan_cnt);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_cnt SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, CPPNET_VLAN_EP_MAX);
  __type(key, struct cppnet_vlan_ep_key);
  __type(value, struct cppnet_vlan_nbr);
  __uint(pinning, LIBBPF_PIN_BY_NAME);
} cppnet_vlan_nbr SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 64 * 1024);
} cppnet_vlan_miss SEC(".maps");

static __always_inline void count(__u32 id, __u64 bytes) {
  struct cppnet_counter* c = bpf_map_lookup_elem(&cppnet_stats, &id);

  if (c) { /* per-CPU slot: no atomics needed */
    c->packets++;
    c->bytes += bytes;
  }
}

static __always_inline struct cppnet_config* ready_config(void) {
  __u32 zero = 0;
  struct cppnet_config* cfg = bpf_map_lookup_elem(&cppnet_config, &zero);

  return (cfg && (cfg->flags & CPPNET_CFG_READY)) ? cfg : 0;
}

static __always_inline int in_prefix(__be32 addr, __be32 net, __u8 len) {
  __u32 mask = len ? bpf_htonl(~0u << (32 - len)) : 0;

  return len <= 32 && (addr & mask) == net;
}

static __always_inline int mac_equal(const __u8* a, const __u8* b) {
  return *(const __u32*)a == *(const __u32*)b && *(const __u16*)(a + 4) == *(const __u16*)(b + 4);
}

/* For MACs at any alignment (packed ARP headers on the stack, where the verifier
 * refuses unaligned word loads). */
static __always_inline int mac_equal_bytes(const __u8* a, const __u8* b) {
  __u8 d = 0;

#pragma unroll
  for (int i = 0; i < 6; i++) d |= a[i] ^ b[i];
  return !d;
}

static __always_inline void mac_copy(__u8* dst, const __u8* src) { __builtin_memcpy(dst, src, 6); }

/* TTL - 1 with an incremental checksum update (RFC 1624), as the kernel's
 * ip_decrease_ttl(): no helper call, packet pointers stay valid. */
static __always_inline void ip_decrease_ttl(struct iphdr* ip) {
  __u32 check = (__u32)ip->check + (__u32)bpf_htons(0x0100);

  ip->check = (__sum16)(check + (check >= 0xffff));
  ip->ttl--;
}

/* RFC 1071 checksum of a 20-byte IPv4 header without options. */
static __always_inline __u16 ipv4_csum20(const struct iphdr* ip) {
  const __u16* w = (const __u16*)ip;
  __u32 sum = 0;

#pragma unroll
  for (int i = 0; i < 10; i++) sum += w[i];
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

#endif
