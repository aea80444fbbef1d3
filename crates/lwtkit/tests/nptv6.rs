//! RFC 6296 NPTv6 through the kernel-side piece
//! (`crates/lwtkit-ebpf/src/nptv6.rs`, arithmetic in
//! `lwtkit_common::nptv6`), proven on packets by BPF_PROG_TEST_RUN of the
//! test-only program `lwtkit-nat-test`: the translated address is checked
//! against RFC 6296's example and, for random prefixes, against the
//! properties that determine it (outside prefix, one adjusted word, the
//! same one's-complement sum); every L4 checksum must verify with the L4
//! bytes untouched, and ICMPv6 errors come back translated inside too.
//! Seed printed, `LWTKIT_SEED` replays one. Needs root.
mod nat;

use lwtkit_common::{
    nat_icmp::{op, outcome, NatCase},
    nptv6::Nptv6,
};
use nat::{
    arr16, assert_checksums, assert_same, cut, embedded_expected, error_about, icmp, l4_verifies,
    name, root_or_skip, seed, v6, Flow, Prog, Rng, L4,
};

// ----------------------------------------------------------------- NPTv6

fn prefix(words: [u16; 8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        a[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    a
}

fn nptv6_case(dst: bool, map: Nptv6) -> NatCase {
    NatCase {
        op: if dst { op::NPTV6_DST } else { op::NPTV6_SRC },
        nptv6: map,
        ..NatCase::default()
    }
}

/// Sum of the address words modulo 0xFFFF: what a transport checksum sees.
fn sum_mod(a: &[u8]) -> u64 {
    a.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u64>()
        % 0xffff
}

#[test]
fn nptv6_rewrites_prefixes_and_leaves_every_l4_checksum_valid() {
    if !root_or_skip("nptv6_rewrites_prefixes_and_leaves_every_l4_checksum_valid") {
        return;
    }
    let p = Prog::load();
    // RFC 6296's example, through the kernel program.
    let inside = prefix([0xfd01, 0x0203, 0x0405, 0, 0, 0, 0, 0]);
    let outside = prefix([0x2001, 0x0db8, 0x0001, 0, 0, 0, 0, 0]);
    let map = Nptv6::new(inside, outside, 48).expect("valid");
    let flow = Flow {
        src: v6("fd01:203:405:1::1234"),
        dst: v6("2001:db8:ff::7"),
        l4: L4::Tcp,
        sport: 40000,
        dport: 443,
        payload: b"hello".to_vec(),
        options: Vec::new(),
        exts: Vec::new(),
    };
    let (_, got, out) = p.run(&nptv6_case(false, map), &flow.bytes());
    assert_eq!(name(got), "rewritten");
    assert_eq!(&out[8..24], &v6("2001:db8:1:d550::1234")[..]);
    assert_eq!(&out[40..], &flow.bytes()[40..], "L4 untouched");
    assert_checksums_l4(&out);

    // Every length the rule may use, each protocol, both directions.
    for len in [16u8, 32, 40, 48, 52, 56, 64] {
        let mask = |a: [u8; 16]| {
            let mut m = a;
            for (i, b) in m.iter_mut().enumerate() {
                let bits = (i32::from(len) - 8 * i as i32).clamp(0, 8);
                *b &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
            }
            m
        };
        let inside = mask(prefix([0xfd00, 0xabcd, 0x1234, 0x5678, 0, 0, 0, 0]));
        let outside = mask(prefix([0x2001, 0x0db8, 0xfeed, 0xbee0, 0, 0, 0, 0]));
        let out_map = Nptv6::new(inside, outside, len).expect("valid");
        for l4 in [L4::Tcp, L4::Udp, L4::Echo] {
            let mut host = inside;
            host[7] |= 0x77 & !mask([0xff; 16])[7];
            host[15] = 0x42;
            host[9] = 0x99;
            let f = Flow {
                src: host.to_vec(),
                l4,
                ..flow.clone()
            };
            let sent = f.bytes();
            let (_, got, out) = p.run(&nptv6_case(false, out_map), &sent);
            let what = format!("/{len} {l4:?}");
            assert_eq!(name(got), "rewritten", "{what}");
            assert_eq!(&out[40..], &sent[40..], "{what}: L4 untouched");
            assert_checksums_l4(&out);
            let new = &out[8..24];
            assert_eq!(mask(arr16(new)), outside, "{what}: the outside prefix");
            assert_eq!(sum_mod(new), sum_mod(&host), "{what}: the sum is kept");
            // Only the word RFC 6296 names changed outside the prefix.
            let word = if len <= 48 {
                3
            } else {
                (4..8)
                    .find(|i| host[2 * i..2 * i + 2] != [0xff, 0xff])
                    .expect("a word")
            };
            for i in 0..8 {
                let prefix_word = usize::from(len) > 16 * i;
                if i != word && !prefix_word {
                    assert_eq!(
                        new[2 * i..2 * i + 2],
                        host[2 * i..2 * i + 2],
                        "{what}: word {i}"
                    );
                }
            }
            assert_ne!(
                new[2 * word..2 * word + 2],
                [0xff, 0xff],
                "{what}: never 0xFFFF"
            );
            // And back, on the reply's destination.
            let reply = Flow {
                src: flow.dst.clone(),
                dst: new.to_vec(),
                ..f.clone()
            }
            .bytes();
            let (_, got, back) = p.run(&nptv6_case(true, out_map.reverse()), &reply);
            assert_eq!(name(got), "rewritten", "{what} back");
            assert_eq!(
                &back[24..40],
                &host[..],
                "{what}: back to the inside address"
            );
            assert_checksums_l4(&back);
        }
    }

    // Outside the prefix, or subnet 0xFFFF: untouched.
    let other = Flow {
        src: v6("fd99::1"),
        ..flow.clone()
    }
    .bytes();
    let (_, got, out) = p.run(&nptv6_case(false, map), &other);
    assert_eq!((name(got), &out), ("outside", &other));
    let ffff = Flow {
        src: v6("fd01:203:405:ffff::1"),
        ..flow.clone()
    }
    .bytes();
    let (_, got, out) = p.run(&nptv6_case(false, map), &ffff);
    assert_eq!((name(got), &out), ("unmappable", &ffff));
}

/// The L4 checksum of a whole IPv6 packet (no extension headers) verifies.
fn assert_checksums_l4(p: &[u8]) {
    l4_verifies(p[6], &p[8..24], &p[24..40], &p[40..], "NPTv6");
}

#[test]
fn icmpv6_errors_through_nptv6_translate_the_embedded_packet_too() {
    if !root_or_skip("icmpv6_errors_through_nptv6_translate_the_embedded_packet_too") {
        return;
    }
    let p = Prog::load();
    let inside = prefix([0xfd01, 0x0203, 0x0405, 0, 0, 0, 0, 0]);
    let outside = prefix([0x2001, 0x0db8, 0x0001, 0, 0, 0, 0, 0]);
    let map = Nptv6::new(inside, outside, 48).expect("valid");
    let host = v6("fd01:203:405:1::1234");
    let public = v6("2001:db8:1:d550::1234");
    let far = v6("2001:db8:ff::7");
    for l4 in [L4::Tcp, L4::Udp, L4::Echo] {
        let sent = Flow {
            src: host.clone(),
            dst: far.clone(),
            l4,
            sport: 40000,
            dport: 53,
            payload: vec![1; 40],
            options: Vec::new(),
            exts: Vec::new(),
        };
        let on_wire = sent.with(&public, &far, 40000, 53);
        for n in [48, 1000] {
            let arrived = error_about(&far, &public, 2, 0, [0, 0, 5, 0], &on_wire, n);
            let expected = error_about(&far, &host, 2, 0, [0, 0, 5, 0], &sent, n);
            let (_, got, out) = p.run(&nptv6_case(true, map.reverse()), &arrived);
            assert!(
                got == outcome::TRANSLATED || got == outcome::TRANSLATED_L4,
                "{l4:?} {n}: {}",
                name(got)
            );
            assert_same(&out, &expected, &format!("{l4:?} cut {n}"));
            assert_checksums(&out, "NPTv6 error");
        }
    }
}

/// The prefix bits of `a` for a prefix of `len` bits (host bits zero),
/// computed here bit by bit.
fn mask_bits(a: &[u8], len: u8) -> [u8; 16] {
    let mut m = [0u8; 16];
    for bit in 0..usize::from(len) {
        m[bit / 8] |= a[bit / 8] & (0x80 >> (bit % 8));
    }
    m
}

#[test]
fn random_nptv6_rewrites_keep_every_checksum_and_map_back() {
    if !root_or_skip("random_nptv6_rewrites_keep_every_checksum_and_map_back") {
        return;
    }
    let seed = seed();
    eprintln!("seed {seed:#x} (LWTKIT_SEED={seed:#x} replays this run)");
    let mut rng = Rng(seed ^ 0x6296);
    let p = Prog::load();
    let far = v6("2001:db8:ff::7");
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..1500 {
        let len = rng.below(64) as u8 + 1;
        let mut a = rng.bytes(16);
        a[0] = 0xfd;
        let mut b = rng.bytes(16);
        b[0] = 0x20;
        let (inside, outside) = (mask_bits(&a, len), mask_bits(&b, len));
        let map = Nptv6::new(inside, outside, len).expect("valid");
        // A host in the inside prefix; sometimes with 0xFFFF words where
        // the adjustment would go.
        let mut host = [0u8; 16];
        let r = rng.bytes(16);
        for bit in 0..128usize {
            let byte = if bit < usize::from(len) {
                inside[bit / 8]
            } else {
                r[bit / 8]
            };
            host[bit / 8] |= byte & (0x80 >> (bit % 8));
        }
        match rng.below(8) {
            0 if len <= 48 => host[6..8].copy_from_slice(&[0xff, 0xff]),
            0 => host[8..16].copy_from_slice(&[0xff; 8]),
            1 if len > 48 => host[8..10].copy_from_slice(&[0xff, 0xff]),
            _ => {}
        }
        let word = if len <= 48 {
            (host[6..8] != [0xff, 0xff]).then_some(3)
        } else {
            (4..8).find(|i| host[2 * i..2 * i + 2] != [0xff, 0xff])
        };
        let l4 = rng.pick(&[L4::Tcp, L4::Udp, L4::UdpNoSum, L4::Echo]);
        let flow = Flow {
            src: host.to_vec(),
            dst: far.clone(),
            l4,
            sport: rng.below(65535) as u16 + 1,
            dport: rng.below(65535) as u16 + 1,
            payload: {
                let n = rng.below(64) as usize;
                rng.bytes(n)
            },
            options: Vec::new(),
            exts: Vec::new(),
        };
        let sent = flow.bytes();
        let what = format!("case {i} (seed {seed:#x}): /{len} {l4:?} host {host:02x?}");
        let (rc, got, out) = p.run(&nptv6_case(false, map), &sent);
        *counts.entry(name(got)).or_insert(0) += 1;
        let Some(word) = word else {
            assert_eq!((rc, name(got)), (0, "unmappable"), "{what}");
            assert_same(&out, &sent, &what);
            continue;
        };
        assert_eq!((rc, name(got)), (0, "rewritten"), "{what}");
        assert_eq!(&out[40..], &sent[40..], "{what}: L4 untouched");
        assert_checksums_l4(&out);
        let new = &out[8..24];
        assert_eq!(mask_bits(new, len), outside, "{what}: the outside prefix");
        assert_eq!(sum_mod(new), sum_mod(&host), "{what}: the sum is kept");
        for w in 0..8 {
            if w != word && usize::from(len) <= 16 * w {
                assert_eq!(
                    new[2 * w..2 * w + 2],
                    host[2 * w..2 * w + 2],
                    "{what}: word {w}"
                );
            }
        }
        assert_ne!(new[2 * word..2 * word + 2], [0xff, 0xff], "{what}");
        for bit in usize::from(len)..128 {
            let in_word = bit / 16 == word;
            if !in_word {
                let m = 0x80 >> (bit % 8);
                assert_eq!(
                    new[bit / 8] & m,
                    host[bit / 8] & m,
                    "{what}: host bit {bit}"
                );
            }
        }
        // The reply comes back to the inside host.
        let public = new.to_vec();
        let reply = Flow {
            src: far.clone(),
            dst: public.clone(),
            ..flow.clone()
        }
        .bytes();
        let (_, got, back) = p.run(&nptv6_case(true, map.reverse()), &reply);
        assert_eq!(name(got), "rewritten", "{what}: back");
        assert_eq!(&back[24..40], &host[..], "{what}: back");
        assert_eq!(&back[40..], &reply[40..], "{what}: back, L4 untouched");
        // And so does an error about what left.
        let on_wire = flow.with(&public, &far, flow.sport, flow.dport);
        let whole = on_wire.bytes();
        let n = rng.below(whole.len() as u64 - 39) as usize + 40;
        let kind = rng.pick(&[1u8, 2, 3, 4]);
        let arrived = icmp(&far, &public, kind, 0, [0, 0, 5, 0], cut(&whole, n), &[]);
        let expected = icmp(
            &far,
            &host,
            kind,
            0,
            [0, 0, 5, 0],
            &embedded_expected(&flow, &on_wire, n),
            &[],
        );
        let (_, got, out) = p.run(&nptv6_case(true, map.reverse()), &arrived);
        assert!(
            got == outcome::TRANSLATED || got == outcome::TRANSLATED_L4,
            "{what}: error cut {n}: {}",
            name(got)
        );
        assert_same(&out, &expected, &format!("{what}: error cut {n}"));
        assert_checksums(&out, &what);
    }
    eprintln!("outcomes: {counts:?}");
    assert!(
        counts.get("unmappable").copied().unwrap_or(0) > 20,
        "{counts:?}"
    );
}
