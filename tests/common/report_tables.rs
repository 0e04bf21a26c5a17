//! The report's CSV tables as the tests read them.
#![allow(dead_code)]

use std::path::Path;

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// CSV rows as cells, header first; the report's CSV quotes only fields with
/// commas, and the tables the tests read hold none.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| line.split(',').map(str::to_string).collect())
        .collect()
}

/// The index of the header's column `name`.
pub fn column(rows: &[Vec<String>], name: &str) -> usize {
    rows[0]
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("no column {name} in {:?}", rows[0]))
}
