//! Dockerfile rendering: a language's minijinja template with the image's
//! resolved variables. Knows nothing of engines; builds consume the text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

use crate::plan::Image;
use crate::plan::fingerprint::Fingerprint;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("failed to render {}: {message}", template.display())]
    Template {
        template: PathBuf,
        /// 1-based line in the template (or the file it includes), when known.
        line: Option<usize>,
        message: String,
    },
}

/// Facts about the build that templates may print, such as toolchain
/// versions read from a base image; empty when not known yet.
pub type Toolchain = BTreeMap<String, String>;

/// minijinja's `path_loader`, reading only regular files of bounded size, so
/// an include linked to a FIFO or a device cannot hang or exhaust the render.
fn load_template(templates: &Path, name: &str) -> Result<Option<String>, minijinja::Error> {
    let mut path = templates.to_path_buf();
    for segment in name.split('/') {
        // As path_loader's `safe_join`: a name cannot leave the templates folder.
        if segment.starts_with('.') || segment.contains('\\') {
            return Ok(None);
        }
        path.push(segment);
    }
    match crate::limits::read_regular_file_inside(&path, templates, "the templates folder") {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("cannot read template {name}: {error}"),
        )),
    }
}

/// Renders the Dockerfile of one image. Templates live under
/// `<project>/templates/`, so a language template can include shared files.
pub fn render_dockerfile(
    project_root: &Path,
    experiment: &str,
    image: &Image,
    fingerprint: Fingerprint,
    toolchain: &Toolchain,
) -> Result<String, RenderError> {
    let templates = project_root.join("templates");
    let mut environment = Environment::new();
    // A typo in a variable name must fail the render, not print an empty string.
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    environment.set_keep_trailing_newline(true);
    // Loops over loops could run for hours; recursion is bounded by minijinja.
    environment.set_fuel(Some(crate::limits::MAX_TEMPLATE_FUEL));
    environment.set_loader(move |name: &str| load_template(&templates, name));
    environment.add_filter("dockerfile_quote", dockerfile_quote);
    let name = image
        .template
        .strip_prefix("templates")
        .unwrap_or(&image.template)
        .to_string_lossy()
        .replace('\\', "/");
    let mut inputs = image.template_inputs(experiment);
    if let Value::Object(map) = &mut inputs {
        map.insert("fingerprint".into(), Value::String(fingerprint.to_hex()));
        map.insert(
            "toolchain".into(),
            serde_json::to_value(toolchain).unwrap_or(Value::Null),
        );
    }
    let context = minijinja::Value::from_serialize(&inputs);
    let error = |error: minijinja::Error| RenderError::Template {
        template: image.template.clone(),
        line: error.line(),
        message: describe(&error),
    };
    let template = environment.get_template(&name).map_err(error)?;
    let mut output = BoundedText::default();
    template
        .render_captured_to(context, &mut output)
        .map_err(error)?;
    String::from_utf8(output.bytes).map_err(|_| RenderError::Template {
        template: image.template.clone(),
        line: None,
        message: "the rendered Dockerfile is not UTF-8".into(),
    })
}

/// Rendered text that refuses to grow past the limit of any file read, so a
/// template cannot fill memory with its output.
#[derive(Default)]
struct BoundedText {
    bytes: Vec<u8>,
}

impl std::io::Write for BoundedText {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let limit = usize::try_from(crate::limits::MAX_FILE_BYTES).unwrap_or(usize::MAX);
        if self.bytes.len().saturating_add(buffer.len()) > limit {
            return Err(std::io::Error::other(format!(
                "the rendered Dockerfile is larger than {} MiB",
                limit / (1024 * 1024)
            )));
        }
        self.bytes.extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A double-quoted Dockerfile word (for `ENV` and `LABEL`) that reads back as
/// `text`: the Dockerfile parser takes `\` before `"`, `$` and `\` as an
/// escape. The plan refuses line breaks in values before they get here; one
/// that arrives anyway fails the render instead of ending the instruction.
fn dockerfile_quote(text: &str) -> Result<String, minijinja::Error> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("{text:?} holds a control character, which a Dockerfile line cannot"),
        ));
    }
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '$' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

/// minijinja's message plus the chain of causes (an include's own error).
fn describe(error: &minijinja::Error) -> String {
    let mut message = error
        .detail()
        .map_or_else(|| error.kind().to_string(), str::to_string);
    if let (Some(name), Some(line)) = (error.name(), error.line()) {
        message = format!("{message} (in {name} line {line})");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::dockerfile_quote;

    #[test]
    fn quoting_escapes_what_the_dockerfile_parser_reads() {
        assert_eq!(dockerfile_quote("plain").unwrap(), r#""plain""#);
        assert_eq!(
            dockerfile_quote(r#"say "hi" to $USER\"#).unwrap(),
            r#""say \"hi\" to \$USER\\""#
        );
        assert!(dockerfile_quote("one\nRUN two").is_err());
    }
}
