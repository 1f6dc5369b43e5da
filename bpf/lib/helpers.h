/* Small helpers: prefixes and MAC addresses. */
#ifndef CPPNET_BPF_LIB_HELPERS_H
#define CPPNET_BPF_LIB_HELPERS_H

#include "lib/defs.h"

static __always_inline int in_prefix(__be32 addr, __be32 net, __u8 len) {
  __u32 mask = len ? bpf_htonl(~0u << (32 - len)) : 0;

  return len <= 32 && (addr & mask) == net;
}

/* Byte-wise, so addresses at any alignment (packet, stack, map value) compare. */
static __always_inline int in_prefix6(const __u8* addr, const __u8* net, __u8 len) {
  for (int i = 0; i < 16; i++) {
    int bits = (int)len - 8 * i;
    __u8 mask = bits >= 8 ? 0xff : bits <= 0 ? 0 : (__u8)(0xff << (8 - bits));
    if ((addr[i] & mask) != net[i]) return 0;
  }
  return 1;
}

static __always_inline int ip6_equal(const __u8* a, const __u8* b) {
  __u8 d = 0;

#pragma unroll
  for (int i = 0; i < 16; i++) d |= a[i] ^ b[i];
  return !d;
}

/* fe80::/10 or :: — addresses that stay on the link. */
static __always_inline int ip6_link_scope(const __u8* a) {
  __u8 any = 0;

#pragma unroll
  for (int i = 0; i < 16; i++) any |= a[i];
  return !any || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
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

#endif
