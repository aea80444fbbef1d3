//! SIDs: the record names the program the SID's seg6local route runs
//! (`End.BPF` carries the name, `...#<id>`), and the pin holds that program.
use std::path::Path;

use super::{pin_finding, Finding};
use crate::{route::kernel::Marks, seg6local::SidRecord};

/// `current`: the marks of the SID's route now (`None`: no such route);
/// `pinned`: the id of the program pinned at a path.
pub(super) fn check(
    s: &SidRecord,
    current: Option<&Marks>,
    pinned: impl Fn(&Path) -> Option<u32>,
) -> Vec<Finding> {
    let label = format!(
        "SID {} table {}",
        s.sid,
        crate::route::table::table_name(s.table)
    );
    let mut out = Vec::new();
    let want = s.name.as_str();
    match current.map(|m| m.get("seg6local").map(String::as_str)) {
        None => out.push(Finding::new(
            "gone",
            format!("{label} is recorded but its route no longer exists"),
        )),
        Some(found) if found != Some(want) => out.push(Finding::new(
            "drift",
            format!(
                "{label}: its route runs {}, not `{want}`",
                found.map_or("no End.BPF program".into(), |f| format!("`{f}`"))
            ),
        )),
        Some(_) => {}
    }
    out.extend(pin_finding(&label, &s.pin, &s.name, &pinned));
    if let Some(c) = s.counters.as_ref().filter(|c| !c.exists()) {
        out.push(Finding::new(
            "missing-pin",
            format!("{label}: counters pin {} is gone", c.display()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Origin;

    fn sid() -> SidRecord {
        SidRecord {
            sid: "fc00::b/128".parse().expect("sid"),
            table: 254,
            dev: "vb".into(),
            name: "lwtkit-end:[lwt_seg6local]#12".into(),
            origin: Origin::Builtin { name: "end".into() },
            pin: "/pins/seg6local/254_fc00__b_128/prog".into(),
            counters: None,
            dt6_table: None,
            object_sha256: None,
        }
    }

    fn marks(name: &str) -> Marks {
        Marks::from([("seg6local".to_string(), name.to_string())])
    }

    #[test]
    fn a_sid_route_runs_the_pinned_program_it_names() {
        let s = sid();
        let kinds = |f: Vec<Finding>| f.into_iter().map(|f| f.kind).collect::<Vec<_>>();
        let ours = marks(&s.name);
        assert!(check(&s, Some(&ours), |_| Some(12)).is_empty());
        assert_eq!(kinds(check(&s, None, |_| Some(12))), ["gone"]);
        let other = marks("lwtkit-end:[lwt_seg6local]#13");
        assert_eq!(kinds(check(&s, Some(&other), |_| Some(12))), ["drift"]);
        assert_eq!(
            kinds(check(&s, Some(&Marks::new()), |_| Some(12))),
            ["drift"]
        );
        assert_eq!(kinds(check(&s, Some(&ours), |_| None)), ["missing-pin"]);
        assert_eq!(
            kinds(check(&s, Some(&ours), |_| Some(13))),
            ["wrong-program"]
        );
    }
}
