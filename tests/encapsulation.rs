//! Link layers and tunnels: a WebSocket upgrade seen through PPP, NFLOG, 802.11 (radiotap),
//! GRE, IP-in-IP, VXLAN or GTP-U is the same upgrade. Each capture in testdata/encap/ is
//! `ws-proxy-stripped.pcap` re-encapsulated packet for packet (testdata/gen/encapsulate.py),
//! so every command must say of it what it says of the source; what cannot be decoded is
//! named, never silently dropped.

mod common;

use std::path::Path;

use common::*;

fn json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn diagnosis(file: &Path) -> serde_json::Value {
    let mut d = json(&["diagnose", "--json", file.to_str().unwrap()]);
    d.as_object_mut().unwrap().remove("file");
    d
}

/// The flows listing without the byte counts (the wrapping adds bytes to every packet).
fn flows(file: &Path) -> Vec<String> {
    let out = run(&["flows", file.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            let keep = |i: usize| words.get(i + 1) != Some(&"B") && (i == 0 || words[i] != "B");
            words.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, w)| *w).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

#[test]
fn every_encapsulation_gives_the_diagnosis_and_flows_of_the_source() {
    let source = testdata().join("ws-proxy-stripped.pcap");
    let (want, want_flows) = (diagnosis(&source), flows(&source));
    assert_eq!(want["findings"][0]["code"], "proxy-stripped-upgrade");
    let caps = encap_captures();
    assert_eq!(caps.len(), 7, "{caps:?}");
    for f in caps {
        assert_eq!(diagnosis(&f), want, "{}", f.display());
        assert_eq!(flows(&f), want_flows, "{}", f.display());
        let out = run(&["diagnose", f.to_str().unwrap()]);
        assert!(out.stderr.is_empty(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn tshark_sees_the_source_handshake_inside_each_encapsulation_and_its_trim() {
    require_tshark();
    let dir = tmpdir();
    let source = tshark_rows(&testdata().join("ws-proxy-stripped.pcap"));
    let all = websocket_flows(&source);
    let want = facts(&source, &all);
    assert!(!want.is_empty());
    for f in encap_captures() {
        let rows = tshark_rows(&f);
        assert_eq!(facts(&rows, &websocket_flows(&rows)), want, "{}", f.display());
        let out = dir.path().join("t.pcap");
        let r = run(&["trim", "--force", f.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let rows = tshark_rows(&out);
        assert_eq!(facts(&rows, &websocket_flows(&rows)), want, "trim of {}", f.display());
    }
}

/// Pseudonymizing maps the tunnel endpoints as well as the inner addresses, and every
/// checksum tshark verifies (outer IPv4 header, outer UDP over IPv4 and IPv6, inner IP and
/// TCP) stays correct.
#[test]
fn pseudonymized_tunnels_hide_outer_addresses_and_keep_checksums() {
    require_tshark();
    let dir = tmpdir();
    for kind in ["gre", "ipip", "vxlan", "gtpu"] {
        let input = testdata().join(format!("encap/ws-proxy-stripped-{kind}.pcap"));
        let out = dir.path().join(format!("{kind}.pcap"));
        let r = run(&["scrub", "--pseudonymize", "--force", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let text = tshark(
            &out,
            &[
                ["-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
                    .as_slice(),
                &["-T", "fields", "-E", "occurrence=a", "-e", "ip.addr", "-e", "ipv6.addr"],
                &["-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "tcp.checksum.status"],
            ]
            .concat(),
        );
        for addr in ["192.0.2.1", "198.51.100.1", "2001:db8::1", "2001:db8::2", "127.0.0.1"] {
            assert!(!text.contains(addr), "{kind}: {addr} survived pseudonymization:\n{text}");
        }
        for line in text.lines() {
            let statuses: Vec<&str> = line.split('\t').skip(2).flat_map(|c| c.split(',')).collect();
            assert!(!statuses.contains(&"0"), "{kind}: a bad checksum after scrubbing: {line}");
            assert!(statuses.contains(&"1"), "{kind}: tshark verified no checksum: {line}");
        }
    }
}

/// A frame of a link type, or inside an encapsulation, that cannot be decoded is named by
/// every command: the user must know that what it carries was not looked at.
#[test]
fn what_cannot_be_decoded_is_named_by_every_command() {
    let dir = tmpdir();
    // LINKTYPE_USB_LINUX (189), and IPsec ESP over Ethernet.
    let usb = dir.path().join("usb.pcap");
    std::fs::write(&usb, pcap(189, &[vec![0u8; 64]])).unwrap();
    let mut esp = vec![0u8; 12];
    esp.extend([0x08, 0x00, 0x45, 0, 0, 48, 0, 0, 0x40, 0, 64, 50, 0, 0, 192, 0, 2, 1, 198, 51, 100, 1]);
    esp.extend([0u8; 28]);
    let esp_file = dir.path().join("esp.pcap");
    std::fs::write(&esp_file, pcap(1, &[esp.clone(), esp])).unwrap();
    for (file, words) in [(&usb, "link type not supported (LINKTYPE 189)"), (&esp_file, "2 packets inside IPsec ESP")] {
        let out_file = dir.path().join("o.pcap");
        for args in [
            vec!["trim", "--force", file.to_str().unwrap(), "-o", out_file.to_str().unwrap()],
            vec!["flows", file.to_str().unwrap()],
            vec!["diagnose", file.to_str().unwrap()],
        ] {
            let r = run(&args);
            let err = String::from_utf8_lossy(&r.stderr);
            assert!(err.contains(words), "{args:?}: stderr does not name it ({words}): {err}");
        }
    }
}

fn pcap(link: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, link] {
        v.extend(x.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for x in [i as u32, 0, f.len() as u32, f.len() as u32] {
            v.extend(x.to_le_bytes());
        }
        v.extend(f);
    }
    v
}
