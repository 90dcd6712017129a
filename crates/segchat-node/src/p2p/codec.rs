//! The peer link's frames and codecs, shared by the router that reads a
//! link and the protocols that write to it.

use bytes::{Bytes, BytesMut};
use segchat_proto::frame::{CodecError, DecodeError};
use segchat_proto::{peer, Frame, FrameCodec};
use tokio_util::codec::Decoder;

/// The peer link's codec and frames.
pub(crate) type PeerCodec = FrameCodec<peer::Request, peer::Reply, peer::Event>;
pub(crate) type PeerFrame = Frame<peer::Request, peer::Reply, peer::Event>;

/// The peer link's reader: like [`PeerCodec`], but a whole `request`
/// frame whose body cannot be read comes out as `Err((id, reason))`
/// instead of ending the stream, so the link answers it with 400 and
/// carries on.
#[derive(Debug, Default)]
pub(crate) struct PeerReadCodec(PeerCodec);

impl PeerReadCodec {
    pub(crate) fn new(max_len: usize) -> Self {
        PeerReadCodec(PeerCodec::new(max_len))
    }
}

/// What [`PeerReadCodec`] reads: a frame, or a request it could not.
pub(crate) type PeerRead = Result<PeerFrame, (u32, String)>;

impl Decoder for PeerReadCodec {
    type Item = PeerRead;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<PeerRead>, CodecError> {
        match self.0.decode(src) {
            Ok(frame) => Ok(frame.map(Ok)),
            Err(CodecError::Decode(DecodeError::BadRequest { id, reason })) => {
                Ok(Some(Err((id, reason))))
            }
            Err(e) => Err(e),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<PeerRead>, CodecError> {
        match self.0.decode_eof(src) {
            Ok(frame) => Ok(frame.map(Ok)),
            Err(CodecError::Decode(DecodeError::BadRequest { id, reason })) => {
                Ok(Some(Err((id, reason))))
            }
            Err(e) => Err(e),
        }
    }
}

/// One frame's bytes, ready for an [`super::Outbound`] (`None`, logged:
/// it could not be encoded).
pub(crate) fn encode(frame: &PeerFrame) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    match frame.encode(&mut buf) {
        Ok(()) => Some(buf.freeze()),
        Err(e) => {
            tracing::error!(error = %e, "could not encode a peer frame");
            None
        }
    }
}
