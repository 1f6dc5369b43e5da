/* Checksums: folding (the one copy), IPv4 header, TTL decrement. */
#ifndef CPPNET_BPF_LIB_CSUM_H
#define CPPNET_BPF_LIB_CSUM_H

#include "lib/defs.h"

/* Folds a 32-bit one's complement sum to 16 bits and complements it (RFC 1071); two
 * folds suffice for any 32-bit value. */
static __always_inline __u16 csum_fold(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

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
  return csum_fold(sum);
}

#endif
