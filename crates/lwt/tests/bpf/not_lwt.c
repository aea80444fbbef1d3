// An XDP program: the wrong type for any route hook.
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

SEC("xdp") int pass_xdp(struct xdp_md *ctx) { return XDP_PASS; }

char _license[] SEC("license") = "GPL";
