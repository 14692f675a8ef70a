//! `agentcast check`: audits any Annex-B H.264 stream against the rules go2rtc's raw H.264 reader
//! enforces (see ../shared/GO2RTC.md), with byte offsets. Pure: it takes bytes and returns a report.

use std::fmt;

use crate::annexb::{self, Nal, SliceKind, nal_type};

/// How many bytes go2rtc buffers before it decides what the stream is.
pub const PROBE_BYTES: usize = 256;

/// One rule go2rtc's reader depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// The stream must begin with `00 00 00 01`.
    Start,
    /// Bytes that are not part of any NAL unit.
    Garbage,
    /// The first NAL after any AUDs must be an SPS with header byte 0x67.
    FirstNal,
    /// SPS and PPS must both be complete in the first 256 bytes.
    Probe,
    /// Every NAL unit needs a 4-byte start code.
    StartCode,
    /// forbidden_zero_bit set, or an empty NAL.
    NalHeader,
    /// Every IDR picture needs SPS and PPS in front of it.
    IdrParams,
    /// Exactly one slice per picture.
    Slices,
    /// No B slices.
    BSlice,
    /// The same SPS for the whole stream.
    SpsChanged,
    /// A slice whose header cannot be parsed.
    SliceHeader,
}

impl Rule {
    pub fn id(self) -> &'static str {
        match self {
            Rule::Start => "start",
            Rule::Garbage => "garbage",
            Rule::FirstNal => "first-nal",
            Rule::Probe => "probe-256",
            Rule::StartCode => "start-code",
            Rule::NalHeader => "nal-header",
            Rule::IdrParams => "idr-params",
            Rule::Slices => "one-slice",
            Rule::BSlice => "b-slice",
            Rule::SpsChanged => "sps-changed",
            Rule::SliceHeader => "slice-header",
        }
    }

    /// Why go2rtc cares, printed once per rule that fails.
    pub fn why(self) -> &'static str {
        match self {
            Rule::Start => "go2rtc reads the first 4 bytes and takes only 00 00 00 01 as raw H.264",
            Rule::Garbage => "bytes outside NAL units end up inside a frame",
            Rule::FirstNal => {
                "after dropping AUDs go2rtc needs an SPS with header 0x67 first (0x47 looks like an AUD to it)"
            }
            Rule::Probe => "go2rtc waits for 256 bytes and needs the whole SPS and PPS inside them",
            Rule::StartCode => "go2rtc splits frames at 4-byte start codes only",
            Rule::NalHeader => "decoders reject NAL units with forbidden_zero_bit set",
            Rule::IdrParams => "viewers join at an IDR and need SPS+PPS right before it",
            Rule::Slices => "go2rtc starts a new frame at every non-IDR slice",
            Rule::BSlice => "go2rtc timestamps frames in arrival order and cannot reorder B-frames",
            Rule::SpsChanged => "go2rtc keeps the first SPS for the whole session",
            Rule::SliceHeader => "a slice header that does not parse cannot be framed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub offset: usize,
    pub message: String,
}

/// Counts describing the stream, printed whether or not it passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub bytes: usize,
    pub nals: usize,
    pub pictures: usize,
    pub idr_pictures: usize,
    pub max_slices_per_picture: usize,
    pub b_slices: usize,
    /// Pictures between consecutive IDRs (first to last seen).
    pub gop_min: Option<usize>,
    pub gop_max: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub violations: Vec<Violation>,
    pub summary: Summary,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn count(&self, rule: Rule) -> usize {
        self.violations.iter().filter(|v| v.rule == rule).count()
    }
}

/// Checks a whole stream.
pub fn check_stream(buf: &[u8]) -> Report {
    let mut report = Report::default();
    let mut v = |rule, offset, message: String| report.violations.push(Violation { rule, offset, message });
    let list: Vec<Nal<'_>> = annexb::nals(buf).collect();

    if !buf.starts_with(&annexb::START_CODE) {
        let head: Vec<String> = buf.iter().take(4).map(|b| format!("{b:02x}")).collect();
        v(Rule::Start, 0, format!("stream starts with [{}], not 00 00 00 01", head.join(" ")));
    }

    // Per-NAL rules.
    let mut first_sps: Option<&[u8]> = None;
    for nal in &list {
        if nal.start_code_len == 0 {
            v(Rule::Garbage, nal.offset, format!("{} bytes outside any NAL unit", nal.data.len()));
            continue;
        }
        if nal.start_code_len == 3 {
            v(Rule::StartCode, nal.offset, format!("3-byte start code before NAL type {}", nal.nal_type()));
        }
        if nal.data.is_empty() || nal.header() & 0x80 != 0 {
            v(Rule::NalHeader, nal.offset, format!("bad NAL header byte 0x{:02x}", nal.header()));
        }
        if nal.nal_type() == nal_type::SPS {
            match first_sps {
                None => first_sps = Some(nal.data),
                Some(first) if first != nal.data => {
                    v(Rule::SpsChanged, nal.offset, "SPS differs from the first SPS of the stream".into())
                }
                Some(_) => {}
            }
        }
    }

    // The first 256 bytes, as go2rtc's probe sees them.
    let framed: Vec<&Nal<'_>> = list.iter().filter(|n| n.start_code_len > 0).collect();
    if let Some(first) = framed.iter().find(|n| n.nal_type() != nal_type::AUD)
        && first.header() != 0x67
    {
        v(
            Rule::FirstNal,
            first.offset,
            format!("first NAL after AUDs has header 0x{:02x}, not an SPS with 0x67", first.header()),
        );
    }
    let complete_in_probe = |t: u8| framed.iter().any(|n| n.nal_type() == t && n.end() <= PROBE_BYTES);
    if !(complete_in_probe(nal_type::SPS) && complete_in_probe(nal_type::PPS)) {
        v(Rule::Probe, 0, "SPS and PPS are not both complete within the first 256 bytes".into());
    }

    // Per-picture rules.
    let units = annexb::access_units(&list);
    let mut last_idr: Option<usize> = None;
    let summary = &mut report.summary;
    summary.bytes = buf.len();
    summary.nals = list.len();
    let mut pending = Vec::new();
    for unit in units {
        let nals = &list[unit];
        let slices: Vec<&Nal<'_>> = nals.iter().filter(|n| n.is_vcl()).collect();
        let Some(first_slice) = slices.first() else { continue };
        let picture = summary.pictures;
        summary.pictures += 1;
        summary.max_slices_per_picture = summary.max_slices_per_picture.max(slices.len());
        if slices.len() > 1 {
            let extra = slices[1];
            let mb = extra.slice_header().map_or(0, |h| h.first_mb_in_slice);
            pending.push(Violation {
                rule: Rule::Slices,
                offset: first_slice.offset,
                message: format!(
                    "picture has {} slices (second slice at byte {}, first_mb_in_slice {mb})",
                    slices.len(),
                    extra.offset
                ),
            });
        }
        for s in &slices {
            match s.slice_header() {
                Some(h) if h.kind() == SliceKind::B => {
                    summary.b_slices += 1;
                    pending.push(Violation { rule: Rule::BSlice, offset: s.offset, message: "B slice".into() });
                }
                Some(_) => {}
                None if matches!(s.nal_type(), nal_type::SLICE | nal_type::IDR) => pending.push(Violation {
                    rule: Rule::SliceHeader,
                    offset: s.offset,
                    message: "slice header does not parse".into(),
                }),
                None => {}
            }
        }
        if first_slice.nal_type() == nal_type::IDR {
            summary.idr_pictures += 1;
            if let Some(prev) = last_idr {
                let gop = picture - prev;
                summary.gop_min = Some(summary.gop_min.map_or(gop, |g| g.min(gop)));
                summary.gop_max = Some(summary.gop_max.map_or(gop, |g| g.max(gop)));
            }
            last_idr = Some(picture);
            let before: Vec<u8> = nals.iter().take_while(|n| !n.is_vcl()).map(|n| n.nal_type()).collect();
            if !(before.contains(&nal_type::SPS) && before.contains(&nal_type::PPS)) {
                pending.push(Violation {
                    rule: Rule::IdrParams,
                    offset: first_slice.offset,
                    message: "IDR picture without SPS and PPS in front of it".into(),
                });
            }
        }
    }
    report.violations.extend(pending);
    report.violations.sort_by_key(|v| (v.offset, v.rule));
    report
}

/// Prints at most this many violations per rule.
pub const MAX_PRINTED_PER_RULE: usize = 20;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printed = std::collections::BTreeMap::<Rule, usize>::new();
        for v in &self.violations {
            let n = printed.entry(v.rule).or_default();
            *n += 1;
            if *n <= MAX_PRINTED_PER_RULE {
                writeln!(f, "byte {:>10}  [{}] {}", v.offset, v.rule.id(), v.message)?;
            }
        }
        for (rule, n) in &printed {
            if *n > MAX_PRINTED_PER_RULE {
                writeln!(f, "... and {} more [{}]", n - MAX_PRINTED_PER_RULE, rule.id())?;
            }
        }
        for rule in printed.keys() {
            writeln!(f, "why [{}]: {}", rule.id(), rule.why())?;
        }
        let s = &self.summary;
        let gop = match (s.gop_min, s.gop_max) {
            (Some(a), Some(b)) if a == b => format!(", GOP {a}"),
            (Some(a), Some(b)) => format!(", GOP {a}..{b}"),
            _ => String::new(),
        };
        writeln!(
            f,
            "{} bytes, {} NAL units, {} pictures ({} IDR{gop}), at most {} slice(s) per picture, {} B slices",
            s.bytes, s.nals, s.pictures, s.idr_pictures, s.max_slices_per_picture, s.b_slices
        )?;
        if self.ok() {
            write!(f, "OK: the stream follows go2rtc's raw H.264 rules")
        } else {
            write!(f, "FAIL: {} violation(s) of go2rtc's raw H.264 rules", self.violations.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUD: &[u8] = &[0x09, 0xf0];
    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac];
    const PPS: &[u8] = &[0x68, 0xee, 0x3c, 0x80];
    // first_mb 0, slice_type 7 (I): 1 0001000
    const IDR: &[u8] = &[0x65, 0x88, 0x84];
    // first_mb 0, slice_type 5 (P): 1 00110 00
    const P: &[u8] = &[0x41, 0x98, 0x22];
    // first_mb 3, slice_type 5 (P): 00100 00110
    const P_SECOND: &[u8] = &[0x41, 0x21, 0x80];
    // first_mb 0, slice_type 6 (B): 1 00111 00
    const B: &[u8] = &[0x01, 0x9c, 0x22];

    fn stream(parts: &[(&[u8], usize)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (nal, sc) in parts {
            out.extend_from_slice(&annexb::START_CODE[4 - sc..]);
            out.extend_from_slice(nal);
        }
        out
    }

    fn good() -> Vec<(&'static [u8], usize)> {
        vec![(AUD, 4), (SPS, 4), (PPS, 4), (IDR, 4), (AUD, 4), (P, 4), (AUD, 4), (SPS, 4), (PPS, 4), (IDR, 4)]
    }

    fn rules(r: &Report) -> Vec<Rule> {
        let mut v: Vec<Rule> = r.violations.iter().map(|v| v.rule).collect();
        v.dedup();
        v
    }

    #[test]
    fn a_good_stream_passes() {
        let r = check_stream(&stream(&good()));
        assert!(r.ok(), "{r}");
        assert_eq!(r.summary.pictures, 3);
        assert_eq!(r.summary.idr_pictures, 2);
        assert_eq!((r.summary.gop_min, r.summary.gop_max), (Some(2), Some(2)));
        assert!(r.to_string().ends_with("OK: the stream follows go2rtc's raw H.264 rules"));
    }

    #[test]
    fn three_byte_start_code_at_the_start() {
        let mut parts = good();
        parts[0].1 = 3;
        let r = check_stream(&stream(&parts));
        assert_eq!(rules(&r), vec![Rule::Start, Rule::StartCode]);
        assert_eq!(r.violations[0].offset, 0);
    }

    #[test]
    fn three_byte_start_code_later_is_reported_with_its_offset() {
        let mut parts = good();
        parts[5].1 = 3;
        let buf = stream(&parts);
        let r = check_stream(&buf);
        assert_eq!(rules(&r), vec![Rule::StartCode]);
        let off = r.violations[0].offset;
        assert_eq!(&buf[off..off + 4], &[0, 0, 1, 0x41]);
    }

    #[test]
    fn pps_first() {
        let parts = vec![(PPS, 4), (SPS, 4), (IDR, 4)];
        let r = check_stream(&stream(&parts));
        assert_eq!(rules(&r), vec![Rule::FirstNal]);
    }

    #[test]
    fn sps_with_header_0x47() {
        let sps47: &[u8] = &[0x47, 0x64, 0x00, 0x1f];
        let r = check_stream(&stream(&[(sps47, 4), (PPS, 4), (IDR, 4)]));
        assert_eq!(rules(&r), vec![Rule::FirstNal]);
    }

    #[test]
    fn idr_without_sps() {
        let mut parts = good();
        parts.drain(7..9); // the second IDR loses its SPS and PPS
        let r = check_stream(&stream(&parts));
        assert_eq!(rules(&r), vec![Rule::IdrParams]);
    }

    #[test]
    fn two_slices_in_a_picture() {
        let mut parts = good();
        parts.insert(6, (P_SECOND, 4));
        let r = check_stream(&stream(&parts));
        assert_eq!(rules(&r), vec![Rule::Slices]);
        assert_eq!(r.summary.max_slices_per_picture, 2);
        assert!(r.violations[0].message.contains("first_mb_in_slice 3"), "{r}");
    }

    #[test]
    fn b_slice() {
        let mut parts = good();
        parts.insert(6, (AUD, 4));
        parts.insert(7, (B, 4));
        let r = check_stream(&stream(&parts));
        assert_eq!(rules(&r), vec![Rule::BSlice]);
        assert_eq!(r.summary.b_slices, 1);
    }

    #[test]
    fn parameter_sets_beyond_256_bytes() {
        let sei: Vec<u8> = std::iter::once(0x06).chain(std::iter::repeat_n(0x55, 300)).collect();
        let parts: Vec<(&[u8], usize)> = vec![(SPS, 4), (&sei, 4), (PPS, 4), (IDR, 4)];
        let r = check_stream(&stream(&parts));
        assert_eq!(rules(&r), vec![Rule::Probe]);
    }

    #[test]
    fn changed_sps() {
        let sps2: &[u8] = &[0x67, 0x64, 0x00, 0x28, 0xac];
        let mut parts = good();
        parts[7] = (sps2, 4);
        let r = check_stream(&stream(&parts));
        assert_eq!(rules(&r), vec![Rule::SpsChanged]);
    }

    #[test]
    fn garbage_and_empty_input() {
        let r = check_stream(b"not h264 at all");
        assert!(rules(&r).contains(&Rule::Start));
        assert!(rules(&r).contains(&Rule::Garbage));
        let r = check_stream(&[]);
        assert!(!r.ok());
    }

    #[test]
    fn printing_is_capped_per_rule() {
        let mut parts = vec![(SPS, 4), (PPS, 4), (IDR, 4)];
        for _ in 0..30 {
            parts.push((P, 3));
        }
        let text = check_stream(&stream(&parts)).to_string();
        assert!(text.contains("... and 10 more [start-code]"), "{text}");
    }

    // Real encoder output (tests/data/README.md says how each file was made).
    const OURS: &[u8] = include_bytes!("../tests/data/agentcast-x264-96x64.h264");
    const FFMPEG: &[u8] = include_bytes!("../tests/data/ffmpeg-x264-2slices-bframes.h264");

    #[test]
    fn real_agentcast_output_passes() {
        let r = check_stream(OURS);
        assert!(r.ok(), "{r}");
        assert_eq!((r.summary.pictures, r.summary.idr_pictures, r.summary.max_slices_per_picture), (10, 1, 1));
    }

    #[test]
    fn real_ffmpeg_x264_output_with_slices_and_b_frames_fails_on_each_rule() {
        let r = check_stream(FFMPEG);
        assert_eq!(r.summary.pictures, 6);
        assert_eq!(r.summary.max_slices_per_picture, 2);
        assert_eq!(r.count(Rule::Slices), 6, "{r}");
        assert_eq!(r.count(Rule::BSlice), r.summary.b_slices);
        assert!(r.summary.b_slices >= 2, "{r}");
        // x264 writes 3-byte start codes for every NAL after the first of an access unit.
        assert!(r.count(Rule::StartCode) >= 6, "{r}");
        assert_eq!(r.count(Rule::Start) + r.count(Rule::FirstNal) + r.count(Rule::Probe), 0, "{r}");
    }

    #[test]
    fn normalised_ffmpeg_output_has_only_four_byte_start_codes() {
        let list: Vec<_> = annexb::nals(FFMPEG).collect();
        let mut normalizer = annexb::Normalizer::new();
        let (mut out, mut au) = (Vec::new(), Vec::new());
        for unit in annexb::access_units(&list) {
            let nals = &list[unit];
            let (start, end) = (nals[0].offset, nals[nals.len() - 1].end());
            normalizer.normalize(&FFMPEG[start..end], &mut au);
            out.extend_from_slice(&au);
        }
        let r = check_stream(&out);
        assert_eq!(r.count(Rule::StartCode), 0, "{r}");
        assert_eq!(r.summary.nals, list.len());
    }
}
