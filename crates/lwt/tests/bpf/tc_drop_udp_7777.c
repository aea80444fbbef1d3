// A classic tc (cls_bpf, direct-action) ingress filter: drops IPv4 UDP to
// port 7777, leaves everything else to the next filter.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#define SEC(name) __attribute__((section(name), used))

SEC("classifier") int drop_udp_7777(struct __sk_buff *skb)
{
	unsigned char *data = (void *)(long)skb->data;
	unsigned char *end = (void *)(long)skb->data_end;

	if (data + 14 + 20 + 4 > end)
		return TC_ACT_UNSPEC;
	if (data[12] != 0x08 || data[13] != 0x00 || data[14] != 0x45 || data[14 + 9] != 17)
		return TC_ACT_UNSPEC;
	if (data[14 + 20 + 2] == (7777 >> 8) && data[14 + 20 + 3] == (7777 & 0xff))
		return TC_ACT_SHOT;
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "GPL";
