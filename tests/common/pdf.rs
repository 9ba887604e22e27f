//! PDFs made by the tests: a few pages of text, and a bomb whose page content stream
//! inflates to gigabytes from a few megabytes.

use std::io::Write;

/// A PDF of `objects` (numbered from 1; the first is the catalog) with a correct
/// cross-reference table.
fn document(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        writeln!(out, "{} 0 obj", i + 1).unwrap();
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).unwrap();
    for offset in offsets {
        writeln!(out, "{offset:010} 00000 n ").unwrap();
    }
    write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    )
    .unwrap();
    out
}

fn stream(dictionary: &str, data: &[u8]) -> Vec<u8> {
    let mut object = format!("<< {dictionary} /Length {} >>\nstream\n", data.len()).into_bytes();
    object.extend_from_slice(data);
    object.extend_from_slice(b"\nendstream");
    object
}

/// `n` pages, page `i` showing "Page i of the report".
pub fn pages(n: usize) -> Vec<u8> {
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    for i in 0..n {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {} 0 R \
                 /Resources << /Font << /F1 3 0 R >> >> >>",
                5 + 2 * i
            )
            .into_bytes(),
        );
        let text = format!(
            "BT /F1 12 Tf 72 720 Td (Page {} of the report) Tj ET",
            i + 1
        );
        objects.push(stream("", text.as_bytes()));
    }
    document(&objects)
}

/// A one-page PDF whose content stream (FlateDecode) inflates to `mib` MiB of zeros:
/// one MiB compressed once and repeated — each block ends with a full flush, which
/// resets the dictionary, so identical blocks join into one valid zlib stream.
pub fn bomb(mib: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut deflate = Compress::new(Compression::best(), false);
    let mut block = Vec::with_capacity(64 << 10);
    deflate
        .compress_vec(&vec![0u8; 1 << 20], &mut block, FlushCompress::Full)
        .unwrap();
    assert_eq!(deflate.total_in(), 1 << 20, "one MiB compressed whole");
    let total = (mib as u64) << 20;
    // Adler-32 of `total` zero bytes: a = 1, b = total mod 65521.
    let adler = (((total % 65_521) as u32) << 16) | 1;
    let mut data = vec![0x78, 0xda];
    for _ in 0..mib {
        data.extend_from_slice(&block);
    }
    data.extend_from_slice(&[0x03, 0x00]); // a final, empty fixed-Huffman block
    data.extend_from_slice(&adler.to_be_bytes());
    document(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>"
            .to_vec(),
        stream("/Filter /FlateDecode", &data),
    ])
}
