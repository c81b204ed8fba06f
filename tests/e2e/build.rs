//! The test binaries link the four filter crates natively (tests/manifests.rs
//! runs each filter's config parser). Each filter's `proxy_wasm::main!` defines
//! the Wasm start function `_initialize`, so four copies collide at link time.
//! Natively that function is never called; let the linker keep one. (Guarding
//! `proxy_wasm::main!` with `#[cfg(target_arch = "wasm32")]` in the filters
//! would make this unnecessary.)
fn main() {
    println!("cargo:rustc-link-arg-tests=-Wl,--allow-multiple-definition");
}
