//! Routing table names and numbers, as iproute2 spells them.
use crate::error::{Error, Result};

pub const RT_TABLE_DEFAULT: u32 = 253;
pub const RT_TABLE_MAIN: u32 = 254;
pub const RT_TABLE_LOCAL: u32 = 255;

const RT_TABLES_FILES: &[&str] = &[
    "/etc/iproute2/rt_tables",
    "/usr/share/iproute2/rt_tables",
    "/usr/lib/iproute2/rt_tables",
];
const RT_TABLES_DIRS: &[&str] = &[
    "/etc/iproute2/rt_tables.d",
    "/usr/share/iproute2/rt_tables.d",
];

/// Parses a table given as a number or a name (`main`, `local`, `default`,
/// or one from rt_tables).
pub fn parse_table(s: &str) -> Result<u32> {
    if let Ok(n) = s.parse::<u32>() {
        if n == 0 {
            return Err(Error::Invalid(crate::validate::not_a_table("table")));
        }
        return Ok(n);
    }
    match s {
        "main" => Ok(RT_TABLE_MAIN),
        "local" => Ok(RT_TABLE_LOCAL),
        "default" => Ok(RT_TABLE_DEFAULT),
        _ => named_tables()
            .into_iter()
            .find(|(_, name)| name == s)
            .map(|(id, _)| id)
            .ok_or_else(|| Error::UnknownTable(s.into())),
    }
}

/// The name `ip route` prints for a table.
pub fn table_name(id: u32) -> String {
    match id {
        RT_TABLE_MAIN => "main".into(),
        RT_TABLE_LOCAL => "local".into(),
        RT_TABLE_DEFAULT => "default".into(),
        _ => named_tables()
            .into_iter()
            .find(|(n, _)| *n == id)
            .map(|(_, name)| name)
            .unwrap_or_else(|| id.to_string()),
    }
}

fn named_tables() -> Vec<(u32, String)> {
    let mut files: Vec<std::path::PathBuf> = RT_TABLES_FILES.iter().map(Into::into).collect();
    for dir in RT_TABLES_DIRS {
        if let Ok(entries) = std::fs::read_dir(dir) {
            files.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "conf")),
            );
        }
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| parse_rt_tables(&text))
        .collect()
}

fn parse_rt_tables(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let mut words = l.split_whitespace();
            let id = words.next()?.parse().ok()?;
            Some((id, words.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_tables_parse() {
        assert_eq!(parse_table("main").ok(), Some(254));
        assert_eq!(parse_table("local").ok(), Some(255));
        assert_eq!(parse_table("100").ok(), Some(100));
        assert!(parse_table("0").is_err());
        assert!(parse_table("no-such-table-xyz").is_err());
        assert_eq!(table_name(255), "local");
    }

    #[test]
    fn rt_tables_lines_parse() {
        let t = parse_rt_tables("# comment\n255\tlocal\n 100 vpn # office\n\nbad line\n");
        assert_eq!(t, vec![(255, "local".into()), (100, "vpn".into())]);
    }
}
