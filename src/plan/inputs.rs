//! A workload's working directory, data placements and environment: checked
//! here, before any of it is written into a Dockerfile.
//!
//! Every value ends up on a Dockerfile line, where a line break would start a
//! new instruction and `"`, `\` or `$` would be read as quoting or variable
//! syntax. Paths are therefore limited to what needs no quoting beyond the
//! JSON form of `COPY`; environment values may hold any printable text and
//! are escaped by the renderer's `dockerfile_quote` filter.

use std::path::Path;

use super::model::{DataCopy, EnvVar};

/// Quoting and variable syntax of Dockerfile lines, which paths may not hold.
const PATH_FORBIDDEN: [char; 3] = ['"', '\\', '$'];

/// `/`-separated components of `text` without empty and `.` ones, after
/// checking that it is safe to write into a Dockerfile.
fn components<'a>(text: &'a str, what: &str) -> Result<Vec<&'a str>, String> {
    check_line(text, what)?;
    if let Some(bad) = text.chars().find(|c| PATH_FORBIDDEN.contains(c)) {
        return Err(format!(
            "{what} `{text}` holds `{bad}`, which a Dockerfile reads as quoting or a variable; paths may not hold `\"`, `\\` or `$`"
        ));
    }
    if text.trim() != text {
        return Err(format!("{what} `{text}` starts or ends with white space"));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("{what} `{text}` may not hold `..`")),
            part => parts.push(part),
        }
    }
    Ok(parts)
}

/// A line break or other control character would end the Dockerfile line.
fn check_line(text: &str, what: &str) -> Result<(), String> {
    match text.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!(
            "{what} holds the control character {c:?}: a line break would start a new Dockerfile instruction"
        )),
        None => Ok(()),
    }
}

/// The working directory, absolute and normalised.
pub fn workdir(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "`workdir` `{text}` must be an absolute path, such as `/app`"
        ));
    }
    Ok(absolute(&components(text, "`workdir`")?))
}

fn absolute(parts: &[&str]) -> String {
    format!("/{}", parts.join("/"))
}

/// One `from → to` placement. `from` is relative to the workload folder and
/// must lie in `data/`, the only folder besides the sources that the build
/// context carries; `to` is absolute or relative to `workdir`.
pub fn data_copy(
    from: &str,
    to: &str,
    workdir: &str,
    workload_dir: &Path,
    workload: &str,
) -> Result<DataCopy, (Side, String)> {
    let source = components(from, "`from`").map_err(|message| (Side::From, message))?;
    if from.starts_with('/') || source.first() != Some(&"data") {
        return Err((
            Side::From,
            format!(
                "`from` `{from}` must be `data/` or a path inside it: the image is built from the workload's data/ folder and its sources only"
            ),
        ));
    }
    let on_disk = workload_dir.join(source.join("/"));
    let is_dir = on_disk.is_dir();
    if !is_dir && !on_disk.is_file() {
        return Err((
            Side::From,
            format!(
                "`from` `{from}` does not exist: there is no workloads/{workload}/{}",
                source.join("/")
            ),
        ));
    }
    let target = components(to, "`to`").map_err(|message| (Side::To, message))?;
    let mut destination: Vec<&str> = Vec::new();
    if !to.starts_with('/') {
        destination.extend(workdir.split('/').filter(|part| !part.is_empty()));
    }
    destination.extend(target);
    // As in Docker, a `to` ending in `/` (or naming the working directory,
    // `.`) is a folder the file is copied into, under its own name.
    let into_folder = to.is_empty() || to.ends_with('/') || to == "." || to.ends_with("/.");
    if !is_dir
        && into_folder
        && let Some(name) = source.last()
    {
        destination.push(name);
    }
    // A folder's contents are copied into the destination folder, as Docker
    // does for a source ending in `/`.
    let slash = if is_dir { "/" } else { "" };
    let from = format!("{}{slash}", source.join("/"));
    let to = absolute(&destination);
    let to = if is_dir && to != "/" {
        format!("{to}/")
    } else {
        to
    };
    Ok(DataCopy { from, to })
}

/// Which side of a placement a problem is on, so the message points at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    From,
    To,
}

/// The placement of a workload that names none: all of `data/` at `/data/`.
pub fn default_data(has_data: bool) -> Vec<DataCopy> {
    if has_data {
        vec![DataCopy {
            from: "data/".into(),
            to: "/data/".into(),
        }]
    } else {
        Vec::new()
    }
}

pub fn env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "environment variable name `{name}` must be letters, digits and `_`, not starting with a digit"
        ))
    }
}

pub fn env_value(name: &str, value: &str) -> Result<EnvVar, String> {
    check_line(value, &format!("the value of `{name}`"))?;
    Ok(EnvVar {
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// A template variable from the spec is printed into the Dockerfile as it
/// is; only line breaks are refused, since flags may hold quotes on purpose.
pub fn var_value(name: &str, value: &serde_json::Value) -> Result<(), String> {
    match value {
        serde_json::Value::String(text) if text.contains(['\n', '\r']) => Err(format!(
            "variable `{name}` holds a line break, which would start a new Dockerfile instruction"
        )),
        serde_json::Value::Array(items) => items.iter().try_for_each(|item| var_value(name, item)),
        serde_json::Value::Object(map) => map.values().try_for_each(|item| var_value(name, item)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdirs_are_absolute_and_normalised() {
        assert_eq!(workdir("/").unwrap(), "/");
        assert_eq!(workdir("/app/").unwrap(), "/app");
        assert_eq!(workdir("/srv//./my app").unwrap(), "/srv/my app");
        assert!(workdir("app").unwrap_err().contains("absolute"));
        assert!(workdir("/a/../b").unwrap_err().contains(".."));
        assert!(
            workdir("/app\nRUN rm -rf /")
                .unwrap_err()
                .contains("control")
        );
        assert!(workdir("/$HOME").unwrap_err().contains("`$`"));
        assert!(workdir("/a\"b").unwrap_err().contains("quoting"));
    }

    #[test]
    fn placements_resolve_against_the_workdir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
        std::fs::write(dir.path().join("data/input.txt"), "x").unwrap();
        let copy = data_copy("data/input.txt", "input.txt", "/app", dir.path(), "w").unwrap();
        assert_eq!(copy.from, "data/input.txt");
        assert_eq!(copy.to, "/app/input.txt");
        let copy = data_copy("data", "/data", "/app", dir.path(), "w").unwrap();
        assert_eq!((copy.from.as_str(), copy.to.as_str()), ("data/", "/data/"));
        let copy = data_copy("./data/sub/", "in", "/", dir.path(), "w").unwrap();
        assert_eq!(
            (copy.from.as_str(), copy.to.as_str()),
            ("data/sub/", "/in/")
        );
        let (side, message) = data_copy("src/main.c", "x", "/", dir.path(), "w").unwrap_err();
        assert_eq!(side, Side::From);
        assert!(message.contains("inside it"), "{message}");
        let (side, _) = data_copy("data/missing", "x", "/", dir.path(), "w").unwrap_err();
        assert_eq!(side, Side::From);
        let copy = data_copy("data/input.txt", ".", "/app", dir.path(), "w").unwrap();
        assert_eq!(copy.to, "/app/input.txt");
        let copy = data_copy("data/input.txt", "/srv/", "/app", dir.path(), "w").unwrap();
        assert_eq!(copy.to, "/srv/input.txt");
        let (side, _) = data_copy("data/input.txt", "a\"b", "/", dir.path(), "w").unwrap_err();
        assert_eq!(side, Side::To);
    }

    #[test]
    fn environment_names_and_values() {
        assert!(env_name("RUST_LOG").is_ok() && env_name("_x1").is_ok());
        assert!(env_name("1X").is_err() && env_name("A-B").is_err() && env_name("").is_err());
        assert!(env_value("A", "say \"hi\" to $USER\\").is_ok());
        assert!(env_value("A", "one\nENV B=2").is_err());
    }
}
