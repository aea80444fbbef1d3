// An lwt_xmit program that pushes an IPv4 header: fine on a route, but a
// BPF_PROG_TEST_RUN of it dereferences the missing route's device and can
// crash the kernel. `lwt test` must refuse it without running it.
#include <linux/bpf.h>
#include <linux/ip.h>

#define SEC(name) __attribute__((section(name), used))

static long (*bpf_lwt_push_encap)(void *skb, __u32 type, void *hdr,
				  __u32 len) = (void *)BPF_FUNC_lwt_push_encap;

SEC("lwt_xmit") int encap(struct __sk_buff *skb)
{
	struct iphdr outer = {
		.version = 4,
		.ihl = 5,
		.ttl = 64,
		.protocol = 4,
		.saddr = __builtin_bswap32(0xc0a80001),
		.daddr = __builtin_bswap32(0xc0a80002),
	};

	if (skb->len > 1000)
		return BPF_OK;
	outer.tot_len = __builtin_bswap16(skb->len + sizeof(outer));
	if (bpf_lwt_push_encap(skb, BPF_LWT_ENCAP_IP, &outer, sizeof(outer)))
		return BPF_DROP;
	return BPF_LWT_REROUTE;
}

char _license[] SEC("license") = "GPL";
