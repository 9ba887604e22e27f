//! Writes the o200k_base (GPT-4o, GPT-4.1, o-series, GPT-5) and cl100k_base (GPT-4,
//! GPT-3.5) vocabularies in a compact form for `src/llm/bpe.rs`: every token's bytes in
//! rank order, each after its length (u16 little-endian). tiktoken-rs keeps a vocabulary
//! as two hash maps of byte vectors (~45 MiB resident for o200k) and embeds every
//! encoding as base64 text (7.4 MB); these blobs are 1.6 MB and 0.8 MB, indexed at
//! start-up. tiktoken-rs is a build (and test) dependency only.

use std::io::Write;

fn write(name: &str, bpe: &tiktoken_rs::CoreBPE, at_least: u32) {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set"))
        .join(format!("{name}.bin"));
    let mut blob = Vec::with_capacity(1 << 21);
    let mut rank = 0u32;
    // Ordinary tokens have the ranks 0..n without gaps; the special ones come after a gap
    // and are never produced by ordinary encoding, so the first gap ends the list.
    while let Ok(bytes) = bpe.decode_bytes(&[rank]) {
        let len = u16::try_from(bytes.len()).expect("a token is shorter than 64 KiB");
        blob.extend_from_slice(&len.to_le_bytes());
        blob.extend_from_slice(&bytes);
        rank += 1;
    }
    assert!(
        rank > at_least,
        "{name} has more than {at_least} tokens, got {rank}"
    );
    std::fs::File::create(&out)
        .and_then(|mut f| f.write_all(&blob))
        .expect("the vocabulary is written to OUT_DIR");
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    write(
        "o200k_base",
        &tiktoken_rs::o200k_base().expect("tiktoken-rs builds o200k_base"),
        190_000,
    );
    write(
        "cl100k_base",
        &tiktoken_rs::cl100k_base().expect("tiktoken-rs builds cl100k_base"),
        100_000,
    );
}
