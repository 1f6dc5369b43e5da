// SPDX-License-Identifier: GPL-2.0
/* cppnet datapath.
 * - cppnet_tc_encap, tc ingress of the container veths (and of the bridge, for ports
 *   not attached yet): encapsulates (vxlan/udp) or routes (host-gw) overlay traffic
 *   straight out of the underlay, and learns where each local container lives;
 *   cppnet_nk_encap, the same inside a netkit overlay container's transmit (BPF_NETKIT_PEER),
 *   also delivering to the host's other containers (no bridge behind netkit).
 * - cppnet_tc_underlay, tc ingress of the underlay: decapsulates, and delivers overlay
 *   packets for our subnet straight into the container (bpf_redirect_peer), skipping
 *   IP forwarding, the bridge and a backlog queue. GSO packets stay whole.
 * - cppnet_xdp_decap, XDP on the underlay (optional): earliest decapsulation for NICs
 *   where XDP leaves GRO intact; hands the inner packet to the tc program above.
 * - cppnet_tc_host, tc egress of cppnet.host (the device holding the host's overlay address
 *   and its route to the Network): the host's own traffic to other hosts' containers.
 * - cppnet_tc_soft, tc ingress of cppnet.host: udp packets for a userspace peer (flanneld),
 *   encapsulated after the kernel finished their checksums and segments in cppnet.soft.
 * - cppnet_tc_bridge_out, tc egress of the container bridge (and tcx egress of each netkit
 *   overlay container's host end): records the flows the kernel translated to containers
 *   (hostPort), whose answers must go back through conntrack (nat.h).
 * - cppnet_tc_trunk (tc ingress of a VLAN trunk) and cppnet_tc_vlan_port (tc ingress
 *   of a VLAN endpoint's host veth): VLAN networks, see vlan.h; cppnet_tc_paced (tc ingress of
 *   cppnet.paced): rated endpoints' frames after cppnet.pace's htb, on to trunk or endpoint.
 * Anything that is not overlay or VLAN network traffic returns to the stack untouched.
 *
 * One object (one skeleton, maps shared by name), its programs by attach point:
 * container.h, xdp.h, underlay.h, vlan_trunk.h, vlan_endpoint.h (in this order, as the
 * programs were laid out before the split); over lib/ (constants,
 * counters and drops, checksums, helpers, encapsulation) and the state each feature
 * owns (overlay.h, decap.h, vlan.h). */
#include "container.h"
#include "xdp.h"
#include "underlay.h"
#include "vlan_trunk.h"
#include "vlan_endpoint.h"

char LICENSE[] SEC("license") = "GPL";
