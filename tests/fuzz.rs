//! Property tests (proptest, stable Rust) of the code that reads untrusted bytes: the Annex-B
//! splitter, the access-unit splitter, the slice-header reader, the normaliser and `check`.
//! Inputs are random bytes, random NAL-shaped streams, and real streams (tests/data/*.h264) with
//! random mutations. Nothing may panic (in safe Rust, an out-of-bounds read is a panic), every NAL
//! must lie inside the buffer, and the normaliser's output must pass check's start-code and
//! parameter-set rules whenever its input had SPS and PPS before its first IDR.
//!
//! CI runs PROPTEST_CASES (default 256 per property, a few seconds); `scripts/fuzz.sh` runs many more.
//! A failing case is printed by proptest; add it to tests/data/ and to [`CRASHES`].

use agentcast::annexb::{self, Nal, Normalizer, SliceHeader, nal_type};
use agentcast::check::{self, Rule};
use proptest::prelude::*;

/// Streams that once broke a property, replayed on every run (tests/data/crash-*.h264).
const CRASHES: &[&str] = &["crash-garbage-idr-1byte.h264", "crash-garbage-before-params.h264"];

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).expect("reading tests/data")
}

fn real_streams() -> Vec<Vec<u8>> {
    ["agentcast-x264-96x64.h264", "ffmpeg-x264-2slices-bframes.h264"].iter().map(|n| data(n)).collect()
}

/// One edit to a stream.
#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    /// A start code or a lone zero run where it hurts most.
    StartCode {
        at: usize,
        four: bool,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        (at, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (at, 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        at.prop_map(|at| Mutation::Truncate { at }),
        (at, 1usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (at, any::<bool>()).prop_map(|(at, four)| Mutation::StartCode { at, four }),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    let pos = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match m {
        Mutation::Flip { at, bit } if !buf.is_empty() => {
            let i = at % buf.len();
            buf[i] ^= 1 << bit;
        }
        Mutation::Set { at, byte } if !buf.is_empty() => {
            let i = at % buf.len();
            buf[i] = *byte;
        }
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, buf.len());
            buf.splice(i..i, bytes.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let i = pos(*at, buf.len());
            let end = (i + len).min(buf.len());
            buf.drain(i..end);
        }
        Mutation::Truncate { at } => buf.truncate(pos(*at, buf.len())),
        Mutation::Duplicate { at, len } => {
            let i = pos(*at, buf.len());
            let end = (i + len).min(buf.len());
            let copy = buf[i..end].to_vec();
            buf.splice(end..end, copy);
        }
        Mutation::StartCode { at, four } => {
            let i = pos(*at, buf.len());
            let code: &[u8] = if *four { &[0, 0, 0, 1] } else { &[0, 0, 1] };
            buf.splice(i..i, code.iter().copied());
        }
        _ => {}
    }
}

/// A real stream with up to eight mutations.
fn mutated_real() -> impl Strategy<Value = Vec<u8>> {
    (0usize..2, prop::collection::vec(mutation(), 0..8)).prop_map(|(which, edits)| {
        let mut buf = real_streams().swap_remove(which);
        for m in &edits {
            apply(&mut buf, m);
        }
        buf
    })
}

/// A NAL-shaped stream: NALs of any type (weighted towards SPS/PPS/IDR/slices/AUD/SEI) behind 3- or
/// 4-byte start codes, with short random payloads (which may hold zeros and start codes).
fn nal_stream() -> impl Strategy<Value = Vec<u8>> {
    let header =
        prop_oneof![Just(0x67u8), Just(0x68), Just(0x65), Just(0x41), Just(0x01), Just(0x09), Just(0x06), any::<u8>(),];
    let nal = (any::<bool>(), header, prop::collection::vec(any::<u8>(), 0..24));
    (prop::collection::vec(any::<u8>(), 0..4), prop::collection::vec(nal, 0..40)).prop_map(|(lead, nals)| {
        let mut buf = lead;
        for (four, header, payload) in nals {
            buf.extend_from_slice(if four { &[0, 0, 0, 1] } else { &[0, 0, 1] });
            buf.push(header);
            buf.extend(payload);
        }
        buf
    })
}

/// Any of the three kinds of input.
fn any_stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..2048), nal_stream(), mutated_real()]
}

/// Every NAL lies inside the buffer, in order, without overlap, and is the bytes it claims to be.
fn assert_nals_in_bounds(buf: &[u8], list: &[Nal<'_>]) {
    let mut last_end = 0;
    for n in list {
        assert!(n.offset >= last_end, "NAL at {} overlaps the previous one ending at {last_end}", n.offset);
        assert!(matches!(n.start_code_len, 0 | 3 | 4), "start code length {}", n.start_code_len);
        let start = n.offset + n.start_code_len;
        assert!(n.end() <= buf.len(), "NAL at {} ends at {} past the buffer ({})", n.offset, n.end(), buf.len());
        assert_eq!(&buf[start..n.end()], n.data, "NAL at {} is not the bytes at its offset", n.offset);
        if n.start_code_len > 0 {
            assert_eq!(&buf[n.offset..start][n.start_code_len - 3..], &[0, 0, 1]);
        }
        last_end = n.end();
    }
}

/// Splits into access units as the sink sees them and normalises each; returns the output stream.
fn normalise(buf: &[u8]) -> Vec<u8> {
    let list: Vec<Nal<'_>> = annexb::nals(buf).collect();
    let mut norm = Normalizer::new();
    let (mut out, mut au) = (Vec::new(), Vec::new());
    for unit in annexb::access_units(&list) {
        let nals = &list[unit];
        let (Some(first), Some(last)) = (nals.first(), nals.last()) else { continue };
        norm.normalize(&buf[first.offset..last.end()], &mut au);
        out.extend_from_slice(&au);
    }
    out
}

/// Whether an SPS and a PPS (behind start codes) come before the stream's first IDR slice, or there
/// is no IDR at all.
fn params_before_first_idr(buf: &[u8]) -> bool {
    let framed: Vec<u8> = annexb::nals(buf).filter(|n| n.start_code_len > 0).map(|n| n.nal_type()).collect();
    let idr = framed.iter().position(|&t| t == nal_type::IDR).unwrap_or(framed.len());
    framed[..idr].contains(&nal_type::SPS) && framed[..idr].contains(&nal_type::PPS) || !framed.contains(&nal_type::IDR)
}

/// All the properties, for one input.
fn properties(buf: &[u8]) {
    let list: Vec<Nal<'_>> = annexb::nals(buf).collect();
    assert_nals_in_bounds(buf, &list);
    let units = annexb::access_units(&list);
    let mut next = 0;
    for u in &units {
        assert_eq!(u.start, next, "access units must tile the NAL list");
        assert!(u.end > u.start && u.end <= list.len());
        next = u.end;
    }
    assert_eq!(next, list.len());
    for n in &list {
        let _ = n.slice_header();
        let _ = SliceHeader::parse(n.data);
    }
    let report = check::check_stream(buf);
    let _ = report.to_string();

    let out = normalise(buf);
    assert_nals_in_bounds(&out, &annexb::nals(&out).collect::<Vec<_>>());
    let after = check::check_stream(&out);
    for rule in [Rule::StartCode, Rule::Garbage] {
        assert_eq!(after.count(rule), 0, "normaliser output breaks [{}]:\n{after}", rule.id());
    }
    if !out.is_empty() {
        assert!(out.starts_with(&annexb::START_CODE), "normaliser output must start with 00 00 00 01");
    }
    if params_before_first_idr(buf) {
        assert_eq!(after.count(Rule::IdrParams), 0, "an IDR without SPS+PPS after normalising:\n{after}");
    }
}

proptest! {
    // Failures are kept by hand in tests/data/ (see CRASHES), not in a proptest-regressions file.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_and_stay_in_bounds(buf in prop::collection::vec(any::<u8>(), 0..4096)) {
        properties(&buf);
    }

    #[test]
    fn nal_shaped_streams_keep_every_property(buf in nal_stream()) {
        properties(&buf);
    }

    #[test]
    fn mutated_real_streams_keep_every_property(buf in mutated_real()) {
        properties(&buf);
    }

    #[test]
    fn slice_headers_of_any_bytes_parse_or_refuse(rbsp in prop::collection::vec(any::<u8>(), 0..16)) {
        if let Some(h) = SliceHeader::parse(&rbsp) {
            prop_assert!(h.slice_type <= 9);
        }
    }

    #[test]
    fn any_stream_through_the_normaliser_twice_is_unchanged(buf in any_stream()) {
        // Normalising is idempotent: a second pass over go2rtc-ready bytes changes nothing.
        let once = normalise(&buf);
        prop_assert_eq!(normalise(&once), once);
    }
}

#[test]
fn real_streams_and_saved_crashes_keep_every_property() {
    for buf in real_streams() {
        properties(&buf);
    }
    for name in CRASHES {
        properties(&data(name));
    }
}
