/* XDP on the underlay (optional): earliest decapsulation, marking what it opened for tc. */
#ifndef CPPNET_BPF_XDP_H
#define CPPNET_BPF_XDP_H

#include "decap.h"

SEC("xdp")
int cppnet_xdp_decap(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);
  struct cppnet_config* cfg;
  __u32 strip = 0, reason = 0;
  int vxlan = 0;

  if ((void*)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_PASS;
  cfg = ready_config();
  if (!cfg || !to_our_tunnel(ip, cfg)) return XDP_PASS;
  __u64 len = data_end - data;
  int v = decap_check(ip, data_end, cfg, &strip, &reason, &vxlan);
  if (v == NOT_OURS) return XDP_PASS;
  if (v == DECAP_DROP) {
    count(reason, len);
    return XDP_DROP;
  }

  __u8 underlay_mac[6];
  mac_copy(underlay_mac, cfg->underlay_mac);
  /* Dropping `strip` bytes from the front leaves ETH_HLEN bytes before the inner IP
   * header: the inner Ethernet header (vxlan) or room for a new one (udp). */
  if (bpf_xdp_adjust_head(ctx, (int)strip)) return xdp_drop(CPPNET_CNT_DROP_ENCAP_FAILED, len);
  /* Room for the mark that tells tc this packet was checked. A driver without XDP
   * metadata gets the packet back unopened (nothing was written yet), and tc
   * decapsulates (and checks) it. */
  if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(__u32))) {
    if (bpf_xdp_adjust_head(ctx, -(int)strip)) return XDP_DROP;
    return XDP_PASS;
  }
  data = (void*)(long)ctx->data;
  data_end = (void*)(long)ctx->data_end;
  eth = data;
  if ((void*)(eth + 1) > data_end) return XDP_DROP;
  /* Hand the inner packet to the stack as if sent to the underlay device; the tc
   * program there delivers it to the container. */
  mac_copy(eth->h_dest, underlay_mac);
  if (!vxlan) {
    mac_copy(eth->h_source, underlay_mac);
    eth->h_proto = bpf_htons(ETH_P_IP);
  }
  /* Mark it as checked (metadata travels with the skb to tc): the tc program
   * delivers only such unencapsulated packets without checking their sender. */
  __u32* meta = (void*)(long)ctx->data_meta;
  if ((void*)(meta + 1) > data) return XDP_DROP;
  *meta = CPPNET_XDP_META_DECAP;
  count(vxlan ? CPPNET_CNT_VXLAN_RX : CPPNET_CNT_UDP_RX, data_end - data);
  return XDP_PASS;
}

#endif
