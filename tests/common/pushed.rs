//! What an apply pushed to the lab registry, read with an independent
//! client (skopeo): manifests and the files of an image.
#![allow(dead_code)]

use std::io::Read;
use std::process::Command;

use serde_json::Value;

use super::lab;

/// One regular file of a pushed image.
pub struct PulledFile {
    pub path: String,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

/// The manifest or index a reference names, as the registry serves it.
pub fn skopeo_raw(reference: &str) -> Value {
    let output = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs (scripts/install-deps installs it)");
    assert!(output.status.success(), "{}", lab::describe_output(&output));
    serde_json::from_slice(&output.stdout).expect("skopeo prints JSON")
}

/// Files of a pushed image, fetched with skopeo into a folder and unpacked.
pub fn image_files(reference: &str) -> Vec<PulledFile> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("dir:{}", dir.path().display()))
        .output()
        .expect("skopeo runs");
    assert!(output.status.success(), "{}", lab::describe_output(&output));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    let mut files = Vec::new();
    for layer in manifest["layers"].as_array().expect("layers") {
        let digest = layer["digest"].as_str().unwrap();
        let blob = std::fs::read(dir.path().join(digest.trim_start_matches("sha256:"))).unwrap();
        let reader: Box<dyn Read> = if blob.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::GzDecoder::new(blob.as_slice()))
        } else {
            Box::new(blob.as_slice())
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let path = entry.path().unwrap().to_string_lossy().to_string();
                let mode = entry.header().mode().unwrap();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                files.push(PulledFile { path, mode, bytes });
            }
        }
    }
    files
}

pub fn names(files: &[PulledFile]) -> Vec<&str> {
    files.iter().map(|file| file.path.as_str()).collect()
}

/// The ELF header's machine: 0x3e x86-64, 0xb7 AArch64, 0xf3 RISC-V.
pub fn elf_machine(bytes: &[u8]) -> Option<u16> {
    (bytes.len() > 20 && bytes.starts_with(b"\x7fELF"))
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]))
}
