//! The item catalog (事项目录, OVERSIGHT.md §2): each item's unit, immediate or promised, statutory and
//! promised limits, unit of days and whether fees are allowed. Admins import it from a TOML file
//! (`sunlight-hub items import`); cases are checked against it (a fee on a free item is 违规收费; a
//! promised limit beyond the statutory one is flagged; a promised case without a limit takes the
//! catalog's).

use crate::oversight::calendar::DayUnit;
use crate::oversight::cases::Kind;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    code TEXT PRIMARY KEY, name TEXT NOT NULL, unit TEXT NOT NULL, kind TEXT NOT NULL,
    statutory_days INTEGER NOT NULL, promised_days INTEGER NOT NULL, day_unit TEXT NOT NULL,
    fees_allowed INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
";

/// The demo catalog shipped with the hub.
pub const DEMO: &str = include_str!("../../data/items-demo.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub code: String,
    pub name: String,
    pub unit: String,
    pub kind: Kind,
    pub statutory_days: u32,
    pub promised_days: u32,
    #[serde(default)]
    pub day_unit: DayUnit,
    pub fees_allowed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    items: Vec<Item>,
}

/// Parses and checks a catalog file; errors name the item.
pub fn parse(text: &str) -> Result<Vec<Item>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    check(&file.items)?;
    Ok(file.items)
}

/// The catalog's rules, for a file or for one item edited in the dashboard; errors name the item.
pub fn check(items: &[Item]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for item in items {
        if item.code.trim().is_empty() || item.name.trim().is_empty() {
            return Err("every item needs a code and a name".into());
        }
        if !seen.insert(&item.code) {
            return Err(format!("item {} appears twice", item.code));
        }
        if item.kind == Kind::Promised && item.promised_days == 0 {
            return Err(format!(
                "item {} is promised (承诺件) but has no promised_days",
                item.code
            ));
        }
        if item.promised_days > item.statutory_days {
            return Err(format!(
                "item {}: promised_days {} exceeds statutory_days {} (承诺时限不得超过法定时限)",
                item.code, item.promised_days, item.statutory_days
            ));
        }
    }
    Ok(())
}

pub fn unit_str(u: DayUnit) -> &'static str {
    match u {
        DayUnit::Working => "working",
        DayUnit::Natural => "natural",
    }
}

pub fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::Immediate => "immediate",
        Kind::Promised => "promised",
    }
}

/// Adds or replaces items. Returns how many were written.
pub fn upsert(conn: &Connection, items: &[Item]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO items (code, name, unit, kind, statutory_days, promised_days, day_unit, fees_allowed, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (code) DO UPDATE SET name = ?2, unit = ?3, kind = ?4, statutory_days = ?5,
             promised_days = ?6, day_unit = ?7, fees_allowed = ?8, updated_ms = ?9",
    )?;
    for i in items {
        stmt.execute(params![
            i.code,
            i.name,
            i.unit,
            kind_str(i.kind),
            i.statutory_days,
            i.promised_days,
            unit_str(i.day_unit),
            i.fees_allowed,
            super::now_ms()
        ])?;
    }
    Ok(items.len())
}

fn item_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Item> {
    let kind: String = r.get(3)?;
    let unit: String = r.get(6)?;
    Ok(Item {
        code: r.get(0)?,
        name: r.get(1)?,
        unit: r.get(2)?,
        kind: if kind == "immediate" {
            Kind::Immediate
        } else {
            Kind::Promised
        },
        statutory_days: r.get(4)?,
        promised_days: r.get(5)?,
        day_unit: if unit == "natural" {
            DayUnit::Natural
        } else {
            DayUnit::Working
        },
        fees_allowed: r.get(7)?,
    })
}

const COLUMNS: &str =
    "code, name, unit, kind, statutory_days, promised_days, day_unit, fees_allowed";

pub fn get(conn: &Connection, code: &str) -> rusqlite::Result<Option<Item>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM items WHERE code = ?1"))?
        .query_row([code], item_row)
        .optional()
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Item>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM items ORDER BY code"))?
        .query_map([], item_row)?
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_parses() {
        let items = parse(DEMO).unwrap();
        assert!(items.iter().any(|i| i.name == "老年优待证办理"));
        assert!(items.iter().any(|i| !i.fees_allowed));
    }

    #[test]
    fn bad_catalogs_name_the_item() {
        let e = parse(
            "[[items]]\ncode = \"X\"\nname = \"x\"\nunit = \"u\"\nkind = \"promised\"\nstatutory_days = 5\npromised_days = 9\nfees_allowed = false",
        )
        .unwrap_err();
        assert!(e.contains("X") && e.contains("statutory"), "{e}");
    }
}
