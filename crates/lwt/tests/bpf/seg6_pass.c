// A third-party End.BPF program: lets the End behaviour continue.
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

SEC("lwt_seg6local") int seg6_pass(struct __sk_buff *skb) { return BPF_OK; }

char _license[] SEC("license") = "GPL";
