//! The OCI layouts `just oci` builds are opened the way Istio's and Envoy Gateway's Wasm fetchers open an
//! image (their `imagefetcher.go`, the same logic in both): index -> manifest -> layers; a Docker manifest
//! wants a Docker last layer; otherwise the "compat" variant (last layer `...layer.v1.tar+gzip` with a
//! `plugin.wasm` in it) and then the "oci" variant (exactly two layers, one raw Wasm). Every blob's digest
//! and size is checked, and the extracted module must equal dist/<filter>.wasm byte for byte.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use aigw_e2e::config::FILTERS;
use aigw_e2e::{k8s, oci, repo_root};
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// Reads a blob named by a descriptor and checks its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Result<Vec<u8>, String> {
    let digest = descriptor["digest"].as_str().ok_or("descriptor without digest")?;
    let hex = digest.strip_prefix("sha256:").ok_or("not a sha256 digest")?;
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).map_err(|e| format!("{digest}: {e}"))?;
    if oci::digest(&bytes) != digest {
        return Err(format!("{digest}: content has digest {}", oci::digest(&bytes)));
    }
    if descriptor["size"].as_u64() != Some(bytes.len() as u64) {
        return Err(format!("{digest}: size {} but descriptor says {}", bytes.len(), descriptor["size"]));
    }
    Ok(bytes)
}

/// Walks a tar archive as Go's archive/tar does for these entries; returns the file whose base name is
/// `plugin.wasm`.
fn find_plugin(tar: &[u8]) -> Result<Vec<u8>, String> {
    let mut offset = 0;
    while offset + 512 <= tar.len() {
        let header = &tar[offset..offset + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let name_end = header[..100].iter().position(|b| *b == 0).unwrap_or(100);
        let name = std::str::from_utf8(&header[..name_end]).map_err(|e| e.to_string())?;
        let size_text = std::str::from_utf8(&header[124..136]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .map_err(|e| format!("size field: {e}"))?;
        let stored: u32 =
            header.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u32::from(*b) }).sum();
        let checksum_text = std::str::from_utf8(&header[148..156]).map_err(|e| e.to_string())?;
        let checksum = u32::from_str_radix(checksum_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .map_err(|e| format!("checksum field: {e}"))?;
        if checksum != stored {
            return Err(format!("{name}: header checksum {checksum} != {stored}"));
        }
        let data = tar.get(offset + 512..offset + 512 + size).ok_or("truncated archive")?;
        if Path::new(name).file_name().is_some_and(|n| n == oci::PLUGIN_FILE) {
            return Ok(data.to_vec());
        }
        offset += 512 + size.div_ceil(512) * 512;
    }
    Err("plugin.wasm not found in the archive".into())
}

fn gunzip_plugin(layer: &[u8]) -> Result<Vec<u8>, String> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer).read_to_end(&mut tar).map_err(|e| format!("not tar.gz: {e}"))?;
    find_plugin(&tar)
}

/// What the fetchers do with one image (tag -> manifest via index.json); returns the module and the
/// manifest digest they compare with a pinned `sha256`.
fn fetch_like_the_controllers(layout: &Path, tag: &str) -> Result<(Vec<u8>, String), String> {
    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    if oci_layout["imageLayoutVersion"] != "1.0.0" {
        return Err("oci-layout: imageLayoutVersion".into());
    }
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let tagged = index["manifests"]
        .as_array()
        .and_then(|m| m.iter().find(|d| d["annotations"][oci::REF_NAME] == tag))
        .ok_or_else(|| format!("no manifest tagged {tag}"))?;
    // go-containerregistry resolves an index for linux/amd64 when no platform is given (both fetchers).
    let descriptor = if tagged["mediaType"] == oci::INDEX_MEDIA_TYPE {
        let image_index: Value = serde_json::from_slice(&blob(layout, tagged)?).map_err(|e| e.to_string())?;
        let (os, architecture) = oci::FETCHER_PLATFORM;
        image_index["manifests"]
            .as_array()
            .and_then(|m| m.iter().find(|d| d["platform"]["os"] == os && d["platform"]["architecture"] == architecture))
            .cloned()
            .ok_or("no image for linux/amd64 in the index")?
    } else {
        tagged.clone()
    };
    let descriptor = &descriptor;
    let manifest_bytes = blob(layout, descriptor)?;
    let manifest: Value = serde_json::from_slice(&manifest_bytes).map_err(|e| e.to_string())?;
    // An index here would be resolved by platform; an image manifest is what a tag must name.
    if descriptor["mediaType"] != oci::MANIFEST_MEDIA_TYPE && descriptor["mediaType"] != oci::DOCKER_MANIFEST_MEDIA_TYPE
    {
        return Err(format!("tag names a {}", descriptor["mediaType"]));
    }
    blob(layout, &manifest["config"])?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let media = |l: &Value| l["mediaType"].as_str().unwrap_or("").to_string();
    if manifest["mediaType"] == oci::DOCKER_MANIFEST_MEDIA_TYPE {
        let last = layers.last().ok_or("number of layers must be greater than zero")?;
        if media(last) != oci::DOCKER_LAYER_MEDIA_TYPE {
            return Err(format!("invalid media type {}", media(last)));
        }
        return Ok((gunzip_plugin(&blob(layout, last)?)?, oci::digest(&manifest_bytes)));
    }
    let compat = (|| {
        let last = layers.last().ok_or("number of layers must be greater than zero".to_string())?;
        if media(last) != oci::LAYER_MEDIA_TYPE {
            return Err(format!("invalid media type {} (expect {})", media(last), oci::LAYER_MEDIA_TYPE));
        }
        gunzip_plugin(&blob(layout, last)?)
    })();
    let module = match compat {
        Ok(module) => module,
        Err(compat_error) => {
            if layers.len() != 2 {
                return Err(format!(
                    "compat: {compat_error}; oci: number of layers must be 2 but got {}",
                    layers.len()
                ));
            }
            let layer = layers.iter().find(|l| media(l) == oci::WASM_LAYER_MEDIA_TYPE).ok_or("no wasm layer")?;
            blob(layout, layer)?
        }
    };
    Ok((module, oci::digest(&manifest_bytes)))
}

fn dist_wasm(filter: &str) -> Vec<u8> {
    let path = repo_root().join("dist").join(format!("{filter}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `just build` first", path.display()))
}

#[test]
fn every_filter_layout_is_accepted_by_the_fetchers_and_carries_the_built_module() {
    let temp = std::env::temp_dir().join(format!("aigw-oci-test-{}", std::process::id()));
    for filter in FILTERS {
        let wasm = dist_wasm(filter);
        let dir = temp.join(filter);
        let built = oci::write_layout(&dir, &wasm, filter, k8s::IMAGE_TAG).unwrap();
        let (module, manifest_digest) =
            fetch_like_the_controllers(&dir, k8s::IMAGE_TAG).unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert!(module == wasm, "{filter}: plugin.wasm differs from dist/{filter}.wasm");
        assert_eq!(manifest_digest, built.manifest_digest, "{filter}: the digest the manifests pin");
        // The layer's diff_id in the config is the digest of the uncompressed tar.
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(built.hex())).unwrap()).unwrap();
        assert_eq!(manifest["config"]["mediaType"], oci::CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        let config: Value = serde_json::from_slice(&blob(&dir, &manifest["config"]).unwrap()).unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&blob(&dir, &manifest["layers"][0]).unwrap()[..]).read_to_end(&mut tar).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], oci::digest(&tar));
        // A node's runtime pulls the tag through the index, on either node platform, and gets the same image.
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(built.index_hex())).unwrap()).unwrap();
        for (os, architecture) in oci::NODE_PLATFORMS {
            let entry = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["platform"]["os"] == os && d["platform"]["architecture"] == architecture)
                .unwrap_or_else(|| panic!("{filter}: no {os}/{architecture} in the index"));
            assert_eq!(entry["digest"].as_str(), Some(built.manifest_digest.as_str()));
        }
        // Reproducible: the same module gives the same digest.
        let again = oci::write_layout(&temp.join("again"), &wasm, filter, k8s::IMAGE_TAG).unwrap();
        assert_eq!(again, built, "{filter}: building twice gave different digests");
    }
    std::fs::remove_dir_all(&temp).ok();
}

#[test]
fn a_one_layer_wasm_artifact_is_rejected_as_the_issue_describes() {
    // What `oras push <ref> x.wasm:application/vnd.module.wasm.content.layer.v1+wasm` makes.
    let temp = std::env::temp_dir().join(format!("aigw-oci-oras-{}", std::process::id()));
    std::fs::create_dir_all(temp.join("blobs/sha256")).unwrap();
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    let config = b"{}".to_vec();
    for bytes in [&wasm, &config] {
        std::fs::write(temp.join("blobs/sha256").join(&oci::digest(bytes)[7..]), bytes).unwrap();
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": oci::MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": oci::digest(&config), "size": config.len()},
        "layers": [{"mediaType": oci::WASM_LAYER_MEDIA_TYPE, "digest": oci::digest(&wasm), "size": wasm.len()}],
    }))
    .unwrap();
    std::fs::write(temp.join("blobs/sha256").join(&oci::digest(&manifest)[7..]), &manifest).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": oci::MANIFEST_MEDIA_TYPE,
        "digest": oci::digest(&manifest), "size": manifest.len(), "annotations": {oci::REF_NAME: "v1"}}]});
    std::fs::write(temp.join("index.json"), index.to_string()).unwrap();
    std::fs::write(temp.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let error = fetch_like_the_controllers(&temp, "v1").unwrap_err();
    assert!(error.contains("number of layers must be 2"), "{error}");
    std::fs::remove_dir_all(&temp).ok();
}

#[test]
fn the_tar_is_readable_by_gnu_tar() {
    // An independent reader: the system's tar lists exactly plugin.wasm with the module's size.
    let wasm = dist_wasm("model-router");
    let temp = std::env::temp_dir().join(format!("aigw-oci-tar-{}.tar", std::process::id()));
    std::fs::write(&temp, oci::tar_one_file(oci::PLUGIN_FILE, &wasm).unwrap()).unwrap();
    let Ok(output) = std::process::Command::new("tar").arg("-tvf").arg(&temp).output() else {
        eprintln!("no tar on this machine: skipped");
        return;
    };
    std::fs::remove_file(&temp).ok();
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{listing}");
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(
        listing.contains(&format!(" {} ", wasm.len())) && listing.trim_end().ends_with(" plugin.wasm"),
        "{listing}"
    );
}
