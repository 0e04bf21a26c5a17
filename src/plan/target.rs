//! Build targets: OCI platforms for native images, and wasm.

use std::fmt;

pub use crate::platform::{Platform, PlatformError};

/// What an image is built for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Native(Platform),
    Wasm,
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, PlatformError> {
        match text {
            "wasm" | "wasi/wasm" | "wasip1" => Ok(Target::Wasm),
            other => Platform::parse(other).map(Target::Native),
        }
    }

    pub fn slug(&self) -> String {
        match self {
            Target::Native(platform) => platform.slug(),
            Target::Wasm => "wasm".to_string(),
        }
    }

    /// The platform written into the image config and the index.
    pub fn oci_platform(&self) -> Platform {
        match self {
            Target::Native(platform) => platform.clone(),
            Target::Wasm => Platform {
                os: "wasi".to_string(),
                architecture: "wasm".to_string(),
                variant: None,
            },
        }
    }

    pub fn is_wasm(&self) -> bool {
        matches!(self, Target::Wasm)
    }

    /// The kind name templates and runtimes are chosen by.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Native(_) => "native",
            Target::Wasm => "wasm",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Native(platform) => platform.fmt(f),
            Target::Wasm => f.write_str("wasm"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_aliases_and_default_variants() {
        assert_eq!(
            Target::parse("linux/aarch64").unwrap().slug(),
            "linux-arm64"
        );
        assert_eq!(
            Target::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Target::parse("linux/arm/v7").unwrap().slug(),
            "linux-arm-v7"
        );
        assert_eq!(
            Target::parse("wasm").unwrap().oci_platform().to_string(),
            "wasi/wasm"
        );
        assert!(Target::parse("linux").is_err());
        assert!(Target::parse("Linux/AMD64").is_err());
        assert!(Target::parse("linux//x").is_err());
    }
}
