// A program in a section libbpf does not know: needs --prog-type.
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

SEC("lwtkit_test_drop_all") int drop_everything(struct __sk_buff *skb) { return BPF_DROP; }

char _license[] SEC("license") = "GPL";
