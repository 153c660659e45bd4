//! `logos-wire`: the logos-core wire protocol.
//!
//! [`Value`] is the data model, [`Message`] the message kinds, [`codec`] the frame and CBOR
//! encoding, [`ErrorCode`] the stable error codes, [`handshake`] the version check, [`trace`] the trace context a call may carry, [`credit`] the
//! stream flow-control constants. `docs/protocol.md` is the normative text; `tests/vectors.rs`
//! replays its byte-exact vectors. This crate does no I/O and holds no policy.

pub mod code;
pub mod codec;
pub mod credit;
pub mod error;
pub mod handshake;
pub mod message;
pub mod trace;
pub mod value;

pub use code::ErrorCode;
pub use codec::{
    Frame, FrameDecoder, SHARED_ATTR, SHARED_FLAG, SHARED_LAPS_ATTR, STREAM_DATA_HEAD_MAX,
    decode_body, decode_message, decode_value, encode_call_frame, encode_frame, encode_frame_into,
    encode_message, encode_stream_data_head, encode_value, shared_prefix, stream_data_payload,
};
pub use error::WireError;
pub use handshake::{MAX_HANDSHAKE_FRAME, PROTOCOL_MAJOR, PROTOCOL_MINOR};
pub use message::{Attrs, Call, CallRef, Hello, Message, Welcome};
pub use trace::TraceContext;
pub use value::Value;
pub use value::typed::{from_value, from_value_mut, to_value};
