//! Replays inputs through the fuzz targets' entry points (`pcap_surgery::fuzzing`): every
//! file under `tests/fuzz-regressions/TARGET/` (crashes the fuzzers found, minimised), the
//! shipped captures, and a few degenerate inputs. Each must return without a panic.

mod common;

use std::path::Path;

use pcap_surgery::fuzzing;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("reader", fuzzing::reader),
    ("decode", fuzzing::decode),
    ("http_split", fuzzing::http_split),
    ("websocket", fuzzing::websocket),
    ("tls_dns", fuzzing::tls_dns),
    ("pipeline", fuzzing::pipeline),
    ("tls_decrypt", fuzzing::tls_decrypt),
    ("scrub_secrets", fuzzing::scrub_secrets),
];

fn read_dir_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

#[test]
fn committed_regression_inputs_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    for (name, target) in TARGETS {
        for f in read_dir_files(&root.join(name)) {
            let data = std::fs::read(&f).unwrap();
            target(&data);
        }
    }
}

#[test]
fn degenerate_inputs_pass_every_target() {
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0xff; 3], vec![0; 64], vec![0xff; 4096]];
    // Capture headers with nothing, or nonsense, after them.
    inputs.push(0xa1b2_c3d4u32.to_le_bytes().to_vec());
    let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
    inputs.push(pcap.clone());
    pcap.extend_from_slice(&[0xff; 40]);
    inputs.push(pcap);
    inputs.push(vec![0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a]);
    for data in &inputs {
        for (_, target) in TARGETS {
            target(data);
        }
    }
}

#[test]
fn shipped_captures_pass_the_pipeline_and_reader_targets() {
    for f in common::testdata_captures() {
        let mut data = std::fs::read(&f).unwrap();
        if f.extension().is_some_and(|e| e == "gz") {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&data[..]).read_to_end(&mut out).unwrap();
            data = out;
        }
        fuzzing::reader(&data);
        fuzzing::pipeline(&data);
        // Cut at every 997th byte: each prefix is a file cut short somewhere.
        for cut in (0..data.len()).step_by(997) {
            fuzzing::reader(&data[..cut]);
        }
    }
}

/// The planted-secret property over a spread of generated conversations (the fuzz target
/// explores further): every choice byte value at every position of a short input.
#[test]
fn planted_secrets_never_survive_generated_conversations() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300 {
        let data: Vec<u8> = (0..96)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        fuzzing::scrub_secrets(&data);
    }
}
