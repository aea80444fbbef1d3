//! `lwt hooks`: the probe of what each hook may do, against the kernel
//! facts lwtkit builds on (../shared/docs/lwt-kernel-notes.md) and against
//! docs/hooks.md. Probing only loads programs (root), it needs no namespace.
mod common;

use common::json;

fn probe() -> serde_json::Value {
    let out = common::lwt(&["hooks", "-j"]);
    assert!(
        out.status.success(),
        "lwt hooks -j: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&String::from_utf8_lossy(&out.stdout))
}

fn helper(p: &serde_json::Value, hook: &str, name: &str) -> bool {
    p[hook]["helpers"][name]
        .as_bool()
        .unwrap_or_else(|| panic!("{hook} has no helper entry {name}"))
}

#[test]
fn only_xmit_may_redirect_and_store_bytes() {
    require_root!();
    let p = probe();
    for name in ["bpf_redirect", "bpf_skb_store_bytes"] {
        assert!(helper(&p, "lwt_xmit", name), "lwt_xmit may call {name}");
        assert!(!helper(&p, "lwt_out", name), "lwt_out may not call {name}");
    }
    assert_eq!(p["lwt_xmit"]["context"]["direct_packet_write"], true);
    for hook in ["lwt_in", "lwt_out", "lwt_seg6local"] {
        assert_eq!(p[hook]["context"]["direct_packet_write"], false, "{hook}");
    }
}

#[test]
fn push_encap_on_in_and_xmit_not_out_and_seg6_action_on_end_bpf() {
    require_root!();
    let p = probe();
    assert!(helper(&p, "lwt_in", "bpf_lwt_push_encap"));
    assert!(helper(&p, "lwt_xmit", "bpf_lwt_push_encap"));
    assert!(!helper(&p, "lwt_out", "bpf_lwt_push_encap"));
    assert!(helper(&p, "lwt_seg6local", "bpf_lwt_seg6_action"));
    assert!(!helper(&p, "lwt_xmit", "bpf_lwt_seg6_action"));
}

#[test]
fn every_hook_writes_only_mark_priority_and_cb() {
    require_root!();
    let p = probe();
    // Compared sorted: the output keeps the kernel's field order.
    let expected = [
        "cb[0]", "cb[1]", "cb[2]", "cb[3]", "cb[4]", "mark", "priority",
    ];
    for hook in ["lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local"] {
        let fields = p[hook]["context"]["fields"].as_object().expect("fields");
        let mut writable: Vec<&str> = fields
            .iter()
            .filter(|(_, a)| a["write"] == true)
            .map(|(n, _)| n.as_str())
            .collect();
        writable.sort_unstable();
        assert_eq!(writable, expected, "{hook}");
        for unreadable in ["tc_classid", "data_meta", "tstamp", "wire_len", "hwtstamp"] {
            assert_eq!(
                fields[unreadable]["read"], false,
                "{hook} reads {unreadable}"
            );
        }
        assert_eq!(fields["len"]["read"], true, "{hook}");
        let codes = p[hook]["return_codes"].as_object().expect("return codes");
        assert_eq!(codes["BPF_LWT_REROUTE"]["value"], 128);
    }
}

#[test]
fn one_hook_alone_has_the_same_shape() {
    require_root!();
    let out = common::lwt(&["hooks", "seg6local", "-j"]);
    assert!(out.status.success());
    let p = json(&String::from_utf8_lossy(&out.stdout));
    let keys: Vec<&String> = p.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["lwt_seg6local"]);
    let err = common::lwt(&["hooks", "tc"]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("unknown hook `tc`"));
}

#[test]
fn docs_hooks_md_is_this_kernels_probe() {
    require_root!();
    let out = common::lwt(&["hooks", "--markdown"]);
    assert!(out.status.success());
    let probed = String::from_utf8_lossy(&out.stdout).into_owned();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/hooks.md"))
        .expect("docs/hooks.md");
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("Probed on Linux "))
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_string()
    };
    assert!(
        strip(&doc) == strip(&probed),
        "docs/hooks.md differs from this kernel's probe: regenerate it with `lwt hooks --markdown > docs/hooks.md`"
    );
}
