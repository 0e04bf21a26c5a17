//! Source-located diagnostics shared by every layer that reads a file.
//!
//! The library only builds [`Diagnostic`] values; turning them into text with
//! the offending line and a caret happens once, at the edge.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// A 1-based line and column inside a named file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceLocation {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl SourceLocation {
    pub fn new(path: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Self {
            path: path.into(),
            line,
            column,
        }
    }

    /// A location from a serde-saphyr span; 0 means "unknown" there, so clamp to 1.
    pub fn from_yaml(path: &Path, location: serde_saphyr::Location) -> Self {
        Self::new(
            path,
            usize::try_from(location.line()).unwrap_or(1).max(1),
            usize::try_from(location.column()).unwrap_or(1).max(1),
        )
    }
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// One problem found in an input file, optionally with a hint on how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Option<SourceLocation>,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn at(location: SourceLocation, message: impl Into<String>) -> Self {
        Self {
            location: Some(location),
            message: message.into(),
            help: None,
        }
    }

    pub fn unlocated(message: impl Into<String>) -> Self {
        Self {
            location: None,
            message: message.into(),
            help: None,
        }
    }

    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders `path:line:col: error: message`, the source line and a caret.
    ///
    /// `source` is the text of the file the location names, when the caller
    /// has it; without it only the first line is printed.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        match &self.location {
            Some(location) => {
                let _ = writeln!(out, "{location}: error: {}", self.message);
                if let Some(line_text) =
                    source.and_then(|text| text.lines().nth(location.line.saturating_sub(1)))
                {
                    let number = location.line.to_string();
                    let gutter = " ".repeat(number.len());
                    // Columns count characters; tabs are kept so the caret lines up.
                    let pad: String = line_text
                        .chars()
                        .take(location.column.saturating_sub(1))
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    let _ = writeln!(out, "{gutter} |\n{number} | {line_text}\n{gutter} | {pad}^");
                }
            }
            None => {
                let _ = writeln!(out, "error: {}", self.message);
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Several diagnostics reported together, so one run shows every problem.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Ok when nothing was reported, so validation passes can end with `?`.
    pub fn into_result(mut self) -> Result<(), Diagnostics> {
        if self.0.is_empty() {
            Ok(())
        } else {
            self.0.sort_by(|a, b| a.location.cmp(&b.location));
            self.0.dedup();
            Err(self)
        }
    }
}

impl Diagnostics {
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, diagnostic) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_line_and_caret_under_the_column() {
        let diagnostic = Diagnostic::at(SourceLocation::new("e.yaml", 2, 5), "unknown host `x`")
            .with_help("define it in the inventory");
        let text = diagnostic.render(Some("a: 1\nb:  x\n"));
        assert_eq!(
            text,
            "e.yaml:2:5: error: unknown host `x`\n  |\n2 | b:  x\n  |     ^\n  = help: define it in the inventory\n"
        );
    }
}
