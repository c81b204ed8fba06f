//! OCI image layouts for the filters, in the one format both Kubernetes Wasm fetchers accept.
//!
//! Istio (`pkg/wasm/imagefetcher.go`) and Envoy Gateway (`internal/wasm/imagefetcher.go`, derived from
//! Istio's) read an image the same way, trying in order:
//! 1. a Docker schema-2 manifest whose *last* layer is `application/vnd.docker.image.rootfs.diff.tar.gzip`;
//! 2. the "compat" variant: an OCI manifest whose *last* layer is
//!    `application/vnd.oci.image.layer.v1.tar+gzip`, a tar.gz holding a file whose base name is
//!    `plugin.wasm`;
//! 3. the "oci" variant: exactly two layers, one of them `application/vnd.module.wasm.content.layer.v1+wasm`.
//!
//! The image's config says `wasip1`/`wasm`, the platform Docker gives Wasm images. A container runtime pulling
//! the image for a node (Kubernetes image volumes, which Envoy Gateway's proxies use to load model-router's
//! upstream instance) checks that platform against the node's, so the tag names an image *index* listing
//! the one manifest for `linux/amd64` and `linux/arm64` (the layer is data, usable on any node): runtimes pick
//! it through the index, and the fetchers, which resolve an index for `linux/amd64`, get the same manifest.
//! The manifests pin the image manifest's digest for the plugins (what the fetchers compare) and the
//! index's digest for the image volume.
//!
//! A one-layer artifact such as `oras push ... x.wasm:application/vnd.module.wasm.content.layer.v1+wasm`
//! fails all three ("number of layers must be 2"). We build variant 2, the plain OCI image that
//! `FROM scratch` + `COPY plugin.wasm` would give, so every registry and copy tool treats it as an
//! ordinary image. Both fetchers compare a pinned `sha256` with the *manifest* digest.
//!
//! The layout is reproducible: the tar entry has fixed owner, mode and mtime 0, the gzip header has
//! mtime 0 and no file name, the JSON documents have a fixed key order and no creation time, so the
//! same `.wasm` always gives the same manifest digest.

use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// The OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index media type (index.json).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI image config media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The layer media type of the compat variant both fetchers accept.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The Docker layer media type (the fetchers' first branch).
pub const DOCKER_LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The Docker schema-2 manifest media type.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The raw-Wasm layer of the "oci" variant (needs exactly two layers).
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The node platforms the image index lists (Kubernetes nodes: the layer is data, usable on any).
pub const NODE_PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];
/// The platform go-containerregistry resolves an index for when none is given (both fetchers).
pub const FETCHER_PLATFORM: (&str, &str) = ("linux", "amd64");
/// The file name the fetchers look for in the layer.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// Annotation naming a manifest in index.json (the tag `oras cp --from-oci-layout dir:<tag>` and
/// `skopeo copy oci:dir:<tag>` select).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What was written: the manifest's digest (what `@sha256:` and the `sha256` fields pin) and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    pub manifest_size: usize,
    /// `sha256:<hex>` of the image index the tag names.
    pub index_digest: String,
    /// `sha256:<hex>` of the gzip layer.
    pub layer_digest: String,
}

impl Built {
    /// The manifest digest's hex part (Istio's and Envoy Gateway's `sha256` fields).
    pub fn hex(&self) -> &str {
        self.manifest_digest.trim_start_matches("sha256:")
    }

    /// The index digest's hex part (the image volume's reference).
    pub fn index_hex(&self) -> &str {
        self.index_digest.trim_start_matches("sha256:")
    }
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A ustar archive holding one regular file, owner root, mode 0644, mtime 0.
pub fn tar_one_file(name: &str, content: &[u8]) -> Result<Vec<u8>, String> {
    if name.len() > 100 {
        return Err(format!("{name}: longer than a ustar name field"));
    }
    let mut header = [0u8; 512];
    fn put(header: &mut [u8; 512], offset: usize, field: &[u8]) {
        for (i, byte) in field.iter().enumerate() {
            if let Some(slot) = header.get_mut(offset + i) {
                *slot = *byte;
            }
        }
    }
    put(&mut header, 0, name.as_bytes());
    put(&mut header, 100, b"0000644\0");
    put(&mut header, 108, b"0000000\0");
    put(&mut header, 116, b"0000000\0");
    put(&mut header, 124, format!("{:011o}\0", content.len()).as_bytes());
    put(&mut header, 136, b"00000000000\0");
    put(&mut header, 148, b"        "); // checksum field counts as spaces while summing
    put(&mut header, 156, b"0");
    put(&mut header, 257, b"ustar\0");
    put(&mut header, 263, b"00");
    put(&mut header, 265, b"root");
    put(&mut header, 297, b"root");
    let checksum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    put(&mut header, 148, format!("{checksum:06o}\0 ").as_bytes());
    let mut out = Vec::with_capacity(512 + content.len() + 1536);
    out.extend_from_slice(&header);
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    // End of archive: two zero blocks.
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

/// gzip with a fixed header (mtime 0, no name) so the bytes depend only on the input.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Result<String, String> {
    let digest = digest(bytes);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    let path = blobs.join(digest.trim_start_matches("sha256:"));
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(digest)
}

/// The manifest, config and layer of the image holding `wasm` as `plugin.wasm` (no files written).
pub struct Image {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

/// Builds the image documents for one module.
pub fn image(wasm: &[u8], filter: &str, version: &str) -> Result<Image, String> {
    let tar = tar_one_file(PLUGIN_FILE, wasm)?;
    let layer = gzip(&tar)?;
    // The platform Docker's Wasm support uses; no creation time (reproducible).
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
    }))
    .map_err(|e| e.to_string())?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": digest(&config), "size": config.len()},
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": digest(&layer),
            "size": layer.len(),
            "annotations": {"org.opencontainers.image.title": PLUGIN_FILE},
        }],
        "annotations": {
            "org.opencontainers.image.title": format!("aigw {filter}"),
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.source": "aigw",
        },
    }))
    .map_err(|e| e.to_string())?;
    Ok(Image { layer, config, manifest })
}

/// Writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) for one module into `dir`
/// (replacing what was there), tagged `tag` in index.json.
pub fn write_layout(dir: &Path, wasm: &[u8], filter: &str, tag: &str) -> Result<Built, String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let image = image(wasm, filter, tag)?;
    let layer_digest = write_blob(dir, &image.layer)?;
    write_blob(dir, &image.config)?;
    let manifest_digest = write_blob(dir, &image.manifest)?;
    let platforms: Vec<serde_json::Value> = NODE_PLATFORMS
        .iter()
        .map(|(os, architecture)| {
            json!({
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": manifest_digest,
                "size": image.manifest.len(),
                "platform": {"os": os, "architecture": architecture},
            })
        })
        .collect();
    let image_index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": platforms,
    }))
    .map_err(|e| e.to_string())?;
    let index_digest = write_blob(dir, &image_index)?;
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": INDEX_MEDIA_TYPE,
            "digest": index_digest,
            "size": image_index.len(),
            "annotations": {REF_NAME: tag},
        }],
    }))
    .map_err(|e| e.to_string())?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    write("index.json", &index)?;
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(Built { manifest_digest, manifest_size: image.manifest.len(), index_digest, layer_digest })
}
