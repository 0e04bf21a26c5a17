//! The search path for the system programs the lab and the builder run.

use std::ffi::OsString;
use std::sync::OnceLock;

/// Where Debian keeps administration programs (`sysctl`, `debootstrap`,
/// `chroot`, `runc`, `sshd`).
const ADMIN_DIRS: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The caller's PATH with the administration folders appended when missing.
/// A non-login shell, `sudo` with a reset environment or a CI runner often
/// leaves them out, and the lab and base builds need programs from there.
pub fn admin_path() -> &'static OsString {
    static PATH: OnceLock<OsString> = OnceLock::new();
    PATH.get_or_init(|| with_admin_dirs(std::env::var_os("PATH").unwrap_or_default()))
}

fn with_admin_dirs(path: OsString) -> OsString {
    // An empty entry would mean the current folder: never wanted for these.
    let mut dirs: Vec<_> = std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .collect();
    for dir in ADMIN_DIRS {
        if !dirs.iter().any(|present| present.as_os_str() == dir) {
            dirs.push(dir.into());
        }
    }
    // Joining only fails for a folder holding ':', which split_paths never yields.
    std::env::join_paths(dirs).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_only_missing_admin_folders_and_keeps_order() {
        let path = with_admin_dirs("/opt/bin:/usr/sbin:/usr/bin".into());
        assert_eq!(
            path,
            OsString::from("/opt/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/sbin")
        );
        assert_eq!(
            with_admin_dirs(OsString::new()),
            OsString::from("/usr/local/sbin:/usr/sbin:/sbin")
        );
    }
}
