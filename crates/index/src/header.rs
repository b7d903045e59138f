//! The index file's header as it lies on disk: `#[repr(C)]` structs of
//! little-endian fields (the crate refuses big-endian hosts), read and written
//! whole with `bytemuck`, so no field offset is typed by hand anywhere. The
//! byte table is in [`crate::format`]'s module doc; the size and checksum
//! offsets are asserted at compile time below.

use bytemuck::{Pod, Zeroable};
use xxhash_rust::xxh3::xxh3_64;

/// Sections a version-2+ header lists.
pub(crate) const SECTIONS: usize = 16;
/// Sections a version-1 header lists.
const SECTIONS_V1: usize = 6;

/// The 512-byte header of format versions 2 to 5.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub(crate) struct RawHeader {
    pub magic: [u8; 8],
    pub format_version: u32,
    pub header_size: u32,
    pub metric: u32,
    pub dim: u32,
    pub count: u64,
    pub index_kind: u32,
    pub hnsw_m: u32,
    pub hnsw_m0: u32,
    pub ef_construction: u32,
    pub entry_point: u32,
    pub max_level: u32,
    pub build_seconds: f64,
    pub reserved0: [u64; 2],
    /// `(offset, length)` of each section; an absent one is `(0, 0)`.
    pub sections: [[u64; 2]; SECTIONS],
    pub file_size: u64,
    /// xxh3-64 of bytes `[header_size, file_size)`.
    pub body_checksum: u64,
    pub scan_dsub: u32,
    pub scan_m: u32,
    pub default_method: u32,
    pub scan_lists: u32,
    /// v5: bit 0 set when the ids were given by the user (else row numbers).
    pub flags: u32,
    pub reserved_flags: u32,
    pub reserved1: [u64; 16],
    /// xxh3-64 of the header's bytes before this field.
    pub header_checksum: u64,
}

/// The 256-byte header of format version 1 (graph-only files): the same
/// fields up to the section table, which has 6 entries, then its own tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct RawHeaderV1 {
    magic: [u8; 8],
    format_version: u32,
    header_size: u32,
    metric: u32,
    dim: u32,
    count: u64,
    index_kind: u32,
    hnsw_m: u32,
    hnsw_m0: u32,
    ef_construction: u32,
    entry_point: u32,
    max_level: u32,
    build_seconds: f64,
    reserved0: [u64; 2],
    sections: [[u64; 2]; SECTIONS_V1],
    file_size: u64,
    body_checksum: u64,
    reserved1: [u64; 7],
    header_checksum: u64,
}

const _: () = {
    assert!(size_of::<RawHeader>() == 512);
    assert!(std::mem::offset_of!(RawHeader, sections) == 80);
    assert!(std::mem::offset_of!(RawHeader, file_size) == 336);
    assert!(std::mem::offset_of!(RawHeader, scan_dsub) == 352);
    assert!(std::mem::offset_of!(RawHeader, header_checksum) == 504);
    assert!(size_of::<RawHeaderV1>() == 256);
    assert!(std::mem::offset_of!(RawHeaderV1, file_size) == 176);
    assert!(std::mem::offset_of!(RawHeaderV1, header_checksum) == 248);
};

/// Why a header could not be read.
#[derive(Debug, PartialEq)]
pub(crate) enum HeaderError {
    /// The file is shorter than the header its version needs.
    Truncated { have: usize, need: usize },
    ChecksumMismatch,
}

impl RawHeader {
    /// Bytes a header of `version` takes.
    pub fn size_of_version(version: u32) -> usize {
        if version == 1 { size_of::<RawHeaderV1>() } else { size_of::<RawHeader>() }
    }

    /// Sections a header of `version` lists.
    pub fn sections_of_version(version: u32) -> usize {
        if version == 1 { SECTIONS_V1 } else { SECTIONS }
    }

    /// Reads the header at the start of `bytes` (magic and version already
    /// checked by the caller), checking its checksum; a version-1 header
    /// comes back in this shape, its missing fields zero.
    pub fn read(bytes: &[u8], version: u32) -> Result<RawHeader, HeaderError> {
        let need = Self::size_of_version(version);
        if bytes.len() < need {
            return Err(HeaderError::Truncated { have: bytes.len(), need });
        }
        let stored_checksum = |checksum_at: usize| u64::from_le_bytes(bytes[checksum_at..checksum_at + 8].try_into().unwrap());
        if xxh3_64(&bytes[..need - 8]) != stored_checksum(need - 8) {
            return Err(HeaderError::ChecksumMismatch);
        }
        if version != 1 {
            return Ok(bytemuck::pod_read_unaligned(&bytes[..need]));
        }
        let v1: RawHeaderV1 = bytemuck::pod_read_unaligned(&bytes[..need]);
        let mut sections = [[0u64; 2]; SECTIONS];
        sections[..SECTIONS_V1].copy_from_slice(&v1.sections);
        Ok(RawHeader {
            magic: v1.magic,
            format_version: v1.format_version,
            header_size: v1.header_size,
            metric: v1.metric,
            dim: v1.dim,
            count: v1.count,
            index_kind: v1.index_kind,
            hnsw_m: v1.hnsw_m,
            hnsw_m0: v1.hnsw_m0,
            ef_construction: v1.ef_construction,
            entry_point: v1.entry_point,
            max_level: v1.max_level,
            build_seconds: v1.build_seconds,
            sections,
            file_size: v1.file_size,
            body_checksum: v1.body_checksum,
            header_checksum: v1.header_checksum,
            ..Zeroable::zeroed()
        })
    }

    /// The header's bytes with its checksum sealed (current version only).
    pub fn sealed(mut self) -> [u8; 512] {
        let mut bytes: [u8; 512] = bytemuck::cast(self);
        self.header_checksum = xxh3_64(&bytes[..504]);
        bytes = bytemuck::cast(self);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_headers_read_back_and_a_flipped_byte_is_caught() {
        let mut h = RawHeader::zeroed();
        h.magic = *b"VWINDEX\0";
        h.format_version = 5;
        h.dim = 7;
        h.sections[3] = [512, 64];
        let bytes = h.sealed();
        let back = RawHeader::read(&bytes, 5).unwrap();
        assert_eq!((back.dim, back.sections[3]), (7, [512, 64]));
        assert_eq!(back.header_checksum, u64::from_le_bytes(bytes[504..].try_into().unwrap()));
        let mut bad = bytes;
        bad[21] ^= 1;
        assert_eq!(RawHeader::read(&bad, 5), Err(HeaderError::ChecksumMismatch));
        assert_eq!(RawHeader::read(&bytes[..300], 5), Err(HeaderError::Truncated { have: 300, need: 512 }));
    }
}
