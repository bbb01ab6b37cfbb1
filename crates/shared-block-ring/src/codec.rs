//! Item codecs: how items become bytes in the ring and back.
//!
//! The ring stores byte strings. A [`Codec`] maps the caller's item type to
//! and from those bytes, as the original's `Item` module did. [`Bytes`] (the
//! default) and [`Utf8`] are built in; [`Json`] carries any serde type
//! (feature `json`, on by default).
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use shared_block_ring::{create, Consumer, Json, MemDevice, Options, Producer, Utf8};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Job {
//!     id: u32,
//!     name: String,
//! }
//!
//! # fn main() -> Result<(), shared_block_ring::Error> {
//! let disk = MemDevice::new(512, 64);
//! create(&disk)?;
//! let mut jobs = Producer::attach_with_codec(disk.clone(), Json::<Job>::new(), Options::new())?;
//! let end = jobs.push(&Job { id: 7, name: "resize vm1".into() })?;
//! jobs.advance(end)?;
//! let mut worker = Consumer::attach_with_codec(disk.clone(), Json::<Job>::new(), Options::new())?;
//! let (next, job) = worker.pop()?;
//! assert_eq!(job, Job { id: 7, name: "resize vm1".into() });
//! worker.advance(next)?;
//! drop((jobs, worker));
//!
//! // Strings: push &str, pop String; bytes that are not UTF-8 are a
//! // codec error, not a panic.
//! let mut p = Producer::attach_with_codec(disk.clone(), Utf8, Options::new())?;
//! let end = p.push("héllo")?;
//! p.advance(end)?;
//! let mut c = Consumer::attach_with_codec(disk, Utf8, Options::new())?;
//! assert_eq!(c.pop()?.1, "héllo");
//! # Ok(())
//! # }
//! ```

use crate::error::CodecError;

/// Turns items into the bytes stored in the ring, and back.
///
/// `Item` is what `push` borrows (it may be unsized: `[u8]`, `str`);
/// `Owned` is what `pop` returns.
pub trait Codec: Send + Sync {
    /// What `push` takes a reference to.
    type Item: ?Sized;
    /// What `pop` returns.
    type Owned;

    /// Encodes `item`. A codec whose items already are bytes returns them
    /// without copying; others write into `scratch` (reused across calls,
    /// so encoding allocates nothing once it has grown) and return it.
    ///
    /// # Errors
    /// A [`CodecError`] when the item cannot be encoded.
    fn encode<'a>(
        &self,
        item: &'a Self::Item,
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], CodecError>;

    /// Decodes the bytes of one item.
    ///
    /// # Errors
    /// A [`CodecError`] when the bytes are not a valid encoding.
    fn decode(&self, bytes: &[u8]) -> Result<Self::Owned, CodecError>;
}

/// Items are byte strings: push `&[u8]`, pop `Vec<u8>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl Codec for Bytes {
    type Item = [u8];
    type Owned = Vec<u8>;

    fn encode<'a>(&self, item: &'a [u8], _: &'a mut Vec<u8>) -> Result<&'a [u8], CodecError> {
        Ok(item)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
}

/// Items are UTF-8 strings: push `&str`, pop `String`; invalid UTF-8 read
/// from the ring is a codec error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8;

impl Codec for Utf8 {
    type Item = str;
    type Owned = String;

    fn encode<'a>(&self, item: &'a str, _: &'a mut Vec<u8>) -> Result<&'a [u8], CodecError> {
        Ok(item.as_bytes())
    }

    fn decode(&self, bytes: &[u8]) -> Result<String, CodecError> {
        String::from_utf8(bytes.to_vec()).map_err(CodecError::new)
    }
}

/// Items are any serde type, stored as JSON text.
#[cfg(feature = "json")]
pub struct Json<T>(std::marker::PhantomData<fn() -> T>);

#[cfg(feature = "json")]
impl<T> Json<T> {
    /// The JSON codec for `T`.
    pub const fn new() -> Self {
        Json(std::marker::PhantomData)
    }
}

#[cfg(feature = "json")]
impl<T> Default for Json<T> {
    fn default() -> Self {
        Json::new()
    }
}

#[cfg(feature = "json")]
impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Json::new()
    }
}

#[cfg(feature = "json")]
impl<T> std::fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

#[cfg(feature = "json")]
impl<T> Codec for Json<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    type Item = T;
    type Owned = T;

    fn encode<'a>(&self, item: &'a T, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], CodecError> {
        scratch.clear();
        serde_json::to_writer(&mut *scratch, item).map_err(CodecError::new)?;
        Ok(scratch)
    }

    fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(CodecError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_codecs_round_trip() {
        let mut s = Vec::new();
        assert_eq!(Bytes.encode(b"ab", &mut s).unwrap(), b"ab");
        assert_eq!(Bytes.decode(b"ab").unwrap(), b"ab".to_vec());
        assert_eq!(Utf8.encode("hé", &mut s).unwrap(), "hé".as_bytes());
        assert_eq!(Utf8.decode("hé".as_bytes()).unwrap(), "hé");
        assert!(Utf8.decode(b"\xff").is_err());
        let j = Json::<(u32, String)>::new();
        let bytes = j.encode(&(7, "x".into()), &mut s).unwrap().to_vec();
        assert_eq!(bytes, br#"[7,"x"]"#);
        assert_eq!(j.decode(&bytes).unwrap(), (7, "x".to_string()));
        assert!(j.decode(b"{").is_err());
    }
}
