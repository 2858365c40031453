//! The reference server of `scripts/bench-agent`: what a bare hyper 1.x HTTP/1.1 server on tokio
//! costs for one small keep-alive GET on this machine, measured in the same run as the agent.
//!
//! ```sh
//! openmi-bench-agent-ref --listen 127.0.0.1:PORT --body-bytes N
//! ```
//!
//! Every request gets `200` with `Content-Type: application/json` and one fixed JSON body of
//! exactly N bytes (the size of the agent's IMDS token response, so both send the same bytes).
//! No routing, parsing, logging or state: the floor the agent is compared with. The runtime is
//! tokio's multi-threaded one, or with `--single-thread` a current-thread one as `openmi-agent`
//! builds it (the bench runs both and compares with the faster); sockets get TCP_NODELAY as the
//! agent's do.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn usage() -> ! {
    eprintln!("usage: openmi-bench-agent-ref --listen ADDR:PORT --body-bytes N [--single-thread]");
    std::process::exit(2);
}

/// A JSON object of exactly `size` bytes (at least 32): a token-like string padded to fit.
fn body_of(size: usize) -> Bytes {
    let head = r#"{"token_type":"Bearer","access_token":""#;
    let tail = r#""}"#;
    let fill = size.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(size);
    body.push_str(head);
    body.extend(std::iter::repeat_n('x', fill));
    body.push_str(tail);
    Bytes::from(body)
}

fn main() {
    let mut listen: Option<SocketAddr> = None;
    let mut size: Option<usize> = None;
    let mut single_thread = false;
    let mut flatten = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().and_then(|value| value.parse().ok()),
            "--body-bytes" => size = args.next().and_then(|value| value.parse().ok()),
            "--single-thread" => single_thread = true,
            "--flatten" => flatten = true,
            _ => usage(),
        }
    }
    let (Some(listen), Some(size)) = (listen, size) else {
        usage()
    };
    let runtime = if single_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    runtime.block_on(serve(listen, size, flatten));
}

async fn serve(listen: SocketAddr, size: usize, flatten: bool) {
    let body = body_of(size);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {listen}: {error}");
            std::process::exit(1);
        }
    };
    match listener.local_addr() {
        Ok(bound) => println!("listening on http://{bound} ({} byte body)", body.len()),
        Err(error) => eprintln!("local_addr: {error}"),
    }
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = tokio::signal::ctrl_c() => return,
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let mut response = Response::new(Full::new(body.clone()));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = http1::Builder::new();
            if flatten {
                builder.writev(false);
            }
            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
