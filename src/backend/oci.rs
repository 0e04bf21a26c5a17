//! Writing small OCI images directly into a registry, without an engine:
//! one gzip layer of the given files. Used for test images and for images
//! that are only files, such as a wasm module.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::registry::{ImageRef, OCI_MANIFEST, RegistryClient, RegistryError, sha256_digest};

/// A file in the image: absolute path, contents, Unix mode.
pub struct ImageFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// The pushed manifest's digest and size, for an index entry.
pub struct PushedImage {
    pub digest: String,
    pub size: u64,
}

fn layer(files: &[ImageFile]) -> std::io::Result<(Vec<u8>, String)> {
    let mut tar = tar::Builder::new(Vec::new());
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(file.contents.len() as u64);
        header.set_mode(file.mode);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(
            &mut header,
            file.path.trim_start_matches('/'),
            file.contents.as_slice(),
        )?;
    }
    let uncompressed = tar.into_inner()?;
    // The config names layers by the digest of their uncompressed tar.
    let diff_id = format!("sha256:{:x}", Sha256::digest(&uncompressed));
    let mut gzip = GzEncoder::new(Vec::new(), Compression::best());
    gzip.write_all(&uncompressed)?;
    Ok((gzip.finish()?, diff_id))
}

/// Pushes a one-layer image for `os/architecture` with the given entrypoint.
pub async fn push_image(
    client: &RegistryClient,
    image: &ImageRef,
    os: &str,
    architecture: &str,
    files: &[ImageFile],
    entrypoint: &[&str],
) -> Result<PushedImage, RegistryError> {
    let failure = |message: String| RegistryError::Manifest {
        target: image.to_string(),
        message,
    };
    let (layer_bytes, diff_id) = layer(files).map_err(|error| failure(error.to_string()))?;
    let layer_size = layer_bytes.len() as u64;
    let layer_digest = client.put_blob(image, layer_bytes).await?;
    let config = json!({
        "architecture": architecture,
        "os": os,
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|error| failure(error.to_string()))?;
    let config_size = config_bytes.len() as u64;
    let config_digest = client.put_blob(image, config_bytes).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|error| failure(error.to_string()))?;
    let size = bytes.len() as u64;
    let expected = sha256_digest(&bytes);
    let digest = client.put_manifest(image, OCI_MANIFEST, bytes).await?;
    debug_assert_eq!(digest, expected);
    Ok(PushedImage { digest, size })
}
