//! The service's error type and its mapping to gRPC statuses.
//!
//! Owns: which status each failure gets. Every message names the field at
//! fault and, for limits, the limit.

/// A failed request.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ServiceError {
    /// Bad input (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// Unknown collection, operation or id (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// Name taken (ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// Not in a state to do this (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Over a limit, a full queue or the memory budget (RESOURCE_EXHAUSTED).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The deadline passed before the work started (DEADLINE_EXCEEDED).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Shutting down (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// A server-side failure: I/O, corruption (INTERNAL).
    #[error("{0}")]
    Internal(String),
    /// A write was logged but its wait for the standby ended without an
    /// answer (timed out, fenced, or stopped): it may or may not survive.
    /// DEADLINE_EXCEEDED (`timeout`) or UNAVAILABLE, with the trailer
    /// `quarry-outcome: unknown` so clients can tell it from a refusal.
    #[error("{message}")]
    OutcomeUnknown {
        /// The deadline passed (else the node was fenced or stopped).
        timeout: bool,
        /// What happened.
        message: String,
    },
}

/// The metadata key that marks an error whose write may have happened.
pub const OUTCOME_KEY: &str = "quarry-outcome";

impl ServiceError {
    /// The same error with `more` added to its message.
    pub fn append(self, more: &str) -> ServiceError {
        use ServiceError::*;
        match self {
            InvalidArgument(m) => InvalidArgument(m + more),
            NotFound(m) => NotFound(m + more),
            AlreadyExists(m) => AlreadyExists(m + more),
            FailedPrecondition(m) => FailedPrecondition(m + more),
            ResourceExhausted(m) => ResourceExhausted(m + more),
            DeadlineExceeded(m) => DeadlineExceeded(m + more),
            Unavailable(m) => Unavailable(m + more),
            Internal(m) => Internal(m + more),
            OutcomeUnknown { timeout, message } => OutcomeUnknown {
                timeout,
                message: message + more,
            },
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        use tonic::Status;
        match e {
            ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::AlreadyExists(m) => Status::already_exists(m),
            ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
            ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ServiceError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            ServiceError::Unavailable(m) => Status::unavailable(m),
            ServiceError::Internal(m) => Status::internal(m),
            ServiceError::OutcomeUnknown { timeout, message } => {
                let mut md = tonic::metadata::MetadataMap::new();
                md.insert(OUTCOME_KEY, tonic::metadata::MetadataValue::from_static("unknown"));
                let code = if timeout {
                    tonic::Code::DeadlineExceeded
                } else {
                    tonic::Code::Unavailable
                };
                Status::with_metadata(code, message, md)
            }
        }
    }
}

impl From<quarry_engine::search::SearchError> for ServiceError {
    fn from(e: quarry_engine::search::SearchError) -> Self {
        use quarry_engine::search::SearchError;
        match e {
            SearchError::BadRequest(m) => ServiceError::InvalidArgument(m),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// A tower layer that gives oversized messages the status gRPC specifies
/// for them. tonic rejects a request over `max_decoding_message_size` with
/// OUT_OF_RANGE; the gRPC status-code table (and grpc-go, grpc-java) use
/// RESOURCE_EXHAUSTED for "received message larger than the configured
/// limit", which is what Quarry documents. The message (naming the size
/// and the limit) is kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct OversizeStatusLayer;

/// Requests refused as over `max_message_bytes` since start (the layer
/// sees them before any service does).
static OVERSIZED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Count one request refused as over `max_message_bytes` (the JSON
/// API's refusals; the gRPC layer counts its own).
pub fn count_oversized() {
    OVERSIZED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// See [`OVERSIZED`].
pub fn oversized_refusals() -> u64 {
    OVERSIZED.load(std::sync::atomic::Ordering::Relaxed)
}

impl<S> tower_layer::Layer<S> for OversizeStatusLayer {
    type Service = OversizeStatus<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OversizeStatus { inner }
    }
}

/// See [`OversizeStatusLayer`].
#[derive(Clone, Debug)]
pub struct OversizeStatus<S> {
    inner: S,
}

impl<S, Req, B> tower_service::Service<Req> for OversizeStatus<S>
where
    S: tower_service::Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let h = resp.headers_mut();
            let oversize = h.get("grpc-status").is_some_and(|v| v == "11")
                && h.get("grpc-message").and_then(|m| m.to_str().ok()).is_some_and(|m| {
                    m.contains("message%20length%20too%20large") || m.contains("message length too large")
                });
            if oversize {
                h.insert("grpc-status", http::HeaderValue::from_static("8"));
                OVERSIZED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(resp)
        })
    }
}
