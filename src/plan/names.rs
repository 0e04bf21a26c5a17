//! The grammars of names and words a spec, a workload or an inventory
//! defines, checked where they are written (docs/spec.md, "Names").
//!
//! Each of them ends up in an image reference, a path, a stage id, a
//! Dockerfile line or a program's argument list. The grammars are narrow
//! enough that no value can act as an option, a second path segment, shell
//! syntax or a new Dockerfile instruction wherever it lands.

/// Longest workload, language, variant, experiment or base name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest inventory host name (DNS's limit for a full name).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// Longest `binary` file name.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest image tag (the OCI distribution grammar's limit).
pub const MAX_TAG_LEN: usize = 128;
/// Longest image repository path, without the registry address.
pub const MAX_REPOSITORY_LEN: usize = 255;

/// Workload, language, variant, experiment and base names: runs of lowercase
/// letters and digits joined by single `.`, `_` or `-`, so that any of them
/// is one OCI repository path component, one tag and one path segment.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let grammar = "lowercase letters and digits, joined by single `.`, `_` or `-`";
    if name.is_empty() {
        return Err(format!("{what} name is empty: use {grammar}"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} name `{name}` is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if !is_joined_runs(
        name,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| matches!(c, '.' | '_' | '-'),
    ) {
        return Err(format!("{what} name `{name}` must be {grammar}"));
    }
    Ok(())
}

/// Runs of `word` characters separated by single `separator` characters,
/// starting and ending with a word character.
fn is_joined_runs(
    text: &str,
    word: impl Fn(char) -> bool,
    separator: impl Fn(char) -> bool,
) -> bool {
    let mut previous_was_word = false;
    for c in text.chars() {
        if word(c) {
            previous_was_word = true;
        } else if separator(c) && previous_was_word {
            previous_was_word = false;
        } else {
            return false;
        }
    }
    previous_was_word
}

/// Inventory host names as Ansible writes them: host names, IPv4 and IPv6
/// addresses. They name stages and log files, so no `/`, no `..`, no white
/// space or control character and no leading `-`.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
    if name.is_empty() || name.len() > MAX_HOST_NAME_LEN {
        return Err(format!(
            "host name `{name}` must be 1 to {MAX_HOST_NAME_LEN} characters"
        ));
    }
    if !name.chars().all(allowed) || name.starts_with(['-', '.']) || name.contains("..") {
        return Err(format!(
            "host name `{name}` must be letters, digits, `.`, `_`, `-` or `:` (an address), not starting with `-` or `.` and without `..`"
        ));
    }
    Ok(())
}

/// `binary` of workload.yaml: one file name, written into paths and JSON
/// strings of the Dockerfile.
pub fn check_file_name(what: &str, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
    if name.is_empty() || name.len() > MAX_FILE_NAME_LEN {
        return Err(format!(
            "{what} `{name}` must be a file name of 1 to {MAX_FILE_NAME_LEN} characters"
        ));
    }
    if !name.chars().all(allowed) || name.starts_with(['.', '-']) {
        return Err(format!(
            "{what} `{name}` must be a file name of letters, digits, `-`, `_`, `+` or `.`, not starting with `.` or `-`"
        ));
    }
    Ok(())
}

/// A Debian package as apt-get takes it: `name[:arch][=version]`, with
/// Debian policy's grammars (name `[a-z0-9][a-z0-9+.-]+`, version starting
/// with a digit). Returns the architecture, if one is named.
pub fn check_package(text: &str) -> Result<Option<&str>, String> {
    let help = "a package is `name`, `name:arch` or `name=version`, as in `g++`, `libc6:arm64` or `curl=7.88.1-10`";
    let (name_and_arch, version) = match text.split_once('=') {
        Some((before, version)) => (before, Some(version)),
        None => (text, None),
    };
    let (name, arch) = match name_and_arch.split_once(':') {
        Some((name, arch)) => (name, Some(arch)),
        None => (name_and_arch, None),
    };
    let name_ok = name.len() >= 2
        && name.len() <= MAX_FILE_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '.' | '-'));
    if !name_ok {
        return Err(format!(
            "package `{text}` is not a Debian package name: lowercase letters, digits, `+`, `.` and `-`, starting with a letter or digit; {help}"
        ));
    }
    if let Some(arch) = arch
        && check_debian_word(arch).is_err()
    {
        return Err(format!(
            "package `{text}` names architecture `{arch}`, which is no Debian architecture name; {help}"
        ));
    }
    if let Some(version) = version {
        let version_ok = version.len() <= MAX_FILE_NAME_LEN
            && version.starts_with(|c: char| c.is_ascii_digit())
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '-'));
        if !version_ok {
            return Err(format!(
                "package `{text}` has version `{version}`, which is no Debian version; {help}"
            ));
        }
    }
    Ok(arch)
}

/// A debootstrap suite or variant, or a Debian architecture: a word that
/// cannot be read as an option.
pub fn check_debian_word(word: &str) -> Result<(), String> {
    if is_joined_runs(
        word,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| matches!(c, '-' | '.' | '_'),
    ) && word.len() <= MAX_NAME_LEN
    {
        Ok(())
    } else {
        Err(format!(
            "`{word}` must be lowercase letters and digits joined by `-`, `.` or `_`"
        ))
    }
}

/// A debootstrap mirror: an `http`, `https` or `file` URL without white
/// space or control characters.
pub fn check_mirror(url: &str) -> Result<(), String> {
    let scheme_ok = ["http://", "https://", "file:///"]
        .iter()
        .any(|scheme| url.starts_with(scheme));
    if !scheme_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "mirror `{url}` must be an http://, https:// or file:/// URL without spaces"
        ));
    }
    Ok(())
}

/// An image repository path (without the registry) in the OCI distribution
/// grammar: `/`-separated components of lowercase letters and digits joined
/// by `.`, `_`, `__` or runs of `-`.
pub fn check_repository(repository: &str) -> Result<(), String> {
    let component_ok = |component: &str| {
        let mut rest = component;
        loop {
            let word_end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
                .unwrap_or(rest.len());
            if word_end == 0 {
                return false;
            }
            rest = &rest[word_end..];
            if rest.is_empty() {
                return true;
            }
            let separator_end = rest
                .find(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                .unwrap_or(rest.len());
            let separator = &rest[..separator_end];
            let dashes = separator.chars().all(|c| c == '-');
            if !(separator == "." || separator == "_" || separator == "__" || dashes) {
                return false;
            }
            rest = &rest[separator_end..];
        }
    };
    if repository.is_empty() || repository.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "image repository `{repository}` must be 1 to {MAX_REPOSITORY_LEN} characters"
        ));
    }
    if !repository.split('/').all(component_ok) {
        return Err(format!(
            "image repository `{repository}` is not an OCI repository name: `/`-separated parts of lowercase letters and digits joined by `.`, `_`, `__` or `-`"
        ));
    }
    Ok(())
}

/// An image tag in the OCI distribution grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]*`,
/// at most 128 characters.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let ok = tag.len() <= MAX_TAG_LEN
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "image tag `{tag}` is not an OCI tag: letters, digits, `_`, `.` and `-`, not starting with `.` or `-`, at most {MAX_TAG_LEN} characters"
        ))
    }
}

/// A registry address: `host[:port]`, the host a DNS name, an IPv4 address
/// or a bracketed IPv6 address.
pub fn check_registry_address(address: &str) -> Result<(), String> {
    let error = || {
        format!(
            "registry address `{address}` must be `host[:port]`, such as `localhost:5000`, without a scheme or path"
        )
    };
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(error)?;
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(error());
        }
        match after.strip_prefix(':') {
            Some(port) => (None, Some(port)),
            None if after.is_empty() => (None, None),
            None => return Err(error()),
        }
    } else {
        match address.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(address), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if host.len() > MAX_HOST_NAME_LEN || !host.split('.').all(label_ok) {
            return Err(error());
        }
    }
    if let Some(port) = port
        && !(port.chars().all(|c| c.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Err(error());
    }
    Ok(())
}

/// A file named relative to a folder of the project, such as a template
/// inside `templates/<language>/`: relative, `/`-separated, with no empty,
/// `.` or `..` part, no `\` and no control character.
pub fn check_relative_file(what: &str, path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!(
            "{what} `{path}` is absolute; name a file inside the folder, relative to it"
        ));
    }
    let bad_part = path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    if bad_part || path.contains('\\') || path.chars().any(char::is_control) {
        return Err(format!(
            "{what} `{path}` must be a relative path inside the folder, without `..`, `.`, `\\` or empty parts"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_path_segment_and_one_repository_component() {
        for good in ["sorting", "face-detection", "a.b_c-9", "x", "0"] {
            assert!(check_name("workload", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "/etc",
            "a/b",
            "A",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "a--b",
            "a b",
            "a\nb",
            "a$(x)",
            "\u{1b}[31m",
        ] {
            assert!(check_name("workload", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("workload", &"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name("workload", &"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn host_names_allow_addresses_but_no_paths() {
        for good in ["amd", "edge-2", "10.0.0.2", "fe80::1", "web_01.example.org"] {
            assert!(check_host_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "../x", "a/b", "-oProxy", ".hidden", "a..b", "a b", "a\u{1b}b",
        ] {
            assert!(check_host_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn binaries_are_one_file_name() {
        assert!(check_file_name("`binary`", "face-detection").is_ok());
        assert!(check_file_name("`binary`", "g++").is_ok());
        for bad in ["", "a/b", "..", ".x", "-x", "a\nRUN touch x", "a b", "a\"b"] {
            assert!(check_file_name("`binary`", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn packages_follow_debian_policy() {
        assert_eq!(check_package("g++"), Ok(None));
        assert_eq!(check_package("libc6:arm64"), Ok(Some("arm64")));
        assert_eq!(check_package("curl=7.88.1-10+deb12u5"), Ok(None));
        assert_eq!(check_package("libc6:arm64=2.36-9"), Ok(Some("arm64")));
        assert_eq!(check_package("tzdata=1:2024a-0"), Ok(None));
        for bad in [
            "g++; touch x",
            "-o",
            "-oAPT::Get::AllowUnauthenticated=1",
            "$(touch x)",
            "`touch x`",
            "a",
            "Foo",
            "curl=",
            "curl=x1",
            "libc6:-x",
            "libc6:arm64;x",
            "g++\nrm",
        ] {
            assert!(check_package(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debootstrap_words_and_mirrors() {
        assert!(check_debian_word("bookworm").is_ok());
        assert!(check_debian_word("minbase").is_ok());
        assert!(check_debian_word("--foreign").is_err());
        assert!(check_debian_word("a b").is_err());
        assert!(check_mirror("http://deb.debian.org/debian").is_ok());
        assert!(check_mirror("file:///srv/mirror").is_ok());
        assert!(check_mirror("--keyring=/x").is_err());
        assert!(check_mirror("http://x y").is_err());
    }

    #[test]
    fn repositories_and_tags_follow_the_oci_grammar() {
        for good in ["demo/hello-alpha", "a/b__c/d.e", "a---b", "x"] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a//b", "/a", "a/", "A/b", "a/../b", "a/$(id)", "a/`id`", "a..b", "a.-b", "a___b",
            "a b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad:?}");
        }
        for good in ["optimized", "v1.0", "_x", "optimized-linux-arm64"] {
            assert!(check_tag(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".x",
            "-x",
            "a/b",
            "$(id)",
            "a:b",
            &"t".repeat(MAX_TAG_LEN + 1),
        ] {
            assert!(check_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn registry_addresses() {
        for good in [
            "localhost:5000",
            "registry.test:5000",
            "10.0.0.1",
            "[::1]:5000",
            "r",
        ] {
            assert!(check_registry_address(good).is_ok(), "{good}");
        }
        for bad in [
            "http://r", "r/x", "r:", "r:99999", "r:-1", "-r", "r;x", "[zz]", "a b",
        ] {
            assert!(check_registry_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_files_stay_inside() {
        assert!(check_relative_file("template", "optimized.Dockerfile.j2").is_ok());
        assert!(check_relative_file("template", "sub/x.j2").is_ok());
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./x",
            "a//b",
            "a\\b",
            "",
            "a\nb",
        ] {
            assert!(check_relative_file("template", bad).is_err(), "{bad:?}");
        }
    }
}
