//! Source-located diagnostics shared by every layer that reads a file.
//!
//! The library only builds [`Diagnostic`] values; turning them into text with
//! the offending line and a caret happens once, at the edge.

use std::borrow::Cow;
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
        let path = self.path.display().to_string();
        write!(f, "{}:{}:{}", escape_control(&path), self.line, self.column)
    }
}

/// Text for a terminal or a log: every control character but the tab (a
/// terminal escape, a carriage return, a line break) and every bidirectional
/// override is written as `\x1b` or `\u{202e}`, so input cannot move the
/// cursor, recolour the screen or fake a line of output.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// As [`escape_control`], keeping line breaks: for messages of several lines.
pub fn escape_control_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let escaped = |c: char| {
        (c.is_control() && c != '\t' && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !escaped(c) {
            out.push(c);
        } else if u32::from(c) < 0x80 {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
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
    /// has it and may show it; without it only the first line is printed.
    /// Control characters of the message, help and line are escaped.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        match &self.location {
            Some(location) => {
                let message = escape_control(&self.message);
                let _ = writeln!(out, "{location}: error: {message}");
                if let Some(line_text) =
                    source.and_then(|text| text.lines().nth(location.line.saturating_sub(1)))
                {
                    let number = location.line.to_string();
                    let gutter = " ".repeat(number.len());
                    let prefix: String = line_text
                        .chars()
                        .take(location.column.saturating_sub(1))
                        .collect();
                    // Columns count characters of the escaped line; tabs are
                    // kept so the caret lines up.
                    let pad: String = escape_control(&prefix)
                        .chars()
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    let line_text = escape_control(line_text);
                    let _ = writeln!(out, "{gutter} |\n{number} | {line_text}\n{gutter} | {pad}^");
                }
            }
            None => {
                let _ = writeln!(out, "error: {}", escape_control_lines(&self.message));
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {}", escape_control(help));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", escape_control(&self.message)),
            None => f.write_str(&escape_control_lines(&self.message)),
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

    #[test]
    fn control_characters_are_escaped_and_the_caret_follows() {
        let diagnostic = Diagnostic::at(
            SourceLocation::new("e.yaml", 1, 11),
            "workload name `\u{1b}[31mred` is bad",
        )
        .with_help("not \u{202e}this");
        let text = diagnostic.render(Some("name: \u{1b}[31mred\n"));
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{202e}'),
            "{text}"
        );
        assert_eq!(
            text,
            "e.yaml:1:11: error: workload name `\\x1b[31mred` is bad\n  |\n1 | name: \\x1b[31mred\n  |              ^\n  = help: not \\u{202e}this\n"
        );
        assert_eq!(escape_control_lines("a\nb\r"), "a\nb\\x0d");
        assert_eq!(escape_control("tab\tok"), "tab\tok");
    }
}
