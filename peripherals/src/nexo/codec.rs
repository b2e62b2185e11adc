//! Framing: one message per frame, a 4-byte big-endian payload length, then the
//! payload (UTF-8 JSON). Frames are bounded by [`MAX_FRAME`]; a peer that announces
//! more, announces an empty frame, or stops in the middle gets a [`FrameError`]
//! before any more memory is spent on it.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::message::{Message, MessageError, encode_message, parse_message};

/// The largest payload a frame may carry: 64 KiB. Outpost's messages are well under
/// 2 KiB; the bound only stops a broken or hostile peer.
pub const MAX_FRAME: usize = 64 * 1024;

/// Why bytes are not a frame.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The length prefix is zero: no message.
    #[error("empty frame")]
    Empty,
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame needed (prefix included).
        expected: usize,
        /// Bytes that came.
        got: usize,
    },
    /// The payload is not a message of the subset.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// Reading or writing the transport failed.
    #[error("transport: {0}")]
    Io(#[from] std::io::Error),
}

/// Split one frame off the front of `buf`: `Ok(Some((payload, consumed)))` when a
/// whole frame is there, `Ok(None)` when more bytes are needed, an error when the
/// prefix is invalid (empty or oversized frame). Never reads past the frame.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    check_len(len)?;
    Ok(buf.get(4..4 + len).map(|payload| (payload, 4 + len)))
}

fn check_len(len: usize) -> Result<(), FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > MAX_FRAME {
        return Err(FrameError::Oversized {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(())
}

/// Prefix `payload` with its length, ready to write in one call.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    check_len(payload.len())?;
    let mut out = Vec::with_capacity(4 + payload.len());
    // check_len bounds the length far below u32::MAX.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Every message in a byte string of back-to-back frames, stopping at the first
/// error: the parser entry point for a fuzz target (`cargo fuzz`: feed it the raw input).
/// A trailing partial frame is [`FrameError::Truncated`].
pub fn parse_frames(mut bytes: &[u8]) -> Result<Vec<Message>, FrameError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match decode_frame(bytes)? {
            Some((payload, used)) => {
                out.push(parse_message(payload)?);
                bytes = &bytes[used..];
            }
            None => {
                let expected = bytes
                    .first_chunk::<4>()
                    .map(|p| 4 + u32::from_be_bytes(*p) as usize)
                    .unwrap_or(4);
                return Err(FrameError::Truncated {
                    expected,
                    got: bytes.len(),
                });
            }
        }
    }
    Ok(out)
}

/// Read one frame's payload. `Ok(None)` when the stream ends cleanly between frames.
///
/// Not cancel-safe: dropped mid-frame, the bytes read so far are lost and the stream
/// is out of step, so a caller that gives up must discard the connection (the driver
/// and the simulator both do).
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated { expected: 4, got })
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    check_len(len)?;
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = r.read(&mut payload[got..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                expected: 4 + len,
                got: 4 + got,
            });
        }
        got += n;
    }
    Ok(Some(payload))
}

/// Read and parse one message. `Ok(None)` on a clean end of stream. Not cancel-safe
/// (see [`read_frame`]).
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Message>, FrameError> {
    match read_frame(r).await? {
        Some(payload) => Ok(Some(parse_message(&payload)?)),
        None => Ok(None),
    }
}

/// Write one message as one frame and flush. Not cancel-safe: dropped midway, part
/// of the frame may have been written.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &Message,
) -> Result<(), FrameError> {
    let frame = encode_frame(&encode_message(message)?)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexo::message::*;

    fn status_request(id: &str) -> Message {
        Message::Request(Request {
            header: MessageHeader::new(
                MessageCategory::TransactionStatus,
                MessageType::Request,
                id,
                "s",
                "p",
            ),
            body: RequestBody::TransactionStatusRequest(TransactionStatusRequest {
                message_reference: MessageReference {
                    message_category: MessageCategory::Payment,
                    service_id: "key-1".into(),
                    sale_id: "s".into(),
                },
            }),
        })
    }

    fn frame(m: &Message) -> Vec<u8> {
        encode_frame(&encode_message(m).unwrap()).unwrap()
    }

    #[test]
    fn frames_split_back_to_back_and_wait_for_more() {
        let a = frame(&status_request("q1"));
        let b = frame(&status_request("q2"));
        let both = [a.clone(), b.clone()].concat();
        let msgs = parse_frames(&both).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].header().service_id, "q2");
        for cut in 0..a.len() {
            assert!(decode_frame(&a[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let (payload, used) = decode_frame(&both).unwrap().unwrap();
        assert_eq!(used, a.len());
        assert_eq!(payload, &a[4..]);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let a = frame(&status_request("q1"));
        for cut in 1..a.len() {
            let err = parse_frames(&a[..cut]).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { got, .. } if got == cut),
                "cut at {cut}: {err}"
            );
        }
        assert!(parse_frames(&[]).unwrap().is_empty());
    }

    #[test]
    fn oversized_and_empty_frames_are_refused_from_the_prefix() {
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let err = decode_frame(&huge).unwrap_err();
        assert!(matches!(err, FrameError::Oversized { len, .. } if len == MAX_FRAME + 1));
        assert!(err.to_string().contains("exceeds"));
        assert!(matches!(
            decode_frame(&u32::MAX.to_be_bytes()),
            Err(FrameError::Oversized { .. })
        ));
        assert!(matches!(
            decode_frame(&[0, 0, 0, 0]),
            Err(FrameError::Empty)
        ));
        assert!(matches!(
            encode_frame(&vec![b' '; MAX_FRAME + 1]),
            Err(FrameError::Oversized { .. })
        ));
        assert!(encode_frame(&vec![b' '; MAX_FRAME]).is_ok());
    }

    #[test]
    fn garbage_payloads_are_message_errors() {
        for payload in [&b"hello"[..], b"\x00\x01\x02", b"{\"a\":1}", b"\xc3\x28"] {
            let f = encode_frame(payload).unwrap();
            assert!(
                matches!(parse_frames(&f), Err(FrameError::Message(_))),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn pseudo_random_bytes_never_panic() {
        // A small deterministic fuzz pass (xorshift); `cargo fuzz` does the long run.
        let good = frame(&status_request("q1"));
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for round in 0..2_000 {
            let mut bytes = good.clone();
            for _ in 0..(round % 7 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % bytes.len();
                bytes[i] = (x >> 32) as u8;
            }
            let _ = parse_frames(&bytes);
            let _ = parse_frames(&bytes[(x as usize) % bytes.len()..]);
        }
    }

    #[tokio::test]
    async fn read_frame_reports_clean_end_truncation_and_oversize() {
        let a = frame(&status_request("q1"));
        let mut r = &a[..];
        assert!(read_message(&mut r).await.unwrap().is_some());
        assert!(read_message(&mut r).await.unwrap().is_none());

        let mut r = &a[..a.len() - 3];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(FrameError::Truncated { got, expected }) if got == a.len() - 3 && expected == a.len()
        ));
        let mut r = &a[..2];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(FrameError::Truncated {
                expected: 4,
                got: 2
            })
        ));
        let mut huge = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(&[b'{'; 16]);
        let mut r = &huge[..];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(FrameError::Oversized { .. })
        ));
        let bad = encode_frame(b"not json").unwrap();
        let mut r = &bad[..];
        assert!(matches!(
            read_message(&mut r).await,
            Err(FrameError::Message(_))
        ));
    }

    #[tokio::test]
    async fn a_frame_split_across_reads_is_reassembled() {
        let a = frame(&status_request("q1"));
        let (mut client, mut server) = tokio::io::duplex(8);
        let writer = tokio::spawn(async move {
            for chunk in a.chunks(3) {
                client.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let m = read_message(&mut server).await.unwrap().unwrap();
        assert_eq!(m.header().service_id, "q1");
        writer.await.unwrap();
    }
}
