/* Protocol constants and header layouts the BPF programs parse (UAPI macros that
 * vmlinux.h cannot carry), named so that no program uses a raw number or offset. */
#ifndef CPPNET_BPF_LIB_DEFS_H
#define CPPNET_BPF_LIB_DEFS_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "cppnet/abi.h"

/* UAPI macros that vmlinux.h cannot carry. */
#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define IP_DF 0x4000
#define IP_MF_OFFSET 0x3fff
#define IP_FRAG_OFFSET 0x1fff /* nonzero: not the first fragment */
#define IPPROTO_UDP_ 17
#define IPPROTO_TCP_ 6
#define TC_ACT_UNSPEC (-1) /* tcx: on to the next program, or the interface's qdisc */
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
#define AF_INET6_ 10
#define IPPROTO_ICMPV6_ 58
#define ND_NS 135
#define ND_NA 136
#define ICMPV6_PKT_TOOBIG_ 2
#define VXLAN_FLAG_VNI 0x08
/* Field offsets from the start of an L3 header, for bpf_skb_load/store_bytes. */
#define IPV4_SADDR_OFF 12 /* saddr, daddr follows */
#define IPV4_DADDR_OFF 16
#define IPV6_SADDR_OFF 8 /* saddr, daddr follows */
#define IPV6_DADDR_OFF 24
#define IPV6_HLEN 40
#define ARP_TPA_OFF 24 /* Ethernet/IPv4 ARP: target protocol address */
/* ICMPv6 neighbour advertisement (RFC 4861) and its target link-layer address option. */
#define ND_NA_FLAGS_OFF 4
#define ND_NA_TARGET_OFF 8
#define ND_OPT_TARGET_LLADDR 2
#define ND_OPT_OFF 24
#define ND_NA_SOLICITED_OVERRIDE 0x60 /* the flags byte: S and O set */
#define ICMP_CSUM_OFF 2
/* ICMP destination unreachable, fragmentation needed (RFC 792, RFC 1191). */
#define ICMP_DEST_UNREACH_ 3
#define ICMP_FRAG_NEEDED_ 4
#define ICMP_NEXT_HOP_MTU_OFF 6
#define ICMP_HLEN 8

/* A feature's helper answers NOT_OURS for a packet that is not its business: the caller
 * goes on with it (every other answer is a verdict or a feature's own result). */
#define NOT_OURS (-1)
/* Pinned map shapes used more than once: a one-entry __u32 array (a flag or a number set by the
 * agent or a program), and a hash from an interface's ifindex to a __u32. */
#define CPPNET_U32_CELL(name)            \
  struct {                               \
    __uint(type, BPF_MAP_TYPE_ARRAY);    \
    __uint(max_entries, 1);              \
    __type(key, __u32);                  \
    __type(value, __u32);                \
    __uint(pinning, LIBBPF_PIN_BY_NAME); \
  } name SEC(".maps")
#define CPPNET_IFINDEX_U32_HASH(name)          \
  struct {                                     \
    __uint(type, BPF_MAP_TYPE_HASH);           \
    __uint(max_entries, CPPNET_ENDPOINTS_MAX); \
    __type(key, __u32);                        \
    __type(value, __u32);                      \
    __uint(pinning, LIBBPF_PIN_BY_NAME);       \
  } name SEC(".maps")

/* The value of a CPPNET_U32_CELL (0 when unreadable). */
static __always_inline __u32 cell_value(void* cell) {
  __u32 zero = 0;
  __u32* v = bpf_map_lookup_elem(cell, &zero);
  return v ? *v : 0;
}

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

#endif
