//! `POST /{tenant}/oauth2/token` (v1, `resource`) and `POST /{tenant}/oauth2/v2.0/token` (v2, `scope`).
//!
//! Response shapes per version (protocols.md §3.3): v1 sends every number as a string and echoes
//! `resource`; v2 sends integers. Client authentication: `client_secret` in the body
//! (client_secret_post), HTTP Basic (client_secret_basic, RFC 6749 §2.3.1) or a JWT-bearer
//! `client_assertion` (private_key_jwt).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use openmi_engine::{ClientAuth, EngineError, GrantRequest, IssuedTokens, ResourceRequest};
use serde_json::{json, Map, Value};
use std::time::Instant;

use super::Tenant;
use crate::context::{CallerObjectId, RequestContext};
use crate::error::OAuthError;
use crate::throttle::Peer;
use crate::AppState;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// v1 token endpoint.
pub async fn token_v1(
    state: State<AppState>,
    context: RequestContext,
    tenant: Tenant,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(state, context, tenant, peer, headers, body, Version::V1).await
}

/// v2 token endpoint.
pub async fn token_v2(
    state: State<AppState>,
    context: RequestContext,
    tenant: Tenant,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(state, context, tenant, peer, headers, body, Version::V2).await
}

/// Decodes `client_secret_basic`: base64 of `urlencode(client_id):urlencode(secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    let unescape = |text: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={text}"))
            .ok()?
            .pop()
            .map(|(_, value)| value)
    };
    Some((unescape(user)?, unescape(password)?))
}

async fn token(
    State(state): State<AppState>,
    context: RequestContext,
    Tenant(tenant): Tenant,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Bytes,
    version: Version,
) -> Response {
    let tenant_id = state.engine.tenant().id.to_string();
    let fail =
        |error: EngineError| OAuthError::from_engine(error, &context, &tenant_id).into_response();
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(_) => {
            return fail(EngineError::BadRequest(
                "the body must be application/x-www-form-urlencoded".to_string(),
            ))
        }
    };
    // The first occurrence of a parameter wins.
    let param = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };
    let basic = basic_credentials(&headers);
    let client_auth = if let Some(secret) = param("client_secret") {
        ClientAuth::Secret(secret)
    } else if let Some((_, secret)) = &basic {
        ClientAuth::Secret(secret.clone())
    } else if let Some(assertion) = param("client_assertion") {
        ClientAuth::Assertion {
            assertion,
            assertion_type: param("client_assertion_type").unwrap_or_default(),
        }
    } else {
        ClientAuth::None
    };
    let request = GrantRequest {
        tenant: tenant.clone(),
        grant_type: param("grant_type"),
        client_id: param("client_id")
            .or_else(|| basic.as_ref().map(|(client_id, _)| client_id.clone())),
        client_auth,
        resource: match version {
            Version::V1 => ResourceRequest::V1Resource(param("resource")),
            Version::V2 => ResourceRequest::V2Scope(param("scope")),
        },
        username: param("username"),
        password: param("password"),
        refresh_token: param("refresh_token"),
        code: param("code"),
        redirect_uri: param("redirect_uri"),
        code_verifier: param("code_verifier"),
        device_code: param("device_code"),
        client_info: param("client_info").as_deref() == Some("1"),
        issuer_base: state.base_url(&context).to_string(),
    };
    if let Err(wait) = state
        .throttle
        .admit(address, request.client_id.as_deref(), Instant::now())
    {
        return throttled(wait, &context, &tenant_id);
    }
    match state.engine.grant(request).await {
        Ok(tokens) => token_response(tokens, version),
        Err(error) => fail(error),
    }
}

fn token_response(tokens: IssuedTokens, version: Version) -> Response {
    let mut body = Map::new();
    body.insert("token_type".into(), json!("Bearer"));
    match version {
        Version::V1 => {
            if tokens.refresh_token.is_some() {
                body.insert("scope".into(), json!("user_impersonation"));
            }
            body.insert("expires_in".into(), json!(tokens.expires_in.to_string()));
            body.insert(
                "ext_expires_in".into(),
                json!(tokens.expires_in.to_string()),
            );
            body.insert("expires_on".into(), json!(tokens.expires_on.to_string()));
            body.insert("not_before".into(), json!(tokens.not_before.to_string()));
            body.insert("resource".into(), json!(tokens.resource));
        }
        Version::V2 => {
            if let Some(scope) = &tokens.scope {
                body.insert("scope".into(), json!(scope));
            }
            body.insert("expires_in".into(), json!(tokens.expires_in));
            body.insert("ext_expires_in".into(), json!(tokens.expires_in));
        }
    }
    body.insert("access_token".into(), json!(tokens.access_token));
    if let Some(refresh_token) = &tokens.refresh_token {
        body.insert("refresh_token".into(), json!(refresh_token));
    }
    if let Some(id_token) = &tokens.id_token {
        body.insert("id_token".into(), json!(id_token));
    }
    if let Some(client_info) = &tokens.client_info {
        body.insert("client_info".into(), json!(client_info));
    }
    let mut response = Json(Value::Object(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
        .extensions_mut()
        .insert(CallerObjectId(tokens.object_id));
    response
}

/// Entra's answer to a throttled token request: 429, `Retry-After` in whole seconds, and an
/// OAuth error body.
fn throttled(wait: std::time::Duration, context: &RequestContext, tenant_id: &str) -> Response {
    let mut error = OAuthError::from_engine(
        EngineError::OAuth {
            error: "temporarily_unavailable",
            code: 90055,
            description: "There are too many incoming requests. Please try again later."
                .to_string(),
        },
        context,
        tenant_id,
    );
    error.status = axum::http::StatusCode::TOO_MANY_REQUESTS;
    let mut response = error.into_response();
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Arbitrary form bodies and `Authorization` headers at the token and device-code endpoints,
/// through the whole application: each is decoded or refused with Entra's OAuth error JSON
/// (`error`, `error_description` opening with the AADSTS code, `error_codes`), never a panic,
/// never a 5xx; the sign-in pages' forms (authorize, device login) never answer a 5xx either.
#[cfg(test)]
mod proptests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use openmi_engine::BootstrapSecrets;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;
    use crate::test_server::{header_bytes, Answer, TestServer};

    /// Form pieces: the endpoints' parameter names, values that reach each grant, the real
    /// client's id and secret, and percent-encodings good and bad.
    fn pieces(client_id: &str, client_secret: &str) -> Vec<String> {
        [
            "grant_type",
            "client_id",
            "client_secret",
            "client_assertion",
            "client_assertion_type",
            "scope",
            "resource",
            "username",
            "password",
            "refresh_token",
            "code",
            "redirect_uri",
            "code_verifier",
            "device_code",
            "client_info",
            "response_type",
            "response_mode",
            "prompt",
            "otc",
            "continue",
            "client_credentials",
            "password",
            "refresh_token",
            "authorization_code",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "https://management.azure.com/.default",
            "https%3A%2F%2Fmanagement.azure.com%2F.default",
            "https://management.azure.com/",
            "https://graph.microsoft.com/.default",
            "openid offline_access profile",
            "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
            "nobody@example.com",
            "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln",
            "eyJhbGciOiJub25lIn0.e30.",
            "a.b.c",
            "http://localhost",
            "form_post",
            "none",
            "1",
            "=",
            "&",
            "&&",
            ";",
            "+",
            "%",
            "%2",
            "%zz",
            "%FF",
            "%C3%A9",
            "%00",
            "%26",
            "%3D",
            "é",
            "\u{0}",
            " ",
            "\n",
        ]
        .into_iter()
        .map(str::to_string)
        .chain([client_id.to_string(), client_secret.to_string()])
        .collect()
    }

    /// A request a client could mean: a grant, a client, its credential and a resource, with
    /// pairs of pieces after them.
    fn grant_forms(
        pieces: Vec<String>,
        secrets: &BootstrapSecrets,
    ) -> impl Strategy<Value = String> {
        let client_id = secrets.client_id.to_string();
        let grants = prop::sample::select(vec![
            "grant_type=client_credentials",
            "grant_type=password",
            "grant_type=refresh_token&refresh_token=x",
            "grant_type=authorization_code&code=x&redirect_uri=http://localhost",
            "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=x",
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
            "grant_type=",
            "grant_type=nonsense",
        ]);
        let clients = prop::sample::select(vec![
            format!("client_id={client_id}"),
            format!("client_id={}", client_id.to_uppercase()),
            "client_id=04b07795-8ddb-461a-bbee-02f9e1bf7b46".to_string(),
            "client_id=00000000-0000-0000-0000-000000000000".to_string(),
            "client_id=%zz".to_string(),
            String::new(),
        ]);
        let credentials = prop::sample::select(vec![
            format!("client_secret={}", secrets.client_secret),
            "client_secret=wrong".to_string(),
            "client_assertion=a.b.c&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            "client_assertion=eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln".to_string(),
            format!("username={}&password={}", secrets.admin_username, secrets.admin_password),
            format!("username={}&password=wrong", secrets.admin_username),
            String::new(),
        ]);
        let resources = prop::sample::select(vec![
            "scope=https://management.azure.com/.default",
            "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default+offline_access",
            "resource=https://management.azure.com/",
            "resource=https://127.0.0.1:8443",
            "scope=openid offline_access profile",
            "scope=%FF",
            "",
        ]);
        let piece = prop::sample::select(pieces);
        let pair = (piece.clone(), piece).prop_map(|(key, value)| format!("{key}={value}"));
        (
            grants,
            clients,
            credentials,
            resources,
            prop::collection::vec(pair, 0..3),
        )
            .prop_map(|(grant, client, credential, resource, extra)| {
                let mut parts = vec![grant.to_string(), client, credential, resource.to_string()];
                parts.extend(extra);
                parts.join("&")
            })
    }

    /// An authorize (or device login) form a browser could post: the request's parameters,
    /// then perhaps a sign-in.
    fn page_forms(
        pieces: Vec<String>,
        secrets: &BootstrapSecrets,
    ) -> impl Strategy<Value = Vec<u8>> {
        let always = |values: &[&str]| {
            prop::sample::select(
                values
                    .iter()
                    .map(|value| value.to_string())
                    .collect::<Vec<_>>(),
            )
        };
        let choose = |values: &[&str]| prop::option::of(always(values));
        let piece = prop::sample::select(pieces);
        let pair = (piece.clone(), piece).prop_map(|(key, value)| format!("{key}={value}"));
        (
            (
                choose(&[
                    "response_type=code",
                    "response_type=token",
                    "response_type=%FF",
                ]),
                always(&[
                    "client_id=04b07795-8ddb-461a-bbee-02f9e1bf7b46",
                    "client_id=04b07795-8ddb-461a-bbee-02f9e1bf7b46",
                    "client_id=00000000-0000-0000-0000-000000000000",
                    "client_id=%zz",
                ]),
                always(&[
                    "redirect_uri=http://localhost",
                    "redirect_uri=http://localhost:8400",
                    "redirect_uri=http%3A%2F%2Flocalhost%3A8400%2Fx%3Fa%3Db",
                    "redirect_uri=http://localhost/%0D%0ASet-Cookie:x",
                    "redirect_uri=javascript:alert(1)",
                ]),
                choose(&[
                    "response_mode=query",
                    "response_mode=fragment",
                    "response_mode=form_post",
                    "response_mode=x",
                ]),
                choose(&[
                    "scope=openid profile offline_access",
                    "scope=https://management.azure.com/.default",
                    "resource=https://management.azure.com/",
                ]),
                choose(&[
                    "state=s%0A%22%3C",
                    "nonce=n",
                    "prompt=none",
                    "prompt=login",
                    "prompt=select_account",
                ]),
                choose(&[
                    "code_challenge=abc&code_challenge_method=S256",
                    "code_challenge=abc&code_challenge_method=plain",
                    "code_challenge_method=x",
                ]),
            ),
            prop::option::of(prop::sample::select(vec![
                format!(
                    "username={}&password={}",
                    secrets.admin_username, secrets.admin_password
                ),
                format!("username={}&password=wrong", secrets.admin_username),
                "username=nobody%40example.com&password=x".to_string(),
                "continue=1".to_string(),
                "otc=ABCD-EFGH".to_string(),
                "otc=%FF".to_string(),
            ])),
            prop::collection::vec(pair, 0..2),
        )
            .prop_map(|((a, b, c, d, e, f, g), sign_in, extra)| {
                let parts: Vec<String> = [a, Some(b), Some(c), d, e, f, g, sign_in]
                    .into_iter()
                    .flatten()
                    .chain(extra)
                    .collect();
                parts.join("&").into_bytes()
            })
    }

    fn bodies(pieces: Vec<String>, secrets: &BootstrapSecrets) -> impl Strategy<Value = Vec<u8>> {
        let piece = prop::sample::select(pieces.clone());
        let pair = (piece.clone(), piece.clone()).prop_map(|(key, value)| format!("{key}={value}"));
        prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..300),
            1 => prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat().into_bytes()),
            1 => prop::collection::vec(pair, 0..10).prop_map(|pairs| pairs.join("&").into_bytes()),
            3 => grant_forms(pieces, secrets).prop_map(String::into_bytes),
        ]
    }

    /// `Authorization` values: none, any, and `Basic` over any bytes or over an
    /// `id:secret` made of form pieces.
    fn authorizations(pieces: Vec<String>) -> impl Strategy<Value = Option<Vec<u8>>> {
        let piece = prop::sample::select(pieces);
        let basic_text = (
            prop::collection::vec(piece.clone(), 0..3),
            prop::option::of(Just(":")),
            prop::collection::vec(piece, 0..3),
        )
            .prop_map(|(user, colon, password)| {
                format!(
                    "{}{}{}",
                    user.concat(),
                    colon.unwrap_or_default(),
                    password.concat()
                )
                .into_bytes()
            });
        let scheme = prop::sample::select(vec!["Basic ", "basic ", "BASIC ", "Basic  ", "Bearer "]);
        prop::option::of(prop_oneof![
            header_bytes(200),
            (scheme.clone(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(
                |(scheme, bytes)| format!("{scheme}{}", STANDARD.encode(bytes)).into_bytes()
            ),
            (scheme, basic_text).prop_map(|(scheme, text)| format!(
                "{scheme}{}",
                STANDARD.encode(text)
            )
            .into_bytes()),
        ])
    }

    /// The body asserted to be Entra's error JSON; its code matches the description's.
    fn assert_oauth_error(answer: &Answer) {
        let status = answer.status.as_u16();
        assert!(matches!(status, 400 | 401 | 429), "{answer:?}");
        let json = answer.json();
        let error = json["error"].as_str().unwrap();
        assert!(!error.is_empty(), "{json}");
        let codes = json["error_codes"].as_array().unwrap();
        assert_eq!(codes.len(), 1, "{json}");
        let code = codes[0].as_u64().unwrap();
        let description = json["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{json}"
        );
        assert_eq!(
            answer.headers[header::CACHE_CONTROL],
            "no-store, no-cache",
            "{json}"
        );
    }

    fn runner() -> TestRunner {
        TestRunner::new(Config {
            failure_persistence: None,
            ..Config::default()
        })
    }

    fn request(path: &str, body: Vec<u8>, authorization: Option<Vec<u8>>) -> Request<Body> {
        let mut builder = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(value) = authorization {
            builder = builder.header(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(&value).unwrap(),
            );
        }
        builder.body(Body::from(body)).unwrap()
    }

    // One server for all cases (starting one bootstraps a tenant), so the runner is driven by
    // hand rather than by `proptest!`, which would start one per case.
    #[test]
    fn token_and_device_code_forms_decode_or_are_refused_as_entra() {
        let server = TestServer::start();
        let tenant = server.tenant_id();
        let pieces = pieces(
            &server.secrets.client_id.to_string(),
            &server.secrets.client_secret,
        );
        let tenants = prop::sample::select(vec![
            tenant.clone(),
            tenant.clone(),
            tenant,
            "common".to_string(),
            "organizations".to_string(),
            "contoso.onmicrosoft.com".to_string(),
            "00000000-0000-0000-0000-000000000000".to_string(),
            "%FF".to_string(),
            "%zz".to_string(),
        ]);
        let endpoints = prop::sample::select(vec![
            "oauth2/token",
            "oauth2/v2.0/token",
            "oauth2/devicecode",
            "oauth2/v2.0/devicecode",
        ]);
        let strategy = (
            tenants,
            endpoints,
            bodies(pieces.clone(), &server.secrets),
            authorizations(pieces),
        );
        let result = runner().run(&strategy, |(tenant, endpoint, body, authorization)| {
            let path = format!("/{tenant}/{endpoint}");
            let answer = server.send(request(&path, body, authorization));
            if answer.status.is_success() {
                let json = answer.json();
                let field = if endpoint.ends_with("token") {
                    "access_token"
                } else {
                    "device_code"
                };
                assert!(json[field].is_string(), "{path}: {json}");
            } else {
                assert_oauth_error(&answer);
            }
            Ok(())
        });
        if let Err(error) = result {
            panic!("{error}");
        }
    }

    #[test]
    fn sign_in_page_forms_never_fail_the_server() {
        let server = TestServer::start();
        let tenant = server.tenant_id();
        let pieces = pieces(&server.secrets.client_id.to_string(), "not-the-secret");
        let paths = prop::sample::select(vec![
            format!("/{tenant}/oauth2/authorize"),
            format!("/{tenant}/oauth2/v2.0/authorize"),
            "/common/oauth2/v2.0/authorize".to_string(),
            "/%FF/oauth2/v2.0/authorize".to_string(),
            "/devicelogin".to_string(),
        ]);
        let strategy = (
            paths,
            prop_oneof![
                bodies(pieces.clone(), &server.secrets),
                page_forms(pieces.clone(), &server.secrets),
            ],
            authorizations(pieces),
        );
        let result = runner().run(&strategy, |(path, body, authorization)| {
            let answer = server.send(request(&path, body, authorization));
            assert!(!answer.status.is_server_error(), "{path}: {answer:?}");
            if answer.status == StatusCode::FOUND {
                assert!(answer.headers.contains_key(header::LOCATION), "{answer:?}");
            } else if !answer.body.is_empty() {
                let kind = answer.headers[header::CONTENT_TYPE].to_str().unwrap();
                assert!(kind.starts_with("text/html"), "{path}: {answer:?}");
            }
            Ok(())
        });
        if let Err(error) = result {
            panic!("{error}");
        }
    }

    proptest! {
        /// `client_secret_basic` decodes any header value or none, and gives back what a
        /// client encoded (RFC 6749 §2.3.1: each part form-urlencoded, then base64).
        #[test]
        fn basic_credentials_never_panic_and_round_trip(
            value in header_bytes(200),
            client_id in ".{0,20}",
            secret in ".{0,40}",
        ) {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(&value).unwrap());
            let _ = basic_credentials(&headers);

            let encode = |text: &str| serde_urlencoded::to_string([("v", text)]).unwrap()[2..].to_string();
            let basic = format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(&client_id), encode(&secret))));
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&basic).unwrap());
            prop_assert_eq!(basic_credentials(&headers), Some((client_id, secret)));
        }
    }
}
