//! Wire formats: the chunk request/response protocol (a small length-prefixed binary
//! codec for libp2p request-response) and the gossip announcements (JSON).
//! Every decoder is bounded and refuses malformed bytes with a [`WireError`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::SignedOffer;
use crate::chunks::{Bitfield, CHUNK_SIZE, MAX_ARTIFACT_SIZE, Root, chunk_count};

/// The chunk protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/outpost/chunks/1");

/// Largest request frame (a tag, a root and an index fit in 37 bytes).
pub const MAX_REQUEST: usize = 64;
/// Largest response frame: the chunk list of the largest artifact, plus headers.
pub const MAX_RESPONSE: usize = (MAX_ARTIFACT_SIZE / CHUNK_SIZE) as usize * 32 + 64;
/// Largest gossip message.
pub const MAX_GOSSIP: usize = 128 * 1024;

/// A malformed frame or message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Empty frame.
    #[error("empty frame")]
    Empty,
    /// Unknown message tag.
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    /// The frame length does not fit its tag.
    #[error("frame of {got} bytes does not fit tag {tag}")]
    Length {
        /// Tag.
        tag: u8,
        /// Bytes.
        got: usize,
    },
    /// Frame too large.
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// A gossip message did not parse.
    #[error("gossip message does not parse: {0}")]
    Gossip(String),
}

/// A request to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The chunk list of an artifact.
    ChunkList(Root),
    /// One chunk.
    Chunk(Root, u32),
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The chunk list (unverified until checked against the root).
    ChunkList {
        /// Artifact size.
        size: u64,
        /// Concatenated chaining values.
        bytes: Vec<u8>,
    },
    /// A chunk (unverified until checked against the chunk list).
    Chunk {
        /// Chunk index.
        index: u32,
        /// Chunk bytes.
        data: Vec<u8>,
    },
    /// The peer does not have it (or refuses: not a member, over its limits).
    NotFound,
}

fn root_at(b: &[u8]) -> Root {
    let mut r = [0u8; 32];
    r.copy_from_slice(&b[..32]);
    Root(r)
}

/// Encodes a request frame body.
pub fn encode_request(r: &Request) -> Vec<u8> {
    match r {
        Request::ChunkList(root) => [&[1u8][..], &root.0].concat(),
        Request::Chunk(root, i) => [&[2u8][..], &root.0, &i.to_be_bytes()].concat(),
    }
}

/// Decodes a request frame body.
pub fn decode_request(b: &[u8]) -> Result<Request, WireError> {
    let (&tag, rest) = b.split_first().ok_or(WireError::Empty)?;
    match (tag, rest.len()) {
        (1, 32) => Ok(Request::ChunkList(root_at(rest))),
        (2, 36) => Ok(Request::Chunk(
            root_at(rest),
            u32::from_be_bytes([rest[32], rest[33], rest[34], rest[35]]),
        )),
        (1 | 2, got) => Err(WireError::Length { tag, got }),
        (t, _) => Err(WireError::UnknownTag(t)),
    }
}

/// Encodes a response frame body.
pub fn encode_response(r: &Response) -> Vec<u8> {
    match r {
        Response::ChunkList { size, bytes } => [&[1u8][..], &size.to_be_bytes(), bytes].concat(),
        Response::Chunk { index, data } => [&[2u8][..], &index.to_be_bytes(), data].concat(),
        Response::NotFound => vec![3],
    }
}

/// Decodes a response frame body (lengths are checked against the artifact later).
pub fn decode_response(b: &[u8]) -> Result<Response, WireError> {
    let (&tag, rest) = b.split_first().ok_or(WireError::Empty)?;
    match tag {
        1 if rest.len() >= 8 && (rest.len() - 8) % 32 == 0 => Ok(Response::ChunkList {
            size: u64::from_be_bytes(rest[..8].try_into().map_err(|_| WireError::Empty)?),
            bytes: rest[8..].to_vec(),
        }),
        2 if rest.len() >= 4 && rest.len() - 4 <= CHUNK_SIZE as usize => Ok(Response::Chunk {
            index: u32::from_be_bytes(rest[..4].try_into().map_err(|_| WireError::Empty)?),
            data: rest[4..].to_vec(),
        }),
        3 if rest.is_empty() => Ok(Response::NotFound),
        1..=3 => Err(WireError::Length {
            tag,
            got: rest.len(),
        }),
        t => Err(WireError::UnknownTag(t)),
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            WireError::TooLarge(len),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> std::io::Result<()> {
    io.write_all(&(body.len() as u32).to_be_bytes()).await?;
    // No close here: the request-response handler closes the stream itself.
    io.write_all(body).await?;
    io.flush().await
}

fn invalid(e: WireError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// The request-response codec for [`PROTOCOL`].
#[derive(Debug, Clone, Default)]
pub struct ChunkCodec;

impl libp2p::request_response::Codec for ChunkCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_request(&read_frame(io, MAX_REQUEST).await?).map_err(invalid)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_response(&read_frame(io, MAX_RESPONSE).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_request(&req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode_response(&res)).await
    }
}

/// A gossip announcement on the store topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Gossip {
    /// HQ offered an artifact to one unit; it passes the offer, with HQ's signature, to
    /// the store. Every receiver checks the signature (`crate::offer`).
    Offer {
        /// The offer.
        offer: SignedOffer,
    },
    /// What the sender has of an artifact.
    Have {
        /// Artifact.
        root: Root,
        /// Artifact size.
        size: u64,
        /// Base64 of the sender's bitfield.
        bitfield: String,
        /// Whether the sender can serve the chunk list.
        has_list: bool,
        /// Whether the sender is downloading from origin right now.
        fetching_origin: bool,
        /// Sender's listen addresses, so every unit can dial every other.
        addrs: Vec<String>,
        /// Sender's counter, so repeated announcements are not deduplicated away.
        seq: u64,
    },
}

impl Gossip {
    /// Parses and bounds-checks a gossip message.
    pub fn decode(b: &[u8]) -> Result<Gossip, WireError> {
        if b.len() > MAX_GOSSIP {
            return Err(WireError::TooLarge(b.len()));
        }
        let g: Gossip = serde_json::from_slice(b).map_err(|e| WireError::Gossip(e.to_string()))?;
        if let Gossip::Have { size, bitfield, .. } = &g {
            crate::chunks::check_size(*size).map_err(|e| WireError::Gossip(e.to_string()))?;
            let bits = B64
                .decode(bitfield)
                .map_err(|e| WireError::Gossip(e.to_string()))?;
            if Bitfield::from_bytes(chunk_count(*size), bits).is_none() {
                return Err(WireError::Gossip("bitfield does not fit the size".into()));
            }
        }
        Ok(g)
    }

    /// The bitfield of a `Have` (already checked by [`Gossip::decode`]).
    pub fn have_bits(&self) -> Option<Bitfield> {
        match self {
            Gossip::Have { size, bitfield, .. } => {
                Bitfield::from_bytes(chunk_count(*size), B64.decode(bitfield).ok()?)
            }
            Gossip::Offer { .. } => None,
        }
    }

    /// Serialises.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Encodes a bitfield for a `Have`.
    pub fn bits(b: &Bitfield) -> String {
        B64.encode(b.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let root = Root([9; 32]);
        for r in [Request::ChunkList(root), Request::Chunk(root, 77)] {
            assert_eq!(decode_request(&encode_request(&r)).expect("decode"), r);
        }
        for r in [
            Response::ChunkList {
                size: 5,
                bytes: vec![1; 64],
            },
            Response::Chunk {
                index: 3,
                data: vec![4; 100],
            },
            Response::NotFound,
        ] {
            assert_eq!(decode_response(&encode_response(&r)).expect("decode"), r);
        }
    }

    #[test]
    fn malformed_request_and_response_bytes_are_refused() {
        assert_eq!(decode_request(&[]), Err(WireError::Empty));
        assert_eq!(decode_request(&[9, 1, 2]), Err(WireError::UnknownTag(9)));
        assert!(matches!(
            decode_request(&[2; 20]),
            Err(WireError::Length { tag: 2, .. })
        ));
        assert!(matches!(
            decode_request(&[1; 34]),
            Err(WireError::Length { tag: 1, .. })
        ));
        assert!(decode_response(&[1, 0, 0]).is_err());
        assert!(decode_response(&[3, 0]).is_err());
        // A chunk longer than CHUNK_SIZE is refused at decode.
        let mut big = vec![2, 0, 0, 0, 0];
        big.resize(5 + CHUNK_SIZE as usize + 1, 0);
        assert!(decode_response(&big).is_err());
        assert!(Gossip::decode(b"{\"type\":\"have\"}").is_err());
        assert!(Gossip::decode(b"\xff\x00").is_err());
        let g = Gossip::Have {
            root: Root([1; 32]),
            size: 10 * CHUNK_SIZE,
            bitfield: B64.encode([0u8; 1]),
            has_list: true,
            fetching_origin: false,
            addrs: vec![],
            seq: 1,
        };
        assert!(matches!(
            Gossip::decode(&g.encode()),
            Err(WireError::Gossip(_))
        ));
    }

    #[test]
    fn oversized_frame_is_refused_before_allocation() {
        let mut bytes = ((MAX_REQUEST + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        let mut cur = futures::io::Cursor::new(bytes);
        let err = futures::executor::block_on(read_frame(&mut cur, MAX_REQUEST)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
