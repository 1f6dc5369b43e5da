/* The shared state: this host's configuration, per-CPU counters, and the drop helpers. */
#ifndef CPPNET_BPF_LIB_STATS_H
#define CPPNET_BPF_LIB_STATS_H

#include "lib/defs.h"

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

/* CPPNET_ABI_VERSION of the agent that loaded these maps (read by tools, not by programs). */
CPPNET_U32_CELL(cppnet_abi);

static __always_inline void count(__u32 id, __u64 bytes) {
  struct cppnet_counter* c = bpf_map_lookup_elem(&cppnet_stats, &id);

  if (c) { /* per-CPU slot: no atomics needed */
    c->packets++;
    c->bytes += bytes;
  }
}

/* The config entry, filled or not (VLAN networks work before the overlay is ready). */
static __always_inline struct cppnet_config* config_entry(void) {
  __u32 zero = 0;

  return bpf_map_lookup_elem(&cppnet_config, &zero);
}

static __always_inline struct cppnet_config* ready_config(void) {
  struct cppnet_config* cfg = config_entry();

  return (cfg && (cfg->flags & CPPNET_CFG_READY)) ? cfg : 0;
}

/* Every drop is counted under its reason (cppnetctl show stats names it) and returns the
 * verdict that drops: one helper per hook, so no drop path forgets its counter. */
static __always_inline int drop(struct __sk_buff* skb, __u32 reason) {
  count(reason, skb->len);
  return TC_ACT_SHOT;
}

static __always_inline int xdp_drop(__u32 reason, __u64 len) {
  count(reason, len);
  return XDP_DROP;
}

#endif
