//! Splitting a byte stream into stream-protocol frames.
//!
//! A frame is a uint32 size followed by that many bytes (key, version, content). The reader
//! works on a `BytesMut` that the connection appends socket reads to, with any read
//! boundaries: it takes one whole frame off the front, or says more bytes are needed.

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

/// Bytes of the size prefix.
pub const SIZE_PREFIX: usize = 4;

/// The smallest frame body: key (2) + version (2).
pub const MIN_BODY: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix announces a frame larger than the negotiated maximum. Nothing was
    /// reserved for it. RabbitMQ 3.10.8 itself does not check incoming frame sizes (its
    /// parser carries a "TODO: check max frame size"); the protocol's answer for this case is
    /// response code 0x0e, frame too large (see [`super::RESPONSE_CODE_FRAME_TOO_LARGE`]).
    TooLarge { size: u64, max: u32 },
    /// A frame too short to hold a key and a version.
    TooShort { size: u32 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the maximum of {max}")
            }
            FrameError::TooShort { size } => {
                write!(f, "frame of {size} bytes has no key and version")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Takes one complete frame body (without its size prefix) off the front of `buf`.
///
/// `max_frame` bounds the whole frame, size prefix included (the way AMQP 0-9-1 counts its
/// frame-max; a Tune value of 0, "no limit", is for the caller to map to its own cap). The
/// size is checked as soon as the 4 prefix bytes are in, before waiting for or reserving
/// the rest, so a peer cannot make the connection buffer an unbounded frame.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame; it then reserves room
/// for the rest of the announced (already bounded) frame so the next reads can fill it.
pub fn read_frame(buf: &mut BytesMut, max_frame: u32) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < SIZE_PREFIX {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let whole = size as u64 + SIZE_PREFIX as u64;
    if whole > max_frame as u64 {
        return Err(FrameError::TooLarge {
            size: whole,
            max: max_frame,
        });
    }
    if (size as usize) < MIN_BODY {
        return Err(FrameError::TooShort { size });
    }
    let whole = whole as usize;
    if buf.len() < whole {
        // Bounded by max_frame just above.
        buf.reserve(whole - buf.len());
        return Ok(None);
    }
    buf.advance(SIZE_PREFIX);
    Ok(Some(buf.split_to(size as usize).freeze()))
}

/// Prefixes an encoded body with its size.
pub fn wrap_body(body: &[u8], out: &mut BytesMut) {
    out.reserve(SIZE_PREFIX + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        wrap_body(body, &mut out);
        out.to_vec()
    }

    #[test]
    fn every_split_point_gives_none_then_the_frame() {
        let body = [0x00, 0x17, 0x00, 0x01, 9, 9];
        let mut two = framed(&body);
        two.extend_from_slice(&framed(&[0x00, 0x17, 0x00, 0x01]));
        for cut in 0..two.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            buf.extend_from_slice(&two[..cut]);
            while let Some(f) = read_frame(&mut buf, 1024).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&two[cut..]);
            while let Some(f) = read_frame(&mut buf, 1024).unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(&got[0][..], &body[..]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn oversize_refused_from_the_prefix_alone() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let cap = buf.capacity();
        assert_eq!(
            read_frame(&mut buf, 1 << 20),
            Err(FrameError::TooLarge {
                size: 0xffff_ffff + 4,
                max: 1 << 20
            })
        );
        assert_eq!(buf.capacity(), cap, "nothing reserved for a refused frame");
        // Exactly at the limit is fine.
        let mut buf = BytesMut::from(&framed(&[0, 0x17, 0, 1])[..]);
        assert!(read_frame(&mut buf, 8).unwrap().is_some());
        let mut buf = BytesMut::from(&framed(&[0, 0x17, 0, 1, 0])[..]);
        assert!(read_frame(&mut buf, 8).is_err());
    }

    #[test]
    fn short_frames_refused() {
        let mut buf = BytesMut::from(&[0, 0, 0, 2, 0, 0][..]);
        assert_eq!(
            read_frame(&mut buf, 100),
            Err(FrameError::TooShort { size: 2 })
        );
    }
}
