//! Pure Annex-B H.264 byte-stream logic: start codes, NAL units, the few slice-header fields go2rtc
//! cares about, access-unit boundaries, and the normalisation the sink applies before writing.
//!
//! Nothing here touches GStreamer or the GPU, so it is tested against hand-made and real encoder
//! output without either.

/// The 4-byte start code every NAL unit gets on the way out (go2rtc splits on this only).
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// H.264 `nal_unit_type` values this crate names (Table 7-1).
pub mod nal_type {
    pub const SLICE: u8 = 1;
    pub const SLICE_DPA: u8 = 2;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
    pub const FILLER: u8 = 12;
}

/// One NAL unit found in a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nal<'a> {
    /// Byte offset of the start code in the scanned buffer.
    pub offset: usize,
    /// Length of the start code that introduced this NAL: 3 or 4 (0 for leading garbage).
    pub start_code_len: usize,
    /// The NAL unit itself, header byte first, without start code or trailing zero bytes.
    pub data: &'a [u8],
}

impl Nal<'_> {
    /// The header byte (`forbidden_zero_bit | nal_ref_idc | nal_unit_type`), 0 for an empty NAL.
    pub fn header(&self) -> u8 {
        self.data.first().copied().unwrap_or(0)
    }

    /// Byte offset just past this NAL's data in the scanned buffer.
    pub fn end(&self) -> usize {
        self.offset + self.start_code_len + self.data.len()
    }

    pub fn nal_type(&self) -> u8 {
        self.header() & 0x1f
    }

    /// Whether this is a coded slice of a picture (VCL NAL, types 1..=5).
    pub fn is_vcl(&self) -> bool {
        (nal_type::SLICE..=nal_type::IDR).contains(&self.nal_type())
    }

    /// Parses the start of the slice header, for the NAL types that begin with one: non-IDR
    /// slices, IDR slices and data partition A (partitions B and C start with `slice_id`).
    pub fn slice_header(&self) -> Option<SliceHeader> {
        match self.nal_type() {
            nal_type::SLICE | nal_type::SLICE_DPA | nal_type::IDR => SliceHeader::parse(&self.data[1..]),
            _ => None,
        }
    }
}

/// Iterates over the NAL units of an Annex-B buffer.
///
/// Bytes before the first start code are reported as a NAL with `start_code_len == 0`, so a checker
/// can flag them. Trailing zero bytes (`trailing_zero_8bits`, or the first byte of a following
/// 4-byte start code) are not part of a NAL.
pub fn nals(buf: &[u8]) -> NalIter<'_> {
    NalIter { buf, pos: 0 }
}

pub struct NalIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Finds the next `00 00 01` at or after `from`; returns the index of its first byte.
fn find_start_code(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= buf.len() {
        // Skip quickly: a start code needs buf[i+2] == 1 and buf[i+1] == 0.
        match buf[i + 2] {
            1 if buf[i] == 0 && buf[i + 1] == 0 => return Some(i),
            0 => i += 1,
            _ => i += 3,
        }
    }
    None
}

impl<'a> Iterator for NalIter<'a> {
    type Item = Nal<'a>;

    fn next(&mut self) -> Option<Nal<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let buf = self.buf;
        // Where does this NAL's start code begin, and how long is it?
        let (offset, sc_len, data_start) = match find_start_code(buf, self.pos) {
            Some(i) => {
                let four = i > self.pos && buf[i - 1] == 0;
                let offset = if four { i - 1 } else { i };
                if offset > self.pos && buf[self.pos..offset].iter().any(|&b| b != 0) {
                    // Garbage before the first start code: report it as its own unit.
                    let data = &buf[self.pos..offset];
                    let nal = Nal { offset: self.pos, start_code_len: 0, data };
                    self.pos = offset;
                    return Some(nal);
                }
                (offset, if four { 4 } else { 3 }, i + 3)
            }
            None => {
                let data = trim_trailing_zeros(&buf[self.pos..]);
                let pos = self.pos;
                self.pos = buf.len();
                if data.is_empty() {
                    return None;
                }
                return Some(Nal { offset: pos, start_code_len: 0, data });
            }
        };
        let end = find_start_code(buf, data_start).unwrap_or(buf.len());
        let data = trim_trailing_zeros(&buf[data_start..end]);
        self.pos = end;
        // `end` may point at the `00 00 01` of a 4-byte start code whose leading zero we trimmed;
        // back up over trailing zeros so the next call sees the full start code.
        let consumed = data_start + data.len();
        if end < buf.len() {
            self.pos = consumed.max(data_start);
        }
        Some(Nal { offset, start_code_len: sc_len, data })
    }
}

fn trim_trailing_zeros(data: &[u8]) -> &[u8] {
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &data[..end]
}

/// Reads Exp-Golomb coded fields from an RBSP, skipping emulation-prevention bytes.
struct BitReader<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, byte: 0, bit: 0, zeros: 0 }
    }

    fn read_bit(&mut self) -> Option<u32> {
        if self.bit == 0 {
            // Entering a new byte: drop an emulation_prevention_three_byte after 00 00.
            if self.zeros >= 2 && self.data.get(self.byte) == Some(&3) {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.data.get(self.byte)?;
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        }
        let b = self.data[self.byte];
        let v = (b >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(u32::from(v))
    }

    /// ue(v), up to 32-bit values.
    fn read_ue(&mut self) -> Option<u32> {
        let mut leading = 0;
        while self.read_bit()? == 0 {
            leading += 1;
            if leading > 31 {
                return None;
            }
        }
        let mut v: u64 = 0;
        for _ in 0..leading {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        u32::try_from((1u64 << leading) - 1 + v).ok()
    }
}

/// Picture type of a slice (slice_type modulo 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceKind {
    P,
    B,
    I,
    Sp,
    Si,
}

/// The first two fields of a slice header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceHeader {
    pub first_mb_in_slice: u32,
    pub slice_type: u32,
}

impl SliceHeader {
    /// Parses `first_mb_in_slice` and `slice_type` from the RBSP after the NAL header byte.
    pub fn parse(rbsp: &[u8]) -> Option<Self> {
        let mut r = BitReader::new(rbsp);
        let first_mb_in_slice = r.read_ue()?;
        let slice_type = r.read_ue()?;
        (slice_type <= 9).then_some(Self { first_mb_in_slice, slice_type })
    }

    pub fn kind(&self) -> SliceKind {
        match self.slice_type % 5 {
            0 => SliceKind::P,
            1 => SliceKind::B,
            2 => SliceKind::I,
            3 => SliceKind::Sp,
            _ => SliceKind::Si,
        }
    }
}

/// Splits a stream into access units (7.4.1.2.3, for single-slice-group streams): a new unit begins
/// at an AUD, SPS, PPS or SEI that follows a picture's slices, or at a slice whose
/// `first_mb_in_slice` is 0 when the current unit already has a slice.
///
/// Returns the index ranges (into the NAL list) of each access unit.
pub fn access_units(nals: &[Nal<'_>]) -> Vec<std::ops::Range<usize>> {
    let mut units = Vec::new();
    let mut start = 0;
    let mut has_vcl = false;
    for (i, nal) in nals.iter().enumerate() {
        let t = nal.nal_type();
        let boundary = if nal.is_vcl() {
            has_vcl && nal.slice_header().is_some_and(|h| h.first_mb_in_slice == 0)
        } else {
            has_vcl && matches!(t, nal_type::AUD | nal_type::SPS | nal_type::PPS | nal_type::SEI | 14..=18)
        };
        if boundary {
            units.push(start..i);
            start = i;
            has_vcl = false;
        }
        has_vcl |= nal.is_vcl();
    }
    if start < nals.len() {
        units.push(start..nals.len());
    }
    units
}

/// What [`Normalizer::normalize`] saw in one access unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuInfo {
    pub idr: bool,
    pub slices: usize,
    pub b_slices: usize,
    /// SPS/PPS were missing before the IDR and were inserted from the cache.
    pub inserted_parameter_sets: bool,
    /// 3-byte start codes rewritten to 4 bytes.
    pub short_start_codes: usize,
}

/// Rewrites encoder access units into the exact form go2rtc needs: every NAL behind a 4-byte start
/// code, and SPS+PPS in front of every IDR (taken from the last ones seen when an encoder leaves
/// them out).
#[derive(Debug, Default)]
pub struct Normalizer {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl Normalizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Normalises one access unit into `out` (cleared first).
    pub fn normalize(&mut self, au: &[u8], out: &mut Vec<u8>) -> AuInfo {
        out.clear();
        let mut info = AuInfo::default();
        // Bytes outside any NAL (before the first start code) are dropped: behind a start code of
        // their own they would become a NAL of whatever type their first byte says, even an IDR
        // without parameter sets (found by tests/fuzz.rs).
        let list: Vec<Nal<'_>> = nals(au).filter(|n| !n.data.is_empty() && n.start_code_len > 0).collect();
        let (mut have_sps, mut have_pps) = (false, false);
        for nal in &list {
            match nal.nal_type() {
                nal_type::SPS => {
                    self.sps = Some(nal.data.to_vec());
                    have_sps = true;
                }
                nal_type::PPS => {
                    self.pps = Some(nal.data.to_vec());
                    have_pps = true;
                }
                _ => {}
            }
        }
        let missing_params = !(have_sps && have_pps);
        let mut first_idr_seen = false;
        for nal in &list {
            if nal.start_code_len == 3 {
                info.short_start_codes += 1;
            }
            if nal.is_vcl() {
                info.slices += 1;
                if nal.slice_header().is_some_and(|h| h.kind() == SliceKind::B) {
                    info.b_slices += 1;
                }
                if nal.nal_type() == nal_type::IDR {
                    info.idr = true;
                    if missing_params
                        && !first_idr_seen
                        && let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
                    {
                        for ps in [sps, pps] {
                            out.extend_from_slice(&START_CODE);
                            out.extend_from_slice(ps);
                        }
                        info.inserted_parameter_sets = true;
                    }
                    first_idr_seen = true;
                }
            }
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal.data);
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(buf: &[u8]) -> Vec<(usize, usize, u8)> {
        nals(buf).map(|n| (n.offset, n.start_code_len, n.nal_type())).collect()
    }

    #[test]
    fn finds_three_and_four_byte_start_codes() {
        let buf = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88];
        assert_eq!(types(&buf), vec![(0, 4, 7), (6, 3, 8), (11, 4, 5)]);
        let datas: Vec<&[u8]> = nals(&buf).map(|n| n.data).collect();
        assert_eq!(datas, vec![&[0x67, 0x42][..], &[0x68, 0xce][..], &[0x65, 0x88][..]]);
    }

    #[test]
    fn trailing_zeros_are_not_nal_data() {
        let buf = [0, 0, 1, 0x09, 0xf0, 0, 0, 0, 0, 0, 1, 0x67, 0x10, 0, 0];
        let v: Vec<_> = nals(&buf).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].data, &[0x09, 0xf0]);
        assert_eq!(v[1].offset, 7);
        assert_eq!(v[1].start_code_len, 4);
        assert_eq!(v[1].data, &[0x67, 0x10]);
    }

    #[test]
    fn leading_garbage_is_reported() {
        let buf = [0xff, 0xee, 0, 0, 0, 1, 0x67];
        let v: Vec<_> = nals(&buf).collect();
        assert_eq!(v[0].start_code_len, 0);
        assert_eq!(v[0].data, &[0xff, 0xee]);
        assert_eq!((v[1].offset, v[1].start_code_len), (2, 4));
    }

    #[test]
    fn empty_and_zero_only_buffers_have_no_nals() {
        assert_eq!(nals(&[]).count(), 0);
        assert_eq!(nals(&[0, 0, 0, 0]).count(), 0);
    }

    #[test]
    fn exp_golomb_slice_header() {
        // first_mb_in_slice = 0 ("1"), slice_type = 7 ("0001000") -> I slice.
        // bits: 1 0001000 -> 0b1000_1000 = 0x88
        let h = SliceHeader::parse(&[0x88, 0x80]).unwrap();
        assert_eq!(h, SliceHeader { first_mb_in_slice: 0, slice_type: 7 });
        assert_eq!(h.kind(), SliceKind::I);
        // first_mb = 3 ("00100"), slice_type = 1 ("010") -> B: 0010 0010 -> 0x22
        let h = SliceHeader::parse(&[0x22]).unwrap();
        assert_eq!((h.first_mb_in_slice, h.kind()), (3, SliceKind::B));
        // first_mb = 0, slice_type = 5 ("00110") -> P: 1 00110 00 -> 0x98
        let h = SliceHeader::parse(&[0x98]).unwrap();
        assert_eq!(h.kind(), SliceKind::P);
    }

    #[test]
    fn bit_reader_skips_emulation_prevention() {
        // first_mb_in_slice with 16 leading zero bits would read 00 00 as data; with an EPB in
        // between the value must still decode: 00 00 03 01 ... -> bits 0x0000 then 0x01.
        // leading zeros = 23 -> (1<<23)-1 + next 23 bits.
        let mut r = BitReader::new(&[0, 0, 3, 0x01, 0xff, 0xff, 0xfe]);
        let v = r.read_ue().unwrap();
        assert_eq!(v, ((1 << 23) - 1) * 2);
    }

    #[test]
    fn access_units_split_on_first_mb_and_parameter_sets() {
        // AUD SPS PPS IDR(first_mb 0) | P(first_mb 0) | AUD P(0) P(first_mb 3)
        let buf = [
            0, 0, 0, 1, 0x09, 0xf0, //
            0, 0, 0, 1, 0x67, 0x42, //
            0, 0, 0, 1, 0x68, 0xce, //
            0, 0, 0, 1, 0x65, 0x88, //
            0, 0, 0, 1, 0x41, 0x98, //
            0, 0, 0, 1, 0x09, 0xf0, //
            0, 0, 0, 1, 0x41, 0x98, //
            0, 0, 0, 1, 0x41, 0x26, // first_mb = 3 ("00100"), slice_type 5 ("00110")
        ];
        let list: Vec<_> = nals(&buf).collect();
        assert_eq!(access_units(&list), vec![0..4, 4..5, 5..8]);
    }

    #[test]
    fn normalizer_rewrites_short_start_codes_and_inserts_parameter_sets() {
        let first = [0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xce, 0, 0, 1, 0x65, 0x88];
        let mut n = Normalizer::new();
        let mut out = Vec::new();
        let info = n.normalize(&first, &mut out);
        assert!(info.idr);
        assert_eq!(info.short_start_codes, 2);
        assert!(!info.inserted_parameter_sets);
        assert_eq!(out, [0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88]);

        // An IDR on its own gets the cached SPS and PPS, after the AUD.
        let idr = [0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 0x88];
        let info = n.normalize(&idr, &mut out);
        assert!(info.inserted_parameter_sets);
        let got: Vec<u8> = nals(&out).map(|n| n.nal_type()).collect();
        assert_eq!(got, vec![9, 7, 8, 5]);
        assert!(nals(&out).all(|n| n.start_code_len == 4));

        // A P frame passes unchanged.
        let p = [0, 0, 0, 1, 0x41, 0x98];
        let info = n.normalize(&p, &mut out);
        assert_eq!((info.idr, info.slices, info.b_slices), (false, 1, 0));
        assert_eq!(out, p);
    }
}
