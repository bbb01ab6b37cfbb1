//! The protocol's numbers (doc/proto.md of the NBD project) and the
//! big-endian helpers every phase uses to read and write them.

use std::io::{self, Read};

// Handshake magic numbers and flags (doc/proto.md, "Handshake").
pub(super) const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
pub(super) const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
pub(super) const CLISERV_MAGIC: u64 = 0x0000_4202_8186_1253;
pub(super) const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub(super) const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub(super) const FLAG_NO_ZEROES: u16 = 1 << 1;
pub(super) const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub(super) const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Options and option replies.
pub(super) const OPT_EXPORT_NAME: u32 = 1;
pub(super) const OPT_GO: u32 = 7;
pub(super) const REP_ACK: u32 = 1;
pub(super) const REP_INFO: u32 = 3;
pub(super) const REP_FLAG_ERROR: u32 = 1 << 31;
pub(super) const REP_ERR_UNSUP: u32 = REP_FLAG_ERROR | 1;
pub(super) const REP_ERR_POLICY: u32 = REP_FLAG_ERROR | 2;
pub(super) const REP_ERR_INVALID: u32 = REP_FLAG_ERROR | 3;
pub(super) const REP_ERR_PLATFORM: u32 = REP_FLAG_ERROR | 4;
pub(super) const REP_ERR_TLS_REQD: u32 = REP_FLAG_ERROR | 5;
pub(super) const REP_ERR_UNKNOWN: u32 = REP_FLAG_ERROR | 6;
pub(super) const REP_ERR_SHUTDOWN: u32 = REP_FLAG_ERROR | 7;
pub(super) const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_FLAG_ERROR | 8;
pub(super) const REP_ERR_TOO_BIG: u32 = REP_FLAG_ERROR | 9;
pub(super) const INFO_EXPORT: u16 = 0;
pub(super) const INFO_BLOCK_SIZE: u16 = 3;

// Transmission flags.
pub(super) const FLAG_HAS_FLAGS: u16 = 1 << 0;
pub(super) const FLAG_READ_ONLY: u16 = 1 << 1;
pub(super) const FLAG_SEND_FLUSH: u16 = 1 << 2;
pub(super) const FLAG_SEND_FUA: u16 = 1 << 3;
pub(super) const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;

// Transmission: requests and simple replies.
pub(super) const REQUEST_MAGIC: u32 = 0x2560_9513;
pub(super) const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
pub(super) const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
pub(super) const CMD_READ: u16 = 0;
pub(super) const CMD_WRITE: u16 = 1;
pub(super) const CMD_DISC: u16 = 2;
pub(super) const CMD_FLUSH: u16 = 3;
pub(super) const CMD_FLAG_FUA: u16 = 1 << 0;
pub(super) const REQUEST_LEN: usize = 28;
pub(super) const REPLY_LEN: usize = 16;

pub(super) fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub(super) fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

pub(super) fn read_array<const N: usize>(s: &mut impl Read) -> io::Result<[u8; N]> {
    let mut a = [0u8; N];
    s.read_exact(&mut a)?;
    Ok(a)
}

pub(super) fn bad_data(msg: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("NBD protocol error: {msg}"),
    )
}
