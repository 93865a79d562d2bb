//! One log line and three series per call: `lb_api_calls_total{method,
//! code}`, `lb_api_call_duration_seconds{method}` (until the response
//! starts: a stream's length is its client's), whatever the service.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use metrics::{counter, histogram};
use tonic::{Code, codegen::http};

/// The tower layer that counts and logs calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallsLayer;

impl<S> tower::Layer<S> for CallsLayer {
    type Service = Calls<S>;

    fn layer(&self, inner: S) -> Calls<S> {
        Calls { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Calls<S> {
    inner: S,
}

type Boxed<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Calls<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Boxed<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            // An error is in the headers (a trailers-only response); a
            // success's status comes in the trailers, after the body.
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(Code::Ok, Code::from_i32),
                Err(_) => Code::Unknown,
            };
            let took = started.elapsed();
            let code_name = format!("{code:?}");
            counter!("lb_api_calls_total", "method" => method.clone(), "code" => code_name.clone())
                .increment(1);
            histogram!("lb_api_call_duration_seconds", "method" => method.clone())
                .record(took.as_secs_f64());
            tracing::info!(
                method,
                code = code_name,
                ms = took.as_secs_f64() * 1e3,
                "api call"
            );
            response
        })
    }
}
