//! One lab per machine. The lab's namespace names, subnet and ports are
//! fixed, so a second lab would take over the first one's network; instead
//! the lab that is up registers its folder in a file under /run (gone after
//! a reboot, like the namespaces), and `up` from any other folder refuses
//! while that lab has a process running. The file is also a lock, held for
//! the whole of `up` and `down`, so two of them never interleave.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::LabError;

/// Where the machine's lab is registered.
pub const MACHINE_REGISTRATION: &str = "/run/pipeline-lab.owner";

/// The registration file, locked while this value lives.
pub struct Registration {
    path: PathBuf,
    file: File,
}

/// What `up` from one folder may do, given who holds the registration.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nobody, or this folder: go ahead.
    Free,
    /// Another folder whose lab has nothing running any more: take over.
    Stale(PathBuf),
    /// Another folder's lab is running: refuse.
    Taken(PathBuf),
}

/// The decision, apart from files and processes so it can be tested alone.
pub fn decide(own: &Path, owner: Option<&Path>, owner_running: bool) -> Claim {
    match owner {
        None => Claim::Free,
        Some(owner) if owner == own => Claim::Free,
        Some(owner) if owner_running => Claim::Taken(owner.to_path_buf()),
        Some(owner) => Claim::Stale(owner.to_path_buf()),
    }
}

impl Registration {
    /// Opens and locks the registration file, waiting for a `lab up` or
    /// `lab down` that holds it to finish.
    pub fn lock(path: &Path, report: &mut dyn FnMut(&str)) -> Result<Registration, LabError> {
        let error = |source| LabError::Write {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(error)?;
        if file.try_lock().is_err() {
            report(&format!(
                "waiting for another `pipeline lab` command (it holds {})",
                path.display()
            ));
            file.lock().map_err(error)?;
        }
        Ok(Registration {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The folder of the lab registered now, if any.
    pub fn owner(&mut self) -> Result<Option<PathBuf>, LabError> {
        let mut text = String::new();
        self.file
            .rewind()
            .and_then(|()| self.file.read_to_string(&mut text))
            .map_err(|source| LabError::Write {
                path: self.path.clone(),
                source,
            })?;
        let owner = text.trim_end_matches('\n');
        Ok((!owner.is_empty()).then(|| PathBuf::from(owner)))
    }

    /// Registers `owner` (the lab folder) or, with `None`, nobody.
    pub fn set_owner(&mut self, owner: Option<&Path>) -> Result<(), LabError> {
        let text = owner.map_or_else(String::new, |path| format!("{}\n", path.display()));
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(text.as_bytes()))
            .and_then(|()| self.file.sync_data())
            .map_err(|source| LabError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_running_lab_of_another_folder_refuses() {
        let own = Path::new("/srv/checkout-a/.lab");
        let other = Path::new("/srv/checkout-b/.lab");
        assert_eq!(decide(own, None, false), Claim::Free);
        assert_eq!(decide(own, Some(own), true), Claim::Free);
        assert_eq!(decide(own, Some(other), true), Claim::Taken(other.into()));
        assert_eq!(decide(own, Some(other), false), Claim::Stale(other.into()));
    }

    #[test]
    fn the_owner_round_trips_and_the_lock_excludes_others() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("owner");
        let mut quiet = |_: &str| {};
        let mut registration = Registration::lock(&path, &mut quiet).expect("lock");
        assert_eq!(registration.owner().expect("read"), None);
        let lab = Path::new("/srv/a folder/.lab");
        registration.set_owner(Some(lab)).expect("write");
        assert_eq!(registration.owner().expect("read"), Some(lab.into()));
        let second = File::open(&path).expect("open");
        assert!(second.try_lock().is_err(), "the registration is locked");
        registration.set_owner(None).expect("clear");
        assert_eq!(registration.owner().expect("read"), None);
        drop(registration);
        assert!(second.try_lock().is_ok(), "unlocked once dropped");
    }
}
