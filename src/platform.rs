//! OCI platforms, as images, registries and engines name them.

use std::fmt;

/// An OCI platform `os/arch[/variant]`, normalised the way registries match them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error(
        "`{0}` is not an OCI platform: expected `os/arch` or `os/arch/variant`, such as `linux/arm64`"
    )]
    Shape(String),
    #[error("`{0}` is not lowercase letters, digits and `_`")]
    Characters(String),
}

impl Platform {
    pub fn parse(text: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = text.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|part| part.is_empty()) {
            return Err(PlatformError::Shape(text.to_string()));
        }
        if let Some(bad) = parts.iter().find(|part| {
            !part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }) {
            return Err(PlatformError::Characters((*bad).to_string()));
        }
        let architecture = match parts[1] {
            "x86_64" | "x86-64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        }
        .to_string();
        // linux/arm64 and linux/arm64/v8 are the same platform to every registry.
        let variant = parts
            .get(2)
            .map(|variant| (*variant).to_string())
            .filter(|variant| !(architecture == "arm64" && variant == "v8"));
        Ok(Platform {
            os: parts[0].to_string(),
            architecture,
            variant,
        })
    }

    /// Where builds run unless told otherwise.
    pub fn runner_default() -> Platform {
        Platform {
            os: "linux".to_string(),
            architecture: "amd64".to_string(),
            variant: None,
        }
    }

    /// `uname -m`'s name for the architecture: `x86_64`, `aarch64`, `riscv64`.
    pub fn machine(&self) -> &str {
        match self.architecture.as_str() {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            other => other,
        }
    }

    /// `linux-arm64`: the form used in stage ids and tags.
    pub fn slug(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}-{}-{variant}", self.os, self.architecture),
            None => format!("{}-{}", self.os, self.architecture),
        }
    }
}

impl serde::Serialize for Platform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}
