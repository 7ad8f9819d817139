//! Frame splitting and encoding.
//!
//! ```text
//! type (1) | channel (2) | size (4) | payload (size) | frame-end 0xCE
//! ```
//!
//! `parse` works in place on the read buffer: it returns `Ok(None)` until a whole frame is
//! present (partial input costs nothing), checks the declared size against the negotiated
//! `frame_max` before waiting for the payload (no buffering of an oversized frame), and
//! hands the payload out as a `Bytes` split off the buffer without copying.
//!
//! Its errors are the ones after which the byte stream cannot be trusted (an oversized
//! frame, a wrong frame-end octet): the connection must stop reading. A frame of an unknown
//! type is still a well-delimited frame, so it is returned and judged by the caller.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{AmqpError, ReplyCode};

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Bytes of framing around a payload: 7 of header, 1 of frame-end.
pub const FRAME_OVERHEAD: usize = 8;
/// The smallest frame_max a peer may negotiate (spec: 4096).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// Most buffer growth made on the strength of a frame's declared size.
const RESERVE_STEP: usize = 256 * 1024;
/// Body frames from this size up to `RESERVE_STEP` make the read buffer grow by several
/// frames at once.
const LARGE_BODY_FRAME: usize = 16 * 1024;
/// How many further body frames of the same size that growth makes room for...
const BODY_FRAMES_AHEAD: usize = 7;
/// ...up to this many bytes.
const RESERVE_AHEAD_MAX: usize = 1024 * 1024;

/// The protocol header a 0-9-1 client sends first.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// One frame as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Bytes,
}

/// Splits one frame off the front of `buf`. `frame_max` of 0 means no limit beyond
/// `u32::MAX`.
///
/// Like RabbitMQ, the limit is applied to the payload alone: many clients count frame_max
/// without the 8 bytes of framing, and RabbitMQ tolerates that.
pub fn parse(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, AmqpError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if frame_max != 0 && size > frame_max {
        return Err(AmqpError::new(
            ReplyCode::FrameError,
            format!(
                "frame payload of {size} bytes is larger than the negotiated frame_max {frame_max}"
            ),
        ));
    }
    let total = 7 + size as usize + 1;
    if buf.len() < total {
        // Make room for what is coming, but never more than a bounded step at a time: the
        // size is the peer's claim, not bytes we have. A large body frame also gets room
        // for the frames likely to follow it: the frames already split off this buffer
        // are still held (their message is being assembled), so every regrowth copies
        // the partial frame at the end into a new allocation; growing several frames at
        // a time copies a small fraction of the body bytes instead of about half.
        let ahead = if kind == FRAME_BODY && (LARGE_BODY_FRAME..=RESERVE_STEP).contains(&total) {
            (total * BODY_FRAMES_AHEAD).min(RESERVE_AHEAD_MAX)
        } else {
            0
        };
        buf.reserve((total - buf.len()).min(RESERVE_STEP) + ahead);
        return Ok(None);
    }
    if buf[total - 1] != FRAME_END {
        return Err(AmqpError::new(
            ReplyCode::FrameError,
            format!("frame-end octet is {:#04x}, expected 0xce", buf[total - 1]),
        ));
    }
    buf.advance(7);
    let payload = buf.split_to(size as usize).freeze();
    buf.advance(1);
    Ok(Some(Frame {
        kind,
        channel,
        payload,
    }))
}

/// Appends a frame whose payload is written by `fill`; the size is patched in afterwards.
#[inline]
pub fn write_with(out: &mut BytesMut, kind: u8, channel: u16, fill: impl FnOnce(&mut BytesMut)) {
    out.put_u8(kind);
    out.put_u16(channel);
    let at = out.len();
    out.put_u32(0);
    fill(out);
    let size = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Appends a frame with the given payload.
pub fn write(out: &mut BytesMut, kind: u8, channel: u16, payload: &[u8]) {
    out.reserve(payload.len() + FRAME_OVERHEAD);
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.put_u8(FRAME_END);
}

/// Appends a heartbeat frame.
pub fn write_heartbeat(out: &mut BytesMut) {
    write(out, FRAME_HEARTBEAT, 0, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_input_waits_then_splits() {
        let mut whole = BytesMut::new();
        write(&mut whole, FRAME_BODY, 3, b"abc");
        write_heartbeat(&mut whole);
        let mut buf = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            buf.put_u8(*b);
            let got = parse(&mut buf, 4096).unwrap();
            if i == 10 {
                assert_eq!(got.unwrap().payload, Bytes::from_static(b"abc"));
            } else if i == whole.len() - 1 {
                assert_eq!(got.unwrap().kind, FRAME_HEARTBEAT);
            } else {
                assert!(got.is_none(), "at {i}");
            }
        }
    }

    #[test]
    fn a_large_body_frame_grows_the_buffer_for_the_frames_after_it() {
        // A 128 KiB body frame of which only the start has arrived: room for it and seven
        // more, so the frames that follow do not each regrow (and copy) the buffer.
        let mut buf = BytesMut::from(&[3u8, 0, 1, 0, 2, 0, 0, 1, 2, 3][..]);
        assert!(parse(&mut buf, 131_072).unwrap().is_none());
        assert!(
            buf.capacity() >= 8 * (131_072 + 8),
            "capacity {}",
            buf.capacity()
        );
        // Small body frames and method frames get room for themselves only.
        let mut buf = BytesMut::from(&[1u8, 0, 1, 0, 2, 0, 0, 1, 2, 3][..]);
        assert!(parse(&mut buf, 131_072).unwrap().is_none());
        assert!(buf.capacity() < 2 * 131_072, "capacity {}", buf.capacity());
    }

    #[test]
    fn a_huge_declared_size_does_not_allocate_it() {
        // Found by the `frame` fuzz target: with no frame_max, a 4 GiB claim reserved 4 GiB.
        let mut buf = BytesMut::from(&[3u8, 0, 1, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3][..]);
        assert!(parse(&mut buf, 0).unwrap().is_none());
        assert!(buf.capacity() < 1 << 20, "capacity {}", buf.capacity());
    }

    #[test]
    fn oversize_and_bad_end_are_frame_errors_unknown_types_are_frames() {
        let mut buf = BytesMut::from(&[1u8, 0, 0, 0, 0, 0x10, 1][..]);
        assert_eq!(
            parse(&mut buf, 4096).unwrap_err().code,
            ReplyCode::FrameError
        );
        // A payload of exactly frame_max is tolerated (RabbitMQ's fudge for clients that
        // forget the framing bytes).
        let mut buf = BytesMut::from(&[3u8, 0, 1, 0, 0, 0x10, 0][..]);
        buf.extend_from_slice(&[0u8; 4096]);
        buf.extend_from_slice(&[FRAME_END]);
        assert_eq!(parse(&mut buf, 4096).unwrap().unwrap().payload.len(), 4096);
        let mut buf = BytesMut::from(&[1u8, 0, 0, 0, 0, 0, 1, 9, 0xAB][..]);
        assert_eq!(
            parse(&mut buf, 4096).unwrap_err().code,
            ReplyCode::FrameError
        );
        let mut buf = BytesMut::from(&[7u8, 0, 0, 0, 0, 0, 0, 0xCE][..]);
        assert_eq!(parse(&mut buf, 4096).unwrap().unwrap().kind, 7);
    }
}
