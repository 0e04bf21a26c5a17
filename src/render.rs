//! Dockerfile rendering: a language's minijinja template with the image's
//! resolved variables. Knows nothing of engines; builds consume the text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior, context};
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
    environment.set_loader(minijinja::path_loader(&templates));
    let name = image
        .template
        .strip_prefix("templates")
        .unwrap_or(&image.template)
        .to_string_lossy()
        .replace('\\', "/");
    let platform = image.target.oci_platform();
    let has_data = project_root
        .join("workloads")
        .join(&image.workload)
        .join("data")
        .is_dir();
    let context = context! {
        experiment => experiment,
        workload => context! {
            name => image.workload,
            binary => image.run.binary,
            args => image.run.args,
            has_data => has_data,
        },
        language => image.language,
        variant => image.variant,
        target => context! {
            platform => platform.to_string(),
            os => platform.os,
            arch => platform.architecture,
            arch_variant => platform.variant,
            slug => image.target.slug(),
            kind => image.target.kind(),
            wasm => image.target.is_wasm(),
        },
        vars => Value::Object(image.vars.clone()),
        fingerprint => fingerprint.to_hex(),
        toolchain => toolchain,
    };
    let error = |error: minijinja::Error| RenderError::Template {
        template: image.template.clone(),
        line: error.line(),
        message: describe(&error),
    };
    let template = environment.get_template(&name).map_err(error)?;
    template.render(context).map_err(error)
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
