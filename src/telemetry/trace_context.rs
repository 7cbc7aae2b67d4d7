//! W3C Trace Context: read an incoming `traceparent`, write the one a callback carries.
//!
//! The trace id of a request is, in order: the incoming `traceparent`'s, else the one the
//! OpenTelemetry layer gave the request span (when OTLP export is on), else a fresh
//! random one. It is stored on the record, so a callback sent after a restart still
//! continues the same trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A parsed `traceparent` header (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything malformed or all-zero,
    /// which the W3C spec says to ignore (a new trace starts).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !lower_hex(version, 2)
            || version == "ff"
            || !lower_hex(trace, 32)
            || !lower_hex(parent, 16)
            || !lower_hex(flags, 2)
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = TraceId::from_hex(trace)
            .ok()
            .filter(|t| *t != TraceId::INVALID)?;
        let parent_id = SpanId::from_hex(parent)
            .ok()
            .filter(|s| *s != SpanId::INVALID)?;
        let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
        Some(Self {
            trace_id,
            parent_id,
            sampled,
        })
    }
}

/// Attaches the incoming trace (if any) to `span` and returns the request's trace id as
/// 32 lowercase hex digits.
pub fn adopt(span: &tracing::Span, incoming: Option<TraceParent>) -> String {
    if let Some(tp) = incoming {
        let flags = if tp.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(
            tp.trace_id,
            tp.parent_id,
            flags,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        return tp.trace_id.to_string();
    }
    let assigned = span.context().span().span_context().trace_id();
    if assigned != TraceId::INVALID {
        return assigned.to_string();
    }
    TraceId::from_bytes(rand::random::<[u8; 16]>()).to_string()
}

/// Continues a stored trace in `span` (a job picked up later, maybe by another instance).
pub fn resume(span: &tracing::Span, trace_id: &str) {
    if let Ok(trace_id) = TraceId::from_hex(trace_id) {
        // The request's own span is gone; its trace continues from a synthetic remote parent.
        let parent = SpanId::from_bytes(rand::random::<[u8; 8]>());
        let remote = SpanContext::new(
            trace_id,
            parent,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// The `traceparent` a callback carries: the request's trace, with `span`'s id as parent
/// when OpenTelemetry gave it one, else a fresh span id.
pub fn outgoing(span: &tracing::Span, trace_id: &str) -> String {
    let own = span.context().span().span_context().span_id();
    let span_id = if own != SpanId::INVALID {
        own
    } else {
        SpanId::from_bytes(rand::random::<[u8; 8]>())
    };
    format!("00-{trace_id}-{span_id}-01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_w3c_example() {
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(tp.sampled);
    }

    #[test]
    fn ignores_malformed_and_all_zero_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn outgoing_header_continues_the_trace() {
        let span = tracing::Span::none();
        let header = outgoing(&span, "4bf92f3577b34da6a3ce929d0e0e4736");
        let tp = TraceParent::parse(&header).unwrap();
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
