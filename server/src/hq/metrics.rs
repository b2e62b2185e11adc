//! The gRPC port's requests in `/metrics`: a tower layer around the services that
//! counts each call in [`crate::telemetry::requests`] under protocol `grpc`, its
//! method path (`/outpost.hq.v1.StoreService/PushCatalog`), method `POST` and its gRPC
//! status name, with the time to its response.
//!
//! The status is the `grpc-status` of the response's headers: a call that fails is
//! answered trailers-only, so its status is there; a response without one succeeded
//! as far as its headers (the store's services answer once, so the headers come when
//! the call is done). Paths no service serves (`UNIMPLEMENTED`) count as `unmatched`,
//! so a client cannot grow the label set.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::Service;
use tonic::codegen::http;

use crate::telemetry::requests::{self, UNMATCHED};

/// The layer for `tonic::transport::Server::builder().layer(...)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

/// A service counted by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let started = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let res = answer.await;
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0),
                // The transport failed the call: counted as UNKNOWN.
                Err(_) => 2,
            };
            let route = if code == tonic::Code::Unimplemented as i32 {
                UNMATCHED
            } else {
                &path
            };
            requests::record(
                "grpc",
                route,
                "POST",
                status_name(code),
                started.elapsed().as_secs_f64(),
            );
            res
        })
    }
}

/// The canonical name of a gRPC status code (`OK`, `UNAVAILABLE`...).
pub fn status_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_follow_the_codes() {
        assert_eq!(status_name(0), "OK");
        assert_eq!(status_name(tonic::Code::Unavailable as i32), "UNAVAILABLE");
        assert_eq!(
            status_name(tonic::Code::Unauthenticated as i32),
            "UNAUTHENTICATED"
        );
        assert_eq!(status_name(99), "UNKNOWN");
        assert_eq!(status_name(-1), "UNKNOWN");
    }
}
