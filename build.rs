//! Writes the o200k_base vocabulary (GPT-4o, GPT-4.1, o-series, GPT-5) in a compact form
//! for `src/llm/bpe.rs`: every token's bytes in rank order, each after its length (u16
//! little-endian). tiktoken-rs keeps the same vocabulary as two hash maps of 200,000 byte
//! vectors (~45 MiB resident); this blob is 1.6 MB and is indexed at start-up into 3 MB.

use std::io::Write;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let bpe = tiktoken_rs::o200k_base().expect("tiktoken-rs builds o200k_base");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set"))
        .join("o200k_base.bin");
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
        rank > 190_000,
        "o200k_base has about 200,000 tokens, got {rank}"
    );
    std::fs::File::create(&out)
        .and_then(|mut f| f.write_all(&blob))
        .expect("the vocabulary is written to OUT_DIR");
}
